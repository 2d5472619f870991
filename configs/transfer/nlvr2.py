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

from configs import common

PROMPT = 'strfmt("answer en {{question}}", outkey="prefix")'  # {{}}: .format() comes later
FRAMES = 'frames_from_images(inkey="images", outkey="image", num_frames=2, size={res})|value_range(-1, 1)|'
TRAIN_PP = (
    FRAMES + PROMPT + '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    FRAMES + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "frame_mask", "text", "mask_ar", "mask_input", "answers", "id"{extra})'
)
TEXT_LEN = 64
# big_vision's sweep_best: (epochs, lr, wd) at 224 px, and at 448 px (used for 896 px too)
RECIPE = {224: (3, 1e-5, 1e-6), 448: (10, 3e-6, 3e-7), 896: (10, 3e-6, 3e-7)}


def pp_res(arg: ml_collections.ConfigDict) -> int:
    """The frames' resolution in the pp strings: `res`, or 32 px for the tiny mock model."""
    return 32 if arg.mode == "mock" else arg.res


def qa_eval(data: dict, pp: str, **kwargs) -> dict:
    """A `vqa` evaluator entry for true/false answers: exact match after VQA normalisation, greedy decoding."""
    return dict(
        type="vqa",
        data=data,
        batch_size=256,
        pp=pp,
        id_key="id",
        normalize="always",
        max_decode_len=16,
        sampler="greedy",
        **kwargs,
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The NLVR2 run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = training(arg)
    eval_pp = EVAL_PP.format(res=pp_res(arg), text_len=TEXT_LEN, extra="")
    if not arg.final_split:
        config.evals.nlvr2_dev = qa_eval(dict(name="nlvr2", split="validation"), eval_pp, log_percent=0.1)
    config.evals.nlvr2_test = qa_eval(dict(name="nlvr2", split="test"), eval_pp)  # at the end
    return finish(config, arg)


def training(arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The NLVR2 training run for parsed arguments, with no evaluators yet (`configs/transfer/marvl.py` reuses it)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)
    res = pp_res(arg)

    config.input = dict(
        data=dict(name="nlvr2", split="train+validation" if arg.final_split else "train"),
        batch_size=256,
        shuffle_buffer_size=50_000,
        pp=TRAIN_PP.format(res=res, text_len=TEXT_LEN),
    )
    epochs, lr, wd = RECIPE[arg.res]
    config.total_epochs = epochs

    common.original_transfer_recipe(config)
    config.lr = lr
    config.wd = wd
    config.evals = {}
    return config


def finish(config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fits the run to its planned slice (2 frames), or turns it into a mock run; after the evaluators are set."""
    common.fit_released_slice(config, arg.model, arg.res, frames=2)  # mesh + accum_steps for the planned TPU slice
    if arg.mode == "mock":
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en",), res=pp_res(arg))
    return config
