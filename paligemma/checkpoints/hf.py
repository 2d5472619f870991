"""PyTorch-hub (transformers) PaliGemma folders: the tensor name mapping, config.json, reading and writing.

A folder holds `config.json` (`PaliGemmaConfig`) and `model.safetensors` or the shards listed in
`model.safetensors.index.json`. Tensor names with any of the prefix styles transformers has used are read:
`language_model.model.*` / `model.language_model.*`, `vision_tower.vision_model.*` / `vision_tower.*` /
`model.vision_tower[.vision_model].*`, `[model.]multi_modal_projector.*`; `lm_head.weight` is ignored (tied).
`to_hf` / `save_hf` write the published prefixes.

Vocabulary rule: published HF checkpoints pad the embedding table to 257216 rows and put the `<image>` token at row
257152 (= the real vocabulary). The loaded vocabulary is `image_token_index` when that is smaller than
`text_config.vocab_size` (the `<image>` row and every row after it exist only in the PyTorch layout and are dropped),
else `text_config.vocab_size`. An explicit `config=` sets the vocabulary itself: rows past it are dropped.
Tensors that need no transposition are read straight into the final array; a transposed one passes through one
temporary copy of itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from paligemma import gemma, paths, siglip
from paligemma.checkpoints.common import CheckpointError, as_dtype, dtype_name, is_float, read_json, shape_of
from paligemma.checkpoints.infer import (
    apply_window,
    checkpoint_config,
    compare_shapes,
    copy_config,
    expected_shapes,
    mismatch_error,
    normalise_config,
    resample,
    with_image_size,
)
from paligemma.checkpoints.safetensors import SafetensorsFile, write_safetensors
from paligemma.tree import flatten, unflatten

log = logging.getLogger(__name__)

HF_WEIGHTS_FILE = "model.safetensors"
HF_INDEX_FILE = "model.safetensors.index.json"


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


# transformers 5's module names in memory (`named_modules()`; what PEFT adapter files are keyed by).
_HF_MODULE_PREFIX = {
    "vision/": "model.vision_tower.",
    "projector/": "model.multi_modal_projector.",
    "text/": "model.language_model.",
}


def hf_module_name(canonical: str) -> str:
    """The in-memory name (transformers 5) of a canonical module name: `text/norm` -> `model.language_model.norm`."""
    for tag, prefix in _HF_MODULE_PREFIX.items():
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
    w, nh = img.width, img.num_heads
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
        shape = shape_of(r.to_hf(dummy))
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
    """Our parameters -> `{PyTorch name: array}` in the published layout.

    Names are `language_model.model.*`, `vision_tower.vision_model.*`, `multi_modal_projector.*` (no `lm_head`, it is
    tied); e.g. `...self_attn.q_proj.weight` is `[heads * head_dim, width]` (PyTorch's `[out, in]`), same dtype.
    Arrays are numpy views of `params` where the mapping allows. `pad_vocab_to` appends zero rows to the embedding
    `[vocab, width]` (the published files use 257216); by default the table keeps the model's vocabulary.
    """
    img, llm = normalise_config(config)
    flat = {k: np.asarray(v) for k, v in flatten(params).items()}
    rules = _rules(img, llm)
    problems = compare_shapes(expected_shapes(config), {k: shape_of(v) for k, v in flat.items()})
    if problems:
        raise mismatch_error("params", problems)
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
    img, llm = normalise_config(config)
    out_dtype = np.dtype(np.float32) if as_dtype(dtype) is None else as_dtype(dtype)
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
        "dtype": dtype_name(out_dtype),
    }


def _int_if_whole(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


_TEXT_KEYS = (
    "model_type",
    "hidden_activation",
    "hidden_act",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "rope_parameters",
    "rope_theta",
    "rms_norm_eps",
    "query_pre_attn_scalar",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "sliding_window",
    "layer_types",
)
_VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "patch_size",
    "image_size",
    "vision_use_head",
    "layer_norm_eps",
    "projection_dim",
)
_TOP_KEYS = ("vision_config", "text_config", "image_token_index", "image_token_id", "projection_dim", "model_type")


def _check_hf_keys(section: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """A key that is a near-miss of a key this reader uses, while that key is absent, is a typo: ValueError.

    Other unknown keys are left alone (transformers writes many this model does not need).
    """
    for key in section:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.85)
        if close and close[0] not in section:
            raise ValueError(f"unknown key {prefix}{key} (did you mean {close[0]!r}?); fix or remove it")


def _hf_int(section: Mapping[str, Any], key: str, prefix: str, default: Any = None, least: int = 1) -> int:
    """`section[key]` (or `default`) as an int >= `least`; ValueError naming the field otherwise."""
    value = section.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "a positive" if least == 1 else f"an integer >= {least}:"
        raise ValueError(f"{prefix}{key}: expected {kind} integer, got {value!r}")
    return value


def _hf_float(section: Mapping[str, Any], key: str, prefix: str, default: Any = None) -> float:
    """`section[key]` (or `default`) as a finite float; ValueError naming the field otherwise."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{prefix}{key}: expected a number, got {value!r}")
    return float(value)


def _hf_section(hf: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = hf.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object of fields, got {value!r:.80}")
    return dict(value)


def _hf_size(value: Any, key: str) -> int | tuple[int, ...]:
    """An image/patch size: a positive int or a list of them; ValueError naming `key` otherwise."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or len(items) > 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
        raise ValueError(f"{key}: expected a positive integer (or a pair of them), got {value!r}")
    return items[0] if not isinstance(value, (list, tuple)) else tuple(items)


def config_from_hf(hf: Mapping[str, Any], *, sliding_window: Any = "default") -> dict[str, dict[str, Any]]:
    """Our model config from a `PaliGemmaConfig` dict (config.json). `sliding_window` as in `load`.

    Raises:
      ValueError: a field of the wrong type or range (a string for a number, a layer count <= 0, ...) or a misspelt
        key; the message names the field (e.g. "text_config.num_hidden_layers").
    """
    _check_hf_keys(hf, _TOP_KEYS, "")
    vision, text = _hf_section(hf, "vision_config"), _hf_section(hf, "text_config")
    _check_hf_keys(text, _TEXT_KEYS, "text_config.")
    _check_hf_keys(vision, _VISION_KEYS, "vision_config.")
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
    tp = "text_config."
    width, heads = _hf_int(t, "hidden_size", tp), _hf_int(t, "num_attention_heads", tp)
    head_dim = _hf_int(t, "head_dim", tp) if t.get("head_dim") else width // heads
    text_vocab = _hf_int(t, "vocab_size", tp, 257152)
    image_token = hf.get("image_token_index", hf.get("image_token_id"))
    if image_token is not None:
        image_token = _hf_int(hf, "image_token_index" if "image_token_index" in hf else "image_token_id", "", least=0)
    vocab = image_token if image_token is not None and 0 < image_token < text_vocab else text_vocab
    rope = t.get("rope_parameters") or {}
    if not isinstance(rope, Mapping):
        raise ValueError(f"{tp}rope_parameters: expected an object, got {rope!r:.80}")
    llm: dict[str, Any] = dict(
        variant=None,
        vocab_size=vocab,
        width=width,
        depth=_hf_int(t, "num_hidden_layers", tp),
        mlp_dim=_hf_int(t, "intermediate_size", tp),
        num_heads=heads,
        num_kv_heads=_hf_int(t, "num_key_value_heads", tp),
        head_dim=head_dim,
        rope_base=_hf_float(rope, "rope_theta", tp + "rope_parameters.", t.get("rope_theta", 10_000.0)),
        norm_eps=_hf_float(t, "rms_norm_eps", tp, 1e-6),
        post_norms=gemma2,
        sliding_window=None,
    )
    hf_window = None
    if gemma2:
        llm.update(
            query_pre_attn_scalar=_hf_float(t, "query_pre_attn_scalar", tp, 256),
            attn_logits_softcap=_float_or_none(text.get("attn_logit_softcapping", 50.0), tp + "attn_logit_softcapping"),
            final_logits_softcap=_float_or_none(
                text.get("final_logit_softcapping", 30.0), tp + "final_logit_softcapping"
            ),
        )
        window = text.get("sliding_window", gemma.GEMMA2_SLIDING_WINDOW)
        if window is not None:
            window = _hf_int(text, "sliding_window", tp, least=0)
        types = text.get("layer_types")
        if types is not None and (not isinstance(types, list) or not all(isinstance(x, str) for x in types)):
            raise ValueError(f"{tp}layer_types: expected a list of strings, got {types!r:.80}")
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
    vp = "vision_config."
    image_size = _hf_size(v["image_size"], vp + "image_size")
    patch = _hf_size(v["patch_size"], vp + "patch_size")
    if not isinstance(patch, int):
        if len(set(patch)) != 1:
            raise ValueError(f"non-square patches {patch} are not supported.")
        patch = int(patch[0])
    img = dict(
        variant=None,
        width=_hf_int(v, "hidden_size", vp),
        depth=_hf_int(v, "num_hidden_layers", vp),
        mlp_dim=_hf_int(v, "intermediate_size", vp),
        num_heads=_hf_int(v, "num_attention_heads", vp),
        patch_size=int(patch),
        image_size=image_size,
        pool_type="map" if v.get("vision_use_head") else "none",
        layer_norm_eps=_hf_float(v, "layer_norm_eps", vp, 1e-6),
    )
    projection = hf.get("projection_dim", vision.get("projection_dim"))
    if projection is not None:
        projection = _hf_int(hf if "projection_dim" in hf else vision, "projection_dim", "")
        if projection != width:
            raise ValueError(f"projection_dim {projection} differs from the text width {width}.")
    return apply_window({"img": img, "llm": llm}, sliding_window, hf_window, keep=False)


def _float_or_none(x: Any, key: str) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, type(None))) or (x and not math.isfinite(x)):
        raise ValueError(f"{key}: expected a number or null, got {x!r}")
    return float(x) if x else None


def safetensors_files(folder: str) -> list[str]:
    """Names of the `*.safetensors` files in `folder`, sorted."""
    return sorted(f for f in paths.listdir(folder) if f.endswith(".safetensors"))


def _index_shards(folder: str, index_path: str) -> list[str]:
    """The shard files `index_path`'s weight_map names, checked before any of them is opened.

    Every name must be a relative path inside `folder` (no absolute path, no `..`, no symlink leading out) and an
    existing file.

    Raises:
      CheckpointError: naming the index file and the offending names (all missing shards in one message).
    """
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: no 'weight_map' (an object: tensor name -> shard file).")
    bad = sorted({repr(f) for f in weight_map.values() if not isinstance(f, str) or not f})
    if bad:
        raise CheckpointError(f"{index_path}: weight_map holds shard names that are not file names: {', '.join(bad)}.")
    files = sorted(set(weight_map.values()))
    outside = []
    for f in files:
        parts = f.replace("\\", "/").split("/")
        if f.startswith(("/", "\\")) or "://" in f or os.path.isabs(f) or ".." in parts or (len(f) > 1 and f[1] == ":"):
            outside.append(f)
        elif not paths.is_remote(folder):
            root = os.path.realpath(folder)
            if os.path.commonpath([root, os.path.realpath(os.path.join(folder, f))]) != root:
                outside.append(f)  # a symlink that leads out of the folder
    if outside:
        raise CheckpointError(
            f"{index_path}: weight_map names shard files outside the checkpoint folder, which are never opened: "
            f"{', '.join(map(repr, outside))}; shards must be files in {folder}."
        )
    missing = [f for f in files if not paths.isfile(paths.join(folder, f))]
    if missing:
        raise CheckpointError(
            f"{index_path}: {len(missing)} of {len(files)} shard files it lists do not exist: {', '.join(missing)}; "
            f"download them into {folder}."
        )
    return files


def load_hf(
    path: str,
    meta: dict | None,
    config: Mapping | None,
    dtype: np.dtype | None,
    image_size: int | None,
    sliding_window: Any,
) -> tuple[dict, dict]:
    """`(model_config, params)` of the PyTorch-hub folder `path`; the arguments as in `paligemma.checkpoints.load`.

    Args:
      path: the folder.
      meta: its config.json (None when it has none: then `config` is needed).
      config: the model config to load into; None: derived from `meta` (`config_from_hf`).
      dtype: numpy dtype every array is cast to while it is read; None: as stored.
      image_size: resolution to resample the position embedding to; None: the checkpoint's.
      sliding_window: as `load`'s.

    Returns:
      The model config and a nested dict of numpy arrays in this project's layout (`img/...`, `llm/...`).

    Raises:
      CheckpointError: no config or weights, unreadable files, or names/shapes that do not match the config.
    """
    if meta is None and config is None:
        raise CheckpointError(f"{path}: no config.json; pass config=.")
    if meta is not None and meta.get("model_type", "paligemma") != "paligemma":
        raise CheckpointError(f"{path}: config.json model_type {meta.get('model_type')!r} is not 'paligemma'.")
    derived = config is None
    config_file = paths.join(path, "config.json")
    if derived:
        try:
            config = config_from_hf(meta, sliding_window=sliding_window)
            normalise_config(config)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{config_file}: {e} (fix the file, or pass config=).") from None
    else:
        hf_window = None
        if meta is not None and sliding_window == "hf":
            try:
                hf_window = config_from_hf(meta, sliding_window="hf")["llm"]["sliding_window"]
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise CheckpointError(f"{config_file}: {e} (fix the file, or pass config=).") from None
        config = apply_window(copy_config(config), sliding_window, hf_window, keep=True)

    # Tensor index: canonical name -> (file, stored name).
    index_path = paths.join(path, HF_INDEX_FILE)
    if paths.isfile(index_path):
        files = _index_shards(path, index_path)
    else:
        files = safetensors_files(path)
    if not files:
        bins = [f for f in paths.listdir(path) if f.endswith((".bin", ".pt", ".pth"))]
        hint = f" ({', '.join(bins)} are pickle files, which are never loaded)" if bins else ""
        raise CheckpointError(f"{path}: no *.safetensors weights{hint}.")
    readers = {f: SafetensorsFile(paths.join(path, f)) for f in files}
    tensors: dict[str, tuple[SafetensorsFile, str]] = {}
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
        config = checkpoint_config(config, pos_shape)
    target = with_image_size(config, image_size)
    ckpt = checkpoint_config(target, pos_shape)
    img, llm = normalise_config(ckpt)
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
    shapes = expected_shapes(ckpt)
    rules = _rules(img, llm)
    expected = _expected_hf_shapes(rules, shapes)
    found = {k: r.tensors[n][1] for k, (r, n) in tensors.items()}
    emb = "text/embed_tokens.weight"
    problems = duplicates + compare_shapes(
        expected,
        found,
        label=lambda k: tensors[k][1] if k in tensors else _hf_published(k),
        flexible_rows={emb: llm.vocab_size},
    )
    problems += [
        f"not a float tensor {n}: dtype {r.tensors[n][0]}"
        for k, (r, n) in tensors.items()
        if k in expected and not is_float(r.tensors[n][0])
    ]
    if problems:
        where = path if len(readers) > 1 else readers[files[0]].path
        raise mismatch_error(where, problems)
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
    resample(params, ckpt, target)
    return target, params


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
    target = as_dtype(dtype)
    if target is None:
        target = np.dtype(tensors["language_model.model.embed_tokens.weight"].dtype)
    cfg = hf_config(config, dtype=target, vocab_size=pad_vocab_to)
    paths.makedirs(folder)
    size = write_safetensors(paths.join(folder, HF_WEIGHTS_FILE), tensors, target)
    blob = json.dumps(cfg, indent=2).encode("utf-8")
    paths.atomic_write(paths.join(folder, "config.json"), lambda f: f.write(blob))
    return size + len(blob)
