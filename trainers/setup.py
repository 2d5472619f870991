"""What a run builds and checks before anything compiles.

`ModelSetup`: mesh (with the batch split checked), model, parameter shapes and specs (all a dry run needs); `Setup`
adds the data source, the number of steps, the tokenizer and the evaluators.

Vocabulary rule: a run trained from scratch (no `model_init`) whose config does not set `model.llm.vocab_size` gets
the tokenizer's size as its vocabulary (`Setup.vocab_from_tokenizer`), written into the run's config.json so that
predict/evaluators.run rebuild the same model. A set `vocab_size`, or a checkpoint to start from, is kept and must
hold the tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import PartitionSpec

from datasets import tokenizers
from evaluators import common
from paligemma import lora as lora_lib
from paligemma import model as model_lib
from paligemma import sharding
from paligemma.tokenizer import Tokenizer
from paligemma.tree import flatten, plain, unflatten
from trainers import config as config_lib
from trainers.config import ConfigError
from trainers.errors import one_line


def _check_batch_split(cfg, mesh, data_shards: int | None) -> None:
    """Checks that the batch splits over the data shards, accum_steps and the mesh's batch shards.

    `data_shards` None: the mesh's devices are not this host's (a dry run), so only the mesh split is checked.
    """
    batch, accum = cfg.input.batch_size, cfg.accum_steps
    pc = jax.process_count()
    dp = sharding.data_parallel_size(mesh)
    axes = " x ".join(f"{a}={mesh.shape[a]}" for a in sharding.batch_axes(mesh)) or "none"
    if data_shards is not None and data_shards % pc:
        raise ConfigError(f"config.input.data_shards={data_shards} is not a multiple of the {pc} processes.")
    if data_shards is not None and batch % data_shards:
        raise ConfigError(
            f"config.input.batch_size={batch} is not divisible by the {data_shards} data shards "
            f"(one per process unless config.input.data_shards is set)."
        )
    if batch % accum:
        raise ConfigError(f"config.input.batch_size={batch} is not divisible by config.accum_steps={accum}.")
    if (batch // accum) % dp:
        raise ConfigError(
            f"config.input.batch_size={batch} (microbatch {batch // accum} with accum_steps={accum}) is "
            f"not divisible by the {dp} batch shards of the mesh ({axes}); use a multiple of {dp}."
        )
    if data_shards is None:
        return
    rows = sharding.batch_sharding(mesh).addressable_devices_indices_map((batch,))
    local = len({(s[0].start, s[0].stop) for s in rows.values()}) * (batch // dp)
    if local != batch // pc:
        raise ConfigError(
            f"config.mesh {list(map(tuple, cfg.mesh))}: the batch rows of this process ({local}) are not "
            f"1/{pc} of the batch; keep the 'tensor' axis within a host (put it last in config.mesh)."
        )


INPUT_DATA = "input.data"  # tokenizer.train.data = this string: train the tokenizer on config.input.data


def tokenizer_spec(cfg) -> Any:
    """`cfg.tokenizer` with a training spec's `data="input.data"` replaced by `cfg.input.data` (None: no tokenizer)."""
    spec = plain(cfg.tokenizer)
    if isinstance(spec, dict) and isinstance(spec.get("train"), dict) and spec["train"].get("data") == INPUT_DATA:
        spec["train"]["data"] = plain(cfg.input.data)
    return spec


def vocab_follows_tokenizer(cfg) -> bool:
    """Whether the model's vocabulary is the tokenizer's size: from scratch and `model.llm.vocab_size` unset."""
    llm = (plain(cfg.model) or {}).get("llm") or {}
    return not cfg.model_init and llm.get("vocab_size") is None


def _resolve_tokenizer(cfg, workdir: str) -> str | None:
    if cfg.tokenizer is None:
        return None
    try:
        return tokenizers.resolve_tokenizer(tokenizer_spec(cfg), workdir)
    except (ValueError, OSError) as e:
        raise ConfigError(f"config.tokenizer: {one_line(e)}") from None


class ModelSetup:
    """What a run builds from the config and the devices alone.

    Mesh (with the batch split checked), model, parameter shapes and specs. `data_shards` None: the devices are not
    this host's (`trainers.dry_run`).
    """

    def __init__(self, cfg, devices: Sequence[Any] | None, data_shards: int | None):
        self.cfg = cfg
        self.compiler_options = None
        try:
            self.mesh = sharding.make_mesh(cfg.mesh, devices)
        except sharding.ShardingError as e:
            raise ConfigError(f"config.mesh: {e}") from None
        _check_batch_split(cfg, self.mesh, data_shards)
        self.data_shards = data_shards or 1
        self._build_model()

    def _build_model(self) -> None:
        """Model, parameter shapes and specs from `self.cfg` (its model_name / model, and lora)."""
        cfg = self.cfg
        self.model_config = config_lib.model_config(cfg)
        try:
            self.model = model_lib.Model(**self.model_config)
            self.shapes = model_lib.param_shapes(self.model_config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.model / model_name: {one_line(e)}") from None
        self.lora = None  # the LoraConfig of a LoRA run; then `model` adds the adapters and `shapes` include them
        self.eval_model = self.model  # what evaluators run: a LoRA model without its adapters' dropout
        if cfg.lora:
            try:
                self.lora = lora_lib.LoraConfig.from_dict(plain(cfg.lora))
                base = self.model
                self.model = lora_lib.adapted_model(base, self.lora)
                # Qwix applies an adapter's dropout on every call: evaluation uses the same adapters without it.
                self.eval_model = lora_lib.adapted_model(base, dataclasses.replace(self.lora, dropout=0.0))
                self.shapes = lora_lib.param_shapes(self.model_config, self.lora)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"config.lora: {one_line(e)}") from None
        try:
            self.specs = sharding.param_specs(
                self.shapes, self.mesh, rules=cfg.sharding_rules, strategy=cfg.sharding_strategy
            )
        except sharding.ShardingError as e:
            raise ConfigError(f"config.sharding_rules / sharding_strategy: {e}") from None
        if self.lora and self.lora.quantize:  # QLoRA: the quantized base weights are replicated (a few GB at most)
            flat = flatten(self.shapes)
            self.specs = unflatten(
                {n: PartitionSpec() if lora_lib.is_quantized(flat[n]) else p for n, p in flatten(self.specs).items()}
            )


class Setup(ModelSetup):
    """Everything validated before compiling: mesh, model, data source, steps, tokenizer, evaluators."""

    def __init__(self, cfg, workdir: str, devices: Sequence[Any] | None):
        super().__init__(cfg, devices, cfg.input.data_shards or jax.process_count())
        # The external inputs (checkpoint, data, tokenizer) are all checked before failing, so that one run tells
        # everything that is missing.
        missing = []
        self.init_path = self.source = self.tokenizer_path = None
        if cfg.model_init:
            try:
                self.init_path = config_lib.resolve_checkpoint_path(cfg.model_init)
            except ConfigError as e:
                missing.append(str(e))
        try:
            # TensorFlow (~6 s to import) comes with the data: imported here, not at the top, so that the dry run
            # (which imports this module) and the train step's import path stay free of it.
            from datasets import sources

            self.source = sources.get_source(cfg.input.data)
            num_examples = self.source.num_examples
        except Exception as e:  # any failure to open the data is a config problem here
            missing.append(f"config.input.data {plain(cfg.input.data)!r}: {e}")
        try:
            self.tokenizer_path = _resolve_tokenizer(cfg, workdir)
        except ConfigError as e:
            missing.append(str(e))
        if len(missing) == 1:
            raise ConfigError(missing[0])
        if missing:
            raise ConfigError("\n".join(f"- {m}" for m in missing))
        self.total_steps = config_lib.num_steps(cfg, num_examples)
        self.vocab_from_tokenizer = False  # True: the vocabulary was set to the tokenizer's size (module docstring)
        if self.tokenizer_path is not None:
            tok = Tokenizer(self.tokenizer_path)
            if vocab_follows_tokenizer(cfg) and self.shapes["llm"]["embedder"]["input_embedding"].shape[0] != (
                tok.vocab_size
            ):
                model = plain(cfg.model) or {}
                model.setdefault("img", {})
                model["llm"] = {**(model.get("llm") or {}), "vocab_size": tok.vocab_size}
                cfg.model = model
                self._build_model()
                self.vocab_from_tokenizer = True
            try:
                tok.check_fits(
                    self.shapes["llm"]["embedder"]["input_embedding"].shape[0],
                    f"set config.model.llm.vocab_size >= {tok.vocab_size}.",
                )
            except ValueError as e:
                raise ConfigError(f"{self.tokenizer_path}: {e}") from None
        self.evaluators = self._evaluators(workdir)

    def _evaluators(self, workdir: str) -> dict[str, Any]:
        if not self.cfg.evals:
            return {}
        try:
            return common.build_evaluators(
                self.cfg.evals,
                model=self.eval_model,
                tokenizer_path=self.tokenizer_path,
                workdir=workdir,
                put_batch=lambda b: sharding.put_batch(b, self.mesh),
            )
        except ValueError as e:
            raise ConfigError(f"config.evals: {one_line(e)}") from None
