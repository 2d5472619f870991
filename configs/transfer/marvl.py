r"""MaRVL: the zero-shot evaluation of an NLVR2 fine-tune in five languages; accuracy per language and their mean.

    python -m evaluators.run --config configs/transfer/marvl.py --checkpoint gs://BUCKET/nlvr2_224 --workdir ...
    python -m evaluators.run --config configs/transfer/marvl.py:res=448 --checkpoint RUN_OR_NPZ --workdir ...
    python -m trainers.train --config configs/transfer/marvl.py:mode=mock --workdir /tmp/marvl_mock  # smoke run, CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b), mode
(real | mock). MaRVL has no training data: this config is `configs/transfer/nlvr2.py` (same model, input, recipe:
training with it trains on NLVR2) with the MaRVL evaluator instead of NLVR2's, for `evaluators.run` on a checkpoint
or workdir that `nlvr2.py` trained at the same res/model (big_vision evaluates MaRVL inside its NLVR2 run).

Needs (see the README): the checkpoint to evaluate, `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`, and the `marvl`
TFDS dataset: `python -m datasets.build marvl --manual_dir DIR` (`--help_manual` lists the files).

Evaluation (big_vision configs/proj/paligemma/transfers/nlvr2.py, `marvl/test_{lang}`): the NLVR2 input (the image
pair as 2 frames at res, prompt `answer en {statement}`, text_len 64), greedy answers scored by exact match after
the VQA answer normalisation (`vqa` evaluator, `normalize="always"`) on the test sets of Indonesian (id), Swahili
(sw), Tamil (ta), Turkish (tr) and Mandarin Chinese (zh). Metrics: `marvl/accuracy_<lang>` per language and
`marvl/mean_accuracy`, their unweighted mean (the model card's "MaRVL (avg5)"); `marvl/accuracy` pools all
statements.
"""

import ml_collections

from configs import common, recipes
from configs.transfer import nlvr2

LANGUAGES = ("id", "sw", "ta", "tr", "zh")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MaRVL evaluation of an NLVR2 run; `arg` = "res=224,model=paligemma-3b,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", mode="real")
    arg.final_split = False
    config = nlvr2.training(arg)
    config.evals.marvl = nlvr2.qa_eval(
        nlvr2.INPUT.eval_pp(arg, nlvr2.NUM_FRAMES, extra_keys=("language",)),
        data=dict(name="marvl", split="+".join(f"test_{lang}" for lang in LANGUAGES)),
        answer_type_key="language",
        mean_over_types=True,
    )
    return recipes.finish(config, arg, nlvr2.INPUT, nlvr2.NUM_FRAMES)
