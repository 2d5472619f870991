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

from configs import common, recipes

DATASET = "msvd_qa"
INPUT = recipes.Input("video", prompt="answer en {question}", target="answers", text_len=64)
NUM_FRAMES = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSVD-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=1, lr=3e-6, wd=3e-7)
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg, arg.num_frames),
        batch_size=256,
        normalize="vqav2",  # one reference: exact match, whitespace stripped
        max_decode_len=INPUT.text_len,
        answers_key="answers",
    )
    recipes.add_evals(config, arg, qa, DATASET, {"msvd_qa_val": "validation", "msvd_qa_test": "test"})
    return recipes.finish(config, arg, INPUT, arg.num_frames)
