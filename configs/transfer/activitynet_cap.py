r"""ActivityNet Captions: fine-tune a pretrained PaliGemma (1 or 2) to caption a video segment; CIDEr on test.

    python -m trainers.train --config configs/transfer/activitynet_cap.py --workdir gs://BUCKET/anet_cap
    python -m trainers.train --config configs/transfer/activitynet_cap.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/activitynet_cap.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/activitynet_cap.py:mode=mock --workdir /tmp/anet_mock  # CPU

Arguments: res (224 | 448 | 896; the original trained at 224 only), model (paligemma-3b | paligemma2-3b |
paligemma2-10b | paligemma2-28b), final_split (train on train + validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `activitynet_captions` TFDS dataset: `python -m datasets.build activitynet_captions --manual_dir DIR`
    (`--help_manual` lists the files). One example per annotated segment (its clip cut out of the video) with its
    one sentence; validation = the official val_1, test = val_2, as the original.

Recipe (big_vision configs/proj/paligemma/transfers/activitynet_cap.py, its `sweep_best`): 16 frames per segment at
224 px (`frames_from_video`: the image tokens of the frames are concatenated, 16 x 256 = 4,096), prompt `caption en`,
the segment's sentence as the target, text_len 64; 1 epoch at batch 128, lr 1e-5, weight decay 1e-6, the image
encoder frozen; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1, no label smoothing
(docs/reference.md §5). One difference: big_vision's video reader took 16 frames 30 frames apart from a random start
(training) or the first frame (evaluation); here the frames are the centres of 16 equal parts of the segment
(`datasets.video.sample_indices`), the same in training, evaluation and `tools.predict`.
Evaluation: CIDEr-D x100 (with BLEU-4 and ROUGE-L; the COCO caption toolkit's PTB tokenisation), greedy decoding of up
to 64 tokens, against the segment's sentence: on the first 1,000 validation segments every 25% of the run, and on the
full validation and test splits at the end. `anet_cap_test/cider` is the model card's ActivityNet-CAP number.
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
DATASET = "activitynet_captions"
TEXT_LEN = 64
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ActivityNet Captions run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    mock = arg.mode == "mock"
    res = 32 if mock else arg.res
    fmt = dict(res=res, frames=arg.num_frames, text_len=TEXT_LEN)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)
    config.input = dict(
        data=dict(name=DATASET, split="train+validation" if arg.final_split else "train"),
        batch_size=128,
        shuffle_buffer_size=10_000,
        pp=TRAIN_PP.format(**fmt),
    )
    config.total_epochs = 1
    common.original_transfer_recipe(config)
    config.lr = 1e-5
    config.wd = 1e-6
    config.freeze = ("^img/",)  # sweep_best: freeze_vit=True

    caption = dict(
        type="caption",
        batch_size=256,
        pp=EVAL_PP.format(**fmt),
        references_key="captions",
        id_key="id",
        score_scale=100.0,
        max_decode_len=TEXT_LEN,
        sampler="greedy",
    )
    config.evals = {}
    if not arg.final_split:
        config.evals.anet_cap_minival = dict(
            caption, data=dict(name=DATASET, split="validation[:1000]"), log_percent=0.25
        )
        config.evals.anet_cap_val = dict(caption, data=dict(name=DATASET, split="validation"))  # at the end
    config.evals.anet_cap_test = dict(caption, data=dict(name=DATASET, split="test"))  # at the end
    common.fit_released_slice(config, arg.model, arg.res, frames=arg.num_frames)
    if mock:
        common.mock_mode(config, tokenizer_keys=("captions",), prompts=("caption en",), res=res)
    return config
