r"""TallyQA: fine-tune a pretrained PaliGemma (1 or 2) to answer counting questions; accuracy on simple and complex.

    python -m trainers.train --config configs/transfer/tallyqa.py --workdir gs://BUCKET/tallyqa_224
    python -m trainers.train --config configs/transfer/tallyqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/tallyqa.py:mode=mock --workdir /tmp/tallyqa_mock  # CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (accepted for symmetry: TallyQA has no validation split, the run trains on train either way), mode
(real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `tallyqa` TFDS dataset: `python -m datasets.build tallyqa --manual_dir DIR` (`--help_manual` lists the
    files: the TallyQA questions, Visual Genome and COCO 2014 images).

Recipe (big_vision configs/proj/paligemma/transfers/tallyqa.py, its defaults and `sweep_best`): prompt
`answer en {question}`, the count as the target, text_len 32; 2 epochs at batch 256; lr 1e-5 with no weight decay
at 224 px, lr 1e-5 and weight decay 1e-6 at 448 px, lr 7e-6 and weight decay 7e-7 at 896 px; Adam (b2 0.999),
cosine schedule with 5% warmup, clipping at 1, no label smoothing (docs/reference.md §5).
Evaluation: exact match of the greedy answer with the count, number words up to twenty read as digits (the
`tallyqa` evaluator, as big_vision's tallyqa evaluator), on the test split every 25% of the run and at the end:
`tallyqa_test/accuracy_simple` and `tallyqa_test/accuracy_complex` are the model card's "test_simple/test_complex"
numbers (reported x100).
Compute and slice: configs/common.py `RELEASED_COMPUTE` and `RELEASED_SLICES` (`--dry_run` checks them).
"""

import ml_collections

from configs import common, recipes

DATASET = "tallyqa"
INPUT = recipes.Input("image", prompt="answer en {question}", target="answers", text_len=32, id_key="question_id")
# res -> (lr, weight decay): big_vision's sweep_best
LR_WD = {224: (1e-5, 0.0), 448: (1e-5, 1e-6), 896: (7e-6, 7e-7)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The TallyQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    lr, wd = LR_WD.get(arg.res, LR_WD[224])
    config = recipes.training(arg, INPUT, DATASET, batch_size=256, epochs=2, lr=lr, wd=wd, splits=("train", "train"))
    evaluator = recipes.generative_eval(
        "tallyqa",
        INPUT.eval_pp(arg, extra_keys=("issimple",)),
        batch_size=256,
        max_decode_len=8,
        answers_key="answers",
        simple_key="issimple",
        id_key="question_id",
    )
    recipes.add_evals(config, arg, evaluator, DATASET, {"tallyqa_test": "test"})
    return recipes.finish(config, arg, INPUT)
