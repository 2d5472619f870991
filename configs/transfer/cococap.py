r"""COCO captions: fine-tune a pretrained PaliGemma to caption images, scored by CIDEr on COCO and NoCaps.

    python -m trainers.train --config configs/transfer/cococap.py --workdir gs://BUCKET/cococap_224
    python -m trainers.train --config configs/transfer/cococap.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/cococap.py:final_split=true --workdir ...
    python -m trainers.train --config configs/transfer/cococap.py:mode=mock --workdir /tmp/cococap_mock  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on
train+restval+val, caption the test split and NoCaps test for submission), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the stock TFDS `coco_captions` (Karpathy splits train/restval/val/test): `tfds build coco_captions` on a machine
    with internet, then copy the data_dir; and this project's `nocaps`:
    `python -m datasets.build nocaps --manual_dir DIR` (`--help_manual` lists the files).

Recipe (docs/reference.md §5): 5 epochs at batch 256, Adam (b2 0.999), lr 1e-5, cosine with 5% warmup, clipping at 1,
no weight decay, text_len 32; each visit of an image trains on one of its captions drawn at random; prompt
`caption en`. Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of beam-2 captions on the Karpathy val split and on NoCaps
validation, every 20% of the run and at the end, x100 as the model card prints them (`coco/cider`, `nocaps/cider`).
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls with float32 master weights and
Adam moments, every layer of both towers rematerialised ("full"), the loss's logits only at the suffix tokens.
Slice (configs/common.py `RELEASED_SLICES`, checked with `--dry_run`, README table): 3B (PaliGemma 1 or 2) on v5e-8
at 224 px, v5e-16 at 448, v5e-32 at 896; 10B on v5e-32 (896: v5e-64); 28B on v5e-64 (448 and 896: v5e-128); FSDP
over all chips (28B at 896: plus a tensor axis of 4), accum_steps = batch / (batch shards x examples per shard).
"""

import ml_collections

from configs import common

PROMPT = 'strfmt("caption en", outkey="prefix")'
IMAGE = "decode|resize({res}, antialias=True)|value_range(-1, 1)|"
TRAIN_PP = (
    IMAGE + PROMPT + '|choice(inkey="captions/text", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "text", "mask_ar", "mask_loss", "mask_input")'
)
COCO_EVAL_PP = (
    IMAGE + PROMPT + '|copy("captions/text", "references")|copy("image/id", "image_id")'
    "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "text", "mask_ar", "mask_input", "references", "image_id")'
)
NOCAPS_EVAL_PP = (
    IMAGE + PROMPT + '|copy("captions", "references")|tok_paligemma_prompt(text_len={text_len})'
    '|keep("image", "text", "mask_ar", "mask_input", "references", "image_id")'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The COCO captioning run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    mock = arg.mode == "mock"
    res = common.pp_res(arg)
    text_len = common.text_len(arg, 32)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)

    config.input = dict(
        data=dict(name="coco_captions", split="train+restval+val" if arg.final_split else "train+restval"),
        batch_size=256,
        shuffle_buffer_size=50_000,
        pp=TRAIN_PP.format(res=res, text_len=text_len),
    )
    config.total_epochs = 5

    common.original_transfer_recipe(config)

    caption_batch = common.beam_eval_batch(arg.model, arg.res, beams=2)
    caption = dict(
        type="caption",
        batch_size=caption_batch,
        max_decode_len=32,
        sampler="beam(n=2)",
        references_key="references",
        id_key="image_id",
        score_scale=100.0,
        log_percent=0.2,
    )
    config.evals = {}
    config.evals.coco = dict(
        caption,
        data=dict(name="coco_captions", split="test" if arg.final_split else "val"),
        pp=COCO_EVAL_PP.format(res=res, text_len=text_len),
    )
    config.evals.nocaps = dict(
        caption,
        data=dict(name="nocaps", split="test" if arg.final_split else "validation"),
        pp=NOCAPS_EVAL_PP.format(res=res, text_len=text_len),
    )
    common.fit_released_slice(config, arg.model, arg.res)  # mesh + accum_steps for the planned TPU slice
    if mock:
        common.mock_mode(config, tokenizer_keys=("captions/text",), prompts=("caption en",), res=res)
    return config
