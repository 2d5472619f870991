r"""ScienceQA (image questions): fine-tune a pretrained PaliGemma (1 or 2) to pick the answer of a science question.

    python -m trainers.train --config configs/transfer/scienceqa.py --workdir gs://BUCKET/scienceqa_224
    python -m trainers.train --config configs/transfer/scienceqa.py:res=448 --workdir ...
    python -m trainers.train --config configs/transfer/scienceqa.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/scienceqa.py:mode=mock --workdir /tmp/scienceqa_mock  # CPU

Arguments: res (224 | 448), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b), final_split
(train on train + validation, as the model card's "train+val"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `scienceqa` TFDS dataset: `python -m datasets.build scienceqa --manual_dir DIR` (`--help_manual` lists the
    files): the questions that come with an image (the card's "Img subset").

Recipe (big_vision configs/proj/paligemma/transfers/science_qa.py with its `sweep_best`): the "QCM -> A" format of
ScienceQA's reference prompts without a chain of thought, prompt
`Question: {question}\nContext: {hint}\nOptions: (A) ..., (B) ...\nAnswer:` and target `The answer is B.`,
text_len 512; 20 epochs at batch 128, lr 1e-5, no weight decay, the image encoder frozen; Adam (b2 0.999), cosine
schedule with 5% warmup, clipping at 1, no label smoothing (docs/reference.md §5). One difference: big_vision
shuffled the options of each training visit (its `sci_qa_choices_shuffle` op); here they keep the official order.
Evaluation: accuracy = the option parsed from the greedy answer ("The answer is B.", see the `scienceqa` evaluator)
is the correct one: on the validation split every 25% of the run and at the end, on the test split (2,017
questions) at the end. `scienceqa_test/accuracy` is the model card's ScienceQA number (reported x100).
Compute and slice: configs/common.py `RELEASED_COMPUTE` and `RELEASED_SLICES` (`--dry_run` checks them).
"""

import ml_collections

from configs import common, recipes

DATASET = "scienceqa"
TARGET = "The answer is {indexed_answer}."


INPUT = recipes.Input(
    "image",
    prompt="Question: {question}\\nContext: {hint}\\nOptions: {indexed_choices}\\nAnswer:",
    target="target",
    text_len=512,
    choose=False,
    target_format=TARGET,
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ScienceQA run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=128, epochs=20, lr=1e-5, wd=0.0, freeze_image_encoder=True
    )
    evaluator = recipes.generative_eval(
        "scienceqa",
        INPUT.eval_pp(arg, extra_keys=("choices", "answer")),
        batch_size=256,
        max_decode_len=16,
        choices_key="choices",
        answer_key="answer",
        id_key="id",
        submission_file=False,
    )
    recipes.add_evals(config, arg, evaluator, DATASET, {"scienceqa_val": "validation", "scienceqa_test": "test"})
    return recipes.finish(config, arg, INPUT)
