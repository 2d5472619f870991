r"""Trains PaliGemma from a run config on a device mesh; resumable, multi-host.

    python -m trainers.train --config configs/transfer/vqav2.py:res=224 --workdir /tmp/vqav2 \
        [--config.lr=3e-5 --config.total_steps=100 ...]

What a run does (see trainers/config.py for every config key and its default):
  * validates the config, the mesh, the batch split, the data source, `model_init` and the evaluators, and fails with
    one line (exit code 2) before anything compiles;
  * places the parameters on the mesh (`paligemma.sharding`: fsdp + tensor-parallel rules), from `model_init`
    (with `model_load.dont_load`, vocabulary extension and resolution change) or from a random init;
  * resumes from the workdir's latest checkpoint when there is one (params, optimizer state, step, data position),
    so the resumed run sees exactly the batches an uninterrupted one would;
  * runs one jitted train step per batch (explicit in/out shardings, donated state); every `log_training_steps` it
    prints a progress line and appends to `{workdir}/metrics.jsonl` and TensorBoard (`{workdir}/tensorboard`);
  * runs `config.evals` when they are due (their metrics go to the same logs as `{name}/{metric}`);
  * checkpoints asynchronously every `ckpt_steps` and at the end (orbax, keep `keep_ckpts`);
  * stops on a NaN/Inf loss or gradient norm with a message naming the step (exit code 1), keeping the last good
    checkpoint;
  * on SIGTERM (TPU VM preemption, `kill`) finishes the current step, saves a checkpoint of it and exits with code
    143; rerunning the same command resumes there;
  * at the end writes the params as an original-layout `.npz` when `export_npz` asks.

Multi-host: on a Cloud TPU VM slice `jax.distributed.initialize()` is called automatically (`--multihost=auto`);
`--multihost=on` calls it elsewhere (SLURM, ...), and `--coordinator_address/--num_processes/--process_id` set it up by
hand (e.g. several processes on one machine). Every process reads its own share of the data; process 0 writes the logs.
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from paligemma import checkpoints, paths, sharding, tree
from paligemma import model as model_lib
from trainers import checkpointing, logging_utils, optimizer, prefetch
from trainers import config as config_lib
from trainers import step as step_lib
from trainers.config import ConfigError

log = logging.getLogger("trainers.train")

EMBEDDING = "llm/embedder/input_embedding"
# Config keys the train step program depends on (besides the model, mesh, shardings and total steps).
_STEP_KEYS = (
    "optax_name",
    "optax",
    "lr",
    "wd",
    "wd_mults",
    "lr_mults",
    "schedule",
    "grad_clip_norm",
    "label_smoothing",
    "loss_norm",
    "accum_steps",
)
EXIT_CONFIG_ERROR = 2
EXIT_DIVERGED = 1
EXIT_PREEMPTED = 143


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/Inf."""


# --------------------------------------------------------------------------------------------------------------------
# Multi-host set-up.


def _on_cloud_tpu_vm() -> bool:
    if os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return True
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def initialize_distributed(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls `jax.distributed.initialize` when asked or on a Cloud TPU VM; returns whether it did.

    mode: "auto" (initialize on a Cloud TPU VM, or when any explicit argument is given), "on" (always; the cluster
    is auto-detected unless the arguments say otherwise), "off" (never). Must run before anything touches devices.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--multihost must be auto, on or off; got {mode!r}.")
    explicit = {
        k: v
        for k, v in dict(
            coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
        ).items()
        if v is not None
    }
    if mode == "off" or (mode == "auto" and not explicit and not _on_cloud_tpu_vm()):
        return False
    try:
        jax.distributed.initialize(**explicit)
    except (ValueError, RuntimeError) as e:
        raise RuntimeError(
            f"jax.distributed.initialize({explicit or ''}) failed: {e}. On a single machine pass "
            f"--multihost=off; by hand: --coordinator_address, --num_processes, --process_id."
        ) from e
    return True


def _any_process(flag: bool) -> bool:
    """True when `flag` is set on any process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.max(multihost_utils.process_allgather(np.asarray([int(flag)], np.int32))))


def _to_host(x: jax.Array) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# --------------------------------------------------------------------------------------------------------------------
# Validation and set-up (everything here runs before any compilation).


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


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


def _resolve_tokenizer(cfg, workdir: str) -> str | None:
    if cfg.tokenizer is None:
        return None
    from datasets import tokenizers

    try:
        return tokenizers.resolve_tokenizer(cfg.tokenizer, workdir)
    except (ValueError, OSError) as e:
        raise ConfigError(f"config.tokenizer: {_one_line(e)}") from None


class _ModelSetup:
    """What a run builds from the config and the devices alone: mesh (with the batch split checked), model, parameter
    shapes and specs. `data_shards` None: the devices are not this host's (`trainers.dry_run`).
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
        self.model_config = config_lib.model_config(cfg)
        try:
            self.model = model_lib.Model(**self.model_config)
            self.shapes = model_lib.param_shapes(self.model_config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.model / model_name: {_one_line(e)}") from None
        try:
            self.specs = sharding.param_specs(
                self.shapes, self.mesh, rules=cfg.sharding_rules, strategy=cfg.sharding_strategy
            )
        except sharding.ShardingError as e:
            raise ConfigError(f"config.sharding_rules / sharding_strategy: {e}") from None


class _Setup(_ModelSetup):
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
            from datasets import sources

            self.source = sources.get_source(cfg.input.data)
            num_examples = self.source.num_examples
        except Exception as e:  # any failure to open the data is a config problem here
            missing.append(f"config.input.data {config_lib.to_dict(cfg.input.data)!r}: {e}")
        try:
            self.tokenizer_path = _resolve_tokenizer(cfg, workdir)
        except ConfigError as e:
            missing.append(str(e))
        if len(missing) == 1:
            raise ConfigError(missing[0])
        if missing:
            raise ConfigError("\n".join(f"- {m}" for m in missing))
        self.total_steps = config_lib.num_steps(cfg, num_examples)
        if self.tokenizer_path is not None:
            from paligemma.tokenizer import Tokenizer

            tok = Tokenizer(self.tokenizer_path)
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
        from evaluators import common

        try:
            return common.build_evaluators(
                self.cfg.evals,
                model=self.model,
                tokenizer_path=self.tokenizer_path,
                workdir=workdir,
                put_batch=lambda b: sharding.put_batch(b, self.mesh),
            )
        except ValueError as e:
            raise ConfigError(f"config.evals: {_one_line(e)}") from None


# --------------------------------------------------------------------------------------------------------------------
# Parameters and optimizer state.


def _put_host(host: np.ndarray, target: NamedSharding, dtype: Any = None) -> jax.Array:
    """Places the host array `host` on `target`'s devices as `dtype` (default: its own). Each device's shard is cast
    on its own while it is copied, so the host never holds a converted copy of the whole array.
    """
    dtype = np.dtype(host.dtype if dtype is None else dtype)
    return jax.make_array_from_callback(host.shape, target, lambda index: np.asarray(host[index], dtype))


# Jitted functions of earlier runs in this process, reused when a run has the very same program (same key): repeated
# runs in tests or notebooks then skip compilation.
_JIT_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
_JIT_CACHE_SIZE = 16


def _cached_jit(key: Any, build: Callable[[], Any]) -> Any:
    text = json.dumps(key, sort_keys=True, default=str)
    if text in _JIT_CACHE:
        _JIT_CACHE.move_to_end(text)
        return _JIT_CACHE[text]
    fn = _JIT_CACHE[text] = build()
    while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
        _JIT_CACHE.popitem(last=False)
    return fn


def _mesh_key(mesh) -> list:
    return [list(mesh.axis_names), list(mesh.devices.shape), [f"{d.platform}:{d.id}" for d in mesh.devices.flat]]


def _shardings_key(flat_shardings: dict[str, Any]) -> dict[str, str]:
    return {name: str(s.spec) for name, s in flat_shardings.items()}


def _random_params(
    model_config,
    names: Sequence[str],
    shardings: dict[str, Any],
    rng: jax.Array,
    compiler_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Random init of the parameters `names` only (XLA drops the rest of the init), placed by `shardings`."""
    out_shardings = {n: shardings[n] for n in names}

    def build():
        model = model_lib.Model(**model_config)
        dummy = model_lib.dummy_inputs(model_config)

        def init(key):
            full = tree.flatten(model.init(key, *dummy)["params"])
            return {n: full[n] for n in names}

        return jax.jit(init, out_shardings=out_shardings, compiler_options=compiler_options)

    mesh = next(iter(out_shardings.values())).mesh
    key = ["init", model_config, list(names), _shardings_key(out_shardings), _mesh_key(mesh), compiler_options]
    return _cached_jit(key, build)(rng)


def _image_size(model_config) -> int | None:
    size = model_config["img"].get("image_size")
    return size if isinstance(size, int) else None


def _fit_posemb(loaded: dict[str, np.ndarray], flat_shapes: dict[str, Any], model_config) -> None:
    """Resamples the checkpoint's `img/pos_embedding` (a square grid) to the model's grid, in float32, when they
    differ (what `checkpoints.load(..., dtype="float32", image_size=...)` does; done here so that the other arrays
    stay in their stored dtype).
    """
    name = "img/pos_embedding"
    if name not in loaded or name not in flat_shapes or _image_size(model_config) is None:
        return
    have, want = tuple(loaded[name].shape), tuple(flat_shapes[name].shape)
    old = math.isqrt(have[1]) if len(have) == 3 else 0
    if have == want or len(want) != 3 or (have[0], have[2]) != (want[0], want[2]) or old * old != have[1]:
        return  # same grid, or reported as a mismatch
    from paligemma import siglip

    new_grid = siglip.SiglipConfig(**{**dict(model_config["img"]), "num_classes": None}).grid
    log.info("model_init: resampling img/pos_embedding from a %s to a %s grid.", (old, old), new_grid)
    loaded[name] = np.asarray(siglip.resample_posemb(np.asarray(loaded[name], np.float32), (old, old), new_grid))


def _loaded_params(setup: _Setup, shardings: dict[str, Any], rng: jax.Array) -> dict[str, Any]:
    """Params from `model_init` (checkpoint arrays; dont_load / missing-vocab rows from the random init).

    The checkpoint is read in its stored dtype (a bfloat16 3B file: 6 GB of host memory, not 12) and each array is
    cast to the model's parameter dtype shard by shard as it is placed (`_put_host`).
    """
    cfg, flat_shapes = setup.cfg, tree.flatten(setup.shapes)
    try:
        _, loaded = checkpoints.load(setup.init_path)
    except (ValueError, OSError) as e:
        raise ConfigError(f"config.model_init: {_one_line(e)}") from None
    loaded = tree.flatten(loaded)
    _fit_posemb(loaded, flat_shapes, setup.model_config)
    dont_load = list(cfg.model_load.dont_load or ())
    random_names, extend, problems = [], {}, []
    for name, shape in flat_shapes.items():
        if any(re.search(r, name) for r in dont_load):
            random_names.append(name)
        elif name not in loaded:
            problems.append(f"{name} missing from the checkpoint")
        elif loaded[name].shape != shape.shape:
            have = loaded[name].shape
            if name == EMBEDDING and have[1:] == shape.shape[1:] and have[0] < shape.shape[0]:
                extend[name] = have[0]
                random_names.append(name)
            else:
                problems.append(f"{name} is {have} in the checkpoint but {shape.shape} in the model")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(
            f"config.model_init {setup.init_path} does not fit the model: {'; '.join(problems[:3])}"
            f"{more}; fix config.model, or list them in config.model_load.dont_load."
        )
    unused = sorted(set(loaded) - set(flat_shapes))
    if unused:
        log.warning("model_init: %d checkpoint arrays are not used by the model: %s", len(unused), unused[:5])
    random = (
        _random_params(setup.model_config, random_names, shardings, rng, setup.compiler_options) if random_names else {}
    )
    out = {}
    for name, shape in flat_shapes.items():
        if name in extend:
            rows = extend[name]
            host = np.zeros(shape.shape, loaded[name].dtype)
            host[:rows] = loaded[name]
            keep = jax.jit(
                lambda ckpt, init, n=rows: jnp.where(jnp.arange(ckpt.shape[0])[:, None] < n, ckpt, init),
                out_shardings=shardings[name],
                compiler_options=setup.compiler_options,
            )
            out[name] = keep(_put_host(host, shardings[name], shape.dtype), random[name])
            log.info(
                "model_init: vocabulary extended from %d to %d rows (new rows randomly initialised).",
                rows,
                shape.shape[0],
            )
        elif name in random:
            out[name] = random[name]
        else:
            out[name] = _put_host(loaded[name], shardings[name], shape.dtype)
        loaded.pop(name, None)
    log.info(
        "model_init %s: %d arrays loaded, %d randomly initialised (%s).",
        setup.init_path,
        len(flat_shapes) - len(random_names) + len(extend),
        len(random_names) - len(extend),
        ", ".join(n for n in random_names if n not in extend) or "none",
    )
    return tree.unflatten(out)


def _opt_state_shardings(opt_shapes: Any, param_shardings: dict[str, Any], param_shapes: dict[str, Any], mesh) -> Any:
    """Optimizer-state leaves shaped like a parameter (Adam's mu, nu, ...) share its sharding; the rest replicate."""
    replicated = sharding.replicated(mesh)

    def place(path, leaf):
        name = "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))
        if name in param_shapes and tuple(param_shapes[name].shape) == tuple(leaf.shape):
            return param_shardings[name]
        return replicated

    return jax.tree_util.tree_map_with_path(place, opt_shapes)


# --------------------------------------------------------------------------------------------------------------------
# Data.


class _TrainData:
    """This process's share of the global batch: `data_shards / process_count` pipelines, concatenated.

    Shard s of n is `datasets.pipeline.make_train_iterator(..., process_index=s, process_count=n)`, so the batches
    depend on `data_shards` only, not on how many processes read them.
    """

    def __init__(self, setup: _Setup, position: int):
        from datasets import pipeline

        cfg = setup.cfg
        self.describe = setup.source.describe() if hasattr(setup.source, "describe") else cfg.input.data
        per_process = setup.data_shards // jax.process_count()
        first = jax.process_index() * per_process
        try:
            self.iterators = [
                pipeline.make_train_iterator(
                    setup.source,
                    cfg.input.pp,
                    batch_size=cfg.input.batch_size // setup.data_shards,
                    shuffle_buffer_size=cfg.input.shuffle_buffer_size,
                    seed=cfg.seed,
                    start_example=position,
                    process_index=shard,
                    process_count=setup.data_shards,
                    prefetch=cfg.input.prefetch,
                    tokenizer=setup.tokenizer_path,
                )
                for shard in range(first, first + per_process)
            ]
        except (ValueError, KeyError, TypeError) as e:  # pp strings are parsed here
            raise ConfigError(f"config.input.pp: {_one_line(e)}") from None

    def first_batch(self) -> dict[str, np.ndarray]:
        """The next batch, with pipeline and pp failures reported as a ConfigError."""
        try:
            batch = next(self)
            step_lib.check_batch(batch)
        except Exception as e:  # pylint: disable=broad-except  (tf.data errors of every kind)
            raise ConfigError(f"config.input (data {self.describe}, pp): {_one_line(e)}") from None
        return batch

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(it) for it in self.iterators]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @property
    def position(self) -> int:
        """Examples consumed per shard (the same for every shard)."""
        return self.iterators[0].position


# --------------------------------------------------------------------------------------------------------------------
# The run.


def _device_batches(
    data: _TrainData, first_batch: dict[str, np.ndarray], mesh, depth: int
) -> prefetch.DevicePrefetcher:
    """`(global device batch, data position after it)` pairs, prepared `depth` steps ahead in a background thread.

    The first batch was read (and checked) before compiling; the position goes with each batch because the
    pipeline runs ahead of the step that a checkpoint records.
    """
    first = [(first_batch, data.position)]

    def produce():
        batch, position = first.pop() if first else (next(data), data.position)
        return sharding.put_batch(batch, mesh), position

    return prefetch.DevicePrefetcher(produce, depth)


class _StopFlag:
    """Set by SIGTERM (installed only when running in the main thread)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.requested = True
        log.warning("Signal %d received: finishing the current step, then saving a checkpoint.", signum)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(config_lib.to_dict(cfg), default=str))


def _export(params, cfg, workdir: str) -> str | None:
    if not cfg.export_npz:
        return None
    path = paths.join(workdir, "params.npz") if cfg.export_npz is True else str(cfg.export_npz)
    host = {name: _to_host(x) for name, x in tree.flatten(params).items()}  # collective when multi-process
    if jax.process_index() == 0:  # local or gs:// (written to a temporary file, then renamed / uploaded once)
        checkpoints.save_npz(path, tree.unflatten(host), dtype=cfg.export_dtype)
        log.info("Exported the final params to %s", path)
    return path


def train(
    config: Any, workdir: str, *, devices: Sequence[Any] | None = None, compiler_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the run `config` in `workdir`. All processes call it.

    Args:
      config: a run config (ConfigDict or dict; see trainers.config).
      workdir: the run's folder (local or a tf.io.gfile URL such as gs://...).
      devices: the devices of the mesh (default: all of `jax.devices()`).
      compiler_options: XLA options for the run's jitted functions (e.g. `{"xla_backend_optimization_level": 0}`
        compiles several times faster on CPU, for tests and smoke runs).

    Returns:
      dict(step=the last completed step, total_steps=..., start_step=the step resumed from (0: fresh),
      records=[the metrics.jsonl records written by this call], preempted=True when stopped by SIGTERM,
      checkpoint_step=the latest checkpoint's step, export=path of the exported .npz or None).

    Raises:
      ConfigError: the config cannot run (raised before anything compiles).
      TrainingDiverged: NaN/Inf loss or gradient norm (the last good checkpoint is kept).
    """
    cfg = config_lib.resolve(config)
    paths.makedirs(workdir)
    setup = _Setup(cfg, workdir, devices)
    setup.compiler_options = compiler_options
    is_main = jax.process_index() == 0
    if is_main:
        logging_utils.write_json(os.path.join(workdir, "config.json"), _jsonable(cfg))
    writer = logging_utils.MetricsWriter(workdir, enabled=is_main)
    try:
        with _StopFlag() as stop:
            return _run(setup, workdir, writer, stop)
    finally:
        writer.close()


class _State:
    """The training state of a run: params, optimizer and how to compile/checkpoint them."""

    def __init__(self, setup: _Setup):
        cfg, mesh = setup.cfg, setup.mesh
        self.flat_shapes = tree.flatten(setup.shapes)
        self.param_shardings = sharding.to_shardings(setup.specs, mesh)
        self.flat_shardings = tree.flatten(self.param_shardings)
        frozen = set(optimizer.frozen_names(list(self.flat_shapes), cfg.freeze))
        self.trainable = [n for n in self.flat_shapes if n not in frozen]
        if not self.trainable:
            raise ConfigError("config.freeze freezes every parameter; nothing to train.")
        train_shapes = tree.unflatten({n: self.flat_shapes[n] for n in self.trainable})
        try:
            self.tx, self.lr_fn = optimizer.make_optimizer(cfg, train_shapes, setup.total_steps)
            self.opt_shapes = jax.eval_shape(self.tx.init, train_shapes)
        except (optimizer.OptimizerConfigError, TypeError, ValueError) as e:
            raise ConfigError(_one_line(e)) from None
        self.opt_shardings = _opt_state_shardings(self.opt_shapes, self.flat_shardings, self.flat_shapes, mesh)
        # Everything the compiled init/step programs depend on.
        self.program_key = [
            setup.model_config,
            self.trainable,
            _shardings_key(self.flat_shardings),
            _mesh_key(mesh),
            setup.total_steps,
            {k: config_lib.to_dict(cfg[k]) for k in _STEP_KEYS},
            setup.compiler_options,
        ]

    def initial(self, setup: _Setup, rng: jax.Array) -> tuple[Any, Any]:
        """(params, opt_state) at step 0: from model_init or random, placed on the mesh."""
        if setup.init_path:
            params = _loaded_params(setup, self.flat_shardings, rng)
        else:
            params = tree.unflatten(
                _random_params(
                    setup.model_config, list(self.flat_shapes), self.flat_shardings, rng, setup.compiler_options
                )
            )
        flat = tree.flatten(params)
        opt_init = _cached_jit(
            ["opt_init", self.program_key],
            lambda: jax.jit(self.tx.init, out_shardings=self.opt_shardings, compiler_options=setup.compiler_options),
        )
        return params, opt_init(tree.unflatten({n: flat[n] for n in self.trainable}))

    def restore(self, ckpt: checkpointing.Checkpointer, step: int, shapes: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(params, opt_state, meta) of checkpoint `step`, placed on the mesh."""
        return ckpt.restore(
            step,
            checkpointing.abstract_like(shapes, self.param_shardings),
            checkpointing.abstract_like(self.opt_shapes, self.opt_shardings),
        )

    def train_step(self, setup: _Setup) -> Callable:
        """The jitted `(params, opt_state, batch, count, rng_data) -> (params, opt_state, metrics)` (donates state)."""
        cfg, mesh = setup.cfg, setup.mesh
        replicated = sharding.replicated(mesh)
        micro_sharding = NamedSharding(mesh, PartitionSpec(None, *sharding.batch_spec(mesh)))

        def build():
            step_fn = step_lib.make_train_step(
                setup.model,
                self.tx,
                trainable=self.trainable,
                lr_fn=self.lr_fn,
                accum_steps=cfg.accum_steps,
                label_smoothing=cfg.label_smoothing,
                loss_norm=cfg.loss_norm,
                constrain_micro=lambda m: jax.lax.with_sharding_constraint(m, micro_sharding),
            )

            def wrapped(params, opt_state, batch, count, rng_data):
                # Traced with the mesh as context: the model keeps its activations split over the batch axes
                # (`paligemma.layers.constrain_batch`) instead of letting XLA split the weights' dims.
                with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
                    return step_fn(params, opt_state, batch, count, jax.random.wrap_key_data(rng_data))

            return jax.jit(
                wrapped,
                donate_argnums=(0, 1),
                compiler_options=setup.compiler_options,
                in_shardings=(
                    self.param_shardings,
                    self.opt_shardings,
                    sharding.batch_sharding(mesh),
                    replicated,
                    replicated,
                ),
                out_shardings=(self.param_shardings, self.opt_shardings, replicated),
            )

        return _cached_jit(["step", self.program_key], build)


def _resume_position(meta: dict[str, Any], setup: _Setup) -> int:
    position = int(meta["data_position"])
    saved_shards = int(meta.get("data_shards", setup.data_shards))
    if saved_shards != setup.data_shards:
        position = position * saved_shards // setup.data_shards
        log.warning(
            "Resuming with %d data shards instead of %d: the data order differs from the interrupted run "
            "(pin config.input.data_shards to keep it).",
            setup.data_shards,
            saved_shards,
        )
    if int(meta.get("total_steps", setup.total_steps)) != setup.total_steps:
        log.warning(
            "The checkpoint was written by a run of %s steps; this one has %d (the schedule changes).",
            meta["total_steps"],
            setup.total_steps,
        )
    return position


class _Logger:
    """Checks each step's metrics (NaN/Inf stops the run) and logs them every log_training_steps."""

    def __init__(
        self,
        setup: _Setup,
        writer: logging_utils.MetricsWriter,
        start: int,
        ckpt_dir: str,
        batches: prefetch.DevicePrefetcher | None,
    ):
        self.setup, self.writer, self.ckpt_dir, self.batches = setup, writer, ckpt_dir, batches
        self.total = setup.total_steps
        self.throughput = logging_utils.Throughput(start, self.total, setup.cfg.input.batch_size)
        self.last_saved = start
        self.records: list[dict[str, Any]] = []
        self.host_syncs = 0  # cross-host exchanges of the step loop (preemption checks)
        self._wait = (time.perf_counter(), 0.0)  # (time, batches.wait_seconds) at the previous log point

    def check(self, step: int, metrics: Any) -> dict[str, float]:
        """Fetches the step's metrics; raises TrainingDiverged; returns the record to log (empty: none due)."""
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if values.pop("finite") != 1.0:
            raise TrainingDiverged(
                f"non-finite training loss ({values['training_loss']}) or gradient norm ({values['grad_norm']}) at "
                f"step {step}; stopping without saving. The last good checkpoint is step {self.last_saved or 'none'} "
                f"in {self.ckpt_dir}. Check the data of that step, lower config.lr or set config.grad_clip_norm."
            )
        if step % self.setup.cfg.log_training_steps and step != self.total:
            return {}
        examples_per_sec, eta = self.throughput.update(step)
        self.writer.print(logging_utils.progress_line(step, self.total, values, examples_per_sec, eta))
        if examples_per_sec is not None:
            values["examples_per_sec"] = examples_per_sec
        if self.batches is not None:  # the share of the interval the step loop spent waiting for input
            now, waited = time.perf_counter(), self.batches.wait_seconds
            values["input_wait_fraction"] = (waited - self._wait[1]) / max(now - self._wait[0], 1e-9)
            self._wait = (now, waited)
        return values

    def evaluate(self, step: int, params: Any, names: Sequence[str], record: dict[str, float]) -> None:
        """Runs the evaluators `names`; adds `{name}/{metric}` to `record`."""
        for name in names:
            with jax.sharding.use_abstract_mesh(self.setup.mesh.abstract_mesh):  # batch-split activations
                metrics = self.setup.evaluators[name].run(params, step=step)
            record.update({f"{name}/{k}": v for k, v in metrics.items()})
            self.writer.print(
                f"step {step}/{self.total} | eval {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )

    def emit(self, step: int, record: dict[str, float]) -> None:
        if record:
            self.writer.write(step, record)
            self.records.append({"step": step, **record})


def _run(setup: _Setup, workdir: str, writer: logging_utils.MetricsWriter, stop: _StopFlag) -> dict[str, Any]:
    cfg, mesh, total = setup.cfg, setup.mesh, setup.total_steps
    state = _State(setup)
    ckpt = checkpointing.Checkpointer(workdir, keep=cfg.keep_ckpts)
    init_rng, train_rng = jax.random.split(jax.random.key(cfg.seed))
    rng_data = np.asarray(jax.random.key_data(train_rng))
    start = ckpt.latest_step() or 0
    position = _resume_position(ckpt.restore_meta(start), setup) if start else 0
    data = _TrainData(setup, position)
    first_batch = data.first_batch() if start < total else None  # checks the pipeline before compiling
    if start:
        params, opt_state, _ = state.restore(ckpt, start, setup.shapes)
        writer.truncate_after(start)
        writer.print(f"Resuming from step {start}/{total} ({ckpt.directory}, data position {position}).")
    else:
        params, opt_state = state.initial(setup, init_rng)
    n_train = sum(int(np.prod(state.flat_shapes[n].shape)) for n in state.trainable)
    writer.print(
        f"Training {model_lib.count_params(setup.shapes):,} params ({n_train:,} trainable) on mesh "
        f"{dict(mesh.shape)} ({jax.process_count()} processes), batch {cfg.input.batch_size}, {total} steps; "
        f"workdir {workdir}"
    )
    log.info("Parameter sharding:\n%s", "\n".join(sharding.describe(setup.specs, setup.shapes)))
    batches = _device_batches(data, first_batch, mesh, cfg.input.device_prefetch) if start < total else None
    train_step = state.train_step(setup)
    logger = _Logger(setup, writer, start, ckpt.directory, batches)

    done, pending, preempted, export = start, None, False, None
    try:
        while done < total:
            batch, position = next(batches)
            params, opt_state, metrics = train_step(params, opt_state, batch, np.int32(done), rng_data)
            done += 1
            if pending is not None:  # checked one step late, so that the host does not stall the device
                logger.emit(pending[0], logger.check(*pending))
            pending = (done, metrics)
            # Processes agree on a SIGTERM every preemption_check_steps steps (a cross-host exchange); alone, each step.
            if done < total and (jax.process_count() == 1 or done % cfg.preemption_check_steps == 0):
                preempted = _any_process(stop.requested)
                logger.host_syncs += jax.process_count() > 1
            due_evals = [name for name, ev in setup.evaluators.items() if ev.should_run(done, total)]
            save = done % cfg.ckpt_steps == 0 or done == total or preempted
            if save or due_evals:
                record = logger.check(*pending)
                pending = None
                logger.evaluate(done, params, due_evals, record)
                logger.emit(done, record)
            if save:
                ckpt.save(
                    done,
                    params,
                    opt_state,
                    dict(
                        step=done,
                        data_position=position,
                        data_shards=setup.data_shards,
                        rng=rng_data.tolist(),
                        total_steps=total,
                    ),
                )
                logger.last_saved = done
            if preempted:
                ckpt.wait()
                writer.print(
                    f"Stopped by SIGTERM after step {done}/{total}; checkpoint saved. Rerun the same command to resume."
                )
                break
        if done == total:
            export = _export(params, cfg, workdir)
    finally:
        if batches is not None:
            batches.close()
        ckpt.close()
    if batches is not None and done > start:
        writer.print(
            f"Input: the step loop waited {batches.wait_seconds:.1f}s for batches in {done - start} steps; "
            f"{logger.host_syncs} cross-host preemption checks."
        )
    return dict(
        step=done,
        total_steps=total,
        start_step=start,
        records=logger.records,
        preempted=preempted,
        checkpoint_step=logger.last_saved,
        export=export,
        input_wait_seconds=batches and batches.wait_seconds,
        host_syncs=logger.host_syncs,
    )


# --------------------------------------------------------------------------------------------------------------------
# CLI.


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config", None, "Run config file (get_config(arg)); path.py:arg passes arg.", lock_config=False
    )
    flags.DEFINE_string("workdir", None, "Folder of the run (local or gs://...): checkpoints, logs, metrics.")
    flags.DEFINE_enum(
        "multihost",
        "auto",
        ["auto", "on", "off"],
        "jax.distributed.initialize(): auto = on Cloud TPU VMs or with the flags below.",
    )
    flags.DEFINE_string(
        "coordinator_address",
        os.environ.get("JAX_COORDINATOR_ADDRESS"),
        "host:port of process 0 (multi-process runs set up by hand).",
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
    flags.DEFINE_string(
        "dry_run",
        None,
        "Compile the run for a TPU topology (e.g. v5e:2x4 or v5e-8) on this host and "
        "print its per-chip memory, FLOPs and estimated step time; trains nothing (needs libtpu).",
    )
    flags.DEFINE_string("dry_run_json", None, "With --dry_run: also write the numbers to this JSON file.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: Sequence[str]) -> int:
    """CLI entry: returns the exit code (0 done, 1 diverged, 2 bad config, 143 stopped by SIGTERM)."""
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        print(f"Unexpected arguments: {argv[1:]}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    initialize_distributed(FLAGS.multihost, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.basicConfig(
        level=logging.INFO if jax.process_index() == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        if FLAGS.dry_run:
            from ml_collections import config_flags

            from trainers import dry_run

            return dry_run.run(
                FLAGS.config,
                FLAGS.dry_run,
                json_path=FLAGS.dry_run_json,
                config_name=config_flags.get_config_filename(FLAGS["config"]),
            )
        result = train(FLAGS.config, FLAGS.workdir)
    except ConfigError as e:
        problems = str(e).split("\n- ") if str(e).startswith("- ") else [str(e)]
        print(
            "Config error:" + "".join(f"\n  - {' '.join(p.removeprefix('- ').split())}" for p in problems)
            if len(problems) > 1
            else f"Config error: {_one_line(e)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_CONFIG_ERROR
    except TrainingDiverged as e:
        print(f"Training stopped: {_one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
    return EXIT_PREEMPTED if result["preempted"] else 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
