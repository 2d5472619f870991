r"""NLVR2: fine-tune a pretrained PaliGemma (1 or 2) to say whether a sentence is true of an image pair; accuracy.

    python -m trainers.train --config configs/transfer/nlvr2.py --workdir gs://BUCKET/nlvr2_224
    python -m trainers.train --config configs/transfer/nlvr2.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/nlvr2.py:final_split=true --workdir ...   # train + dev
    python -m trainers.train --config configs/transfer/nlvr2.py:mode=mock --workdir /tmp/nlvr2_mock  # smoke run, CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train + dev), mode (real | mock). `configs/transfer/marvl.py` evaluates the trained model on
MaRVL (zero-shot, five languages).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `nlvr2` TFDS dataset: `python -m datasets.build nlvr2 --manual_dir DIR` (`--help_manual` lists the files).

Recipe (big_vision configs/proj/paligemma/transfers/nlvr2.py, its `sweep_best`): the two images of a pair are the
two frames of one input (`frames_from_images`: each resized to res x res, [2, res, res, 3], the model concatenates
their image tokens); prompt `answer en {sentence}`, target `true` / `false`; text_len 64. At 224 px: 3 epochs at
batch 256, lr 1e-5, weight decay 1e-6; at 448 and 896 px: 10 epochs, lr 3e-6, weight decay 3e-7. Adam (b2 0.999),
cosine schedule with 5% warmup, clipping at 1, no label smoothing (docs/reference.md §5).
Evaluation: accuracy (exact match of the greedy answer after the VQA answer normalisation, `vqa` evaluator with
`normalize="always"`; one reference, so it is plain accuracy) on dev every 10% of the run and at the end, and on the
public test set (test1) at the end: the model card's NLVR2 number.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 2 x 224 px as 448 px).
"""

import ml_collections

from configs import common, recipes

INPUT = recipes.Input("images", prompt="answer en {question}", target="answers", text_len=64)
NUM_FRAMES = 2  # the image pair
# big_vision's sweep_best: (epochs, lr, wd) at 224 px, and at 448 px (used for 896 px too)
RECIPE = {224: (3, 1e-5, 1e-6), 448: (10, 3e-6, 3e-7)}


def qa_eval(pp: str, **kwargs) -> dict:
    """A `vqa` evaluator entry for true/false answers: exact match after VQA normalisation, greedy decoding."""
    return recipes.qa_eval(pp, batch_size=256, normalize="always", max_decode_len=16, **kwargs)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The NLVR2 run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = training(arg)
    qa = qa_eval(INPUT.eval_pp(arg, NUM_FRAMES))
    recipes.add_evals(config, arg, qa, "nlvr2", {"nlvr2_dev": "validation", "nlvr2_test": "test"}, log_percent=0.1)
    return recipes.finish(config, arg, INPUT, NUM_FRAMES)


def training(arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The NLVR2 training run for parsed arguments, with no evaluators yet (`configs/transfer/marvl.py` reuses it)."""
    epochs, lr, wd = RECIPE[224 if arg.res <= 224 else 448]  # another res: recipes.training rejects it
    return recipes.training(
        arg, INPUT, "nlvr2", NUM_FRAMES, batch_size=256, shuffle_buffer_size=50_000, epochs=epochs, lr=lr, wd=wd
    )
