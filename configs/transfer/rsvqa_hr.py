r"""RSVQA-HR: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about high-resolution aerial images.

    python -m trainers.train --config configs/transfer/rsvqa_hr.py --workdir gs://BUCKET/rsvqa_hr_224
    python -m trainers.train --config configs/transfer/rsvqa_hr.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/rsvqa_hr.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/rsvqa_hr.py:mode=mock --workdir /tmp/rsvqa_hr_mock  # CPU

Arguments: res (224 | 448; big_vision found 896 no better), model (paligemma-3b | paligemma2-3b | paligemma2-10b |
paligemma2-28b), final_split (train on train + validation, as the model card's "train+val"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `rsvqa_hr` TFDS dataset: `python -m datasets.build rsvqa_hr --manual_dir DIR` (`--help_manual` lists the
    files): the non-numeric questions (presence, comparison; the card's "Non numeric").

Recipe (big_vision configs/proj/paligemma/transfers/rsvqa_hr.py, its defaults and `sweep_best`): 224 px, prompt
`answer en {question}`, the answer as the target, text_len 32; 1 epoch at batch 256, lr 1e-5, no weight decay, no
label smoothing; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1 (docs/reference.md §5). The target
is lower-cased (`lower_target`; big_vision lower-cased the answers in its pp).
Evaluation: per question, exact match of the greedy answer with the reference after stripping and lower-casing (the
`rsvqa` evaluator with normalize="exact", as big_vision's rsvqa evaluator with `to_lower=True`); `mean_accuracy` is
the unweighted mean of the per-type accuracies over the types the split holds (the dataset has only the non-numeric
ones: big_vision's `acc_avg_nonum`). The splits are large (60k to 131k questions), so, as in big_vision, all three
are evaluated at the end of the run only: validation, test (the training area) and test_2 (Philadelphia: another
area and sensor). `rsvqa_hr_test/mean_accuracy` and
`rsvqa_hr_test2/mean_accuracy` are the model card's RSVQA-HR "test/test2" numbers (reported x100).
Compute and slice: configs/common.py `RELEASED_COMPUTE` and `RELEASED_SLICES` (`--dry_run` checks them).
"""

import ml_collections

from configs import common, recipes
from configs.transfer import rsvqa_lr

DATASET = "rsvqa_hr"
INPUT = rsvqa_lr.INPUT  # the same kind of questions and answers as RSVQA-LR


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The RSVQA-HR run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=256, epochs=1, lr=1e-5, wd=0.0)
    splits = {"rsvqa_hr_val": "validation", "rsvqa_hr_test": "test", "rsvqa_hr_test2": "test_2"}
    recipes.add_evals(config, arg, rsvqa_lr.rsvqa_eval(arg), DATASET, splits, log_percent=None)
    return recipes.finish(config, arg, INPUT)
