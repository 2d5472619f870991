r"""InfographicVQA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about infographics, scored by ANLS.

    python -m trainers.train --config configs/transfer/infovqa.py --workdir gs://BUCKET/infovqa_896
    python -m trainers.train --config configs/transfer/infovqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/infovqa.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/infovqa.py:mode=mock --workdir /tmp/infovqa_mock  # CPU

Arguments: res (896 default | 448 | 224: the card's three rows), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation, as the card's "Infographic VQA (train+val)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `infovqa` TFDS dataset: `python -m datasets.build infovqa --manual_dir DIR` (InfographicVQA from
    https://rrc.cvc.uab.es/?ch=17; `--help_manual` lists the files): one example per question.

Recipe (big_vision configs/proj/paligemma/transfers/infovqa.py, its defaults and `sweep_best`): prompt
`answer en {question}`, one of the answers, lower-cased (the task's evaluation ignores case), drawn at random per
visit as the target, text_len 48; 3 epochs, label smoothing 0.4; 224 px: batch 256, lr 1e-5, weight decay 1e-6;
448 px: batch 128, lr 1e-5, weight decay 1e-6; 896 px: batch 32, lr 3e-6, weight decay 3e-7. Adam (b2 0.999),
cosine schedule with 5% warmup, clipping at 1 (docs/reference.md §5).
Evaluation: ANLS (threshold 0.5, lower-cased and stripped) of the greedy answer (up to 48 tokens) against the
answers (in the validation split a multi-item answer also in its other item orders, which the task accepts), on
the validation split every 10% of the run and at the end (`infovqa_val/anls`; not with final_split). The test split
has no answers: at the end its predictions are written as the test server's submission file,
`[{"questionId": ..., "answer": ...}]` (`infovqa_test` in the workdir); the card's number is the server's ANLS.
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "infovqa"
INPUT = recipes.ANLS_INPUT  # trains on lower-cased answers


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The InfographicVQA run; `arg` = "res=896,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=896, model="paligemma-3b", final_split=False, mode="real")
    return recipes.anls_transfer(
        arg,
        INPUT,
        DATASET,
        {"infovqa_val": "validation", "infovqa_test": "test"},
        label_smoothing=0.4,
    )  # ids written as "questionId", the server's name (anls's default)
