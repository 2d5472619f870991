r"""A-OKVQA multiple choice: fine-tune a pretrained PaliGemma (1 or 2) to pick one of 4 answers; accuracy.

    python -m trainers.train --config configs/transfer/aokvqa_mc.py --workdir gs://BUCKET/aokvqa_mc_224
    python -m trainers.train --config configs/transfer/aokvqa_mc.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/aokvqa_mc.py:final_split=true --workdir ...  # leaderboard
    python -m trainers.train --config configs/transfer/aokvqa_mc.py:mode=mock --workdir /tmp/aokvqa_mc  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train + validation, as the model card), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `aokvqa` TFDS dataset: `python -m datasets.build aokvqa --manual_dir DIR` (A-OKVQA v1.0 and the
    COCO 2017 images; `--help_manual` lists them).

Recipe (big_vision configs/proj/paligemma/transfers/aokvqa_mc.py): 15 epochs at batch 128, Adam (b2 0.999), lr 5e-6
with a cosine schedule and 5% warmup, clipping at 1, no weight decay, no label smoothing; text_len 128. The prompt
lists the options, `answer en {question} choose from: {choices}` (the 4 options joined by ", "; big_vision joins
them with " \t "), and the target is the correct option's text.
Evaluation: multiple-choice accuracy (`multiple_choice` evaluator: the greedy answer, stripped and lowercased, equals
the correct option; choices_key="choices", answer_key="correct_choice_idx") on the validation split every 25% of the
run and at the end (left out with final_split), and the test split at the end: its answers are hidden, so it is
predicted, not scored, and written as the leaderboard's file `{workdir}/evals/aokvqa_mc_test_submission_step*.json`
(`{question_id: {"multiple_choice": answer}}`). The model card's number is the leaderboard's (train+val -> test
server). The leaderboard takes one file with both tasks' answers: join it with the direct-answer run's
(`configs/transfer/aokvqa_da.py`) by `python -m evaluators.submission merge_aokvqa MC.json DA.json OUT.json`.
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import ml_collections

from configs import common, recipes

DATASET = "aokvqa"
INPUT = recipes.Input(
    "image",
    prompt="answer en {question} choose from: {choices}",
    target="correct_choice",
    text_len=128,
    choose=False,
    id_key="question_id",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The A-OKVQA multiple-choice run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any part)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=128, epochs=15, lr=5e-6, shuffle_buffer_size=50_000)
    mc = recipes.generative_eval(
        "multiple_choice",
        INPUT.eval_pp(arg, extra_keys=("choices", "correct_choice_idx")),
        batch_size=256,
        max_decode_len=32,
        choices_key="choices",
        answer_key="correct_choice_idx",
        id_key="question_id",
        submission_format="aokvqa",
    )
    splits = {"aokvqa_mc_val": "validation", "aokvqa_mc_test": "test"}
    recipes.add_evals(config, arg, mc, DATASET, splits)
    return recipes.finish(config, arg, INPUT)
