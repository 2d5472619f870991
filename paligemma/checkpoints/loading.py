"""`load`: the params of any checkpoint file or folder, training workdir or step folder of one.

Its own module, apart from `formats` (checkpoint files and folders) and `training` (orbax, imported only for runs:
it is slow to import and `import paligemma.checkpoints` stays light), so that neither imports the other's reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from paligemma import paths
from paligemma.checkpoints.common import CheckpointError, as_dtype
from paligemma.checkpoints.formats import is_checkpoint_path, load_checkpoint


def load(
    path: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    dtype: Any = None,
    image_size: int | None = None,
    sliding_window: int | str | None = "default",
    step: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Loads a checkpoint. Returns `(model_config, params)`: `Model(**model_config)` and a nested dict of numpy arrays.

        config, params = load("runs/easyvqa")                  # a training run's latest readable step
        config, params = load("runs/easyvqa", step=200)        # or one step (= load("runs/easyvqa/checkpoints/200"))

    Args:
      path: a big_vision `.npz`, a PyTorch-hub folder (`config.json` + safetensors), this project's folder
        (`config.json` + `params.npz`, written by `save`), a training workdir (its latest readable checkpoint, with
        the model config its run config.json trains) or one step folder of it (`{workdir}/checkpoints/{step}`).
      config: the model config to load into (default: inferred from `.npz` shapes, read from the folder's
        config.json, a training workdir's run config). The checkpoint must match it exactly, except the position
        embedding, which is resampled when its grid differs from `config`'s image size.
      dtype: "float32", "bfloat16" or "float16": every array is cast while it is read. Default: as stored.
      image_size: resolution to run at; the position embedding is resampled (bilinear) when it differs.
      sliding_window: Gemma 2's local attention. "default": full attention for `.npz` and PyTorch folders (how the
        original JAX code trained the released weights), the saved value for this project's format, `config`'s value
        when given. "hf": the window the PyTorch port applies (the folder's `text_config.sliding_window`; 4096 for a
        Gemma 2 `.npz`; none for Gemma 1). None or 0: full attention. An int: that window.
      step: a training workdir's step (default: the latest readable one); only for workdirs and step folders.

    Raises:
      FileNotFoundError: `path` does not exist.
      CheckpointError: an unreadable checkpoint or run, a step the run does not have (the message lists those it
        has), `step` for a checkpoint, or params that do not match the model config.
    """
    path = os.fspath(path)
    target_dtype = as_dtype(dtype)
    if not paths.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file, folder or training workdir.")
    if paths.isdir(path) and not is_checkpoint_path(path):
        # A training workdir or step folder (or neither: load_any says so). Imported here: training imports orbax.
        from paligemma.checkpoints import training

        config, params, _, _ = training.load_any(
            path, model_config=config, dtype=dtype, step=step, image_size=image_size, sliding_window=sliding_window
        )
        return config, params
    if step is not None:
        raise CheckpointError(f"{path}: a checkpoint holds one set of params; step= is for training workdirs.")
    return load_checkpoint(path, config, target_dtype, image_size, sliding_window)
