r"""DocVQA: fine-tune a pretrained PaliGemma to answer questions about document pages, scored by ANLS.

    python -m trainers.train --config configs/transfer/docvqa.py --workdir gs://BUCKET/docvqa_896
    python -m trainers.train --config configs/transfer/docvqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/docvqa.py:final_split=true --workdir ...   # test submission
    python -m trainers.train --config configs/transfer/docvqa.py:mode=mock --workdir /tmp/docvqa_mock   # CPU smoke run

Arguments: res (896 default | 448 | 224), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on
train+validation, write the test predictions in the DocVQA submission format), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `docvqa` TFDS dataset: `python -m datasets.build docvqa --manual_dir DIR` (the Single Page DocVQA
    files from https://rrc.cvc.uab.es/?ch=17; `--help_manual` lists them).

Recipe: as the other transfers (docs/reference.md §5) at 896px: Adam (b2 0.999), lr 1e-5, cosine with 5% warmup,
clipping at 1, no weight decay, batch 256; 10 epochs (our choice); the raw question is the prompt (no task prefix,
as the original DocVQA transfer); text_len 64 (questions are longer); one of the answers drawn at random per visit.
Evaluation: ANLS (threshold 0.5) of greedy answers on the validation split every 10% of the run and at the end.
896px means 4096 image tokens: like every released-model config, both towers compute in bfloat16 (float32 master
weights and Adam moments) and rematerialise every layer ("full") in the backward pass (configs/common.py
`RELEASED_COMPUTE`); the loss's logits are computed only at the answer tokens.
Slice (configs/common.py `RELEASED_SLICES`, checked with `--dry_run`, README table): 3B (PaliGemma 1 or 2) on v5e-8
at 224 px, v5e-16 at 448, v5e-32 at 896; 10B on v5e-32 (896: v5e-64); 28B on v5e-64 (448 and 896: v5e-128); FSDP
over all chips (28B at 896: plus a tensor axis of 4), accum_steps = batch / (batch shards x examples per shard).
"""

import ml_collections

from configs import common

PROMPT = 'strfmt("{{question}}", outkey="prefix")'  # {{}}: .format() comes later
IMAGE = "decode|resize({res}, antialias=True)|value_range(-1, 1)|"
TRAIN_PP = (
    IMAGE + PROMPT + '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    IMAGE + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "text", "mask_ar", "mask_input", "answers", "question_id")'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The DocVQA run; `arg` = "res=896,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=896, model="paligemma-3b", final_split=False, mode="real")
    mock = arg.mode == "mock"
    res = common.pp_res(arg)
    text_len = common.text_len(arg, 64)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)  # bfloat16 compute, float32 weights, remat "full"

    config.input = dict(
        data=dict(name="docvqa", split="train+validation" if arg.final_split else "train"),
        batch_size=256,
        shuffle_buffer_size=20_000,
        pp=TRAIN_PP.format(res=res, text_len=text_len),
    )
    config.total_epochs = 10

    common.original_transfer_recipe(config, ckpt_steps=500)

    config.evals = {}
    config.evals.anls = dict(
        type="anls",
        data=dict(name="docvqa", split="test" if arg.final_split else "validation"),
        pp=EVAL_PP.format(res=res, text_len=text_len),
        batch_size=64,
        max_decode_len=32,
        sampler="greedy",
        log_percent=0.1,
    )
    common.fit_released_slice(config, arg.model, arg.res)  # mesh + accum_steps for the planned TPU slice
    if mock:
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=(), res=res)
    return config
