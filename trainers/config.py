"""Run configs for `trainers.train`: loading, defaults, validation (big_vision-style ml_collections configs).

A config file defines `get_config(arg=None) -> ml_collections.ConfigDict`; `path.py:arg` passes `arg`. On the command
line every key below can be overridden, whether the file sets it or not: `--config.accum_steps=2`,
`--config.input.batch_size=8`, `--config.mesh="[('data', -1), ('fsdp', 4)]"`, `--config.export_npz=True`
(`from_command_line`; values are Python literals or plain strings, see `paligemma.cli`).
`resolve(config)` checks it against `SCHEMA` (an unknown key is an error that names the nearest valid key), fills the
defaults below and returns a new ConfigDict. Keys (defaults in brackets; "required" means no default):

  seed [0]                       params init, dropout and data order
  tokenizer [None]               a `.model` path or a `datasets.tokenizers.resolve_tokenizer` dict spec
                                 (`input.tokenizer` is accepted as an alias, as `datasets.inspect` reads it);
                                 in a training spec, `train.data="input.data"` means the run's `input.data`
  model_name [None]              a `paligemma.model.get_config` name; `model` (dict(img=..., llm=...)) overrides
  model [None]                   its fields (or is the whole model config when model_name is None).
                                 Vocabulary rule: trained from scratch (model_init None) with a tokenizer and
                                 without `model.llm.vocab_size`, the vocabulary is the tokenizer's size (the
                                 named variants' 1,280 / 2,048 rows cannot hold a trained tokenizer, >= 1,414
                                 pieces with the 1,152 loc/seg ones); it is written to config.json. A set
                                 vocab_size, or a model_init, is kept and must hold the tokenizer.
  model_init [None]              checkpoint path (any `paligemma.checkpoints.load` format) or a name found under
                                 $PALIGEMMA_CKPT_DIR (NAME, NAME.npz, NAME.bf16.npz, NAME.f16.npz); None = random
  model_load.dont_load [()]      regexes of parameters that keep their random init
  input.data (required)          a `datasets.sources.get_source` dict
  input.pp (required)            pp string producing image/text/mask_ar/mask_loss/mask_input (None: a mixture
                                 whose parts carry their own pp, configs/transfer/mix.py)
  input.batch_size (required)    global batch size (all processes together)
  input.shuffle_buffer_size [10_000]
  input.data_shards [None]       number of data streams the global batch is read from (None: one per process);
                                 pinning it makes the batches independent of the process count
  input.prefetch [2]             batches prefetched by tf.data (host memory)
  input.device_prefetch [2]      batches read and placed on the devices ahead of the step, by a background thread
  total_steps | total_epochs | total_examples   exactly one is required
  optax_name ["adam"]            adam | adamw (the same as adam: decay comes from `wd`) | adafactor | sgd
  optax [{}]                     keyword arguments of the optimizer's scaling transform
                                 (adam/adamw: optax.scale_by_adam, e.g. b1, b2, eps, mu_dtype;
                                 adafactor: optax.scale_by_factored_rms; sgd: momentum, nesterov)
  lr [1e-5]                      peak learning rate
  wd [0.0]                       decoupled weight decay: each step p -= schedule(t) * wd * wd_mult * p
                                 (scaled by the schedule, not by lr, as in big_vision: wd 1e-4 at lr 1e-3
                                 equals PyTorch AdamW's weight_decay 0.1)
  wd_mults [DEFAULT_WD_MULTS]    (regex, mult) pairs, first match wins, no match = 0: every weight matrix of the
                                 image encoder and the LLM (kernel, w, gating_einsum, linear, input_embedding);
                                 not norms, biases or the position embedding
  lr_mults [()]                  (regex, mult) pairs, first match wins, no match = 1
  freeze [()]                    regexes; matching parameters are not trained (no gradient, no optimizer state)
  lora [None]                    LoRA fine-tuning (`paligemma.lora.LoraConfig`): dict(rank=16, alpha=16,
                                 targets=[regexes over parameter names], dropout=0.0). Only the adapters train
                                 (optimizer state for them alone); the base weights stay frozen in their stored
                                 dtype; checkpoints hold the adapters and point to the base (`model_init`, or
                                 {workdir}/lora_base.npz when training from a random base); export merges them
  schedule [dict(decay_type="cosine", warmup_percent=0.05)]
                                 decay_type cosine|linear|rsqrt|constant; warmup_steps or warmup_percent;
                                 end_factor [0.0] (cosine/linear: final lr / peak lr); timescale [10_000] (rsqrt)
  grad_clip_norm [1.0]           global-norm clipping (None or 0: off)
  label_smoothing [0.0]
  loss_norm ["example"]          "example": mean over each example's suffix tokens, then over the batch
                                 (the original trainer); "token": mean over all suffix tokens of the batch
  loss_chunk [None]              suffix positions per example whose logits (and their backward) are computed at
                                 once: memory for speed (the same loss). None: 4 on TPU/GPU, where memory is
                                 short; on CPU the whole text in one pass (20% faster on bench-s, see README)
  loss_positions [None]          the most positions with a loss (suffix tokens, eos included) of any training
                                 example: the logits are computed at that many positions per example instead of
                                 at every text position (bench-s: 21 of 31, see README). Checked on every batch
                                 before its step; None: no bound
  accum_steps [1]                microbatches per step (gradient accumulation)
  mesh [[("data", -1)]]          `paligemma.sharding` mesh spec over all devices (axes data, fsdp, tensor)
  sharding_strategy [[(".*", "fsdp")]]    see `paligemma.sharding` (fsdp over `fsdp`, else `data`; >= 4 MiB)
  sharding_rules [None]          tensor-parallel (regex, per-dim spec) rules; None = sharding.DEFAULT_TENSOR_RULES
  log_training_steps [50]        progress line + metrics.jsonl + TensorBoard every N steps
  log_sharding [None]            log the parameter-sharding table: None = when the mesh has more than one
                                 device, True = always, False = never
  preemption_check_steps [10]    multi-process runs agree on a SIGTERM every N steps (one cross-host exchange;
                                 a single process checks every step); the run saves the step it stops at
  ckpt_steps [1000]              checkpoint every N steps (and at the end, and on SIGTERM)
  keep_ckpts [3]                 checkpoints kept
  evals [{}]                     {name: dict(type=..., ...)}, see `evaluators.common.build_evaluators`
  export_npz [None]              True: write {workdir}/params.npz at the end; a path: write there
  export_dtype [None]            dtype of the exported .npz ("bfloat16", "float16", "float32"; None: float32)
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from typing import Any

import ml_collections

from paligemma import cli, paths
from paligemma.checkpoints import training
from paligemma.errors import UserError
from paligemma.tree import plain

REQUIRED = cli.REQUIRED  # a key without default

DEFAULT_WD_MULTS = ((r"(^|/)(kernel|w|gating_einsum|linear|input_embedding)$", 1.0),)

# Nested dicts are sub-schemas (their keys are checked too); other values are defaults.
SCHEMA: dict[str, Any] = dict(
    seed=0,
    tokenizer=None,
    model_name=None,
    model=None,
    model_init=None,
    model_load=dict(dont_load=()),
    input=dict(
        data=REQUIRED,
        pp=REQUIRED,
        batch_size=REQUIRED,
        shuffle_buffer_size=10_000,
        data_shards=None,
        prefetch=2,
        device_prefetch=2,
        tokenizer=None,
    ),
    total_steps=None,
    total_epochs=None,
    total_examples=None,
    optax_name="adam",
    optax={},
    lr=1e-5,
    wd=0.0,
    wd_mults=DEFAULT_WD_MULTS,
    lr_mults=(),
    freeze=(),
    lora=None,
    schedule=dict(decay_type="cosine", warmup_steps=None, warmup_percent=0.05, end_factor=0.0, timescale=10_000),
    grad_clip_norm=1.0,
    label_smoothing=0.0,
    loss_norm="example",
    loss_chunk=None,
    loss_positions=None,
    accum_steps=1,
    mesh=(("data", -1),),
    sharding_strategy=((".*", "fsdp"),),
    sharding_rules=None,
    log_training_steps=50,
    log_sharding=None,
    preemption_check_steps=10,
    ckpt_steps=1000,
    keep_ckpts=3,
    evals={},
    export_npz=None,
    export_dtype=None,
)

# Sub-dicts whose contents are free-form (checked elsewhere).
_OPEN = {"model", "optax", "evals", "input.data", "lora"}
OPTIMIZERS = ("adam", "adamw", "adafactor", "sgd")
DECAY_TYPES = ("cosine", "linear", "rsqrt", "constant")


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the key and the fix."""

    label = "Config error"


def load(spec: str) -> ml_collections.ConfigDict:
    """Loads `path.py[:arg]` by calling the file's `get_config(arg)` (or `get_config()` without an argument)."""
    try:
        config = cli.load_config_file(spec)
    except cli.ConfigOverrideError as e:
        raise ConfigError(str(e)) from None
    if isinstance(config, Mapping):
        config = ml_collections.ConfigDict(dict(config))
    return config


def from_command_line(spec: str, overrides: list[tuple[str, str]]) -> ml_collections.ConfigDict:
    """The config of `--config spec` and `--config.KEY=VALUE` overrides (`paligemma.cli` says how values are read).

    The file's get_config runs first; then SCHEMA fills every key the file leaves unset, so that any key of SCHEMA
    can be overridden; then the overrides apply in order. An unknown key is a ConfigError naming the nearest key.
    Not validated yet (`resolve` does that).
    """
    try:
        config = cli.apply_overrides(load(spec), overrides, schema=SCHEMA, open_keys=_OPEN, fill=True)
    except cli.ConfigOverrideError as e:
        raise ConfigError(str(e)) from None
    return ml_collections.ConfigDict(config, type_safe=False)


def _merge(schema: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key in given:
        if key not in schema:
            raise ConfigError(f"unknown config key {prefix + key!r}; {cli.nearest_hint(key, schema)}")
    for key, default in schema.items():
        where = f"{prefix}{key}"
        value = given.get(key, default)
        if isinstance(default, dict) and value is None:
            value = {}
        if isinstance(default, dict) and where not in _OPEN:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config.{where} must be a dict, got {type(value).__name__}.")
            value = _merge(default, value, where + ".")
        elif value is REQUIRED:
            raise ConfigError(f"config.{where} is required.")
        out[key] = copy.deepcopy(value)
    return out


def _check_rules(value: Any, where: str, *, pairs: bool, numeric: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        kind = "(regex, value) pairs" if pairs else "regexes"
        raise ConfigError(f"config.{where} must be a list of {kind}, got {value!r}.")
    for item in value:
        regex = item
        if pairs:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ConfigError(f"config.{where}: {item!r} is not a (regex, value) pair.")
            regex = item[0]
            if numeric and not isinstance(item[1], (int, float)):
                raise ConfigError(f"config.{where}: multiplier {item[1]!r} of {regex!r} is not a number.")
        try:
            re.compile(regex)
        except (re.error, TypeError) as e:
            raise ConfigError(f"config.{where}: bad regex {regex!r}: {e}.") from None


def _positive_int(value: Any, where: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config.{where} must be a positive integer, got {value!r}.")


def _check_values(c: dict[str, Any]) -> None:
    totals = [k for k in ("total_steps", "total_epochs", "total_examples") if c[k] is not None]
    if len(totals) != 1:
        raise ConfigError(
            f"set exactly one of config.total_steps / total_epochs / total_examples (got {totals or 'none'})."
        )
    if c["total_steps"] is not None:
        _positive_int(c["total_steps"], "total_steps")
    for key in ("total_epochs", "total_examples"):
        if c[key] is not None and (not isinstance(c[key], (int, float)) or c[key] <= 0):
            raise ConfigError(f"config.{key} must be positive, got {c[key]!r}.")
    _positive_int(c["input"]["batch_size"], "input.batch_size")
    _positive_int(c["input"]["data_shards"], "input.data_shards", allow_none=True)
    _positive_int(c["input"]["device_prefetch"], "input.device_prefetch")
    for key in ("accum_steps", "log_training_steps", "preemption_check_steps", "ckpt_steps", "keep_ckpts"):
        _positive_int(c[key], key)
    if c["model_name"] is None and not c["model"]:
        raise ConfigError(
            "set config.model_name (e.g. 'paligemma-3b-224' or 'paligemma-tiny') or config.model "
            "(dict(img=..., llm=...))."
        )
    if c["model"] is not None and not isinstance(c["model"], Mapping):
        raise ConfigError(f"config.model must be a dict(img=..., llm=...), got {type(c['model']).__name__}.")
    if c["model"]:
        extra = set(c["model"]) - {"img", "llm"}
        if extra:
            raise ConfigError(f"config.model has keys {sorted(extra)}; only 'img' and 'llm' are allowed.")
    if c["optax_name"] not in OPTIMIZERS:
        raise ConfigError(f"config.optax_name {c['optax_name']!r} unknown; use one of {OPTIMIZERS}.")
    if not isinstance(c["optax"], Mapping):
        raise ConfigError(f"config.optax must be a dict of keyword arguments, got {c['optax']!r}.")
    if "weight_decay" in c["optax"]:
        raise ConfigError(
            "config.optax.weight_decay is not used; set config.wd (decoupled weight decay) and config.wd_mults instead."
        )
    for key in ("lr", "wd", "label_smoothing"):
        if not isinstance(c[key], (int, float)) or c[key] < 0:
            raise ConfigError(f"config.{key} must be a non-negative number, got {c[key]!r}.")
    if c["label_smoothing"] >= 1:
        raise ConfigError(f"config.label_smoothing must be < 1, got {c['label_smoothing']}.")
    if c["grad_clip_norm"] is not None and (
        not isinstance(c["grad_clip_norm"], (int, float)) or c["grad_clip_norm"] < 0
    ):
        raise ConfigError(f"config.grad_clip_norm must be None or a non-negative number, got {c['grad_clip_norm']!r}.")
    if c["loss_norm"] not in ("example", "token"):
        raise ConfigError(f"config.loss_norm must be 'example' or 'token', got {c['loss_norm']!r}.")
    for key in ("loss_chunk", "loss_positions"):
        value = c[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"config.{key} must be None or a positive int, got {value!r}.")
    _check_schedule(c["schedule"])
    _check_rules(c["wd_mults"], "wd_mults", pairs=True, numeric=True)
    _check_rules(c["lr_mults"], "lr_mults", pairs=True, numeric=True)
    _check_rules(c["freeze"], "freeze", pairs=False)
    _check_rules(c["model_load"]["dont_load"], "model_load.dont_load", pairs=False)
    _check_rules(c["sharding_strategy"], "sharding_strategy", pairs=True)
    _check_rules(c["sharding_rules"], "sharding_rules", pairs=True)
    if not isinstance(c["evals"], Mapping):
        raise ConfigError(f"config.evals must be a dict {{name: dict(type=..., ...)}}, got {c['evals']!r}.")
    if c["export_dtype"] not in (None, "float32", "bfloat16", "float16"):
        raise ConfigError(
            f"config.export_dtype must be None, 'float32', 'bfloat16' or 'float16'; got {c['export_dtype']!r}."
        )
    if c["log_sharding"] not in (None, True, False):
        raise ConfigError(f"config.log_sharding must be None, True or False; got {c['log_sharding']!r}.")
    if not isinstance(c["export_npz"], (type(None), bool, str)):
        raise ConfigError(f"config.export_npz must be None, True or a path; got {c['export_npz']!r}.")


def _check_schedule(s: dict[str, Any] | None) -> None:
    if s is None:
        return
    if s["decay_type"] not in DECAY_TYPES:
        raise ConfigError(f"config.schedule.decay_type {s['decay_type']!r} unknown; use one of {DECAY_TYPES}.")
    if s["warmup_steps"] is not None:
        if isinstance(s["warmup_steps"], bool) or not isinstance(s["warmup_steps"], int) or s["warmup_steps"] < 0:
            raise ConfigError(f"config.schedule.warmup_steps must be an integer >= 0, got {s['warmup_steps']!r}.")
    elif not isinstance(s["warmup_percent"], (int, float)) or not 0 <= s["warmup_percent"] < 1:
        raise ConfigError(f"config.schedule.warmup_percent must be in [0, 1), got {s['warmup_percent']!r}.")
    if not isinstance(s["end_factor"], (int, float)) or not 0 <= s["end_factor"] <= 1:
        raise ConfigError(f"config.schedule.end_factor must be in [0, 1], got {s['end_factor']!r}.")
    if not isinstance(s["timescale"], (int, float)) or s["timescale"] <= 0:
        raise ConfigError(f"config.schedule.timescale must be positive, got {s['timescale']!r}.")


def resolve(config: Any) -> ml_collections.ConfigDict:
    """Validated config with every default filled in (a new, unlocked ConfigDict). Raises ConfigError."""
    given = plain(config)
    if not isinstance(given, Mapping):
        raise ConfigError(f"a config must be a ConfigDict or dict, got {type(config).__name__}.")
    resolved = _merge(SCHEMA, given, "")
    inp = resolved["input"]
    if inp["tokenizer"] is not None:
        if resolved["tokenizer"] is not None and resolved["tokenizer"] != inp["tokenizer"]:
            raise ConfigError("config.tokenizer and config.input.tokenizer differ; set only config.tokenizer.")
        resolved["tokenizer"] = inp["tokenizer"]
    _check_values(resolved)
    return ml_collections.ConfigDict(resolved, type_safe=False)


def model_config(config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
    """`{"img": {...}, "llm": {...}}` from config.model_name with config.model's fields on top."""
    try:
        return training.model_config_from(config) or {"img": {}, "llm": {}}
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_checkpoint_path(model_init: str) -> str:
    """A model_init value -> an existing path (itself, or NAME[.npz|.bf16.npz|.f16.npz] in $PALIGEMMA_CKPT_DIR).

    Both may be local or gs:// (`paligemma.paths`).
    """
    path = str(model_init) if paths.is_remote(str(model_init)) else os.path.expanduser(str(model_init))
    if paths.exists(path):
        return path
    root = os.environ.get("PALIGEMMA_CKPT_DIR")
    tried = [path]
    if root and not os.path.isabs(path) and not paths.is_remote(path):
        for suffix in ("", ".npz", ".bf16.npz", ".f16.npz"):
            candidate = paths.join(root, path + suffix)
            tried.append(candidate)
            if paths.exists(candidate):
                return candidate
    hint = ("" if root else " $PALIGEMMA_CKPT_DIR is not set.") + (
        " Download the released big_vision checkpoint (e.g. `paligemma-3b-pt-224.npz` from Kaggle 'google/paligemma'"
        " or Hugging Face 'google/paligemma-3b-pt-224-jax'; a PyTorch-hub folder works too) into $PALIGEMMA_CKPT_DIR,"
        " or pass --config.model_init=PATH."
    )
    raise ConfigError(f"config.model_init: checkpoint not found; tried {', '.join(tried)}.{hint}")


def num_steps(config: ml_collections.ConfigDict, num_examples: int | None) -> int:
    """Training steps from total_steps, total_examples or total_epochs (the latter needs the dataset size)."""
    batch = config.input.batch_size
    if config.total_steps is not None:
        return int(config.total_steps)
    if config.total_examples is not None:
        return max(1, int(config.total_examples) // batch)
    if not num_examples:
        raise ConfigError("config.total_epochs needs a dataset with a known size; set config.total_steps instead.")
    return max(1, int(config.total_epochs * num_examples) // batch)
