r"""RSVQA-LR: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about low-resolution satellite images.

    python -m trainers.train --config configs/transfer/rsvqa_lr.py --workdir gs://BUCKET/rsvqa_lr_224
    python -m trainers.train --config configs/transfer/rsvqa_lr.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/rsvqa_lr.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/rsvqa_lr.py:mode=mock --workdir /tmp/rsvqa_lr_mock  # CPU

Arguments: res (224 | 448; big_vision's best was 224), model (paligemma-3b | paligemma2-3b | paligemma2-10b |
paligemma2-28b), final_split (train on train + validation, as the model card's "train+val"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `rsvqa_lr` TFDS dataset: `python -m datasets.build rsvqa_lr --manual_dir DIR` (`--help_manual` lists the
    files): the non-numeric questions (presence, comparison, rural/urban; the card's "Non numeric").

Recipe (big_vision configs/proj/paligemma/transfers/rsvqa_lr.py, its defaults and `sweep_best`): 224 px, prompt
`answer en {question}`, the answer as the target, text_len 32; 3 epochs at batch 256, lr 3e-6, no weight decay,
label smoothing 0.2; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1 (docs/reference.md §5). The
target is lower-cased (`lower_target`; big_vision lower-cased the answers in its pp).
Evaluation: per question, exact match of the greedy answer with the reference after stripping and lower-casing (the
`rsvqa` evaluator with normalize="exact", as big_vision's rsvqa evaluator with `to_lower=True`); `mean_accuracy` is
the unweighted mean of the per-type accuracies over the types the split holds (the dataset has only the non-numeric
ones: big_vision's `acc_avg_nonum`): on the validation split every 25% of the run and at the end, on the test split
at the end. `rsvqa_lr_test/mean_accuracy` is the model card's RSVQA-LR number (reported x100).
Compute and slice: configs/common.py `RELEASED_COMPUTE` and `RELEASED_SLICES` (`--dry_run` checks them).
"""

import ml_collections

from configs import common, recipes

DATASET = "rsvqa_lr"
INPUT = recipes.Input(
    "image", prompt="answer en {question}", target="answers", text_len=32, id_key="question_id", lower_target=True
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The RSVQA-LR run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=256, epochs=3, lr=3e-6, wd=0.0, label_smoothing=0.2)
    splits = {"rsvqa_lr_val": "validation", "rsvqa_lr_test": "test"}
    recipes.add_evals(config, arg, rsvqa_eval(arg), DATASET, splits)
    return recipes.finish(config, arg, INPUT)


def rsvqa_eval(arg: ml_collections.ConfigDict) -> dict:
    """The `rsvqa` evaluator of RSVQA-LR and RSVQA-HR: exact-match accuracy of the greedy answer, per question type."""
    return recipes.generative_eval(
        "rsvqa",
        INPUT.eval_pp(arg, extra_keys=("question_type",)),
        batch_size=256,
        max_decode_len=INPUT.text_len,
        answers_key="answers",
        question_type_key="question_type",
        normalize="exact",
        id_key="question_id",
    )
