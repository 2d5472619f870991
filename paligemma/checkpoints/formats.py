"""Which checkpoint format a path holds (`detect_format`), and `load`, which reads any of them with its reader."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from paligemma import paths
from paligemma.checkpoints.common import CheckpointError, as_dtype, read_json
from paligemma.checkpoints.hf import load_hf, safetensors_files
from paligemma.checkpoints.npz import load_npz
from paligemma.checkpoints.own import OWN_CONFIG_FILE, OWN_FORMAT, load_own


def load(
    path: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    dtype: Any = None,
    image_size: int | None = None,
    sliding_window: int | str | None = "default",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Loads a checkpoint. Returns `(model_config, params)`: `Model(**model_config)` and a nested dict of numpy arrays.

    Args:
      path: a big_vision `.npz`, a PyTorch-hub folder (`config.json` + safetensors), or this project's folder
        (`config.json` + `params.npz`, written by `save`).
      config: the model config to load into (default: inferred from `.npz` shapes, read from the folder's
        config.json). The checkpoint must match it exactly, except the position embedding, which is resampled when
        its grid differs from `config`'s image size.
      dtype: "float32", "bfloat16" or "float16": every array is cast while it is read. Default: as stored.
      image_size: resolution to run at; the position embedding is resampled (bilinear) when it differs.
      sliding_window: Gemma 2's local attention. "default": full attention for `.npz` and PyTorch folders (how the
        original JAX code trained the released weights), the saved value for this project's format, `config`'s value
        when given. "hf": the window the PyTorch port applies (the folder's `text_config.sliding_window`; 4096 for a
        Gemma 2 `.npz`; none for Gemma 1). None or 0: full attention. An int: that window.
    """
    path = os.fspath(path)
    target_dtype = as_dtype(dtype)
    if not paths.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder.")
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
    """The format of an existing checkpoint path, without reading the weights: "npz", "hf" or "ours"."""
    path = os.fspath(path)
    if paths.isdir(path):
        cfg = paths.join(path, OWN_CONFIG_FILE)
        if paths.isfile(cfg) and read_json(cfg).get("format") == OWN_FORMAT:
            return "ours"
        return "hf"
    return "npz"
