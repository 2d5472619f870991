"""The end of a run: its params written as an original-layout `.npz` when `config.export_npz` asks."""

from __future__ import annotations

import logging

import jax

from paligemma import checkpoints, paths, tree
from trainers.distributed import to_host

log = logging.getLogger("trainers.train")  # every trainer module logs under the program's name


def export_params(params, cfg, workdir: str) -> str | None:
    """Writes `params` to `config.export_npz` (True: `{workdir}/params.npz`); returns the path, or None when off.

    All processes call it (gathering a sharded array is a collective); process 0 writes the file.
    """
    if not cfg.export_npz:
        return None
    path = paths.join(workdir, "params.npz") if cfg.export_npz is True else str(cfg.export_npz)
    host = {name: to_host(x) for name, x in tree.flatten(params).items()}  # collective when multi-process
    if jax.process_index() == 0:  # local or gs:// (written to a temporary file, then renamed / uploaded once)
        checkpoints.save_npz(path, tree.unflatten(host), dtype=cfg.export_dtype)
        log.info("Exported the final params to %s", path)
    return path
