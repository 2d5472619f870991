r"""ActivityNet-QA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about a video; accuracy on test.

    python -m trainers.train --config configs/transfer/activitynet_qa.py --workdir gs://BUCKET/anet_qa
    python -m trainers.train --config configs/transfer/activitynet_qa.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/activitynet_qa.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/activitynet_qa.py:mode=mock --workdir /tmp/anet_qa_mock  # CPU

Arguments: res (224 | 448 | 896; the original trained at 224 only), model (paligemma-3b | paligemma2-3b |
paligemma2-10b | paligemma2-28b), final_split (train on train + validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `activitynet_qa` TFDS dataset: `python -m datasets.build activitynet_qa --manual_dir DIR` (`--help_manual`
    lists the files): one example per question with its whole video and its one answer.

Recipe (big_vision configs/proj/paligemma/transfers/activitynet_qa.py, its `sweep_best`): 16 frames per video at
224 px (`frames_from_video`: 16 x 256 image tokens), prompt `answer en {question}`, the answer as the target,
text_len 64; 1 epoch at batch 128, lr 1e-5, weight decay 1e-6; Adam (b2 0.999), cosine schedule with 5% warmup,
clipping at 1, no label smoothing (docs/reference.md §5). One difference: big_vision's video reader took 16 frames
70 frames apart from a random start (training) or the first frame (evaluation); here the frames are the centres of 16
equal parts of the whole video (`datasets.video.sample_indices`), in training, evaluation and `tools.predict` alike.
Evaluation: accuracy = exact match of the greedy answer (up to 64 tokens) with the one reference, case-sensitive,
only surrounding whitespace stripped (the `vqa` evaluator with one answer, as big_vision's `vqa` evaluator without
`to_lower`), with accuracies per question type (`accuracy_motion`, ..., `accuracy_yes_no`, ...): on the first 1,000
validation questions every 25% of the run, on the full validation and test splits at the end.
`anet_qa_test/accuracy` is the model card's ActivityNet-QA number.
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
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_input", "answers", "id", "question_type")'
)
DATASET = "activitynet_qa"
TEXT_LEN = 64
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ActivityNet-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
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

    qa = dict(
        type="vqa",
        batch_size=256,
        pp=EVAL_PP.format(**fmt),
        answers_key="answers",
        id_key="id",
        answer_type_key="question_type",
        normalize="vqav2",  # one reference: exact match, whitespace stripped
        max_decode_len=TEXT_LEN,
        sampler="greedy",
    )
    config.evals = {}
    if not arg.final_split:
        config.evals.anet_qa_minival = dict(qa, data=dict(name=DATASET, split="validation[:1000]"), log_percent=0.25)
        config.evals.anet_qa_val = dict(qa, data=dict(name=DATASET, split="validation"))  # at the end
    config.evals.anet_qa_test = dict(qa, data=dict(name=DATASET, split="test"))  # at the end
    common.fit_released_slice(config, arg.model, arg.res, frames=arg.num_frames)
    if mock:
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en",), res=res)
    return config
