"""What a path holds (`detect_format`, `is_checkpoint_path`, `step_folder`); `load_checkpoint` reads checkpoints.

`load_checkpoint` reads a checkpoint file or folder with its format's reader. Training workdirs and their step
folders are read by `paligemma.checkpoints.training.load_any`; `load` (`paligemma.checkpoints.loading`) reads all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from paligemma import paths
from paligemma.checkpoints.common import CheckpointError, read_json
from paligemma.checkpoints.hf import load_hf, safetensors_files
from paligemma.checkpoints.npz import load_npz
from paligemma.checkpoints.own import OWN_CONFIG_FILE, OWN_FORMAT, load_own

CHECKPOINT_DIR = "checkpoints"  # a training workdir's orbax steps: {workdir}/checkpoints/{step}/


def load_checkpoint(
    path: str,
    config: Mapping[str, Any] | None,
    target_dtype: Any,
    image_size: int | None,
    sliding_window: int | str | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`load` of an existing checkpoint file or folder (`is_checkpoint_path`), with its format's reader."""
    if paths.isdir(path):
        meta = read_json(paths.join(path, OWN_CONFIG_FILE)) if paths.isfile(paths.join(path, OWN_CONFIG_FILE)) else None
        if meta is not None and meta.get("format") == OWN_FORMAT:
            return load_own(path, meta, config, target_dtype, image_size, sliding_window)
        if meta is not None or safetensors_files(path):
            return load_hf(path, meta, config, target_dtype, image_size, sliding_window)
        raise CheckpointError(
            f"{path}: a folder without {OWN_CONFIG_FILE} or *.safetensors; expected a PyTorch-hub "
            f"folder or one written by paligemma.checkpoints.save."
        )
    if path.endswith(".safetensors"):
        raise CheckpointError(f"{path}: pass the folder holding this file and its config.json, not the file.")
    return load_npz(path, config, target_dtype, image_size, sliding_window, own_window=None)


def detect_format(path: str | os.PathLike) -> str:
    """The format of an existing path, without reading the weights: "npz", "hf", "ours" or "run".

    "run": a folder that is no checkpoint (see `is_checkpoint_path`): a training workdir or one of its step folders.
    """
    path = os.fspath(path)
    if paths.isdir(path):
        if not is_checkpoint_path(path):
            return "run"
        cfg = paths.join(path, OWN_CONFIG_FILE)
        if paths.isfile(cfg) and read_json(cfg).get("format") == OWN_FORMAT:
            return "ours"
        return "hf"
    return "npz"


def is_checkpoint_path(path: str) -> bool:
    """True for a checkpoint file or folder; False for anything else (e.g. a training workdir or a step folder).

    That is a file, a folder with *.safetensors, or a folder whose config.json is this project's checkpoint format or
    a PyTorch-hub config (a training workdir's config.json is the run config).

    Raises:
      CheckpointError: the folder's config.json is not a readable JSON object.
    """
    if paths.isfile(path):
        return True
    if not paths.isdir(path):
        return False
    if any(f.endswith(".safetensors") for f in paths.listdir(path)):
        return True
    config_file = paths.join(path, OWN_CONFIG_FILE)
    if not paths.isfile(config_file):
        return False
    meta = read_json(config_file)
    return meta.get("format") == OWN_FORMAT or "text_config" in meta or "vision_config" in meta


def step_folder(path: str) -> tuple[str, int] | None:
    """`(workdir, step)` when `path` is a training workdir's step folder `{workdir}/checkpoints/{step}`, else None."""
    path = path.rstrip("/" + os.sep) or path
    parent = paths.dirname(path)
    name, parent_name = path.rsplit("/", 1)[-1], parent.rstrip("/").rsplit("/", 1)[-1]
    if not name.isdigit() or parent_name != CHECKPOINT_DIR:
        return None
    return (paths.dirname(parent) or "."), int(name)
