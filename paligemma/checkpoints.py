"""Reading and writing PaliGemma checkpoints: big_vision `.npz`, PyTorch-hub (safetensors) folders, this project's own.

    config, params = load(path)                      # any of the three formats, detected from `path`
    model = Model(**config); model.apply({"params": params}, image, text, mask_ar)
    save(folder, config, params)                     # this project's format: folder with config.json + params.npz
    save_npz(path, params)                           # the original flat layout (big_vision reads it)
    save_hf(folder, params, config)                  # loads with PaliGemmaForConditionalGeneration.from_pretrained

Formats
  * big_vision `.npz`: one `.npy` member per parameter, names joined by "/" (`img/...`, `llm/...`), optionally under
    `params/` or `opt/target/` (only that subtree is read). float32, float16 or bfloat16, the latter stored by numpy as
    2-byte void (`|V2`) and viewed as `ml_dtypes.bfloat16`. The model config is inferred from the shapes (see
    `infer_config`) unless `config=` is given.
  * PyTorch-hub folder: `config.json` (`PaliGemmaConfig`) + `model.safetensors` or shards listed in
    `model.safetensors.index.json`. Tensor names with any of the prefix styles transformers has used:
    `language_model.model.*` / `model.language_model.*`, `vision_tower.vision_model.*` / `vision_tower.*` /
    `model.vision_tower[.vision_model].*`, `[model.]multi_modal_projector.*`; `lm_head.weight` is ignored (tied).
  * This project's format: a folder with `config.json` (`{"format": "paligemma-jax", "config": {...}}`) and
    `params.npz` in the big_vision layout. No pickle anywhere.

Vocabulary rule for PyTorch folders: published HF checkpoints pad the embedding table to 257216 rows and put the
`<image>` token at row 257152 (= the real vocabulary). The loaded vocabulary is `image_token_index` when that is
smaller than `text_config.vocab_size` (the `<image>` row and every row after it exist only in the PyTorch layout and
are dropped), else `text_config.vocab_size`. An explicit `config=` sets the vocabulary itself: rows past it are dropped.

Memory: arrays are read one at a time and cast while being read (`.npz` members and safetensors tensors that need no
transposition are streamed in chunks straight into the final array; a transposed tensor passes through one temporary
copy of itself), so loading needs about the size of the result plus one per-layer matrix.
Every name and shape is checked against `paligemma.model.param_shapes(config)` before any data is read; a mismatch
raises one `CheckpointError` (a `ValueError`) naming the file and listing every offending name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_dtypes
import numpy as np
from numpy.lib import format as npy_format

from paligemma import gemma, paths, siglip
from paligemma.tree import flatten, unflatten

log = logging.getLogger(__name__)

OWN_FORMAT = "paligemma-jax"
OWN_FORMAT_VERSION = 1
OWN_CONFIG_FILE = "config.json"
OWN_PARAMS_FILE = "params.npz"
HF_WEIGHTS_FILE = "model.safetensors"
HF_INDEX_FILE = "model.safetensors.index.json"

DTYPES: dict[str, Any] = {
    "float32": np.dtype(np.float32),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
}
_BF16 = np.dtype(ml_dtypes.bfloat16)
_CHUNK_BYTES = 16 << 20  # streaming granularity when casting .npz members
_NPZ_WRAPPERS = ("params/", "opt/target/")

# safetensors dtype names <-> numpy.
_ST_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": _BF16,
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not match the model config. The message names the file."""


# --------------------------------------------------------------------------------------------------------------------
# Small helpers.


def _dtype(dtype: Any) -> np.dtype | None:
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


def _dtype_name(dtype: np.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}.get(np.dtype(dtype), str(np.dtype(dtype)))


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype an array stored as `dtype` holds: 2-byte void is bfloat16 (how numpy writes ml_dtypes.bfloat16)."""
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None:
        return _BF16
    return dtype


def _is_float(dtype: np.dtype) -> bool:
    return dtype == _BF16 or np.issubdtype(dtype, np.floating)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def _normalise_config(config: Mapping[str, Any]) -> tuple[siglip.SiglipConfig, gemma.GemmaConfig]:
    if not isinstance(config, Mapping) or "img" not in config or "llm" not in config:
        raise ValueError(f"A model config is a dict with 'img' and 'llm' sections; got {config!r}.")
    llm = gemma.GemmaConfig(**dict(config["llm"]))
    img = siglip.SiglipConfig(**{"num_classes": llm.width, **dict(config["img"])})
    return img, llm


def _copy_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in config.items()}


def _expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    from paligemma import model as model_lib  # the model module imports flax; keep this module light to import

    return {k: _shape(v) for k, v in flatten(model_lib.param_shapes(config)).items()}


def _mismatch_error(path: str, problems: list[str], what: str = "the model config") -> CheckpointError:
    lines = "\n".join(f"  {p}" for p in problems)
    return CheckpointError(
        f"{path}: checkpoint does not match {what} ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{lines}"
    )


def _compare(
    expected: Mapping[str, tuple],
    found: Mapping[str, tuple],
    label: Callable[[str], str] = str,
    flexible_rows: Mapping[str, int] | None = None,
) -> list[str]:
    """Every missing / unexpected / wrong-shape name. `flexible_rows[name] = n` accepts n or more leading rows."""
    problems = []
    flexible_rows = flexible_rows or {}
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            problems.append(f"missing     {label(name)}: expected {expected[name]}")
        elif name not in expected:
            problems.append(f"unexpected  {label(name)}: found {found[name]}")
        else:
            e, f = tuple(expected[name]), tuple(found[name])
            if name in flexible_rows:
                ok = len(e) == len(f) and f[0] >= e[0] and e[1:] == f[1:]
                if not ok:
                    problems.append(
                        f"wrong shape {label(name)}: expected ({e[0]} or more, {', '.join(map(str, e[1:]))}), found {f}"
                    )
            elif e != f:
                problems.append(f"wrong shape {label(name)}: expected {e}, found {f}")
    return problems


# --------------------------------------------------------------------------------------------------------------------
# .npz reading: headers first (names, shapes, dtypes), then one member at a time, streamed and cast in chunks.


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
            for info in self.zip.infolist():
                if info.is_dir():
                    continue
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with self.zip.open(info) as f:
                    shape, fortran, dtype = _read_npy_header(f, f"member {info.filename!r}")
                self.entries[info.filename[:-4]] = _NpyEntry(info.filename, shape, _stored_dtype(dtype), fortran)
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
                stored = _stored_dtype(stored)
                if stored == out_dtype:
                    _read_exact_into(f, flat.view(np.uint8), entry.member)
                else:
                    step = max(1, _CHUNK_BYTES // stored.itemsize)
                    buf = bytearray(step * stored.itemsize)
                    for start in range(0, count, step):
                        n = min(step, count - start)
                        view = memoryview(buf)[: n * stored.itemsize]
                        _read_exact_into(f, view, entry.member)
                        flat[start : start + n] = np.frombuffer(view, stored, n)
                if f.read(1):
                    raise ValueError(f"member {entry.member!r} has more data than its header announces")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as e:
            raise CheckpointError(f"{self.path}: corrupt .npz checkpoint: {e}") from None
        return flat.reshape(entry.shape, order="F" if entry.fortran else "C")


def _read_exact_into(f, buf: memoryview | np.ndarray, member: str):
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        n = f.readinto(view[done : done + _CHUNK_BYTES])
        if not n:
            raise ValueError(f"{member!r} is truncated ({done} of {len(view)} data bytes)")
        done += n


def _strip_npz_wrapper(names: list[str]) -> tuple[str, list[str]]:
    """Returns (wrapper prefix, names inside it): `params/` or `opt/target/` when present, else ''."""
    for wrapper in _NPZ_WRAPPERS:
        inside = [n for n in names if n.startswith(wrapper)]
        if inside:
            return wrapper, inside
    return "", names


# --------------------------------------------------------------------------------------------------------------------
# Config inference from the big_vision tree's shapes.


def infer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """Model config from the shapes of a big_vision-layout tree (`{"img/...": shape}`, no wrapper).

    Sizes come from the arrays: SigLIP width/patch from `img/embedding/kernel`, image size from the
    `img/pos_embedding` grid (square), depth/mlp/heads from the stacked encoder block; Gemma vocabulary/width from the
    embedding, depth from the stacked norms, heads / kv heads / head dim from `q_einsum` + `kv_einsum` or `qkv_einsum`,
    mlp from `gating_einsum`. Gemma 2 is recognised by its post-attention norms: it gets the soft-caps 50 (attention
    logits) and 30 (final logits) and post norms. Query scale: head_dim^-1/2, except for the gemma2_27b shape (width
    4608, 32 heads, head dim 128), which scales by (width / heads)^-1/2 as that model does. `img/MAPHead_0/...`
    (SigLIP's unused pooling head) gives `pool_type="map"`. Sliding window: none (the training code's full attention).
    """

    def need(name: str, ndim: int) -> tuple[int, ...]:
        if name not in shapes:
            raise KeyError(name)
        if len(shapes[name]) != ndim:
            raise ValueError(f"{name} has shape {tuple(shapes[name])}, expected {ndim} dimensions")
        return tuple(shapes[name])

    problems = []

    img: dict[str, Any] = {"variant": None}
    try:
        patch, patch2, _, width = need("img/embedding/kernel", 4)
        _, num_tokens, _ = need("img/pos_embedding", 3)
        grid = math.isqrt(num_tokens)
        if grid * grid != num_tokens or patch != patch2:
            raise ValueError(f"img/pos_embedding holds {num_tokens} positions, not a square grid; pass config=")
        depth, _ = need("img/Transformer/encoderblock/LayerNorm_0/scale", 2)
        _, _, mlp = need("img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel", 3)
        _, _, heads, _ = need("img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel", 4)
        img.update(
            width=width,
            depth=depth,
            mlp_dim=mlp,
            num_heads=heads,
            patch_size=patch,
            image_size=grid * patch,
            pool_type="map" if any(k.startswith("img/MAPHead_0/") for k in shapes) else "none",
        )
    except (KeyError, ValueError) as e:
        problems.append(f"missing {e}" if isinstance(e, KeyError) else str(e))

    llm: dict[str, Any] = {"variant": None}
    try:
        vocab, d = need("llm/embedder/input_embedding", 2)
        depth, _ = need("llm/layers/pre_attention_norm/scale", 2)
        if "llm/layers/attn/qkv_einsum/w" in shapes:
            _, _, heads, _, head_dim = need("llm/layers/attn/qkv_einsum/w", 5)
            kv_heads = heads
        else:
            _, heads, _, head_dim = need("llm/layers/attn/q_einsum/w", 4)
            _, _, kv_heads, _, _ = need("llm/layers/attn/kv_einsum/w", 5)
        _, _, _, mlp = need("llm/layers/mlp/gating_einsum", 4)
        gemma2 = "llm/layers/post_attention_norm/scale" in shapes
        llm.update(
            vocab_size=vocab,
            width=d,
            depth=depth,
            mlp_dim=mlp,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            query_pre_attn_scalar=float(head_dim),
            post_norms=gemma2,
            attn_logits_softcap=50.0 if gemma2 else None,
            final_logits_softcap=30.0 if gemma2 else None,
            sliding_window=None,
        )
        big = gemma.VARIANTS["gemma2_27b"]
        if gemma2 and (d, heads, head_dim) == (big["width"], big["num_heads"], big["head_dim"]):
            llm["query_pre_attn_scalar"] = float(big["query_pre_attn_scalar"])
    except (KeyError, ValueError) as e:
        problems.append(f"missing {e}" if isinstance(e, KeyError) else str(e))

    if problems:
        raise ValueError("cannot infer the model config from the shapes: " + "; ".join(problems))
    return {"img": img, "llm": llm}


# --------------------------------------------------------------------------------------------------------------------
# Resolution change.


def _checkpoint_config(config: dict[str, dict[str, Any]], pos_shape: tuple[int, ...] | None) -> dict:
    """`config` with the image size of the checkpoint's position embedding (square grid), when it differs."""
    if pos_shape is None or len(pos_shape) != 3:
        return config
    img, _ = _normalise_config(config)
    if pos_shape[1] == img.num_tokens:
        return config
    grid = math.isqrt(pos_shape[1])
    if grid * grid != pos_shape[1]:
        return config  # reported as a shape mismatch
    out = _copy_config(config)
    out["img"]["image_size"] = grid * img.patch_size
    return out


def _resample(params: dict[str, Any], from_config: Mapping, to_config: Mapping) -> None:
    old, _ = _normalise_config(from_config)
    new, _ = _normalise_config(to_config)
    if old.grid == new.grid:
        return
    posemb = params["img"]["pos_embedding"]
    log.info("Resampling img/pos_embedding from a %s to a %s grid.", old.grid, new.grid)
    params["img"]["pos_embedding"] = np.asarray(siglip.resample_posemb(posemb, old.grid, new.grid)).astype(posemb.dtype)


def _with_image_size(config: dict, image_size: int | None) -> dict:
    if image_size is None:
        return config
    out = _copy_config(config)
    out["img"]["image_size"] = int(image_size)
    _normalise_config(out)  # validates (multiple of the patch size)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Loading.


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
    target_dtype = _dtype(dtype)
    if not paths.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder.")
    if paths.isdir(path):
        meta = (
            _read_json(paths.join(path, OWN_CONFIG_FILE)) if paths.isfile(paths.join(path, OWN_CONFIG_FILE)) else None
        )
        if meta is not None and meta.get("format") == OWN_FORMAT:
            return _load_own(path, meta, config, target_dtype, image_size, sliding_window)
        if meta is not None or _safetensors_files(path):
            return _load_hf(path, meta, config, target_dtype, image_size, sliding_window)
        raise CheckpointError(
            f"{path}: a folder without {OWN_CONFIG_FILE} or *.safetensors; expected a PyTorch-hub "
            f"folder or one written by paligemma.checkpoints.save."
        )
    if path.endswith(".safetensors"):
        raise CheckpointError(f"{path}: pass the folder holding this file and its config.json, not the file.")
    return _load_npz(path, config, target_dtype, image_size, sliding_window, own_window=None)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with paths.open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object.")
    return data


def _apply_window(config: dict, sliding_window: Any, hf_window: int | None, keep: bool) -> dict:
    """Sets config["llm"]["sliding_window"] following `load`'s `sliding_window` argument."""
    if sliding_window == "default":
        if keep:
            return config
        window = None
    elif sliding_window == "hf":
        window = hf_window
    elif sliding_window is None or isinstance(sliding_window, int) and not isinstance(sliding_window, bool):
        window = sliding_window or None
        if window is not None and window < 1:
            raise ValueError(f"sliding_window must be positive; got {sliding_window}.")
    else:
        raise ValueError(f"sliding_window must be 'default', 'hf', None or an int; got {sliding_window!r}.")
    out = _copy_config(config)
    out["llm"]["sliding_window"] = window
    return out


def _load_npz(
    path: str,
    config: Mapping | None,
    dtype: np.dtype | None,
    image_size: int | None,
    sliding_window: Any,
    own_window: Any,
) -> tuple[dict, dict]:
    with _NpzReader(path) as reader:
        wrapper, names = _strip_npz_wrapper(sorted(reader.entries))
        found = {n[len(wrapper) :]: reader.entries[n].shape for n in names}
        bad_dtype = [
            f"not a float array {wrapper}{n}: dtype {reader.entries[wrapper + n].dtype}"
            for n in found
            if not _is_float(reader.entries[wrapper + n].dtype)
        ]
        if config is None:
            try:
                config = infer_config(found)
            except ValueError as e:
                raise CheckpointError(f"{path}: {e}") from None
            keep_window = False
            hf_window = gemma.GEMMA2_SLIDING_WINDOW if config["llm"]["post_norms"] else None
        else:
            config = _copy_config(config)
            keep_window = True
            _, llm = _normalise_config(config)
            hf_window = gemma.GEMMA2_SLIDING_WINDOW if llm.post_norms else None
        if own_window is not None:  # this project's format: "hf" means the saved window, else Gemma 2's default
            hf_window = own_window
        config = _apply_window(config, sliding_window, hf_window, keep_window)
        target = _with_image_size(config, image_size)
        ckpt = _checkpoint_config(target, found.get("img/pos_embedding"))

        expected = _expected_shapes(ckpt)
        map_unused = _unused_map_head(found, expected, path)
        problems = bad_dtype + _compare(
            expected, {k: v for k, v in found.items() if k not in map_unused}, label=lambda n: wrapper + n
        )
        if problems:
            raise _mismatch_error(path, problems)

        flat = {name: reader.read(wrapper + name, dtype) for name in expected}
    params = unflatten(flat)
    _resample(params, ckpt, target)
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


def _load_own(
    path: str, meta: dict, config: Mapping | None, dtype: np.dtype | None, image_size: int | None, sliding_window: Any
) -> tuple[dict, dict]:
    version = meta.get("version", OWN_FORMAT_VERSION)
    if version > OWN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer version of this format ({version} > {OWN_FORMAT_VERSION}).")
    saved = meta.get("config")
    if not isinstance(saved, dict) or "img" not in saved or "llm" not in saved:
        raise CheckpointError(f"{paths.join(path, OWN_CONFIG_FILE)}: no model config ('config' with 'img', 'llm').")
    npz = paths.join(path, OWN_PARAMS_FILE)
    if not paths.isfile(npz):
        raise CheckpointError(f"{path}: missing {OWN_PARAMS_FILE}.")
    reference = config if config is not None else saved
    _, llm = _normalise_config(reference)
    hf_window = llm.sliding_window or (gemma.GEMMA2_SLIDING_WINDOW if llm.post_norms else None)
    return _load_npz(npz, reference, dtype, image_size, sliding_window, own_window=hf_window)


# --------------------------------------------------------------------------------------------------------------------
# safetensors: a minimal reader (one tensor at a time, cast in chunks) and writer (streaming, atomic).


class _SafetensorsFile:
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
                if n > size - 8 or n > (100 << 20):
                    raise ValueError(f"header length {n} exceeds the file size {size}")
                header = json.loads(f.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            self.metadata = header.pop("__metadata__", None) or {}
            self.start = 8 + n
            self.tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
            for name, info in header.items():
                if info["dtype"] not in _ST_DTYPES:
                    raise ValueError(f"tensor {name!r}: unsupported dtype {info['dtype']}")
                dt = _ST_DTYPES[info["dtype"]]
                shape = tuple(int(d) for d in info["shape"])
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
        """Fills the C-contiguous `dest` with `dest.size` elements of tensor `name` from flat index `first`, casting
        in chunks (so a cast needs no second copy of the tensor).
        """
        dt, shape, begin, _ = self.tensors[name]
        if not dest.flags.c_contiguous or first + dest.size > math.prod(shape):
            raise ValueError(f"read_into {name!r}: bad destination {dest.shape} at {first} for {shape}")
        flat = dest.reshape(-1)
        try:
            with paths.open(self.path, "rb") as f:
                f.seek(self.start + begin + first * dt.itemsize)
                if flat.dtype == dt:
                    _read_exact_into(f, flat.view(np.uint8), name)
                else:
                    step = max(1, _CHUNK_BYTES // dt.itemsize)
                    buf = bytearray(step * dt.itemsize)
                    for start in range(0, flat.size, step):
                        n = min(step, flat.size - start)
                        view = memoryview(buf)[: n * dt.itemsize]
                        _read_exact_into(f, view, name)
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
        dt = np.dtype(dtype) if dtype is not None and _is_float(np.dtype(t.dtype)) else np.dtype(t.dtype)
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
# The PyTorch (transformers) layout.
#
# Names are handled in a canonical form: "vision/<name under the SigLIP vision model>", "projector/<name>",
# "text/<name under the Gemma model>". `to_hf` writes the prefixes of the published checkpoints.

_HF_PREFIXES = (
    ("vision_tower.vision_model.", "vision/"),
    ("vision_tower.", "vision/"),
    ("multi_modal_projector.", "projector/"),
    ("language_model.model.", "text/"),
    ("language_model.", "text/"),
)
_HF_OUT_PREFIX = {
    "vision/": "vision_tower.vision_model.",
    "projector/": "multi_modal_projector.",
    "text/": "language_model.model.",
}


def canonical_hf_name(name: str) -> str | None:
    """Canonical name of a PyTorch tensor name; None for the tied `lm_head`; unchanged if unknown."""
    n = name[len("model.") :] if name.startswith("model.") else name
    if n in ("lm_head.weight", "language_model.lm_head.weight") or name == "lm_head.weight":
        return None
    for prefix, tag in _HF_PREFIXES:
        if n.startswith(prefix):
            return tag + n[len(prefix) :]
    return name


def _hf_published(canonical: str) -> str:
    for tag, prefix in _HF_OUT_PREFIX.items():
        if canonical.startswith(tag):
            return prefix + canonical[len(tag) :]
    return canonical


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One HF tensor (per layer if `layers`) <-> a part of one of our arrays.

    `to_ours(t)` maps the HF tensor (or its `hf_rows`) to our slice `ours[i][part]`; `to_hf` is the inverse.
    """

    ours: str
    hf: str  # canonical; "{i}" is the layer index
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layers: int = 0
    part: int | None = None
    hf_rows: tuple[int, int] | None = None
    direct: bool = False  # to_ours is a pure reshape: read straight into our array


def _identity(x):
    return x


def _transpose(x):
    return x.T


def _rules(img: siglip.SiglipConfig, llm: gemma.GemmaConfig) -> list[_Rule]:
    rules: list[_Rule] = []
    w, nh, p = img.width, img.num_heads, img.patch_size
    hd = w // nh

    def rule(ours, hf, to_ours=_identity, to_hf=_identity, **kw):
        kw.setdefault("direct", to_ours is _identity)
        rules.append(_Rule(ours, hf, to_ours, to_hf, **kw))

    # Vision tower.
    rule(
        "img/embedding/kernel",
        "vision/embeddings.patch_embedding.weight",
        lambda t: t.transpose(2, 3, 1, 0),
        lambda o: o.transpose(3, 2, 0, 1),
    )
    rule("img/embedding/bias", "vision/embeddings.patch_embedding.bias")
    rule(
        "img/pos_embedding",
        "vision/embeddings.position_embedding.weight",
        lambda t: t[None],
        lambda o: o[0],
        direct=True,
    )

    def attention(ours, hf, rows=None, layers=0, out="out_proj"):
        for i, name in enumerate(("query", "key", "value")):
            if rows is None:
                tensor, r = f"{hf}.{name[0]}_proj", None
                wk, bk = tensor + ".weight", tensor + ".bias"
            else:
                wk, bk, r = f"{hf}.in_proj_weight", f"{hf}.in_proj_bias", (i * w, (i + 1) * w)
            rule(
                f"{ours}/{name}/kernel",
                wk,
                lambda t: t.T.reshape(w, nh, hd),
                lambda o: o.reshape(w, w).T,
                layers=layers,
                hf_rows=r,
            )
            rule(
                f"{ours}/{name}/bias",
                bk,
                lambda t: t.reshape(nh, hd),
                lambda o: o.reshape(w),
                layers=layers,
                hf_rows=r,
                direct=True,
            )
        rule(
            f"{ours}/out/kernel",
            f"{hf}.{out}.weight",
            lambda t: t.T.reshape(nh, hd, w),
            lambda o: o.reshape(w, w).T,
            layers=layers,
        )
        rule(f"{ours}/out/bias", f"{hf}.{out}.bias", layers=layers)

    def linear(ours, hf, layers=0):
        rule(f"{ours}/kernel", f"{hf}.weight", _transpose, _transpose, layers=layers)
        rule(f"{ours}/bias", f"{hf}.bias", layers=layers)

    def layer_norm(ours, hf, layers=0):
        rule(f"{ours}/scale", f"{hf}.weight", layers=layers)
        rule(f"{ours}/bias", f"{hf}.bias", layers=layers)

    blk, hl = "img/Transformer/encoderblock", "vision/encoder.layers.{i}"
    layer_norm(f"{blk}/LayerNorm_0", f"{hl}.layer_norm1", img.depth)
    layer_norm(f"{blk}/LayerNorm_1", f"{hl}.layer_norm2", img.depth)
    attention(f"{blk}/MultiHeadDotProductAttention_0", f"{hl}.self_attn", layers=img.depth)
    linear(f"{blk}/MlpBlock_0/Dense_0", f"{hl}.mlp.fc1", img.depth)
    linear(f"{blk}/MlpBlock_0/Dense_1", f"{hl}.mlp.fc2", img.depth)
    layer_norm("img/Transformer/encoder_norm", "vision/post_layernorm")
    if img.pool_type == "map":
        rule("img/MAPHead_0/probe", "vision/head.probe")
        attention("img/MAPHead_0/MultiHeadDotProductAttention_0", "vision/head.attention", rows=True)
        layer_norm("img/MAPHead_0/LayerNorm_0", "vision/head.layernorm")
        linear("img/MAPHead_0/MlpBlock_0/Dense_0", "vision/head.mlp.fc1")
        linear("img/MAPHead_0/MlpBlock_0/Dense_1", "vision/head.mlp.fc2")
    if img.num_classes:
        linear("img/head", "projector/linear")

    # Gemma.
    d, n, k, h, depth = llm.width, llm.num_heads, llm.num_kv_heads, llm.head_dim, llm.depth
    tl = "text/layers.{i}"
    rule("llm/embedder/input_embedding", "text/embed_tokens.weight")
    q_to_ours = lambda t: t.reshape(-1, h, d).transpose(0, 2, 1)  # noqa: E731  (heads*H, D) -> (heads, D, H)
    q_to_hf = lambda o: o.transpose(0, 2, 1).reshape(-1, d)  # noqa: E731
    if n == k:
        for part, name in enumerate("qkv"):
            rule(
                "llm/layers/attn/qkv_einsum/w",
                f"{tl}.self_attn.{name}_proj.weight",
                q_to_ours,
                q_to_hf,
                layers=depth,
                part=part,
            )
    else:
        rule("llm/layers/attn/q_einsum/w", f"{tl}.self_attn.q_proj.weight", q_to_ours, q_to_hf, layers=depth)
        for part, name in enumerate("kv"):
            rule(
                "llm/layers/attn/kv_einsum/w",
                f"{tl}.self_attn.{name}_proj.weight",
                q_to_ours,
                q_to_hf,
                layers=depth,
                part=part,
            )
    rule(
        "llm/layers/attn/attn_vec_einsum/w",
        f"{tl}.self_attn.o_proj.weight",
        lambda t: t.T.reshape(n, h, d),
        lambda o: o.reshape(n * h, d).T,
        layers=depth,
    )
    rule("llm/layers/mlp/gating_einsum", f"{tl}.mlp.gate_proj.weight", _transpose, _transpose, layers=depth, part=0)
    rule("llm/layers/mlp/gating_einsum", f"{tl}.mlp.up_proj.weight", _transpose, _transpose, layers=depth, part=1)
    rule("llm/layers/mlp/linear", f"{tl}.mlp.down_proj.weight", _transpose, _transpose, layers=depth)
    rule("llm/layers/pre_attention_norm/scale", f"{tl}.input_layernorm.weight", layers=depth)
    if llm.post_norms:
        rule("llm/layers/post_attention_norm/scale", f"{tl}.post_attention_layernorm.weight", layers=depth)
        rule("llm/layers/pre_ffw_norm/scale", f"{tl}.pre_feedforward_layernorm.weight", layers=depth)
        rule("llm/layers/post_ffw_norm/scale", f"{tl}.post_feedforward_layernorm.weight", layers=depth)
    else:
        rule("llm/layers/pre_ffw_norm/scale", f"{tl}.post_attention_layernorm.weight", layers=depth)
    rule("llm/final_norm/scale", "text/norm.weight")
    return rules


def _rule_instances(rules: list[_Rule]) -> Iterator[tuple[_Rule, int | None, str]]:
    for r in rules:
        for i in range(r.layers) if r.layers else [None]:
            yield r, i, r.hf.format(i=i)


def _our_slice(arr: np.ndarray, r: _Rule, i: int | None) -> np.ndarray:
    x = arr if i is None else arr[i]
    return x if r.part is None else x[r.part]


def _expected_hf_shapes(rules: list[_Rule], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Canonical HF name -> shape, derived by mapping zero-strided dummies of our shapes through `to_hf`."""
    out: dict[str, tuple[int, ...]] = {}
    for r, i, name in _rule_instances(rules):
        dummy = _our_slice(np.broadcast_to(np.zeros((), np.float32), shapes[r.ours]), r, i)
        shape = _shape(r.to_hf(dummy))
        if r.hf_rows is not None:
            rows = out.get(name, (0, *shape[1:]))
            shape = (rows[0] + shape[0], *shape[1:])
        out[name] = shape
    return out


def to_hf(
    params: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    pad_vocab_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Our parameters -> `{PyTorch name: array}` in the published layout (`language_model.model.*`,
    `vision_tower.vision_model.*`, `multi_modal_projector.*`; no `lm_head`, it is tied).

    Arrays are numpy views of `params` where the mapping allows. `pad_vocab_to` appends zero rows to the embedding
    (the published files use 257216); by default the table keeps the model's vocabulary.
    """
    img, llm = _normalise_config(config)
    flat = {k: np.asarray(v) for k, v in flatten(params).items()}
    rules = _rules(img, llm)
    problems = _compare(_expected_shapes(config), {k: _shape(v) for k, v in flat.items()})
    if problems:
        raise _mismatch_error("params", problems)
    out: dict[str, np.ndarray] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for r, i, name in _rule_instances(rules):
        t = r.to_hf(_our_slice(flat[r.ours], r, i))
        if r.hf_rows is not None:
            parts.setdefault(name, []).append(t)
        else:
            out[name] = t
    for name, pieces in parts.items():
        out[name] = np.concatenate(pieces, axis=0)
    emb = "text/embed_tokens.weight"
    if pad_vocab_to is not None and pad_vocab_to > out[emb].shape[0]:
        table = out[emb]
        out[emb] = np.concatenate([table, np.zeros((pad_vocab_to - table.shape[0], table.shape[1]), table.dtype)])
    return {_hf_published(k): v for k, v in out.items()}


def hf_config(config: Mapping[str, Any], *, dtype: Any = "float32", vocab_size: int | None = None) -> dict[str, Any]:
    """A `PaliGemmaConfig`-compatible dict for our model config.

    The text vocabulary is the model's (or `vocab_size` when the table is padded); `image_token_index` is the model's
    vocabulary size, i.e. the first row past the real vocabulary (out of the table unless it is padded; transformers
    maps an out-of-table `<image>` id to 0 before the embedding lookup, and the image features replace it anyway).
    `sliding_window` None (full attention) is written as every layer being "full_attention".
    """
    img, llm = _normalise_config(config)
    out_dtype = np.dtype(np.float32) if _dtype(dtype) is None else _dtype(dtype)
    if img.image_hw[0] != img.image_hw[1]:
        raise ValueError(f"The PyTorch layout needs a square image size; got {img.image_size}.")
    if not img.num_classes:
        raise ValueError("The PyTorch layout needs the projection head (img num_classes).")
    text_vocab = int(vocab_size or llm.vocab_size)
    text: dict[str, Any] = {
        "hidden_size": llm.width,
        "intermediate_size": llm.mlp_dim,
        "num_hidden_layers": llm.depth,
        "num_attention_heads": llm.num_heads,
        "num_key_value_heads": llm.num_kv_heads,
        "head_dim": llm.head_dim,
        "vocab_size": text_vocab,
        "rms_norm_eps": llm.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(llm.rope_base)},
        "max_position_embeddings": 8192,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "tie_word_embeddings": True,
        "attention_bias": False,
    }
    if llm.post_norms:
        window = llm.sliding_window
        text.update(
            model_type="gemma2",
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=_int_if_whole(llm.query_pre_attn_scalar),
            attn_logit_softcapping=llm.attn_logits_softcap or None,
            final_logit_softcapping=llm.final_logits_softcap or None,
            sliding_window=window,
            layer_types=[
                ("sliding_attention" if window and i % 2 == 0 else "full_attention") for i in range(llm.depth)
            ],
        )
    else:
        unsupported = []
        if llm.query_pre_attn_scalar != llm.head_dim:
            unsupported.append(f"query_pre_attn_scalar {llm.query_pre_attn_scalar} != head_dim")
        if llm.attn_logits_softcap or llm.final_logits_softcap:
            unsupported.append("soft-caps")
        if llm.sliding_window:
            unsupported.append("sliding_window")
        if unsupported:
            raise ValueError(f"transformers' Gemma (1) cannot express {', '.join(unsupported)}.")
        text.update(model_type="gemma", hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh")
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": img.width,
        "intermediate_size": img.mlp_dim,
        "num_hidden_layers": img.depth,
        "num_attention_heads": img.num_heads,
        "patch_size": img.patch_size,
        "image_size": img.image_hw[0],
        "projection_dim": img.num_classes,
        "num_channels": 3,
        "layer_norm_eps": img.layer_norm_eps,
        "hidden_act": "gelu_pytorch_tanh",
        "vision_use_head": img.pool_type == "map",
    }
    return {
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "model_type": "paligemma",
        "vision_config": vision,
        "text_config": text,
        "image_token_index": int(llm.vocab_size),
        "projection_dim": img.num_classes,
        "hidden_size": llm.width,
        "vocab_size": text_vocab,
        "tie_word_embeddings": True,
        "dtype": _dtype_name(out_dtype),
    }


def _int_if_whole(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def config_from_hf(hf: Mapping[str, Any], *, sliding_window: Any = "default") -> dict[str, dict[str, Any]]:
    """Our model config from a `PaliGemmaConfig` dict (config.json). `sliding_window` as in `load`."""
    vision, text = hf.get("vision_config") or {}, hf.get("text_config") or {}
    text_type = text.get("model_type", "gemma")
    if text_type not in ("gemma", "gemma2"):
        raise ValueError(f"text_config.model_type {text_type!r} is not supported (gemma, gemma2).")
    act = text.get("hidden_activation") or text.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu", "gelu_tanh", "gelu_new"):
        raise ValueError(f"text_config activation {act!r} is not the tanh GELU this model implements.")
    gemma2 = text_type == "gemma2"
    defaults = (
        dict(
            hidden_size=2304,
            intermediate_size=9216,
            num_hidden_layers=26,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
        )
        if gemma2
        else dict(
            hidden_size=2048,
            intermediate_size=16384,
            num_hidden_layers=18,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
        )
    )
    t = {**defaults, **{k: v for k, v in text.items() if v is not None}}
    width, heads = int(t["hidden_size"]), int(t["num_attention_heads"])
    head_dim = int(t.get("head_dim") or width // heads)
    text_vocab = int(t.get("vocab_size", 257152))
    image_token = hf.get("image_token_index", hf.get("image_token_id"))
    vocab = int(image_token) if image_token is not None and 0 < int(image_token) < text_vocab else text_vocab
    rope = t.get("rope_parameters") or {}
    llm: dict[str, Any] = dict(
        variant=None,
        vocab_size=vocab,
        width=width,
        depth=int(t["num_hidden_layers"]),
        mlp_dim=int(t["intermediate_size"]),
        num_heads=heads,
        num_kv_heads=int(t["num_key_value_heads"]),
        head_dim=head_dim,
        rope_base=float(rope.get("rope_theta", t.get("rope_theta", 10_000.0))),
        norm_eps=float(t.get("rms_norm_eps", 1e-6)),
        post_norms=gemma2,
        sliding_window=None,
    )
    hf_window = None
    if gemma2:
        llm.update(
            query_pre_attn_scalar=float(t.get("query_pre_attn_scalar", 256)),
            attn_logits_softcap=_float_or_none(text.get("attn_logit_softcapping", 50.0)),
            final_logits_softcap=_float_or_none(text.get("final_logit_softcapping", 30.0)),
        )
        window = text.get("sliding_window", gemma.GEMMA2_SLIDING_WINDOW)
        types = text.get("layer_types")
        alternating = [("sliding_attention" if i % 2 == 0 else "full_attention") for i in range(llm["depth"])]
        if window and (types is None or list(types) == alternating):
            hf_window = int(window)
        elif window and types and any(x == "sliding_attention" for x in types) and sliding_window == "hf":
            raise ValueError(
                f"text_config.layer_types {types} is not the alternating pattern (local first) this model implements."
            )
    else:
        llm.update(query_pre_attn_scalar=float(head_dim), attn_logits_softcap=None, final_logits_softcap=None)
    v = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 224,
        **{k: x for k, x in vision.items() if x is not None},
    }
    image_size, patch = v["image_size"], v["patch_size"]
    if not isinstance(image_size, int):
        image_size = tuple(int(s) for s in image_size)
    if not isinstance(patch, int):
        if len(set(patch)) != 1:
            raise ValueError(f"non-square patches {patch} are not supported.")
        patch = int(patch[0])
    img = dict(
        variant=None,
        width=int(v["hidden_size"]),
        depth=int(v["num_hidden_layers"]),
        mlp_dim=int(v["intermediate_size"]),
        num_heads=int(v["num_attention_heads"]),
        patch_size=int(patch),
        image_size=image_size,
        pool_type="map" if v.get("vision_use_head") else "none",
        layer_norm_eps=float(v.get("layer_norm_eps", 1e-6)),
    )
    projection = hf.get("projection_dim", vision.get("projection_dim"))
    if projection is not None and int(projection) != width:
        raise ValueError(f"projection_dim {projection} differs from the text width {width}.")
    return _apply_window({"img": img, "llm": llm}, sliding_window, hf_window, keep=False)


def _float_or_none(x: Any) -> float | None:
    return float(x) if x else None


def _safetensors_files(folder: str) -> list[str]:
    return sorted(f for f in paths.listdir(folder) if f.endswith(".safetensors"))


def _load_hf(
    path: str,
    meta: dict | None,
    config: Mapping | None,
    dtype: np.dtype | None,
    image_size: int | None,
    sliding_window: Any,
) -> tuple[dict, dict]:
    if meta is None and config is None:
        raise CheckpointError(f"{path}: no config.json; pass config=.")
    if meta is not None and meta.get("model_type", "paligemma") != "paligemma":
        raise CheckpointError(f"{path}: config.json model_type {meta.get('model_type')!r} is not 'paligemma'.")
    derived = config is None
    if derived:
        try:
            config = config_from_hf(meta, sliding_window=sliding_window)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{paths.join(path, 'config.json')}: {e}") from None
    else:
        hf_window = None
        if meta is not None and sliding_window == "hf":
            hf_window = config_from_hf(meta, sliding_window="hf")["llm"]["sliding_window"]
        config = _apply_window(_copy_config(config), sliding_window, hf_window, keep=True)

    # Tensor index: canonical name -> (file, stored name).
    index_path = paths.join(path, HF_INDEX_FILE)
    if paths.isfile(index_path):
        weight_map = _read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: no 'weight_map'.")
        files = sorted(set(weight_map.values()))
    else:
        files = _safetensors_files(path)
    if not files:
        bins = [f for f in paths.listdir(path) if f.endswith((".bin", ".pt", ".pth"))]
        hint = f" ({', '.join(bins)} are pickle files, which are never loaded)" if bins else ""
        raise CheckpointError(f"{path}: no *.safetensors weights{hint}.")
    readers = {}
    for f in files:
        full = paths.join(path, f)
        if not paths.isfile(full):
            raise CheckpointError(f"{index_path}: lists {f}, which does not exist.")
        readers[f] = _SafetensorsFile(full)
    tensors: dict[str, tuple[_SafetensorsFile, str]] = {}
    duplicates = []
    for reader in readers.values():
        for name in reader.tensors:
            canonical = canonical_hf_name(name)
            if canonical is None:
                continue
            if canonical in tensors:
                duplicates.append(f"duplicate   {name} (also {tensors[canonical][1]})")
            tensors[canonical] = (reader, name)

    pos = tensors.get("vision/embeddings.position_embedding.weight")
    pos_shape = (1, *pos[0].tensors[pos[1]][1]) if pos is not None else None
    if derived:  # the resolution is the position embedding's (some published config.json files omit image_size)
        config = _checkpoint_config(config, pos_shape)
    target = _with_image_size(config, image_size)
    ckpt = _checkpoint_config(target, pos_shape)
    img, llm = _normalise_config(ckpt)
    if img.pool_type != "map":
        head = [k for k in tensors if k.startswith("vision/head.")]
        if head:
            log.warning(
                "%s: dropping SigLIP's attention-pooling head (vision_tower...head.*, %d tensors): the config "
                "has pool_type != 'map' and PaliGemma does not use it.",
                path,
                len(head),
            )
            for k in head:
                del tensors[k]
    shapes = _expected_shapes(ckpt)
    rules = _rules(img, llm)
    expected = _expected_hf_shapes(rules, shapes)
    found = {k: r.tensors[n][1] for k, (r, n) in tensors.items()}
    emb = "text/embed_tokens.weight"
    problems = duplicates + _compare(
        expected,
        found,
        label=lambda k: tensors[k][1] if k in tensors else _hf_published(k),
        flexible_rows={emb: llm.vocab_size},
    )
    problems += [
        f"not a float tensor {n}: dtype {r.tensors[n][0]}"
        for k, (r, n) in tensors.items()
        if k in expected and not _is_float(r.tensors[n][0])
    ]
    if problems:
        where = path if len(readers) > 1 else readers[files[0]].path
        raise _mismatch_error(where, problems)
    if found[emb][0] > llm.vocab_size:
        log.info(
            "%s: keeping the first %d of %d embedding rows (the rest is the PyTorch layout's <image> token and "
            "padding).",
            path,
            llm.vocab_size,
            found[emb][0],
        )

    # Allocate our arrays and fill them one HF tensor at a time.
    out_dtype = {}
    for r, _, name in _rule_instances(rules):
        stored = tensors[name][0].tensors[tensors[name][1]][0]
        out_dtype.setdefault(r.ours, stored if dtype is None else dtype)
    flat = {name: np.empty(shape, out_dtype[name]) for name, shape in shapes.items()}
    for r, i, name in _rule_instances(rules):
        reader, stored_name = tensors[name]
        dest = _our_slice(flat[r.ours], r, i)
        row = math.prod(found[name][1:])
        if r.direct:  # the embedding's first rows, norms, biases: straight from the file into our array
            reader.read_into(stored_name, dest, first=r.hf_rows[0] * row if r.hf_rows else 0)
            continue
        t = reader.array(stored_name)
        if r.hf_rows is not None:
            t = t[r.hf_rows[0] : r.hf_rows[1]]
        dest[...] = r.to_ours(t)
        del t
    params = unflatten(flat)
    _resample(params, ckpt, target)
    return target, params


# --------------------------------------------------------------------------------------------------------------------
# Writing.


def _host_arrays(params: Mapping[str, Any], dtype: np.dtype | None) -> Iterator[tuple[str, np.ndarray]]:
    for name, value in flatten(params).items():
        arr = np.asarray(value)
        if dtype is not None and _is_float(arr.dtype):
            arr = arr.astype(dtype, copy=False)
        yield name, arr


def save_npz(path: str | os.PathLike, params: Mapping[str, Any], dtype: Any = None) -> int:
    """Writes `params` in the original flat layout ("/"-joined names, one `.npy` per array, uncompressed).

    bfloat16 is stored as 2-byte void (`|V2`) like the released files, so numpy-only readers (big_vision) read it back.
    One array is converted at a time; the file is written under a temporary name and renamed into place.
    Returns the file size in bytes.
    """
    path = os.fspath(path)
    target = _dtype(dtype)

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in _host_arrays(params, target):
                if arr.dtype == _BF16:
                    arr = arr.view(np.dtype("V2"))
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    npy_format.write_array(member, np.asarray(arr), allow_pickle=False)

    paths.atomic_write(path, write)
    return paths.getsize(path)


def save(path: str | os.PathLike, config: Mapping[str, Any], params: Mapping[str, Any], dtype: Any = None) -> int:
    """Writes this project's format: folder `path` with `config.json` and `params.npz`. Returns bytes written.

    Validates `params` against `config` first.
    """
    path = os.fspath(path)
    problems = _compare(_expected_shapes(config), {k: _shape(v) for k, v in flatten(params).items()})
    if problems:
        raise _mismatch_error("params", problems)
    paths.makedirs(path)
    size = save_npz(paths.join(path, OWN_PARAMS_FILE), params, dtype)
    from paligemma import model as model_lib

    meta = {
        "format": OWN_FORMAT,
        "version": OWN_FORMAT_VERSION,
        "config": _jsonable(config),
        "num_params": model_lib.count_params(params),
    }
    blob = json.dumps(meta, indent=2).encode("utf-8")
    paths.atomic_write(paths.join(path, OWN_CONFIG_FILE), lambda f: f.write(blob))
    return size + len(blob)


def save_hf(
    folder: str | os.PathLike,
    params: Mapping[str, Any],
    config: Mapping[str, Any],
    dtype: Any = None,
    *,
    pad_vocab_to: int | None = None,
) -> int:
    """Writes a folder that `PaliGemmaForConditionalGeneration.from_pretrained(folder)` loads.

    `config.json` (see `hf_config`) and one `model.safetensors` in the published naming. `dtype` (default: the
    embedding's dtype) casts every tensor as it is written. Returns the bytes written.
    """
    folder = os.fspath(folder)
    tensors = to_hf(params, config, pad_vocab_to=pad_vocab_to)
    target = _dtype(dtype)
    if target is None:
        target = np.dtype(tensors["language_model.model.embed_tokens.weight"].dtype)
    cfg = hf_config(config, dtype=target, vocab_size=pad_vocab_to)
    paths.makedirs(folder)
    size = write_safetensors(paths.join(folder, HF_WEIGHTS_FILE), tensors, target)
    blob = json.dumps(cfg, indent=2).encode("utf-8")
    paths.atomic_write(paths.join(folder, "config.json"), lambda f: f.write(blob))
    return size + len(blob)


def _jsonable(config: Mapping[str, Any]) -> dict:
    def fix(v):
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, (np.integer, np.floating)):
            return v.item()
        return v

    return {section: {k: fix(v) for k, v in dict(values).items()} for section, values in config.items()}


def detect_format(path: str | os.PathLike) -> str:
    """ "npz", "hf" or "ours" for an existing checkpoint path (without reading the weights)."""
    path = os.fspath(path)
    if paths.isdir(path):
        cfg = paths.join(path, OWN_CONFIG_FILE)
        if paths.isfile(cfg) and _read_json(cfg).get("format") == OWN_FORMAT:
            return "ours"
        return "hf"
    return "npz"
