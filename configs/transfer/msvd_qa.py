r"""MSVD-QA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about a video clip; accuracy on test.

    python -m trainers.train --config configs/transfer/msvd_qa.py --workdir gs://BUCKET/msvd_qa
    python -m trainers.train --config configs/transfer/msvd_qa.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/msvd_qa.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/msvd_qa.py:mode=mock --workdir /tmp/msvd_qa_mock  # CPU

Arguments: res (224 | 448 | 896; the original trained at 224 only), model (paligemma-3b | paligemma2-3b |
paligemma2-10b | paligemma2-28b), final_split (train on train + validation), num_frames (8), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `msvd_qa` TFDS dataset: `python -m datasets.build msvd_qa --manual_dir DIR` (`--help_manual` lists the
    files): one example per question with its clip and its one answer.

Recipe (big_vision configs/proj/paligemma/transfers/msvd_qa.py, its defaults and `sweep_best`): 8 frames per clip at
224 px (`frames_from_video`: 8 x 256 image tokens), prompt `answer en {question}`, the answer as the target,
text_len 64; 1 epoch at batch 128, lr 3e-6, weight decay 3e-7; Adam (b2 0.999), cosine schedule with 5% warmup,
clipping at 1, no label smoothing (docs/reference.md §5). One difference: big_vision's video reader took 8 frames 26
frames apart from a random start (training) or the first frame (evaluation); here the frames are the centres of 8
equal parts of the clip (`datasets.video.sample_indices`), in training, evaluation and `tools.predict` alike.
Evaluation: accuracy = exact match of the greedy answer (up to 64 tokens) with the one reference, case-sensitive,
only surrounding whitespace stripped (the `vqa` evaluator with one answer, as big_vision's `vqa` evaluator without
`to_lower`): on the validation split every 25% of the run and at the end, on the test split at the end.
`msvd_qa_test/accuracy` is the model card's MSVD-QA number.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 8 x 224 px as 896 px).
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
DATASET = "msvd_qa"
TEXT_LEN = 64
NUM_FRAMES = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSVD-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
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
    config.lr = 3e-6
    config.wd = 3e-7

    qa = dict(
        type="vqa",
        batch_size=256,
        pp=EVAL_PP.format(**fmt),
        answers_key="answers",
        id_key="id",
        normalize="vqav2",  # one reference: exact match, whitespace stripped
        max_decode_len=TEXT_LEN,
        sampler="greedy",
    )
    config.evals = {}
    if not arg.final_split:
        config.evals.msvd_qa_val = dict(qa, data=dict(name=DATASET, split="validation"), log_percent=0.25)
    config.evals.msvd_qa_test = dict(qa, data=dict(name=DATASET, split="test"))  # at the end
    common.fit_released_slice(config, arg.model, arg.res, frames=arg.num_frames)
    if mock:
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en",), res=res)
    return config
