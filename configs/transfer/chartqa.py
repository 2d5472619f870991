r"""ChartQA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about charts; mean relaxed accuracy.

    python -m trainers.train --config configs/transfer/chartqa.py --workdir gs://BUCKET/chartqa_448
    python -m trainers.train --config configs/transfer/chartqa.py:res=224,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/chartqa.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/chartqa.py:mode=mock --workdir /tmp/chartqa_mock  # CPU

Arguments: res (448 default | 224: the card's two rows; 896 runs with the same recipe, the original found it no
better), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on train + validation: the card's
"(human+aug) x (train+val)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `chartqa` TFDS dataset: `python -m datasets.build chartqa --manual_dir DIR` (the ChartQA release,
    https://github.com/vis-nlp/ChartQA; `--help_manual` lists the files): one example per question, the human and
    the augmented questions together, told apart by `source`.

Recipe (big_vision configs/proj/paligemma/transfers/chartqa.py, its defaults and `sweep_best`): the raw question is
the prompt (no task prefix), the one answer the target, text_len 48; human and augmented questions mixed in
proportion to their sizes (one split holds both); 30 epochs at batch 256, lr 1e-5, weight decay 1e-6, label
smoothing 0.2, dropout 0.1 in the language model. Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1
(docs/reference.md §5).
Evaluation: relaxed accuracy of the greedy answer (up to 48 tokens): a number within 5% of a numeric answer (a
trailing % meaning /100), else a case-insensitive exact match (the `chartqa` evaluator), per `source` and the mean
of the two (`answer_type_key="source"`, `mean_over_types`): on the validation split every 10% of the run and at
the end (not with final_split), on the test split at the end. `chartqa_test/mean_relaxed_accuracy`, the mean of
the human and the augmented test accuracies, is the model card's number.
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "chartqa"
INPUT = recipes.Input("image", prompt="{question}", target="answers", text_len=48, id_key="question_id")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ChartQA run; `arg` = "res=448,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=448, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg,
        INPUT,
        DATASET,
        batch_size=256,
        epochs=30,
        lr=1e-5,
        wd=1e-6,
        label_smoothing=0.2,
        shuffle_buffer_size=50_000,
    )
    config.model.llm.dropout = 0.1
    relaxed = recipes.generative_eval(
        "chartqa",
        INPUT.eval_pp(arg, extra_keys=("source",)),
        batch_size=256,
        max_decode_len=INPUT.text_len,
        id_key="question_id",
        answer_type_key="source",
        mean_over_types=True,
    )
    recipes.add_evals(
        config, arg, relaxed, DATASET, {"chartqa_val": "validation", "chartqa_test": "test"}, log_percent=0.1
    )
    return recipes.finish(config, arg, INPUT)
