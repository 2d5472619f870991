r"""easy-VQA with LoRA: only low-rank adapters train, the base model stays frozen (runs on this CPU).

    # on top of the demo's trained model (make demo first): adapters on its weights, base read from runs/easyvqa
    python -m trainers.train --config configs/transfer/easyvqa_lora.py:init=runs/easyvqa --workdir runs/easyvqa_lora
    # standalone: a fresh random base, frozen; the adapters alone must learn the task
    python -m trainers.train --config configs/transfer/easyvqa_lora.py --workdir runs/easyvqa_lora_fresh

Arguments: steps (default 2000), data_dir, init (a training workdir or checkpoint to adapt; default none: a fresh
random base), rank (default 16).

The model, data, prompt and evaluation are the demo's (configs/transfer/easyvqa.py). What changes is what trains:
rank-r adapters (`paligemma/lora.py`, through Qwix) on every attention and MLP weight of both towers, scaled by
alpha / r = 2; nothing else. The run reports the trainable parameters and the optimizer state (a few percent of the
demo's), checkpoints hold the adapters and `lora_base.json` names the base (the `init` checkpoint, or the random base
written once to the workdir). `--config.export_npz=True` writes the merged plain model, which `evaluators.run` and
`tools.predict` read like any checkpoint (they also read the workdir itself, merging on the fly).

Optimisation: adapters tolerate (and need) a larger learning rate than full fine-tuning: Adam at 3e-3, 100 warmup
steps, cosine to 1%, batch 64.
"""

import ml_collections

from configs import common
from configs.transfer import easyvqa

# Every attention and MLP weight of the decoder and of the image encoder (not the embeddings, norms or the head).
TARGETS = (
    r"^llm/layers/(attn|mlp)/",
    r"^img/Transformer/encoderblock/(MultiHeadDotProductAttention_0/(query|key|value|out)|MlpBlock_0/Dense_\d)/kernel$",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The easy-VQA LoRA run; `arg` = "steps=N,data_dir=DIR,init=PATH,rank=R" (any subset)."""
    arg = common.parse_arg(arg, steps=2000, data_dir="", init="", rank=16)
    config = easyvqa.get_config(f"steps={arg.steps},data_dir={arg.data_dir}")
    if arg.init:
        config.model_init = arg.init
        # The base's own tokenizer (a demo workdir keeps the one it trained); a plain checkpoint needs
        # --config.tokenizer=PATH.
        del config["tokenizer"]  # a training spec (dict) becomes a path (str); ConfigDict fields keep their type
        config.tokenizer = f"{arg.init.rstrip('/')}/tokenizer.model"
    config.lora = dict(rank=arg.rank, alpha=2.0 * arg.rank, targets=list(TARGETS), dropout=0.0)
    config.lr = 3e-3
    config.wd = 0.0
    config.schedule = dict(decay_type="cosine", warmup_steps=100, end_factor=0.01)
    config.evals.test.log_steps = 500
    return config
