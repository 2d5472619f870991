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

from configs import common, recipes

DATASET = "activitynet_qa"
INPUT = recipes.Input("video", prompt="answer en {question}", target="answers", text_len=64)
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ActivityNet-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=1, lr=1e-5, wd=1e-6)
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg, arg.num_frames, extra_keys=("question_type",)),
        batch_size=256,
        normalize="vqav2",  # one reference: exact match, whitespace stripped
        max_decode_len=INPUT.text_len,
        answers_key="answers",
        answer_type_key="question_type",  # accuracy per question type too
    )
    splits = {"anet_qa_minival": "validation[:1000]", "anet_qa_val": "validation", "anet_qa_test": "test"}
    recipes.add_evals(config, arg, qa, DATASET, splits)
    return recipes.finish(config, arg, INPUT, arg.num_frames)
