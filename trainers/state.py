"""The training state of a run: how params and optimizer state are placed, initialised, restored and stepped.

`State(setup).train_step()` is the jitted train step (`trainers.step` with the run's optimizer, explicit in/out
shardings, donated state) that the loop runs and the dry run compiles for a TPU topology. No TensorFlow on this
module's import path.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from paligemma import lora as lora_lib
from paligemma import model as model_lib
from paligemma import sharding, tree
from paligemma.checkpoints import training
from paligemma.tree import plain
from trainers import optimizer
from trainers import step as step_lib
from trainers.config import ConfigError
from trainers.distributed import any_process
from trainers.errors import CheckpointFailed, one_line
from trainers.params import loaded_params, random_params
from trainers.setup import ModelSetup, Setup

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
    "loss_chunk",
    "loss_positions",
    "accum_steps",
)


def _opt_state_shardings(opt_shapes: Any, param_shardings: dict[str, Any], param_shapes: dict[str, Any], mesh) -> Any:
    """Optimizer-state leaves shaped like a parameter (Adam's mu, nu, ...) share its sharding; the rest replicate."""
    replicated = sharding.replicated(mesh)

    def place(path, leaf):
        name = "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))
        if name in param_shapes and tuple(param_shapes[name].shape) == tuple(leaf.shape):
            return param_shardings[name]
        return replicated

    return jax.tree_util.tree_map_with_path(place, opt_shapes)


@dataclasses.dataclass(frozen=True)
class _Programs:
    """Everything the compiled optimizer-init and train-step programs of a run depend on.

    Hashed and compared by the fields above `cfg` only: they are the key of the program caches below, so a later run
    in this process (tests, notebooks) with equal ones reuses the compiled programs. The fields from `cfg` on are
    built from them (the optimizer, the shardings trees) and ride along.
    """

    model: model_lib.Model
    mesh: Mesh
    param_shardings_flat: tuple[tuple[str, NamedSharding], ...]
    trainable: tuple[str, ...]
    total_steps: int
    step_config: str  # the `_STEP_KEYS` of the config, as sorted JSON
    compiler_options: Any  # None or a FrozenDict
    cfg: Any = dataclasses.field(compare=False)
    tx: Any = dataclasses.field(compare=False)
    lr_fn: Callable = dataclasses.field(compare=False)
    param_shardings: Any = dataclasses.field(compare=False)
    opt_shardings: Any = dataclasses.field(compare=False)


@functools.lru_cache(maxsize=16)
def _opt_init_program(programs: _Programs) -> Callable:
    return jax.jit(programs.tx.init, out_shardings=programs.opt_shardings, compiler_options=programs.compiler_options)


def loss_chunk(configured: int | None, mesh) -> int | None:
    """`config.loss_chunk`, or when None: 4 positions at a time on accelerators, the whole text at once on CPU."""
    if configured is not None:
        return configured
    return None if mesh.devices.flat[0].platform == "cpu" else 4


@functools.lru_cache(maxsize=16)
def _train_step_program(programs: _Programs) -> Callable:
    cfg, mesh = programs.cfg, programs.mesh
    replicated = sharding.replicated(mesh)
    micro_sharding = NamedSharding(mesh, PartitionSpec(None, *sharding.batch_spec(mesh)))
    step_fn = step_lib.make_train_step(
        programs.model,
        programs.tx,
        trainable=programs.trainable,
        lr_fn=programs.lr_fn,
        accum_steps=cfg.accum_steps,
        label_smoothing=cfg.label_smoothing,
        loss_norm=cfg.loss_norm,
        loss_chunk=loss_chunk(cfg.loss_chunk, mesh),
        loss_positions=cfg.loss_positions,
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
        compiler_options=programs.compiler_options,
        in_shardings=(
            programs.param_shardings,
            programs.opt_shardings,
            sharding.batch_sharding(mesh),
            replicated,
            replicated,
        ),
        out_shardings=(programs.param_shardings, programs.opt_shardings, replicated),
    )


class State:
    """The training state of a run: params, optimizer and how to compile/checkpoint them."""

    def __init__(self, setup: ModelSetup):
        cfg, mesh = setup.cfg, setup.mesh
        self.flat_shapes = tree.flatten(setup.shapes)
        # One sharding per parameter (how a float array is placed); `param_shardings` matches the params' pytree: a
        # QLoRA base's quantized weight (a node of qvalue + scale) gets its sharding for each of its leaves.
        self.flat_shardings = tree.flatten(sharding.to_shardings(setup.specs, mesh))
        self.param_shardings = tree.unflatten(
            {
                n: jax.tree.map(lambda _, s=s: s, self.flat_shapes[n])
                if lora_lib.is_quantized(self.flat_shapes[n])
                else s
                for n, s in self.flat_shardings.items()
            }
        )
        frozen = set(optimizer.frozen_names(list(self.flat_shapes), cfg.freeze))
        self.lora = setup.lora
        if self.lora:  # LoRA: only the adapters train, and only they are checkpointed
            frozen |= {n for n in self.flat_shapes if not lora_lib.is_adapter(n)}
        self.trainable = [n for n in self.flat_shapes if n not in frozen]
        if not self.trainable:
            raise ConfigError("config.freeze freezes every parameter; nothing to train.")
        # What a checkpoint holds: every parameter, or a LoRA run's adapters (the base is read from its source).
        self.saved = [n for n in self.flat_shapes if lora_lib.is_adapter(n)] if self.lora else list(self.flat_shapes)
        train_shapes = tree.unflatten({n: self.flat_shapes[n] for n in self.trainable})
        try:
            self.tx, self.lr_fn = optimizer.make_optimizer(cfg, train_shapes, setup.total_steps)
            self.opt_shapes = jax.eval_shape(self.tx.init, train_shapes)
        except (optimizer.OptimizerConfigError, TypeError, ValueError) as e:
            raise ConfigError(one_line(e)) from None
        self.opt_shardings = _opt_state_shardings(self.opt_shapes, self.flat_shardings, self.flat_shapes, mesh)
        self.model_config = setup.model_config
        self.programs = _Programs(
            model=setup.model,
            mesh=mesh,
            param_shardings_flat=tuple(self.flat_shardings.items()),
            trainable=tuple(self.trainable),
            total_steps=setup.total_steps,
            step_config=json.dumps({k: plain(cfg[k]) for k in _STEP_KEYS}, sort_keys=True, default=str),
            compiler_options=setup.compiler_options,
            cfg=cfg,
            tx=self.tx,
            lr_fn=self.lr_fn,
            param_shardings=self.param_shardings,
            opt_shardings=self.opt_shardings,
        )

    def initial(self, setup: Setup, rng: jax.Array) -> tuple[Any, Any]:
        """(params, opt_state) at step 0: from model_init or random, placed on the mesh.

        A LoRA run's adapters start as `paligemma.lora.init_adapters` makes them (the update is zero).
        """
        # (A run without LoRA draws its random parameters from `rng` itself, as before LoRA existed.)
        base_rng, adapter_rng = jax.random.split(rng) if self.lora else (rng, None)
        if setup.init_path:
            params = tree.flatten(loaded_params(setup, self.flat_shardings, base_rng))
        else:
            names = [n for n in self.flat_shapes if not (self.lora and lora_lib.is_adapter(n))]
            # A QLoRA run's random base is drawn in float (by the unquantized model), then quantized like a loaded one.
            model = setup.model if not (self.lora and self.lora.quantize) else model_lib.Model(**setup.model_config)
            params = random_params(model, names, self.flat_shardings, base_rng, setup.compiler_options)
        if self.lora:
            adapters = lora_lib.init_adapters(setup.model_config, self.lora, adapter_rng)
            params.update({n: jax.device_put(a, self.flat_shardings[n]) for n, a in adapters.items()})
            params = tree.flatten(lora_lib.quantize_base(tree.unflatten(params), setup.model_config, self.lora))
        opt_init = _opt_init_program(self.programs)
        return tree.unflatten(params), opt_init(tree.unflatten({n: params[n] for n in self.trainable}))

    def to_save(self, params: Any) -> Any:
        """The part of `params` a checkpoint holds (all of it, or a LoRA run's adapters)."""
        if not self.lora:
            return params
        flat = tree.flatten(params)
        return tree.unflatten({n: flat[n] for n in self.saved})

    def with_base(self, saved: Any, setup: Setup, base_path: str | None, rng: jax.Array) -> Any:
        """A restored checkpoint's params made whole: a LoRA run's adapters plus its base read from `base_path`."""
        if not self.lora:
            return saved
        base = tree.flatten(loaded_params(setup, self.flat_shardings, rng, path=base_path))
        return lora_lib.quantize_base(tree.unflatten({**base, **tree.flatten(saved)}), setup.model_config, self.lora)

    def plain_params(self, params: Any) -> Any:
        """`params` for the plain model: a LoRA run's adapters merged into their weights (`paligemma.lora.merge`)."""
        return lora_lib.merge(params, self.model_config, self.lora) if self.lora else params

    def restore(self, ckpt: training.Checkpointer, step: int, shapes: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(params, opt_state, meta) of checkpoint `step`, placed on the mesh (a LoRA run's: adapters only)."""
        return ckpt.restore(
            step,
            training.abstract_like(self.to_save(shapes), self.to_save(self.param_shardings)),
            training.abstract_like(self.opt_shapes, self.opt_shardings),
        )

    def resume(
        self, ckpt: training.Checkpointer, shapes: Any, report: Callable[[str], None]
    ) -> tuple[int, Any, Any, dict[str, Any]] | None:
        """(step, params, opt_state, meta) of the newest checkpoint that restores; None when there is none.

        A checkpoint that fails to restore (a missing or truncated file, unreadable metadata) is skipped for the next
        older one; once one restores, the skipped ones are moved aside (`Checkpointer.set_aside`) and `report` gets
        one line for each: its step, why, and where it went. All processes call this together and agree on every
        checkpoint (one that fails on any process is skipped by all).

        Raises:
          CheckpointFailed: there are checkpoints but none restores (nothing is moved: a config that no longer
            matches them fails the same way, and must not cost the run its checkpoints).
        """
        failures: list[tuple[int, str]] = []
        for step in reversed(ckpt.all_steps()):
            try:
                restored, error = self.restore(ckpt, step, shapes), None
            except Exception as e:  # any damage; judged below, on every process alike
                restored, error = None, e
            if not any_process(error is not None):
                for bad, reason in failures:
                    where = ckpt.set_aside(bad)
                    report(f"Skipped the damaged checkpoint of step {bad} ({reason}); moved it to {where}.")
                return (step, *restored)
            failures.append((step, training.damage_reason(error) if error else "it failed on another process"))
        if failures:
            listed = "; ".join(f"step {step}: {reason}" for step, reason in failures)
            raise CheckpointFailed(
                f"no checkpoint in {ckpt.directory} can be restored ({listed}). If the run config changed since they "
                f"were written, restore it; to start over, use another workdir."
            )
        return None

    def train_step(self) -> Callable:
        """The jitted `(params, opt_state, batch, count, rng_data) -> (params, opt_state, metrics)` (donates state)."""
        return _train_step_program(self.programs)
