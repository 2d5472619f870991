r"""OK-VQA: fine-tune a pretrained PaliGemma (1 or 2) on outside-knowledge questions about COCO images; VQA accuracy.

    python -m trainers.train --config configs/transfer/okvqa.py --workdir gs://BUCKET/okvqa_224
    python -m trainers.train --config configs/transfer/okvqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/okvqa.py:final_split=true --workdir ...   # all of train
    python -m trainers.train --config configs/transfer/okvqa.py:mode=mock --workdir /tmp/okvqa_mock  # smoke run, CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on the whole train split instead of its first 90%), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `okvqa` TFDS dataset: `python -m datasets.build okvqa --manual_dir DIR` (the OK-VQA v1.1 files
    and the COCO 2014 images; `--help_manual` lists them).

Recipe (big_vision configs/proj/paligemma/transfers/okvqa.py; the model card trains on train only): 10 epochs at
batch 128, Adam (b2 0.999), lr 5e-6 with a cosine schedule and 5% warmup, clipping at 1, no weight decay, no label
smoothing; prompt `answer en {question}`, one of the 10 answers drawn at random per visit, text_len 32. Without
final_split the last 10% of train is held out as a minival.
Evaluation: VQA accuracy with the official VQA script (`vqa` evaluator, `normalize="vqav2"`: answer normalisation
only where the 10 answers disagree, leave-one-out min(1, matches/3)), the metric OK-VQA defines, of greedy answers
on the validation split (5,046 questions; the model card's "Accuracy (val)") every 25% of the run and at the end,
and on the minival at the end. big_vision's own evaluator scored min(1, matches/3) without normalisation or
leave-one-out; the two agree up to those details.
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import ml_collections

from configs import common, recipes

DATASET = "okvqa"
INPUT = recipes.Input("image", prompt="answer en {question}", target="answers", text_len=32, id_key="question_id")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The OK-VQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg,
        INPUT,
        DATASET,
        batch_size=128,
        epochs=10,
        lr=5e-6,
        shuffle_buffer_size=50_000,
        splits=("train[:90%]", "train"),
    )
    qa = recipes.qa_eval(INPUT.eval_pp(arg), batch_size=256, normalize="vqav2", max_decode_len=32, id_key="question_id")
    # The model card's split is validation, never trained on: evaluated with or without final_split.
    splits = (
        {"okvqa_val": "validation"} if arg.final_split else {"okvqa_val": "validation", "okvqa_minival": "train[90%:]"}
    )
    recipes.add_evals(config, arg, qa, DATASET, splits, trained_on=None)
    return recipes.finish(config, arg, INPUT)
