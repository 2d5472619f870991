"""Training checkpoints with orbax: async, atomic, keep-N, multi-process; and reading the latest params of a workdir.

Layout: `{workdir}/checkpoints/{step}/` with three items: `params` (the full parameter tree, sharded arrays),
`opt_state` (the optimizer state of the trainable parameters) and `meta` (JSON: step, data position, data shards,
rng seed data, ...). orbax writes each step into a temporary folder and renames it when every process has finished,
so a run killed mid-save leaves the previous checkpoint as the latest one (the temporary folder is removed on the
next start). All processes must call `save`/`restore` together.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from paligemma import paths  # noqa: F401  (sets orbax's etils.epath to the same gs:// client as the path layer)

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    """Where `Checkpointer(workdir)` keeps its steps (local paths made absolute: orbax refuses relative ones)."""
    return os.path.join(workdir if "://" in workdir else os.path.abspath(workdir), CHECKPOINT_DIR)


class Checkpointer:
    """orbax `CheckpointManager` for the trainer's (params, opt_state, meta) triples."""

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
        )
        self.directory = checkpoint_dir(workdir)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("params", "opt_state", "meta")
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, params: Any, opt_state: Any, meta: dict[str, Any]) -> None:
        """Starts an async save of `step` (returns once the arrays are copied off the devices' live buffers)."""
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
        )
        self._manager.save(step, args=args, force=True)

    def restore(self, step: int, abstract_params: Any, abstract_opt_state: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(params, opt_state, meta) of `step`, placed like the `jax.ShapeDtypeStruct` (with sharding) targets."""
        args = ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            opt_state=ocp.args.StandardRestore(abstract_opt_state),
            meta=ocp.args.JsonRestore(),
        )
        out = self._manager.restore(step, args=args)
        return out["params"], out["opt_state"], dict(out["meta"])

    def restore_meta(self, step: int) -> dict[str, Any]:
        """Only the JSON metadata of `step`."""
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def wait(self) -> None:
        """Blocks until the pending async save is committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """Tree of `jax.ShapeDtypeStruct` (shape, dtype from `tree`, sharding from `shardings`) for restoring."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def latest_params(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """`(step, params)` of the latest (or the given) checkpoint of a training workdir, as host numpy arrays.

    Works on any number of devices/processes (the arrays are read whole on every process). Raises
    FileNotFoundError when the workdir has no complete checkpoint.
    """
    directory = checkpoint_dir(workdir)
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        steps = sorted(manager.all_steps())
    finally:
        manager.close()
    if not steps:
        raise FileNotFoundError(
            f"{directory}: no complete checkpoint (was the training run started with this "
            f"workdir, and did it reach its first ckpt_steps?)."
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{directory}: no checkpoint of step {step}; available: {steps}.")
    path = os.path.join(directory, str(step), "params")
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path).item_metadata
    metadata = getattr(metadata, "tree", metadata)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
    params = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    return int(step), params
