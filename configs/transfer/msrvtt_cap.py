r"""MSR-VTT captioning: fine-tune a pretrained PaliGemma (1 or 2) to caption short videos, scored by CIDEr (x100).

    python -m trainers.train --config configs/transfer/msrvtt_cap.py --workdir gs://BUCKET/msrvtt_cap_224
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:final_split=true --workdir ...  # train + val
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:mode=mock --workdir /tmp/msrvtt_mock  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on train +
validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `msrvtt` TFDS dataset: `python -m datasets.build msrvtt --manual_dir DIR` (`--help_manual` lists the files).

Recipe (big_vision configs/proj/paligemma/transfers/msrvtt_cap.py, its `sweep_best`): 16 frames at 224 px per clip
(`frames_from_video`: decoded with PyAV, [16, 224, 224, 3]; the model concatenates their image tokens), prompt
`caption en`, one of the clip's 20 captions drawn at random per visit, text_len 32; 20 epochs at batch 128, lr 1e-5,
no weight decay, the image encoder frozen (`freeze`: no gradient, no optimizer state; big_vision gives it no
schedule), Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1 (docs/reference.md §5). One difference:
big_vision's DMVR reader takes 16 frames at a stride of 9 from a (random, at eval the first) start; here the 16
frames are spread uniformly over the whole clip (`datasets.video.sample_indices`), in training and evaluation.
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of greedy captions (at most 32 tokens) against all references,
reported x100 as in the model card (`score_scale=100`): on validation every 25% of the run, on test (the model
card's number) at the end.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common

FRAMES = 'frames_from_video(inkey="video", outkey="image", num_frames={frames}, size={res})|value_range(-1, 1)|'
PROMPT = 'strfmt("caption en", outkey="prefix")'
TRAIN_PP = (
    FRAMES + PROMPT + '|choice(inkey="captions", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    FRAMES + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_input", "captions", "id")'
)
TEXT_LEN = 32
FREEZE_IMAGE_ENCODER = (r"^img/",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSR-VTT captioning run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=16,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=16, mode="real")
    mock = arg.mode == "mock"
    res = 32 if mock else arg.res
    fmt = dict(res=res, frames=arg.num_frames, text_len=TEXT_LEN)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)

    config.input = dict(
        data=dict(name="msrvtt", split="train+validation" if arg.final_split else "train"),
        batch_size=128,
        shuffle_buffer_size=10_000,
        pp=TRAIN_PP.format(**fmt),
    )
    config.total_epochs = 20

    common.original_transfer_recipe(config)
    config.freeze = FREEZE_IMAGE_ENCODER

    caption = dict(
        type="caption",
        batch_size=64,
        pp=EVAL_PP.format(**fmt),
        max_decode_len=TEXT_LEN,
        sampler="greedy",
        references_key="captions",
        id_key="id",
        score_scale=100.0,
    )
    config.evals = {}
    if not arg.final_split:
        config.evals.msrvtt_val = dict(caption, data=dict(name="msrvtt", split="validation"), log_percent=0.25)
    config.evals.msrvtt_test = dict(caption, data=dict(name="msrvtt", split="test"))  # at the end
    common.fit_released_slice(config, arg.model, arg.res, frames=arg.num_frames)
    if mock:
        common.mock_mode(config, tokenizer_keys=("captions",), prompts=("caption en",), res=res)
    return config
