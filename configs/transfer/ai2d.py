r"""AI2D: fine-tune a pretrained PaliGemma (1 or 2) to answer multiple-choice questions about science diagrams.

    python -m trainers.train --config configs/transfer/ai2d.py --workdir gs://BUCKET/ai2d_224
    python -m trainers.train --config configs/transfer/ai2d.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/ai2d.py:final_split=true --workdir ...  # all of train
    python -m trainers.train --config configs/transfer/ai2d.py:mode=mock --workdir /tmp/ai2d_mock  # CPU smoke run

Arguments: res (224 | 448; big_vision found 896 no better), model (paligemma-3b | paligemma2-3b | paligemma2-10b |
paligemma2-28b), final_split (train on all of train instead of keeping its last 1,024 questions as a minival),
mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `ai2d` TFDS dataset: `python -m datasets.build ai2d --manual_dir DIR` (`--help_manual` lists the files):
    one example per question, the diagram with letter labels drawn where the question refers to them.

Recipe (big_vision configs/proj/paligemma/transfers/ai2d.py, its defaults and `sweep_best`): 224 px, prompt
`answer en {question} choose from: {choices}`, the correct option's text as the target, text_len 128; 10 epochs at
batch 256, lr 1e-5, weight decay 1e-6; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1, no label
smoothing (docs/reference.md §5). One difference: the options are joined with ", " (the pp op `strfmt` joins a list
so); big_vision joined them with " \t ".
Evaluation: accuracy = exact match of the greedy answer with the correct option's text, case-sensitive, only
surrounding whitespace stripped (the `vqa` evaluator with normalize="exact_cased", as big_vision's `vqa` evaluator
with `to_lower=False`: the model sees the options and can copy their case): on the minival (`train[-1024:]`) every
25% of the run and at the end, on the test split (3,088 questions) at the end. `ai2d_test/accuracy` is the model
card's AI2D number (reported x100).
Compute and slice: configs/common.py `RELEASED_COMPUTE` and `RELEASED_SLICES` (`--dry_run` checks them).
"""

import ml_collections

from configs import common, recipes

DATASET = "ai2d"
INPUT = recipes.Input("image", prompt="answer en {question} choose from: {choices}", target="answers", text_len=128)
MINIVAL = 1024  # the last questions of train, held out unless final_split


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The AI2D run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=256, epochs=10, lr=1e-5, wd=1e-6, splits=(f"train[:-{MINIVAL}]", "train")
    )
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg),
        batch_size=256,
        normalize="exact_cased",
        max_decode_len=32,
        answers_key="answers",
        submission_file=False,
    )
    splits = {"ai2d_test": "test"} if arg.final_split else {"ai2d_minival": f"train[-{MINIVAL}:]", "ai2d_test": "test"}
    recipes.add_evals(config, arg, qa, DATASET, splits, log_percent=None if arg.final_split else 0.25)
    return recipes.finish(config, arg, INPUT)
