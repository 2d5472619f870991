r"""VizWiz VQA: fine-tune a pretrained PaliGemma (1 or 2) on blind people's questions about their photos; accuracy.

    python -m trainers.train --config configs/transfer/vizwiz_vqa.py --workdir gs://BUCKET/vizwiz_224
    python -m trainers.train --config configs/transfer/vizwiz_vqa.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/vizwiz_vqa.py:final_split=true --workdir ...  # test server
    python -m trainers.train --config configs/transfer/vizwiz_vqa.py:mode=mock --workdir /tmp/vizwiz  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train + validation, as the model card), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * this project's `vizwiz_vqa` TFDS dataset: `python -m datasets.build vizwiz_vqa --manual_dir DIR` (the VizWiz VQA
    annotations and images; `--help_manual` lists them).

Recipe (big_vision configs/proj/paligemma/transfers/vizwizvqa.py): 10 epochs at batch 256, Adam (b2 0.999), lr 1e-5
with a cosine schedule and 5% warmup, clipping at 1, no weight decay, no label smoothing; prompt
`answer en {question}`, one of the (up to 10) answers drawn at random per visit, text_len 48. Many photos cannot
answer their question; their annotators said "unanswerable", and the model learns to answer so.
Evaluation: VQA accuracy with VizWiz's variant of the VQA script (`vqa` evaluator, `normalize="always"`: every answer
normalised, leave-one-out min(1, matches/3); "unanswerable" is scored as any answer) of greedy answers on the
validation split every 25% of the run and at the end (left out with final_split), and the test split at the end:
its answers are hidden, so it is predicted, not scored, and written as the evaluation server's file
`{workdir}/evals/vizwiz_test_submission_step*.json` (`[{"image": file name, "answer": ...}]`; the model card's
"Accuracy (Test server - std)" is the server's test-standard score).
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import ml_collections

from configs import common, recipes

DATASET = "vizwiz_vqa"
INPUT = recipes.Input("image", prompt="answer en {question}", target="answers", text_len=48, id_key="file_name")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The VizWiz VQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=256, epochs=10, lr=1e-5, shuffle_buffer_size=25_000)
    qa = recipes.qa_eval(
        INPUT.eval_pp(arg),
        batch_size=256,
        normalize="always",
        max_decode_len=48,
        id_key="file_name",
        submission_id_name="image",
    )
    recipes.add_evals(config, arg, qa, DATASET, {"vizwiz_val": "validation", "vizwiz_test": "test"})
    return recipes.finish(config, arg, INPUT)
