r"""MSRVTT-QA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about short videos; accuracy.

    python -m trainers.train --config configs/transfer/msrvtt_qa.py --workdir gs://BUCKET/msrvtt_qa_224
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:final_split=true --workdir ...  # train + val
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:mode=mock --workdir /tmp/msrvtt_qa_mock  # CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on train +
validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `msrvtt_qa` TFDS dataset: `python -m datasets.build msrvtt_qa --manual_dir DIR` (`--help_manual` lists the
    files; the clips are MSR-VTT's).

Recipe (big_vision configs/proj/paligemma/transfers/msrvtt_qa.py, its `sweep_best`): 16 frames at 224 px per clip
(`frames_from_video`, [16, 224, 224, 3]), prompt `answer en {question}`, target the answer, text_len 64; 1 epoch at
batch 128, lr 1e-5, no weight decay, the image encoder frozen (`freeze`), Adam (b2 0.999), cosine schedule with 5%
warmup, clipping at 1 (docs/reference.md §5). As in msrvtt_cap.py, the 16 frames are spread uniformly over the clip
(`datasets.video.sample_indices`) where big_vision's DMVR reader takes them at a stride of 9.
Evaluation: accuracy, exact match of the greedy answer (at most 16 tokens; the answers are single words) with the
one reference after the VQA answer normalisation (`vqa` evaluator, `normalize="always"`; big_vision compares the
raw strings): on validation every 25% of the run, on test (the model card's number) at the end.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common

FRAMES = 'frames_from_video(inkey="video", outkey="image", num_frames={frames}, size={res})|value_range(-1, 1)|'
PROMPT = 'strfmt("answer en {{question}}", outkey="prefix")'  # {{}}: .format() comes later
TRAIN_PP = (
    FRAMES + PROMPT + '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    FRAMES + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_input", "answers", "id")'
)
TEXT_LEN = 64
FREEZE_IMAGE_ENCODER = (r"^img/",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSRVTT-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=16,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=16, mode="real")
    mock = arg.mode == "mock"
    res = 32 if mock else arg.res
    fmt = dict(res=res, frames=arg.num_frames, text_len=TEXT_LEN)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)

    config.input = dict(
        data=dict(name="msrvtt_qa", split="train+validation" if arg.final_split else "train"),
        batch_size=128,
        shuffle_buffer_size=10_000,
        pp=TRAIN_PP.format(**fmt),
    )
    config.total_epochs = 1

    common.original_transfer_recipe(config)
    config.freeze = FREEZE_IMAGE_ENCODER

    qa = dict(
        type="vqa",
        batch_size=128,
        pp=EVAL_PP.format(**fmt),
        id_key="id",
        normalize="always",
        max_decode_len=16,
        sampler="greedy",
    )
    config.evals = {}
    if not arg.final_split:
        config.evals.msrvtt_qa_val = dict(qa, data=dict(name="msrvtt_qa", split="validation"), log_percent=0.25)
    config.evals.msrvtt_qa_test = dict(qa, data=dict(name="msrvtt_qa", split="test"))  # at the end
    common.fit_released_slice(config, arg.model, arg.res, frames=arg.num_frames)
    if mock:
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en",), res=res)
    return config
