"""A training workdir's checkpoints (orbax), and `load_any`: the params of a checkpoint path or a training workdir.

Layout: `{workdir}/config.json` (the run config) and `{workdir}/checkpoints/{step}/` with three items: `params` (the
full parameter tree, sharded arrays), `opt_state` (the optimizer state of the trainable parameters) and `meta` (JSON:
step, data position, data shards, rng seed data, ...). A LoRA run (`config.lora`) saves only its adapters as
`params` and names its frozen base in `{workdir}/lora_base.json` (`LORA_BASE_FILE`). orbax writes each step into a
temporary folder and renames it when every process has finished, so a run killed mid-save leaves the previous
checkpoint as the latest one (the temporary folder is removed on the next start). All processes must call
`save`/`restore` together.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from paligemma import lora as lora_lib
from paligemma import model as model_lib
from paligemma import paths  # also sets orbax's etils.epath to the same gs:// client as the path layer
from paligemma.checkpoints.common import CheckpointError, as_dtype, is_float, read_json, shape_of
from paligemma.checkpoints.formats import (  # is_checkpoint_path, step_folder: also this module's API
    CHECKPOINT_DIR,
    is_checkpoint_path,
    load_checkpoint,
    step_folder,
)
from paligemma.checkpoints.infer import (
    checkpoint_config,
    compare_shapes,
    copy_config,
    expected_shapes,
    mismatch_error,
    resample,
    with_image_size,
)
from paligemma.tree import flatten, unflatten

RUN_CONFIG_FILE = "config.json"
LORA_BASE_FILE = "lora_base.json"  # a LoRA run's pointer to its base checkpoint: {"path": ...}

log = logging.getLogger(__name__)


def checkpoint_dir(workdir: str) -> str:
    """Where `Checkpointer(workdir)` keeps its steps (local paths made absolute: orbax refuses relative ones)."""
    return os.path.join(workdir if "://" in workdir else os.path.abspath(workdir), CHECKPOINT_DIR)


class CheckpointSaveError(RuntimeError):
    """Saving a checkpoint failed (full disk, no permission, storage error, ...).

    Attributes:
      step: the step whose save failed.
      last_good: the newest committed checkpoint's step (None: none).
    """

    def __init__(self, step: int, last_good: int | None, directory: str, cause: BaseException):
        self.step, self.last_good, self.cause = step, last_good, cause
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        super().__init__(
            f"saving the checkpoint of step {step} in {directory} failed ({reason}); the last good checkpoint is "
            f"step {last_good if last_good is not None else 'none'}."
        )


class _OrbaxSaveErrorFilter(logging.Filter):
    """Drops orbax's traceback logs of a failed async save: `Checkpointer` raises the error itself, on one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        message = str(record.msg)
        return not any(
            k in message for k in ("background save thread", "Save Finalize thread", "[wait_until_finished]")
        )


_ORBAX_SAVE_ERROR_FILTER = _OrbaxSaveErrorFilter()


class _DamagedReadFilter(logging.Filter):
    """Drops asyncio's "exception was never retrieved" dumps of reads from the checkpoint folders in `directories`.

    A restore that fails on a damaged checkpoint leaves orbax's other pending reads to fail unobserved; asyncio logs
    each (with a multi-kilobyte tensorstore spec) when it is garbage-collected. The failure itself is reported once,
    on one line, by the caller.
    """

    def __init__(self):
        super().__init__()
        self.directories: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "exception was never retrieved" not in text:
            return True
        text += str(record.exc_info[1]) if record.exc_info else ""
        return not any(d in text for d in self.directories)


_DAMAGED_READ_FILTER = _DamagedReadFilter()
logging.getLogger("asyncio").addFilter(_DAMAGED_READ_FILTER)


class _ReadNotesFilter(logging.Filter):
    """Drops orbax's notes on reading a finished run's checkpoints read-only (`quiet_reads`), all expected there.

    Its INFO lines (shown by absl's `app.run` programs), and three warnings: the read-only manager's adjusted options
    (two) and the missing per-item metadata file.
    """

    PREFIXES = ("CheckpointManagerOptions.read_only=True, setting ", "Given directory is read only=")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and f"{os.sep}orbax{os.sep}" in record.pathname:
            return False  # orbax's INFO/DEBUG narration (manager created, metadata read, ...); warnings still show
        text = record.getMessage()
        if text.startswith(self.PREFIXES):
            return False
        # The `params` item of a step: the manager writes _CHECKPOINT_METADATA per step, not per item.
        return not (text.startswith("Metadata file does not exist: ") and text.endswith("/_CHECKPOINT_METADATA"))


_READ_NOTES_FILTER = _ReadNotesFilter()


@contextlib.contextmanager
def quiet_reads():
    """Within: orbax's known-harmless notes on read-only reads are not logged; any other log or warning is.

    Those of `_ReadNotesFilter`, and the UserWarning "Sharding info not provided when restoring" (host numpy arrays
    have no sharding).
    """
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_READ_NOTES_FILTER)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sharding info not provided when restoring", category=UserWarning)
            yield
    finally:
        absl_logger.removeFilter(_READ_NOTES_FILTER)


class Checkpointer:
    """orbax `CheckpointManager` for the trainer's (params, opt_state, meta) triples.

    A step is *committed* once orbax has renamed its folder into place; only then is it listed, restored or
    reported as good (`committed`). A save that fails, synchronously or in orbax's background thread, raises
    `CheckpointSaveError` from the next `save`, `poll` or `wait`.
    """

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
        )
        self.directory = checkpoint_dir(workdir)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("params", "opt_state", "meta")
        )
        _DAMAGED_READ_FILTER.directories.add(self.directory)
        self.committed: int | None = self._manager.latest_step()  # the newest committed step
        self._pending: int | None = None  # the step of a save started but not yet known committed
        logging.getLogger("absl").addFilter(_ORBAX_SAVE_ERROR_FILTER)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, params: Any, opt_state: Any, meta: dict[str, Any]) -> None:
        """Starts an async save of `step` (returns once the arrays are copied off the devices' live buffers).

        Raises:
          CheckpointSaveError: this save, or the previous one, failed.
        """
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
        )
        self.wait()  # the previous save (orbax would wait for it too): its failure is reported as its own
        try:
            self._manager.save(step, args=args, force=True)
        except Exception as e:
            raise CheckpointSaveError(step, self.committed, self.directory, e) from e
        self._pending = step

    def poll(self) -> int | None:
        """The newest committed step, without blocking; raises CheckpointSaveError once a pending save has failed."""
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self.wait()
        return self.committed

    def wait(self) -> int | None:
        """Blocks until the pending save is committed; returns the newest committed step.

        Raises:
          CheckpointSaveError: the pending save failed (or its folder is not in place after orbax returned).
        """
        step, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
            if step is not None:
                self._manager.reload()  # what is on storage, not orbax's in-memory list
                if step not in self._manager.all_steps():
                    raise FileNotFoundError(f"the folder of step {step} is not in {self.directory} after the save")
        except Exception as e:
            if step is None:
                raise
            raise CheckpointSaveError(step, self.committed, self.directory, e) from e
        if step is not None:
            self.committed = step
        return self.committed

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

    def set_aside(self, step: int) -> str:
        """Moves the (damaged) checkpoint `step` out of the way to `{workdir}/checkpoints_damaged/{step}`.

        Kept for inspection, and no longer a step orbax lists, restores, counts in `keep` or collides with when the
        run saves that step again. Process 0 moves it; every process must call this together.

        Returns:
          Where it now is.
        """
        target = paths.join(self.directory + "_damaged", str(step))
        if jax.process_index() == 0:
            source = epath.Path(self.directory) / str(step)
            destination = epath.Path(target)
            if destination.exists():
                destination = epath.Path(f"{target}.{int(time.time())}")
                target = str(destination)
            destination.parent.mkdir(parents=True, exist_ok=True)
            source.rename(destination)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint_set_aside_{step}")
        self._manager.reload()
        self.committed = self._manager.latest_step()
        return target

    def close(self) -> None:
        """Waits for pending saves and releases the manager.

        Raises:
          CheckpointSaveError: the pending save failed.
        """
        try:
            self.wait()
        finally:
            self._manager.close()
            logging.getLogger("absl").removeFilter(_ORBAX_SAVE_ERROR_FILTER)


def abstract_like(tree: Any, shardings: Any) -> Any:
    """Tree of `jax.ShapeDtypeStruct` (shape, dtype from `tree`, sharding from `shardings`) for restoring."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def checkpoint_steps(workdir: str) -> list[int]:
    """Steps of the complete checkpoints of a training workdir, oldest first (empty when it has none)."""
    with quiet_reads():
        manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=ocp.CheckpointManagerOptions(read_only=True))
        try:
            return sorted(manager.all_steps())
        finally:
            manager.close()


def latest_params(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """`(step, params)` of the latest (or the given) checkpoint of a training workdir, as host numpy arrays.

    Works on any number of devices/processes (the arrays are read whole on every process). The params are the
    nested dict the trainer saved (`img/...`, `llm/...`), each array of its saved shape and dtype. Without `step`, a
    checkpoint that cannot be read (a damaged or missing part) is skipped for the next older one, with one warning
    line naming it and why.

    Raises:
      FileNotFoundError: the workdir has no complete checkpoint, or none of `step`, or none that can be read.
    """
    directory = checkpoint_dir(workdir)
    _DAMAGED_READ_FILTER.directories.add(directory)
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(
            f"{directory}: no complete checkpoint (was the training run started with this "
            f"workdir, and did it reach its first ckpt_steps?)."
        )
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(f"{directory}: no checkpoint of step {step}; available: {steps}.")
        try:
            return int(step), _read_params(directory, step)
        except Exception as e:  # any damage, as below; asked for by step, so no fallback
            raise FileNotFoundError(
                f"{directory}: the checkpoint of step {step} cannot be read ({damage_reason(e)}); pick another step of "
                f"{steps}, or none for the newest readable one."
            ) from e
    skipped = []
    for candidate in reversed(steps):
        try:
            return int(candidate), _read_params(directory, candidate)
        except Exception as e:  # any damage: a missing or truncated file, unreadable metadata, ...
            reason = damage_reason(e)
            skipped.append(f"step {candidate}: {reason}")
            log.warning("Skipping the damaged checkpoint %s/%d: %s", directory, candidate, reason)
    raise FileNotFoundError(f"{directory}: no checkpoint can be read ({'; '.join(skipped)}).")


def _read_params(directory: str, step: int) -> dict[str, Any]:
    path = os.path.join(directory, str(step), "params")
    with quiet_reads():
        checkpointer = ocp.PyTreeCheckpointer()
        metadata = checkpointer.metadata(path).item_metadata
        metadata = getattr(metadata, "tree", metadata)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
        return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))


def damage_reason(e: BaseException, limit: int = 300) -> str:
    """Why a checkpoint could not be read, on one line of at most `limit` characters."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------------------------
# Checkpoint path or training workdir.


def write_lora_base(workdir: str, base: str) -> None:
    """Records in `workdir` the checkpoint a LoRA run's adapters apply to (written once, at the run's start)."""
    text = json.dumps({"path": base}, indent=2).encode()
    paths.atomic_write(paths.join(workdir, LORA_BASE_FILE), lambda f: f.write(text))


def lora_base(workdir: str) -> str | None:
    """The base checkpoint a LoRA run's adapters apply to (`write_lora_base`); None when the workdir has none.

    Raises:
      CheckpointError: the pointer names a checkpoint that no longer exists.
    """
    pointer = paths.join(workdir, LORA_BASE_FILE)
    if not paths.isfile(pointer):
        return None
    base = str(read_json(pointer).get("path") or "")
    if not paths.exists(base):
        raise CheckpointError(
            f"{pointer}: the LoRA run's base checkpoint {base!r} does not exist any more; restore it there, or "
            f"edit {LORA_BASE_FILE} to where it is now."
        )
    return base


def _merged_lora_params(path: str, run_config: Mapping[str, Any], model_config, adapters: dict[str, Any]):
    """A LoRA workdir's plain params: its base checkpoint with the adapters merged in (`paligemma.lora.merge`)."""
    base = lora_base(path)
    if base is None:
        raise CheckpointError(
            f"{path}: the run config has `lora`, but {LORA_BASE_FILE} (the pointer to its base checkpoint) is "
            f"missing; the run did not start properly."
        )
    _, base_params, _, _ = load_any(base, model_config=model_config)
    cfg = lora_lib.LoraConfig.from_dict(run_config["lora"])
    params = unflatten({**flatten(base_params), **flatten(adapters)})
    params = lora_lib.quantize_base(params, model_config, cfg)  # QLoRA: the base as the run trained on it
    merged = lora_lib.merge(params, model_config, cfg)
    return jax.tree.map(np.asarray, merged)


def read_run_config(path: str | None) -> dict[str, Any] | None:
    """The run config a training workdir keeps in config.json, as plain dicts; None for anything else.

    Raises:
      CheckpointError: config.json is not a readable JSON object.
    """
    if not path or not paths.isdir(path) or is_checkpoint_path(path):
        return None
    config_file = paths.join(path, RUN_CONFIG_FILE)
    return read_json(config_file) if paths.isfile(config_file) else None


def model_config_from(run_config: Any) -> dict[str, dict[str, Any]] | None:
    """The model config `{"img": {...}, "llm": {...}}` a run config trains, as the trainer builds it.

    `run_config.model_name` (`paligemma.model.get_config`) with the fields of `run_config.model` (`{"img": {...},
    "llm": {...}}`) on top; either may be missing.

    Args:
      run_config: an ml_collections ConfigDict or a mapping (e.g. `read_run_config`'s).

    Returns:
      The model config, or None when the run config has neither `model_name` nor `model`.

    Raises:
      ValueError: an unknown model_name ("config.model_name: ...").
    """
    config = run_config.to_dict() if hasattr(run_config, "to_dict") else dict(run_config or {})  # tuples kept
    name, model = config.get("model_name"), config.get("model")
    if name is None and model is None:
        return None
    base: dict[str, dict[str, Any]] = {"img": {}, "llm": {}}
    if name is not None:
        try:
            base = model_lib.get_config(name)
        except ValueError as e:
            raise ValueError(f"config.model_name: {e}") from None
    for section, fields in (model or {}).items():
        base[section] = {**base.get(section, {}), **dict(fields)}
    return base


def load_any(
    path: str,
    *,
    model_config: Mapping[str, Any] | None = None,
    dtype: Any = None,
    step: int | None = None,
    image_size: int | None = None,
    sliding_window: int | str | None = "default",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int | None, str]:
    """The params of a checkpoint (`.npz`, PyTorch-hub folder, this project's folder) or of a training workdir.

    `paligemma.checkpoints.load` calls this for workdirs and step folders: the one code path that reads a run.

    Args:
      path: a checkpoint `load` reads, a training workdir (its config.json run config and orbax checkpoints) or one
        step folder of it (`{workdir}/checkpoints/{step}`).
      model_config: the model config to load into. Default: the checkpoint's (see `load`), or for a workdir the one
        its run config trains (`model_config_from`).
      dtype: "float32", "bfloat16" or "float16": every float array is cast. Default: as stored.
      step: a workdir's checkpoint step. Default: the latest readable one (or the step folder's). Only for training
        workdirs and step folders.
      image_size: resolution to run at; the position embedding `[1, N, D]` is resampled when it differs.
      sliding_window: see `load`; for a workdir, "default" and "hf" keep the run config's window, None/0 or an int
        sets it.

    Returns:
      `(model_config, params, step, source)`: `Model(**model_config)`, a nested dict of host numpy arrays
      (`img/...`, `llm/...`), the workdir's step (None for a checkpoint) and a description of what was read
      (`path`, or `"{path} (trainer step {step})"`).

    Raises:
      FileNotFoundError: `path` does not exist.
      CheckpointError: an unreadable checkpoint or workdir, or params that do not match the model config; the
        one-line message names the path and what to pass instead.
    """
    if not paths.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file, folder or training workdir.")
    if is_checkpoint_path(path):
        if step is not None:
            raise CheckpointError(f"{path}: a checkpoint holds one set of params; step= is for training workdirs.")
        config, params = load_checkpoint(path, model_config, as_dtype(dtype), image_size, sliding_window)
        return config, params, None, path
    folder = step_folder(path)
    if folder is not None:  # {workdir}/checkpoints/{step}: that step of the workdir
        if step is not None and step != folder[1]:
            raise CheckpointError(
                f"{path} is the folder of step {folder[1]}, but step={step} was asked for; pass the workdir "
                f"{folder[0]} with step={step}, or this folder without a step."
            )
        path, step = folder
    target_dtype = as_dtype(dtype)
    try:
        steps = checkpoint_steps(path)
    except (FileNotFoundError, ValueError, KeyError) as e:
        steps, reason = [], f"{checkpoint_dir(path)}: {e}"
    else:
        reason = f"no complete checkpoint under {checkpoint_dir(path)}"
    if not steps:
        raise CheckpointError(
            f"{path!r} is not a checkpoint (no *.safetensors, no checkpoint config.json), so it was read as a "
            f"training workdir, but no trainer params could be loaded from it ({reason}). Pass a .npz file or a "
            f"checkpoint folder."
        )
    run_config = read_run_config(path) or {}
    if model_config is None:
        try:
            model_config = model_config_from(run_config)
        except ValueError as e:
            raise CheckpointError(f"{paths.join(path, RUN_CONFIG_FILE)}: {e}") from None
    if model_config is None:
        raise CheckpointError(
            f"Reading the trainer's params from {path!r} needs the model config: set config.model_name or "
            f"config.model in the run config."
        )
    if sliding_window not in ("default", "hf"):
        model_config = copy_config(model_config)
        model_config["llm"]["sliding_window"] = sliding_window or None
    if step is not None and step not in steps:
        raise CheckpointError(f"{path}: no checkpoint of step {step}; available steps: {steps}.")
    try:
        step, params = latest_params(path, step)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"{path!r} was read as a training workdir, but no trainer params could be loaded from it ({e}). "
            f"Pass a .npz file or a checkpoint folder."
        ) from None
    source = f"{path} (trainer step {step})"
    if run_config.get("lora"):  # the checkpoint holds the adapters: merge them into the base they apply to
        params = _merged_lora_params(path, run_config, model_config, params)
        source = f"{source}, LoRA adapters merged into {lora_base(path)}"
    found = {k: shape_of(v) for k, v in flatten(params).items()}
    target = with_image_size(copy_config(model_config), image_size)
    saved = checkpoint_config(target, found.get("img/pos_embedding"))  # the resolution it trained at
    problems = compare_shapes(expected_shapes(saved), found)
    if problems:
        raise mismatch_error(source, problems)
    if target_dtype is not None:
        params = jax.tree.map(lambda x: x.astype(target_dtype) if is_float(x.dtype) else x, params)
    resample(params, saved, target)
    return target, params, step, source
