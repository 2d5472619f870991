r"""TextVQA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions that need reading text in a picture.

    python -m trainers.train --config configs/transfer/textvqa.py --workdir gs://BUCKET/textvqa_224
    python -m trainers.train --config configs/transfer/textvqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/textvqa.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/textvqa.py:mode=mock --workdir /tmp/textvqa_mock  # CPU

Arguments: res (224 default | 448 | 896: the card's three rows), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation, as the card's "TextVQA (train+val)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `textvqa` TFDS dataset: `python -m datasets.build textvqa --manual_dir DIR` (TextVQA 0.5.1 from
    https://textvqa.org; `--help_manual` lists the files): one example per question with its 10 answers.

Recipe (big_vision configs/proj/paligemma/transfers/textvqa.py, its defaults and `sweep_best`): prompt
`answer en {question}`, one of the 10 answers drawn at random per visit as the target, text_len 32; batch 256, no
label smoothing; 224 px: 5 epochs, lr 3e-6, no weight decay; 448 px: 10 epochs, lr 3e-6, weight decay 3e-7;
896 px: 10 epochs, lr 3e-6, no weight decay. Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1
(docs/reference.md §5).
Evaluation: VQA accuracy of the greedy answer (up to 32 tokens) against the 10 answers, every answer normalised
(TextVQA's variant of the VQAv2 script: the `vqa` evaluator with normalize="always"), on the validation split every
1/8 of the run and at the end (`textvqa_val/accuracy`; not with final_split, which trains on it). The test split
has no answers: at the end its predictions are written as the test server's submission file,
`[{"question_id": ..., "answer": ...}]` (`textvqa_test` in the workdir); the card's number is the server's
"test-std" accuracy for that file.
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "textvqa"
INPUT = recipes.Input("image", prompt="answer en {question}", target="answers", text_len=32, id_key="question_id")
# res -> (epochs, lr, weight decay): big_vision's sweep_best
RECIPES = {224: (5, 3e-6, 0.0), 448: (10, 3e-6, 3e-7), 896: (10, 3e-6, 0.0)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The TextVQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    epochs, lr, wd = RECIPES.get(arg.res, RECIPES[224])
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=256, epochs=epochs, lr=lr, wd=wd, shuffle_buffer_size=50_000
    )
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg),
        batch_size=256,
        normalize="always",
        max_decode_len=INPUT.text_len,
        id_key="question_id",
    )
    recipes.add_evals(
        config, arg, qa, DATASET, {"textvqa_val": "validation", "textvqa_test": "test"}, log_percent=1 / 8
    )
    return recipes.finish(config, arg, INPUT)
