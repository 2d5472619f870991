"""safetensors files without the safetensors package: a reader (one tensor at a time) and a streaming writer.

Layout: an 8-byte little-endian header length, a JSON header `{name: {"dtype", "shape", "data_offsets"}}` (plus
`__metadata__`), then the raw little-endian data. The reader checks every offset against the file size before reading
and casts in chunks; the writer writes one tensor at a time into a temporary file renamed into place.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from paligemma import paths
from paligemma.checkpoints.common import BF16, CHUNK_BYTES, CheckpointError, is_float, read_exact_into

# safetensors dtype names <-> numpy.
_ST_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": BF16,
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
_MAX_HEADER = 100 << 20  # the safetensors package's own limit on the JSON header


class SafetensorsFile:
    """Header of one safetensors file; `array(name)` reads one tensor (into a fresh array of exactly its size)."""

    def __init__(self, path: str):
        self.path = path
        try:
            size = paths.getsize(path)
            with paths.open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError("file shorter than the 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise ValueError(f"header length {n} exceeds the file size {size}")
                if n > _MAX_HEADER:
                    raise ValueError(f"header length {n} exceeds the {_MAX_HEADER}-byte limit for a header")
                header = json.loads(f.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            self.metadata = header.pop("__metadata__", None) or {}
            self.start = 8 + n
            self.tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
            for name, info in header.items():
                if not isinstance(info, dict):
                    raise ValueError(f"tensor {name!r}: expected an object with dtype, shape, data_offsets")
                if info["dtype"] not in _ST_DTYPES:
                    raise ValueError(f"tensor {name!r}: unsupported dtype {info['dtype']}")
                dt = _ST_DTYPES[info["dtype"]]
                shape = tuple(int(d) for d in info["shape"])
                if any(d < 0 for d in shape):
                    raise ValueError(f"tensor {name!r}: negative dimension in shape {shape}")
                begin, end = (int(x) for x in info["data_offsets"])
                if end - begin != math.prod(shape) * dt.itemsize or begin < 0 or self.start + end > size:
                    raise ValueError(
                        f"tensor {name!r}: data offsets {begin}..{end} do not fit its shape {shape} "
                        f"or the file (truncated?)"
                    )
                self.tensors[name] = (dt, shape, begin, end)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None

    def array(self, name: str) -> np.ndarray:
        """The tensor `name` as a new array of its stored dtype."""
        dt, shape, _, _ = self.tensors[name]
        out = np.empty(shape, dt)
        self.read_into(name, out)
        return out

    def read_into(self, name: str, dest: np.ndarray, first: int = 0) -> None:
        """Fills the C-contiguous `dest` with `dest.size` elements of tensor `name` from flat index `first`.

        The data is cast in chunks, so a cast needs no second copy of the tensor.
        """
        dt, shape, begin, _ = self.tensors[name]
        if not dest.flags.c_contiguous or first + dest.size > math.prod(shape):
            raise ValueError(f"read_into {name!r}: bad destination {dest.shape} at {first} for {shape}")
        flat = dest.reshape(-1)
        try:
            with paths.open(self.path, "rb") as f:
                f.seek(self.start + begin + first * dt.itemsize)
                if flat.dtype == dt:
                    read_exact_into(f, flat.view(np.uint8), name)
                else:
                    step = max(1, CHUNK_BYTES // dt.itemsize)
                    buf = bytearray(step * dt.itemsize)
                    for start in range(0, flat.size, step):
                        n = min(step, flat.size - start)
                        view = memoryview(buf)[: n * dt.itemsize]
                        read_exact_into(f, view, name)
                        flat[start : start + n] = np.frombuffer(view, dt, n)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r}: {e}") from None


def write_safetensors(
    path: str,
    tensors: Mapping[str, np.ndarray],
    dtype: np.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Writes `tensors` (cast to `dtype` if given) as one safetensors file, one tensor at a time, atomically.

    Returns the number of bytes written.
    """
    names = sorted(tensors)
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    dtypes = {}
    for name in names:
        t = tensors[name]
        dt = np.dtype(dtype) if dtype is not None and is_float(np.dtype(t.dtype)) else np.dtype(t.dtype)
        if dt not in _ST_NAMES:
            raise ValueError(f"{name}: dtype {dt} cannot be stored in safetensors.")
        nbytes = math.prod(t.shape) * dt.itemsize
        header[name] = {"dtype": _ST_NAMES[dt], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        dtypes[name] = dt
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in names:
            arr = np.ascontiguousarray(np.asarray(tensors[name]).astype(dtypes[name], copy=False))
            f.write(memoryview(arr.reshape(-1).view(np.uint8)))

    paths.atomic_write(path, write)
    return 8 + len(blob) + offset


# --------------------------------------------------------------------------------------------------------------------
