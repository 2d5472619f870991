r"""VQAv2 with LoRA on one 16-24 GB accelerator: PaliGemma 3B at 224 px, frozen bfloat16 base, rank-16 adapters.

    python -m trainers.train --config configs/transfer/vqav2_lora.py --workdir runs/vqav2_lora
    python -m trainers.train --config configs/transfer/vqav2_lora.py --workdir /tmp/plan --dry_run=v5e:1x1
    python -m trainers.train --config configs/transfer/vqav2_lora.py:mode=mock --workdir /tmp/vqav2_lora_mock

Arguments: those of configs/transfer/vqav2.py (res, model, final_split, mode) plus rank (default 16) and quantize
("" | int8 | int4: QLoRA, the frozen decoder weights quantized by Qwix, for 8-12 GB devices).

Data, prompt, evaluation and schedule shape are configs/transfer/vqav2.py's. What changes, so that the run fits one
chip of 16 GB (a TPU v5e chip, an L4/A10-class GPU):
  * the base is frozen and held in bfloat16 (`param_dtype`, read from the float32 checkpoint and cast as it is
    placed): 5.9 GB for 3B instead of 11.7, and no gradient or optimizer state for it;
  * only rank-16 LoRA adapters (`paligemma/lora.py`) on the decoder's attention and MLP weights train, in float32
    with Adam: about 1% of the parameters' count (the trainer prints the bytes);
  * one device (`mesh = [("data", -1)]`), the batch of 256 taken as 32 microbatches of 8 (`accum_steps`), every
    layer rematerialised, bfloat16 compute;
  * lr 2e-4 (adapters want a larger step than full fine-tuning's 1e-5), cosine with 5% warmup, 3 epochs.
`--dry_run=v5e:1x1` compiles it for one TPU v5e chip and prints the memory and step-time table (README, LoRA).
"""

import ml_collections

from configs import common
from configs.transfer import vqav2

MICROBATCH = 8  # examples per accumulation step on the one chip


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The VQAv2 LoRA run; `arg` = "res=224,model=paligemma-3b,mode=real,rank=16,quantize=int4" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real", rank=16, quantize="")
    config = vqav2.get_config(f"res={arg.res},model={arg.model},final_split={arg.final_split},mode={arg.mode}")
    # targets: the decoder's attention + MLP (paligemma.lora.DEFAULT_TARGETS)
    config.lora = dict(rank=arg.rank, alpha=float(arg.rank), dropout=0.0, quantize=arg.quantize or None)
    config.total_epochs = None if arg.mode == "mock" else 3
    config.lr = 2e-4
    if arg.mode == "mock":  # the tiny CPU model of mode=mock, in float32
        return config
    for tower in ("img", "llm"):
        config.model[tower]["param_dtype"] = "bfloat16"
    config.mesh = [("data", -1)]
    config.accum_steps = config.input.batch_size // MICROBATCH
    for name in config.evals:
        config.evals[name].batch_size = 2 * MICROBATCH
    return config
