"""The model config of a checkpoint: inferred from its shapes, normalised, checked against the arrays, adjusted.

`infer_config` reads the sizes of a big_vision-layout tree; `expected_shapes` + `compare_shapes` + `mismatch_error`
check every name and shape before any data is read; `checkpoint_config` / `with_image_size` / `resample` handle a
resolution change (the position embedding is resampled); `apply_window` sets Gemma 2's sliding window.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from paligemma import gemma, siglip
from paligemma import model as model_lib
from paligemma.checkpoints.common import CheckpointError, shape_of
from paligemma.tree import flatten

log = logging.getLogger(__name__)


def normalise_config(config: Mapping[str, Any]) -> tuple[siglip.SiglipConfig, gemma.GemmaConfig]:
    """`(img, llm)` dataclasses of a model config `{"img": {...}, "llm": {...}}` (img num_classes: the llm width).

    Raises:
      ValueError: not such a dict, or a field the dataclasses reject.
    """
    if not isinstance(config, Mapping) or "img" not in config or "llm" not in config:
        raise ValueError(f"A model config is a dict with 'img' and 'llm' sections; got {config!r}.")
    llm = gemma.GemmaConfig(**dict(config["llm"]))
    img = siglip.SiglipConfig(**{"num_classes": llm.width, **dict(config["img"])})
    return img, llm


_SECTIONS = {"img": siglip.SiglipConfig, "llm": gemma.GemmaConfig}
_ZERO_OK = ("num_classes", "sliding_window")  # int fields where 0 means "none"


def nearest_key(key: str, valid: Any) -> str:
    """A "did you mean" hint naming the valid key nearest to `key`, or "" when none is close."""
    close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_problem(name: str, value: Any, annotation: str) -> str | None:
    """Why `value` is not a valid value of a config field annotated `annotation` (a string), or None."""
    if value is None:
        return None if "None" in annotation else "must not be null"
    if annotation.startswith("int") or annotation.startswith("bool"):
        is_bool = annotation.startswith("bool")
        if is_bool:
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        values = value if "tuple" in annotation and isinstance(value, (list, tuple)) and len(value) == 2 else [value]
        least = 0 if name in _ZERO_OK else 1
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                kind = "a non-negative" if least == 0 else "a positive"
                pair = " (or a pair of them)" if "tuple" in annotation else ""
                return f"expected {kind} integer{pair}, got {value!r}"
        return None
    if annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"expected a number, got {value!r}"
        return None
    if annotation.startswith("str") and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    return None


def check_config(config: Any, where: str, key: str = "config") -> None:
    """Checks a model config read from a file: sections, known keys, value types and ranges, then the dataclasses.

    Args:
      config: the value read (should be `{"img": {...}, "llm": {...}}`).
      where: the file it was read from (named by the error).
      key: where `config` sits in that file (named by the error, e.g. "config" -> "config.llm.depth").

    Raises:
      CheckpointError: one line naming `where`, the offending field and what it should be (an unknown key names
        the nearest valid one).
    """
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: {key} must be an object with 'img' and 'llm' sections, got {config!r:.80}.")
    for section in config:
        if section not in _SECTIONS:
            raise CheckpointError(
                f"{where}: unknown key {key}.{section}{nearest_key(section, _SECTIONS)}; a model config has "
                f"only 'img' and 'llm'."
            )
    for section, cls in _SECTIONS.items():
        if section not in config:
            raise CheckpointError(f"{where}: {key} has no {section!r} section.")
        values = config[section]
        if not isinstance(values, Mapping):
            raise CheckpointError(f"{where}: {key}.{section} must be an object of fields, got {values!r:.80}.")
        fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        for name, value in values.items():
            if name not in fields:
                raise CheckpointError(
                    f"{where}: unknown key {key}.{section}.{name}{nearest_key(name, fields)}; fix or remove it."
                )
            problem = _field_problem(name, value, fields[name])
            if problem:
                raise CheckpointError(f"{where}: {key}.{section}.{name}: {problem}; fix it.")
    try:
        normalise_config(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: invalid model config in {key}: {e}") from None


def copy_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of a model config whose sections can be changed without touching `config`."""
    return {k: dict(v) for k, v in config.items()}


def expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """`{"img/.../kernel": shape}`: every parameter of `Model(**config)` (no weights are created)."""
    return {k: shape_of(v) for k, v in flatten(model_lib.param_shapes(config)).items()}


def mismatch_error(path: str, problems: list[str], what: str = "the model config") -> CheckpointError:
    """One CheckpointError naming `path` and listing every problem of `compare_shapes`, one per line."""
    lines = "\n".join(f"  {p}" for p in problems)
    return CheckpointError(
        f"{path}: checkpoint does not match {what} ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{lines}"
    )


def compare_shapes(
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


def checkpoint_config(config: dict[str, dict[str, Any]], pos_shape: tuple[int, ...] | None) -> dict:
    """`config` with the image size of the checkpoint's position embedding (square grid), when it differs."""
    if pos_shape is None or len(pos_shape) != 3:
        return config
    img, _ = normalise_config(config)
    if pos_shape[1] == img.num_tokens:
        return config
    grid = math.isqrt(pos_shape[1])
    if grid * grid != pos_shape[1]:
        return config  # reported as a shape mismatch
    out = copy_config(config)
    out["img"]["image_size"] = grid * img.patch_size
    return out


def resample(params: dict[str, Any], from_config: Mapping, to_config: Mapping) -> None:
    """Resamples `params["img"]["pos_embedding"]` `[1, N, D]` in place (bilinear, same dtype) to `to_config`'s grid."""
    old, _ = normalise_config(from_config)
    new, _ = normalise_config(to_config)
    if old.grid == new.grid:
        return
    posemb = params["img"]["pos_embedding"]
    log.info("Resampling img/pos_embedding from a %s to a %s grid.", old.grid, new.grid)
    params["img"]["pos_embedding"] = np.asarray(siglip.resample_posemb(posemb, old.grid, new.grid)).astype(posemb.dtype)


def with_image_size(config: dict, image_size: int | None) -> dict:
    """`config` at resolution `image_size` (unchanged when None). ValueError unless a multiple of the patch size."""
    if image_size is None:
        return config
    out = copy_config(config)
    out["img"]["image_size"] = int(image_size)
    normalise_config(out)  # validates (multiple of the patch size)
    return out


def apply_window(config: dict, sliding_window: Any, hf_window: int | None, keep: bool) -> dict:
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
    out = copy_config(config)
    out["llm"]["sliding_window"] = window
    return out
