r"""GQA: fine-tune a pretrained PaliGemma (1 or 2) on compositional questions about scenes; accuracy, and xGQA.

    python -m trainers.train --config configs/transfer/gqa.py --workdir gs://BUCKET/gqa_224
    python -m trainers.train --config configs/transfer/gqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/gqa.py:final_split=true --workdir ...   # train + val
    python -m trainers.train --config configs/transfer/gqa.py:mode=mock --workdir /tmp/gqa_mock   # smoke run, CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train_balanced + val_balanced, as the model card), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `gqa` and `xgqa` TFDS datasets: `python -m datasets.build gqa --manual_dir DIR` (GQA 1.2's
    balanced question files and images) and `python -m datasets.build xgqa --manual_dir DIR` (xGQA's zero-shot test
    files and the GQA images); `--help_manual` lists the files.

Recipe (big_vision configs/proj/paligemma/transfers/gqa.py, its `sweep_best`): 1 epoch at batch 256, Adam (b2 0.999),
lr 1e-5 with a cosine schedule and 5% warmup, clipping at 1, no weight decay, no label smoothing; the image encoder
trains at 224 px and is frozen at 448 and 896 px (no gradient, no optimizer state); prompt `answer en {question}`,
target the one short answer, text_len 32.
Evaluation: accuracy, the exact match of the stripped, lowercased greedy answer with GQA's answer (`vqa` evaluator
with `normalize="exact"`, answers_key="answer"), on val_balanced every 25% of the run and at the end (left out with
final_split) and on testdev_balanced at the end (the model card's "Accuracy (testdev balanced)"). xGQA, the same
model evaluated zero-shot on GQA's testdev questions translated into 7 languages (answers in English): the
evaluator `xgqa` on the 8 zero-shot test splits together, `xgqa/accuracy_<lang>` per language and
`xgqa/mean_accuracy` their unweighted mean (the card's "Mean Accuracy (bn, de, en, id, ko, pt, ru, zh)").
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import ml_collections

from configs import common, recipes

INPUT = recipes.Input(
    "image", prompt="answer en {question}", target="answer", text_len=32, choose=False, id_key="question_id"
)
XGQA_LANGUAGES = ("bn", "de", "en", "id", "ko", "pt", "ru", "zh")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The GQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg,
        INPUT,
        "gqa",
        batch_size=256,
        epochs=1,
        lr=1e-5,
        shuffle_buffer_size=50_000,
        freeze_image_encoder=arg.res > 224,
        splits=("train_balanced", "train_balanced+val_balanced"),
    )
    qa = dict(batch_size=256, normalize="exact", max_decode_len=32, answers_key="answer", id_key="question_id")
    gqa = recipes.qa_eval(INPUT.eval_pp(arg), **qa)
    if not arg.final_split:  # val_balanced is trained on with final_split
        config.evals.gqa_val = dict(gqa, data=dict(name="gqa", split="val_balanced"), log_percent=0.25)
    config.evals.gqa_testdev = dict(gqa, data=dict(name="gqa", split="testdev_balanced"))
    xgqa = recipes.qa_eval(
        INPUT.eval_pp(arg, extra_keys=("language",)), answer_type_key="language", mean_over_types=True, **qa
    )
    xgqa_splits = "+".join(f"test_zs_{lang}" for lang in XGQA_LANGUAGES)
    config.evals.xgqa = dict(xgqa, data=dict(name="xgqa", split=xgqa_splits))
    return recipes.finish(config, arg, INPUT)
