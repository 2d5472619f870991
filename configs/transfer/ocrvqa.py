r"""OCR-VQA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about book covers; accuracy on test.

    python -m trainers.train --config configs/transfer/ocrvqa.py --workdir gs://BUCKET/ocrvqa_224
    python -m trainers.train --config configs/transfer/ocrvqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/ocrvqa.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/ocrvqa.py:mode=mock --workdir /tmp/ocrvqa_mock  # CPU

Arguments: res (224 default | 448 | 896: the card's three rows), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + all of validation, as the card's "OCR-VQA (train+val)"; without it the first 20,000
validation questions are held out to evaluate during the run), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `ocrvqa` TFDS dataset: `python -m datasets.build ocrvqa --manual_dir DIR` (dataset.json and the covers its
    script downloads, https://ocr-vqa.github.io; `--help_manual` says how): one example per question.

Recipe (big_vision configs/proj/paligemma/transfers/ocrvqa.py, its defaults and `sweep_best`): prompt
`answer en {question}`, the one answer as the target, text_len 32; 3 epochs at batch 128, no weight decay, no label
smoothing; lr 3e-6 at 224 and 448 px, 1e-5 at 896 px; training on train + validation[20000:] (validation is
~100k questions, more than needed to follow a run). Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1
(docs/reference.md §5).
Evaluation: accuracy = exact match of the greedy answer (up to 32 tokens) with the answer, both stripped and
lower-cased (the `vqa` evaluator with normalize="exact", as big_vision's plain VQA evaluator with `to_lower`): on
validation[:20000] every 25% of the run and at the end (not with final_split), on the test split at the end.
`ocrvqa_test/accuracy` is the model card's OCR-VQA number.
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "ocrvqa"
INPUT = recipes.Input("image", prompt="answer en {question}", target="answers", text_len=32, id_key="question_id")
LR = {224: 3e-6, 448: 3e-6, 896: 1e-5}  # big_vision's sweep_best
MINIVAL = 20_000  # validation questions held out for evaluation during the run (without final_split)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The OCR-VQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg,
        INPUT,
        DATASET,
        batch_size=128,
        epochs=3,
        lr=LR.get(arg.res, LR[224]),
        shuffle_buffer_size=50_000,
        splits=(f"train+validation[{MINIVAL}:]", "train+validation"),
    )
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg), batch_size=256, normalize="exact", max_decode_len=INPUT.text_len, id_key="question_id"
    )
    splits = {"ocrvqa_val": f"validation[:{MINIVAL}]", "ocrvqa_test": "test"}
    recipes.add_evals(config, arg, qa, DATASET, splits, log_percent=0.25)
    return recipes.finish(config, arg, INPUT)
