"""big_vision `.npz` checkpoints: a zip of `.npy` members, one per parameter, names joined by "/".

Names are `img/...` and `llm/...`, optionally under `params/` or `opt/target/` (only that subtree is read). Arrays are
float32, float16 or bfloat16, the latter stored by numpy as 2-byte void (`|V2`) and viewed as `ml_dtypes.bfloat16`.
Headers are read first (names, shapes, dtypes: checked before any data), then one member at a time, streamed and cast
in chunks straight into the final array. Object (pickled) members are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import struct
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from paligemma import gemma, paths
from paligemma.checkpoints.common import (
    BF16,
    CHUNK_BYTES,
    CheckpointError,
    as_dtype,
    is_float,
    read_exact_into,
    stored_dtype,
)
from paligemma.checkpoints.infer import (
    apply_window,
    checkpoint_config,
    compare_shapes,
    copy_config,
    expected_shapes,
    infer_config,
    mismatch_error,
    normalise_config,
    resample,
    with_image_size,
)
from paligemma.tree import flatten, unflatten

log = logging.getLogger(__name__)

_NPZ_WRAPPERS = ("params/", "opt/target/")


@dataclasses.dataclass
class _NpyEntry:
    member: str
    shape: tuple[int, ...]
    dtype: np.dtype  # the logical dtype (|V2 -> bfloat16)
    fortran: bool


def _read_npy_header(f, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version} in {where}")
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (pickled data), which are never loaded")
    return tuple(int(d) for d in shape), bool(fortran), dtype


# Deflate cannot expand data more than about 1032:1; a member claiming more is a lie (a zip bomb or corruption).
_MAX_DEFLATE_RATIO = 1100


def _check_member_size(
    info: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype, header_bytes: int, archive_size: int
) -> None:
    """Checks that the array a member's header declares is the data the member stores, before anything is allocated.

    The declared size (shape x itemsize) must equal the member's stored data (its uncompressed size less the .npy
    header), and the member must fit in the archive (stored: its compressed size; deflated: at most
    `_MAX_DEFLATE_RATIO` times it). So a header declaring a 256 GiB array in a small file is refused.

    Raises:
      ValueError: naming the member, its declared shape and its actual size.
    """
    where = f"member {info.filename!r}"
    if any(d < 0 for d in shape):
        raise ValueError(f"{where} declares a negative dimension in shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    stored = info.file_size - header_bytes
    if info.header_offset + info.compress_size > archive_size:
        raise ValueError(
            f"{where} claims {info.compress_size} bytes at offset {info.header_offset}, past the end of the "
            f"{archive_size}-byte file (truncated?)"
        )
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
    if info.file_size > max(info.compress_size, 1) * ratio:
        raise ValueError(
            f"{where} claims {info.file_size} uncompressed bytes from {info.compress_size} stored bytes, which is "
            f"impossible (corrupt or hostile file)"
        )
    if declared != stored:
        raise ValueError(
            f"{where} declares shape {shape} of {dtype} ({declared} bytes) but stores {stored} data bytes "
            f"(truncated, corrupt or hostile file)"
        )


class _NpzReader:
    """An `.npz` file opened for streaming reads. Raises CheckpointError naming the file when it is unreadable."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = paths.open(path, "rb") if paths.is_remote(path) else None
            self.zip = zipfile.ZipFile(self._file if self._file is not None else path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CheckpointError(
                f"{path}: not a readable .npz checkpoint (expected a zip of .npy arrays; the file "
                f"may be truncated or corrupt): {e}"
            ) from None
        self.entries: dict[str, _NpyEntry] = {}
        try:
            archive_size = paths.getsize(path)
            for info in self.zip.infolist():
                if info.is_dir():
                    continue
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with self.zip.open(info) as f:
                    shape, fortran, dtype = _read_npy_header(f, f"member {info.filename!r}")
                    header_bytes = f.tell()
                _check_member_size(info, shape, dtype, header_bytes, archive_size)
                self.entries[info.filename[:-4]] = _NpyEntry(info.filename, shape, stored_dtype(dtype), fortran)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as e:
            self.close()
            raise CheckpointError(f"{path}: corrupt .npz checkpoint: {e}") from None

    def close(self):
        if getattr(self, "zip", None) is not None:
            self.zip.close()
        if getattr(self, "_file", None) is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, name: str, dtype: np.dtype | None = None) -> np.ndarray:
        """The array `name`, cast to `dtype` (default: stored dtype) while it streams in."""
        entry = self.entries[name]
        out_dtype = entry.dtype if dtype is None else dtype
        count = math.prod(entry.shape)
        flat = np.empty((count,), out_dtype)
        try:
            with self.zip.open(entry.member) as f:
                _, _, stored = _read_npy_header(f, f"member {entry.member!r}")
                stored = stored_dtype(stored)
                if stored == out_dtype:
                    read_exact_into(f, flat.view(np.uint8), entry.member)
                else:
                    step = max(1, CHUNK_BYTES // stored.itemsize)
                    buf = bytearray(step * stored.itemsize)
                    for start in range(0, count, step):
                        n = min(step, count - start)
                        view = memoryview(buf)[: n * stored.itemsize]
                        read_exact_into(f, view, entry.member)
                        flat[start : start + n] = np.frombuffer(view, stored, n)
                if f.read(1):
                    raise ValueError(f"member {entry.member!r} has more data than its header announces")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as e:
            raise CheckpointError(f"{self.path}: corrupt .npz checkpoint: {e}") from None
        return flat.reshape(entry.shape, order="F" if entry.fortran else "C")


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` file `path`, as stored (bfloat16 viewed as such), with this module's checks.

    Unlike `np.load`, every header is checked against its member's stored size before anything is allocated, and
    a damaged file is one error.

    Raises:
      CheckpointError: the file is not a zip of .npy arrays, is truncated, holds pickled objects, or declares an
        array larger than the data it stores (the message names the file and the member).
    """
    with _NpzReader(path) as reader:
        return {name: reader.read(name) for name in reader.entries}


def _strip_npz_wrapper(names: list[str]) -> tuple[str, list[str]]:
    """Returns (wrapper prefix, names inside it): `params/` or `opt/target/` when present, else ''."""
    for wrapper in _NPZ_WRAPPERS:
        inside = [n for n in names if n.startswith(wrapper)]
        if inside:
            return wrapper, inside
    return "", names


def load_npz(
    path: str,
    config: Mapping | None,
    dtype: np.dtype | None,
    image_size: int | None,
    sliding_window: Any,
    own_window: Any,
) -> tuple[dict, dict]:
    """`(model_config, params)` of the `.npz` file `path`; the arguments as in `paligemma.checkpoints.load`.

    Args:
      path: the `.npz` file.
      config: the model config to load into; None: inferred from the shapes (`infer_config`).
      dtype: numpy dtype every array is cast to while it is read; None: as stored.
      image_size: resolution to resample the position embedding to; None: the checkpoint's.
      sliding_window: as `load`'s.
      own_window: the window "hf" means (this project's folder format: the saved one); None: Gemma 2's default.

    Returns:
      The model config and a nested dict of numpy arrays (`img/...` `[...]`, `llm/...`) of its shapes.

    Raises:
      CheckpointError: unreadable file, non-float array, or any name/shape that does not match the config.
    """
    with _NpzReader(path) as reader:
        wrapper, names = _strip_npz_wrapper(sorted(reader.entries))
        found = {n[len(wrapper) :]: reader.entries[n].shape for n in names}
        bad_dtype = [
            f"not a float array {wrapper}{n}: dtype {reader.entries[wrapper + n].dtype}"
            for n in found
            if not is_float(reader.entries[wrapper + n].dtype)
        ]
        if config is None:
            try:
                config = infer_config(found)
            except ValueError as e:
                raise CheckpointError(f"{path}: {e}") from None
            keep_window = False
            hf_window = gemma.GEMMA2_SLIDING_WINDOW if config["llm"]["post_norms"] else None
        else:
            config = copy_config(config)
            keep_window = True
            _, llm = normalise_config(config)
            hf_window = gemma.GEMMA2_SLIDING_WINDOW if llm.post_norms else None
        if own_window is not None:  # this project's format: "hf" means the saved window, else Gemma 2's default
            hf_window = own_window
        config = apply_window(config, sliding_window, hf_window, keep_window)
        target = with_image_size(config, image_size)
        ckpt = checkpoint_config(target, found.get("img/pos_embedding"))

        expected = expected_shapes(ckpt)
        map_unused = _unused_map_head(found, expected, path)
        problems = bad_dtype + compare_shapes(
            expected, {k: v for k, v in found.items() if k not in map_unused}, label=lambda n: wrapper + n
        )
        if problems:
            raise mismatch_error(path, problems)

        flat = {name: reader.read(wrapper + name, dtype) for name in expected}
    params = unflatten(flat)
    resample(params, ckpt, target)
    return target, params


def _unused_map_head(found: Mapping[str, Any], expected: Mapping[str, Any], path: str) -> set[str]:
    """Names of a MAP head the checkpoint carries but the config does not use (dropped with a warning)."""
    prefix = "img/MAPHead_0/"
    unused = {k for k in found if k.startswith(prefix)} if not any(k.startswith(prefix) for k in expected) else set()
    if unused:
        log.warning(
            "%s: dropping SigLIP's attention-pooling head (%s, %d arrays): the config has pool_type != 'map' "
            "and PaliGemma does not use it.",
            path,
            prefix,
            len(unused),
        )
    return unused


def _host_arrays(params: Mapping[str, Any], dtype: np.dtype | None) -> Iterator[tuple[str, np.ndarray]]:
    for name, value in flatten(params).items():
        arr = np.asarray(value)
        if dtype is not None and is_float(arr.dtype):
            arr = arr.astype(dtype, copy=False)
        yield name, arr


def save_npz(path: str | os.PathLike, params: Mapping[str, Any], dtype: Any = None) -> int:
    """Writes `params` in the original flat layout ("/"-joined names, one `.npy` per array, uncompressed).

    bfloat16 is stored as 2-byte void (`|V2`) like the released files, so numpy-only readers (big_vision) read it back.
    One array is converted at a time; the file is written under a temporary name and renamed into place.
    Returns the file size in bytes.
    """
    path = os.fspath(path)
    target = as_dtype(dtype)

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in _host_arrays(params, target):
                if arr.dtype == BF16:
                    arr = arr.view(np.dtype("V2"))
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    npy_format.write_array(member, np.asarray(arr), allow_pickle=False)

    paths.atomic_write(path, write)
    return paths.getsize(path)
