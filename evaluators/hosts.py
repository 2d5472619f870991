"""Bringing evaluator outputs back to the host, across processes.

`local_rows` takes this process's rows of a (possibly global, sharded) output array; `gather_records` collects every
process's JSON records, so that all processes compute the same metrics over the whole split.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["local_rows", "gather_records"]


def local_rows(x: Any, n_local: int) -> np.ndarray:
    """The rows of output `x` (leading axis = global batch) that belong to this process, as numpy `[n_local, ...]`.

    A global array that is not fully addressable is gathered with `multihost_utils.process_allgather`; process i's
    rows are then `[i * n_local, (i + 1) * n_local)`, the layout `put_batch` builds with
    `jax.make_array_from_process_local_data`.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        full = np.asarray(multihost_utils.process_allgather(x, tiled=True))
        count, index = jax.process_count(), jax.process_index()
        if full.shape[0] != n_local * count:
            raise ValueError(
                f"an evaluator output has {full.shape[0]} rows; expected {n_local} per process x "
                f"{count} processes (does put_batch concatenate the per-process batches?)"
            )
        return full[index * n_local : (index + 1) * n_local]
    arr = np.asarray(x)
    if arr.shape[0] != n_local:
        raise ValueError(f"an evaluator output has {arr.shape[0]} rows; expected this process's {n_local}")
    return arr


def gather_records(records: Any) -> list[Any]:
    """All processes' JSON-serialisable values, in process order (one process: `[records]`).

    Values travel as UTF-8 JSON bytes through `multihost_utils.process_allgather` (lengths first, then the padded
    bytes). Every process must call this the same number of times.
    """
    if jax.process_count() == 1:
        return [records]
    blob = np.frombuffer(json.dumps(records).encode("utf-8"), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([blob.size], np.int64))).reshape(-1)
    padded = np.zeros([int(sizes.max())], np.uint8)
    padded[: blob.size] = blob
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[: int(n)]).decode("utf-8")) for row, n in zip(rows, sizes)]
