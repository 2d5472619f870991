"""What every checkpoint format shares: the error type, the dtypes it can cast to, exact reads, JSON files."""

from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np

from paligemma import paths
from paligemma.errors import UserError

DTYPES: dict[str, Any] = {
    "float32": np.dtype(np.float32),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
}
BF16 = np.dtype(ml_dtypes.bfloat16)
CHUNK_BYTES = 16 << 20  # streaming granularity when casting while reading


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read, or that does not match the model config. The message names the file."""


def as_dtype(dtype: Any) -> np.dtype | None:
    """`dtype` ("float32", "bfloat16", "float16" or a numpy dtype) as a numpy dtype; None stays None (keep as stored).

    Raises:
      ValueError: any other dtype.
    """
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result not in DTYPES.values():
        raise ValueError(f"Unsupported dtype {dtype!r}; choose one of {sorted(DTYPES)}.")
    return result


def dtype_name(dtype: np.dtype) -> str:
    """The `DTYPES` key of `dtype` ("bfloat16", ...), else numpy's name for it."""
    return {v: k for k, v in DTYPES.items()}.get(np.dtype(dtype), str(np.dtype(dtype)))


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype an array stored as `dtype` holds: 2-byte void is bfloat16 (how numpy writes ml_dtypes.bfloat16)."""
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None:
        return BF16
    return dtype


def is_float(dtype: np.dtype) -> bool:
    """True for a floating dtype, bfloat16 included."""
    return dtype == BF16 or np.issubdtype(dtype, np.floating)


def shape_of(x: Any) -> tuple[int, ...]:
    """`x.shape` as a tuple of Python ints (arrays, `jax.ShapeDtypeStruct`s, ...)."""
    return tuple(int(d) for d in x.shape)


def read_exact_into(f, buf: memoryview | np.ndarray, member: str) -> None:
    """Fills `buf` (any writable buffer, viewed as bytes) from the binary file `f`, `CHUNK_BYTES` at a time.

    Raises:
      ValueError: the file ends first (the message names `member`, the array being read).
    """
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        n = f.readinto(view[done : done + CHUNK_BYTES])
        if not n:
            raise ValueError(f"{member!r} is truncated ({done} of {len(view)} data bytes)")
        done += n


def read_json(path: str) -> dict[str, Any]:
    """The JSON object in file `path` (local or gs://).

    Raises:
      CheckpointError: the file is unreadable, not JSON, or not an object (the message names `path`).
    """
    try:
        with paths.open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object.")
    return data
