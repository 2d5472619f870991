"""Helpers shared by the run configs: typed `key=value` config arguments and where released files live.

`python -m trainers.train --config configs/transfer/vqav2.py:res=448,mode=mock` passes "res=448,mode=mock" to the
config's `get_config(arg)`; `parse_arg(arg, res=224, mode="real")` turns it into a ConfigDict whose values have the
types of the defaults, and rejects keys the config does not take.
"""

from __future__ import annotations

import os

import ml_collections

CKPT_DIR_ENV = "PALIGEMMA_CKPT_DIR"


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """`"a=1,b=x"` -> ConfigDict(a=1, b="x") over `defaults`; each value is converted to its default's type.

    Booleans accept true/false/1/0/yes/no. An unknown key or a value of the wrong type raises ValueError naming the
    key and the accepted ones.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"Config argument {item!r} is not key=value (known keys: {sorted(defaults)}).")
        if key not in defaults:
            raise ValueError(f"Unknown config argument {key!r}; this config takes {sorted(defaults)}.")
        out[key] = _convert(key, value.strip(), defaults[key])
    return out


def _convert(key: str, value: str, default):
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"Config argument {key}={value!r} must be a boolean (true/false).")
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except ValueError:
            raise ValueError(f"Config argument {key}={value!r} must be a {type(default).__name__}.") from None
    return value


def checkpoint_dir() -> str:
    """Where released checkpoints and the tokenizer are looked up.

    `$PALIGEMMA_CKPT_DIR` (may be gs://), else `./checkpoints`.
    """
    return os.environ.get(CKPT_DIR_ENV) or "checkpoints"


# How the released models compute when fine-tuned: bfloat16 activations and matmuls, float32 master weights (and so
# float32 optimizer moments), and every layer of both towers rematerialised in the backward pass ("full": nothing
# but each layer's input is kept). Measured for paligemma-3b-224 at vqav2's batch 256 on a v5e-8 slice (v5e:2x4,
# 15.75 GiB HBM per chip): float32 activations without remat need ~179 GiB of temporaries per chip, bfloat16 ~134 GiB;
# remat "full" + bfloat16 fits (see the README's dry-run table). `mock_mode` replaces it: the tiny CPU model stays
# float32 without remat.
RELEASED_COMPUTE = dict(dtype="bfloat16", param_dtype="float32", remat_policy="full")


def released_model(config: ml_collections.ConfigDict, model: str, res: int) -> None:
    """Sets the architecture, the pretrained checkpoint, the tokenizer and the compute of a released PaliGemma.

    `model` is "paligemma-3b" or "paligemma2-{3b,10b,28b}"; the checkpoint `{model}-pt-{res}` and
    `paligemma_tokenizer.model` are looked up in `$PALIGEMMA_CKPT_DIR` (see the README for the downloads).
    `config.model` gets `RELEASED_COMPUTE` for both towers (bfloat16 compute, float32 parameters, remat "full");
    `--config.model.llm.remat_policy=dots_no_batch` (or `none`) trades memory for speed on a larger slice.
    """
    if res not in (224, 448, 896):
        raise ValueError(f"res must be 224, 448 or 896 (the released resolutions), got {res}.")
    config.model_name = f"{model}-{res}"
    config.model = dict(img=dict(RELEASED_COMPUTE), llm=dict(RELEASED_COMPUTE))
    config.model_init = f"{model}-pt-{res}"  # trainers.train resolves it in $PALIGEMMA_CKPT_DIR
    config.tokenizer = os.path.join(checkpoint_dir(), "paligemma_tokenizer.model")


# Where each released model size and resolution is planned to train, checked by `--dry_run` (README table): the TPU
# v5e slice (15.75 GiB of usable HBM per chip), the size of the mesh's `tensor` axis (1: none) and the examples per
# batch shard in one microbatch. The mesh is FSDP over the chips (`[("data", -1)]`: the batch and every large
# parameter split over every chip), with a `tensor` axis last when the table asks (tensor-parallel rules of
# `paligemma.sharding.DEFAULT_TENSOR_RULES`: heads, MLP units and vocabulary split, which also splits the attention
# scores that dominate 28B at 896 px); `accum_steps` follows from the config's batch size: batch / (batch shards x
# examples per shard), at least 1.
RELEASED_SLICES: dict[tuple[str, int], tuple[str, int, int]] = {
    ("3b", 224): ("v5e-8", 1, 32),
    ("3b", 448): ("v5e-16", 1, 8),
    ("3b", 896): ("v5e-32", 1, 1),
    ("10b", 224): ("v5e-32", 1, 8),
    ("10b", 448): ("v5e-32", 1, 4),
    ("10b", 896): ("v5e-64", 1, 1),
    ("28b", 224): ("v5e-64", 1, 4),
    ("28b", 448): ("v5e-128", 1, 1),
    ("28b", 896): ("v5e-128", 4, 1),
}


def released_slice(model: str, res: int) -> tuple[str, int, int, int]:
    """The slice planned for a released model at `res` (see `RELEASED_SLICES`).

    Returns `(slice name, chips, tensor axis size, examples per batch shard)` for `model` = "paligemma-3b",
    "paligemma2-28b", ...
    """
    size = model.rsplit("-", 1)[-1]
    if (size, res) not in RELEASED_SLICES:
        raise ValueError(
            f"no planned slice for {model} at {res} px; known sizes/resolutions: {sorted(RELEASED_SLICES)}."
        )
    name, tensor, per_shard = RELEASED_SLICES[(size, res)]
    return name, int(name.rsplit("-", 1)[1]), tensor, per_shard


def token_equivalent_res(res: int, frames: int) -> int:
    """The released resolution whose one image has at least as many image tokens as `frames` images at `res`.

    (res / 14)^2 tokens per image: 2 frames at 224 px (512 tokens) -> 448 (1,024), 16 frames at 224 (4,096) -> 896;
    capped at 896. Multi-image and video configs plan their slice and microbatches by it.
    """
    for candidate in (224, 448, 896):
        if candidate >= res and candidate**2 >= frames * res**2:
            return candidate
    return 896


def beam_eval_batch(model: str, res: int, beams: int) -> int:
    """The eval batch of a beam-search evaluator on the planned slice of `model` at `res` (`--dry_run` measured).

    Beam search holds `beams` copies of the KV cache; PaliGemma 2's decoders have 4-16 KV heads (PaliGemma 1: one),
    so on v5e-8 the 3B beam-2 decode loop needed 24.8 GiB per chip at eval batch 256 and 15.6 GiB at 64, and
    PaliGemma 3B's beam-3 loop 15.9 GiB at 256. The cache grows with the image tokens, (res / 224)^2. So: 256
    (PaliGemma 1) or 32 examples at 224 px for 2 beams, halved for more beams, divided by (res / 224)^2, and at least
    one example per chip.
    """
    base = (256 if model == "paligemma-3b" else 32) // (1 if beams <= 2 else 2)
    return max(released_slice(model, res)[1], base * 224**2 // res**2)


def fit_released_slice(config: ml_collections.ConfigDict, model: str, res: int, *, frames: int = 1) -> None:
    """Fits a config to the slice `released_slice` plans for it.

    Sets `config.mesh` (FSDP over the chips, plus a `tensor` axis where planned), `config.accum_steps` and caps
    the evaluators' batch sizes, from `config.input.batch_size` (call it after the batch size and the evals are set).
    On another slice the same mesh spans its chips; `--config.accum_steps=N` / `--config.mesh=...` override.
    `frames` > 1 (image pairs, videos): plans as for one image with as many tokens (`token_equivalent_res`).
    """
    _, chips, tensor, per_shard = released_slice(model, token_equivalent_res(res, frames) if frames > 1 else res)
    shards = chips // tensor
    config.mesh = [("data", -1)] + ([("tensor", tensor)] if tensor > 1 else [])
    config.accum_steps = max(1, config.input.batch_size // (shards * per_shard))
    # The evaluators' programs have no microbatches: at most twice the train microbatch's examples per shard (the
    # decode prefill of 10B/28B at 896 px needs 16 / 24 GiB per chip at eval batch 256).
    for name in config.get("evals", {}):
        if "batch_size" in config.evals[name]:
            config.evals[name].batch_size = min(config.evals[name].batch_size, 2 * shards * per_shard)


MOCK_TRAIN_EXAMPLES = 32
MOCK_EVAL_EXAMPLES = 8
# Every mock run has the same shapes (image size, text length, frames, batch, decode length), so that the mock runs of
# different configs in one process share their compiled programs.
MOCK_RES = 32
MOCK_TEXT_LEN = 48
MOCK_FRAMES = 4  # at most: a video's mock clip has 4 frames
MOCK_DECODE_LEN = 24


def text_len(arg: ml_collections.ConfigDict, real: int) -> int:
    """The pp strings' text_len: `real`, or `MOCK_TEXT_LEN` in mock mode."""
    return MOCK_TEXT_LEN if arg.mode == "mock" else real


def pp_res(arg: ml_collections.ConfigDict) -> int:
    """The images' resolution in the pp strings: `arg.res`, or `MOCK_RES` for the tiny mock model."""
    return MOCK_RES if arg.mode == "mock" else arg.res


def vqvae_checkpoint(arg: ml_collections.ConfigDict) -> str:
    """The segmentation VQ-VAE (targets and evaluators): `vae-oid.npz`, or random weights ("init:0") in mock mode."""
    return "init:0" if arg.mode == "mock" else os.path.join(checkpoint_dir(), "vae-oid.npz")


def mock_mode(
    config: ml_collections.ConfigDict,
    *,
    tokenizer_keys: tuple[str, ...],
    prompts: tuple[str, ...],
    res: int = MOCK_RES,
    batch_size: int = 8,
    steps: int = 3,
) -> None:
    """Turns a benchmark config into a smoke run of the same pipeline on this CPU.

    Every data source becomes TFDS mock data (`datasets/mock.py`: random examples with the dataset's own features),
    the model a tiny random PaliGemma at `res` px, the tokenizer a small one trained on the mock texts, and the run a
    few steps, followed by every evaluator. Nothing needs to be downloaded or built.
    """

    def mock(data, n):
        if "mixture" in data:  # each part mocked, its own pp kept
            return dict(data, mixture=[(mock(part, n), weight) for part, weight in data["mixture"]])
        return dict(data, mock=n)

    def first_part(data):
        return first_part(data["mixture"][0][0]) if "mixture" in data else data

    config.input.data = mock(config.input.data, MOCK_TRAIN_EXAMPLES)
    config.input.batch_size = batch_size
    config.input.shuffle_buffer_size = MOCK_TRAIN_EXAMPLES
    for name in list(config.evals):
        config.evals[name].data = mock(config.evals[name].data, MOCK_EVAL_EXAMPLES)
        config.evals[name].batch_size = 4
        config.evals[name].log_percent = None  # evaluate once, at the end
        if "max_decode_len" in config.evals[name]:
            config.evals[name].max_decode_len = MOCK_DECODE_LEN
    del config["tokenizer"]  # a path (str) becomes a training spec (dict); ConfigDict fields keep their type
    config.tokenizer = dict(
        train=dict(
            data=first_part(config.input.data),  # a mixture: mock texts share one vocabulary (datasets/mock.py)
            keys=tokenizer_keys,
            vocab_size=320,
            extra_texts=list(prompts),
        ),
        path="tokenizer.model",
    )
    config.model_name = "paligemma-tiny"
    config.model = dict(img=dict(image_size=res), llm=dict(vocab_size=320 + 1152))
    config.model_init = None
    config.total_epochs = config.total_examples = None
    config.total_steps = steps
    config.log_training_steps = 1
    config.ckpt_steps = steps
    config.mesh = [("data", -1)]
    config.accum_steps = 1


def original_transfer_recipe(
    config: ml_collections.ConfigDict, *, label_smoothing: float = 0.0, ckpt_steps: int = 1000
) -> None:
    """The optimisation and bookkeeping every original PaliGemma transfer shares (docs/reference.md §5).

    Adam (b1 0.9, b2 0.999) at lr 1e-5, cosine with 5% warmup, global-norm clipping at 1, no weight decay, loss per
    example, parameters FSDP-sharded over all devices; a progress line every 50 steps, checkpoints kept 2 deep.
    """
    config.optax_name = "adam"
    config.optax = dict(b2=0.999)
    config.lr = 1e-5
    config.wd = 0.0
    config.schedule = dict(decay_type="cosine", warmup_percent=0.05)
    config.grad_clip_norm = 1.0
    config.label_smoothing = label_smoothing
    config.loss_norm = "example"
    config.mesh = [("data", -1)]
    config.sharding_strategy = [(".*", "fsdp")]
    config.log_training_steps = 50
    config.ckpt_steps = ckpt_steps
    config.keep_ckpts = 2
