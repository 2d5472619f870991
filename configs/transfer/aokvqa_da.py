r"""A-OKVQA direct answer: fine-tune a pretrained PaliGemma (1 or 2) to answer in free form; accuracy on 10 answers.

    python -m trainers.train --config configs/transfer/aokvqa_da.py --workdir gs://BUCKET/aokvqa_da_224
    python -m trainers.train --config configs/transfer/aokvqa_da.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/aokvqa_da.py:final_split=true --workdir ...  # leaderboard
    python -m trainers.train --config configs/transfer/aokvqa_da.py:mode=mock --workdir /tmp/aokvqa_da  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train + validation, as the model card), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `aokvqa` TFDS dataset: `python -m datasets.build aokvqa --manual_dir DIR` (A-OKVQA v1.0 and the
    COCO 2017 images; `--help_manual` lists them).

Recipe (big_vision configs/proj/paligemma/transfers/aokvqa_da.py): 10 epochs at batch 128, Adam (b2 0.999), lr 5e-6
with a cosine schedule and 5% warmup, clipping at 1, no weight decay, no label smoothing; prompt
`answer en {question}`, one of the 10 direct answers drawn at random per visit, text_len 32.
Evaluation: A-OKVQA's direct-answer accuracy, min(1, matches / 3) over the 10 direct answers of the greedy answer
(`vqa` evaluator with `normalize="exact"`, `min_matches=3`: stripped and lowercased exact match, no leave-one-out,
as the benchmark's own evaluation script and big_vision's evaluator) on the validation split every 25% of the run
and at the end (left out with final_split), and the test split at the end: its answers are hidden, so it is
predicted, not scored, and written as the leaderboard's file `{workdir}/evals/aokvqa_da_test_submission_step*.json`
(`{question_id: {"direct_answer": answer}}`). The model card's number is the leaderboard's (train+val -> test
server); join the file with the multiple-choice run's (`configs/transfer/aokvqa_mc.py`) by
`python -m evaluators.submission merge_aokvqa MC.json DA.json OUT.json` (the leaderboard takes one file).
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import ml_collections

from configs import common, recipes

DATASET = "aokvqa"
INPUT = recipes.Input(
    "image", prompt="answer en {question}", target="direct_answers", text_len=32, id_key="question_id"
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The A-OKVQA direct-answer run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=128, epochs=10, lr=5e-6, shuffle_buffer_size=50_000)
    da = recipes.qa_eval(
        INPUT.eval_pp(arg),
        batch_size=256,
        normalize="exact",
        min_matches=3,
        max_decode_len=32,
        answers_key="direct_answers",
        id_key="question_id",
        submission_format="aokvqa",
    )
    splits = {"aokvqa_da_val": "validation", "aokvqa_da_test": "test"}
    recipes.add_evals(config, arg, da, DATASET, splits)
    return recipes.finish(config, arg, INPUT)
