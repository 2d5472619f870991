"""This project's checkpoint format: a folder with `config.json` and `params.npz`. No pickle anywhere.

`config.json` is `{"format": "paligemma-jax", "version": 1, "config": {"img": {...}, "llm": {...}}, "num_params": N}`
and `params.npz` is in the big_vision layout (`paligemma.checkpoints.npz`), so the weights also load without the config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from paligemma import gemma, paths
from paligemma import model as model_lib
from paligemma.checkpoints.common import CheckpointError, shape_of
from paligemma.checkpoints.infer import check_config, compare_shapes, expected_shapes, mismatch_error, normalise_config
from paligemma.checkpoints.npz import load_npz, save_npz
from paligemma.tree import flatten, plain

OWN_FORMAT = "paligemma-jax"
OWN_FORMAT_VERSION = 1
OWN_CONFIG_FILE = "config.json"
OWN_PARAMS_FILE = "params.npz"


def load_own(
    path: str, meta: dict, config: Mapping | None, dtype: np.dtype | None, image_size: int | None, sliding_window: Any
) -> tuple[dict, dict]:
    """`(model_config, params)` of the folder `path` whose config.json holds `meta`; arguments as in `load`.

    Returns:
      The saved model config (or `config`) and a nested dict of numpy arrays, cast to `dtype` when given.

    Raises:
      CheckpointError: a newer format version, no saved model config, no params.npz, or params that do not match.
    """
    config_file = paths.join(path, OWN_CONFIG_FILE)
    version = meta.get("version", OWN_FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{config_file}: version must be a positive integer, got {version!r}; fix it.")
    if version > OWN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer version of this format ({version} > {OWN_FORMAT_VERSION}).")
    saved = meta.get("config")
    if saved is None:
        raise CheckpointError(f"{config_file}: no model config ('config' with 'img', 'llm').")
    check_config(saved, config_file)
    npz = paths.join(path, OWN_PARAMS_FILE)
    if not paths.isfile(npz):
        raise CheckpointError(f"{path}: missing {OWN_PARAMS_FILE}.")
    reference = config if config is not None else saved
    _, llm = normalise_config(reference)
    hf_window = llm.sliding_window or (gemma.GEMMA2_SLIDING_WINDOW if llm.post_norms else None)
    return load_npz(npz, reference, dtype, image_size, sliding_window, own_window=hf_window)


def save(path: str | os.PathLike, config: Mapping[str, Any], params: Mapping[str, Any], dtype: Any = None) -> int:
    """Writes this project's format: folder `path` with `config.json` and `params.npz`. Returns bytes written.

    Validates `params` against `config` first.
    """
    path = os.fspath(path)
    problems = compare_shapes(expected_shapes(config), {k: shape_of(v) for k, v in flatten(params).items()})
    if problems:
        raise mismatch_error("params", problems)
    paths.makedirs(path)
    size = save_npz(paths.join(path, OWN_PARAMS_FILE), params, dtype)
    meta = {
        "format": OWN_FORMAT,
        "version": OWN_FORMAT_VERSION,
        "config": plain(config),
        "num_params": model_lib.count_params(params),
    }
    blob = json.dumps(meta, indent=2).encode("utf-8")
    paths.atomic_write(paths.join(path, OWN_CONFIG_FILE), lambda f: f.write(blob))
    return size + len(blob)
