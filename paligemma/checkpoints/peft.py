"""PEFT (Hugging Face) LoRA adapter folders <-> this project's LoRA factors (`paligemma.lora`), exactly.

A PEFT folder holds `adapter_config.json` and `adapter_model.safetensors`: per adapted torch module of
`PaliGemmaForConditionalGeneration`, `base_model.model.<module>.lora_A.weight` `[r, in]` and `.lora_B.weight`
`[out, r]` (the patch convolution: `[r, 3, P, P]` and `[out, r, 1, 1]`); the module's weight gets `scale * B A` with
`scale = lora_alpha / r` (`lora_alpha / sqrt(r)` with `use_rslora`; `rank_pattern` / `alpha_pattern` override r and
alpha per module). Module names and weight layouts are those of `paligemma.checkpoints.hf`; this module only maps the
factors.

    save_peft(adapters, model_config, lora_config, "out/adapter")   # PeftModel.from_pretrained(hf_model, "out/adapter")
    lora_config, adapters = load_peft("some/adapter", model_config)   # lora.adapted_model(model, lora_config)

Our fused weights split exactly: `kv_einsum` -> `k_proj`, `v_proj` (the same A, each its half of B), `qkv_einsum` ->
`q_proj`, `k_proj`, `v_proj`, `gating_einsum` -> `gate_proj`, `up_proj`. The other way, PEFT's separate A's of the
parts of one of our weights are stacked along the rank axis with a block-diagonal B (one A when they are all equal, as
`save_peft` writes them); each module's scale is folded into B and every pair is zero-padded to one rank R, so
`load_peft` returns `LoraConfig(rank=R, alpha=R)` (scale 1) whose `targets` match exactly the adapted weights.
Anything PEFT can express that this cannot is refused with one `CheckpointError` (a ValueError) naming the file and
the field: DoRA, bias adapters, modules_to_save, modules we cannot adapt (`lm_head`, `embed_tokens`, the MAP head's
fused attention), a LoRA variant that changes the forward pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from paligemma import lora, paths
from paligemma.checkpoints import hf
from paligemma.checkpoints.common import CheckpointError, as_dtype, read_json, shape_of
from paligemma.checkpoints.infer import compare_shapes, expected_shapes, mismatch_error, normalise_config
from paligemma.checkpoints.safetensors import SafetensorsFile, write_safetensors
from paligemma.tree import flatten

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
_KEY_PREFIX = "base_model.model."
_FACTORS = ("lora_A.weight", "lora_B.weight")

# Every weight Qwix can adapt: the matmul and conv weights of both towers (not the token table, see paligemma.lora).
_EVERY_WEIGHT = lora.LoraConfig(rank=1, alpha=1.0, targets=(r"^img/", r"^llm/layers/"))

# adapter_config.json fields whose non-default values change what the adapter computes in a way our LoRA cannot.
_REFUSED_FIELDS = {
    "use_dora": "DoRA rescales the adapted weight by a learned magnitude",
    "lora_bias": "the adapters carry a bias",
    "modules_to_save": "whole modules are trained and saved besides the adapters",
    "trainable_token_indices": "token embeddings are trained besides the adapters",
    "target_parameters": "adapters on bare parameters (not modules)",
    "layer_replication": "layers are replicated",
    "use_qalora": "QA-LoRA pools the adapter input",
    "alora_invocation_tokens": "activated LoRA applies only after invocation tokens",
    "arrow_config": "Arrow routes between adapters",
    "use_bdlora": "a block-diagonal LoRA variant",
    "kasa_config": "a LoRA variant",
    "monteclora_config": "a LoRA variant",
    "velora_config": "a LoRA variant",
}


@dataclasses.dataclass(frozen=True)
class _Module:
    """One torch module an adapter can sit on: (a part of) one layer of one of our weights."""

    ours: str  # our weight, e.g. "llm/layers/attn/kv_einsum/w"
    template: str  # canonical HF module name, "{i}" for the layer: "text/layers.{i}.self_attn.k_proj"
    layer: int | None  # index into our weight's leading depth axis; None: not stacked
    part: int | None  # index along a fused weight's part axis (the first of B's output axes); None: not fused
    in_dims: tuple[int, ...]  # one layer's A without its rank axis
    out_dims: tuple[int, ...]  # one layer's B without its rank (and part) axis
    conv: bool  # the patch convolution: PEFT's A is a conv kernel, its B a 1x1 conv


def _modules(model_config: Mapping[str, Any]) -> dict[str, _Module]:
    """Canonical HF module name (`text/layers.0.self_attn.k_proj`) -> `_Module`, for every adaptable module.

    Built from `hf._rules` (the one name table) and the adapter shapes Qwix gives every adaptable weight. A PEFT
    factor is our factor flattened: A `[r, prod(in_dims)]`, B `[prod(out_dims), r]`, both in our axis order, which is
    how `hf._rules` flattens the weights themselves.
    """
    img, llm = normalise_config(model_config)
    rules = hf._rules(img, llm)
    hf_shapes = hf._expected_hf_shapes(rules, expected_shapes(model_config))
    shapes = lora.adapter_shapes(model_config, _EVERY_WEIGHT)
    out = {}
    for r, i, name in hf._rule_instances(rules):
        a = shapes.get(r.ours + "_lora_a")
        if a is None or r.hf_rows is not None or not name.endswith(".weight"):
            continue  # not adaptable, or a fused in_proj (MAP head) that PEFT cannot adapt per part
        lead = 0 if i is None else 1
        in_dims, out_dims = tuple(a.shape[lead:-1]), tuple(shapes[r.ours + "_lora_b"].shape[lead + 1 :])
        if r.part is not None:
            out_dims = out_dims[1:]
        w = hf_shapes[name]
        conv = len(w) == 4
        flat = (math.prod(out_dims), in_dims[2], *in_dims[:2]) if conv else (math.prod(out_dims), math.prod(in_dims))
        assert tuple(w) == flat, (name, w, in_dims, out_dims)  # our factors' axes flatten to the HF weight's
        out[name[: -len(".weight")]] = _Module(r.ours, r.hf[: -len(".weight")], i, r.part, in_dims, out_dims, conv)
    return out


def _hf_factor_shapes(m: _Module, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if m.conv:
        kh, kw, cin = m.in_dims
        return (rank, cin, kh, kw), (math.prod(m.out_dims), rank, 1, 1)
    return (rank, math.prod(m.in_dims)), (math.prod(m.out_dims), rank)


def _to_hf(m: _Module, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One layer's (part's) factors, ours `[in..., r]`, `[r, out...]` -> PEFT's lora_A, lora_B."""
    r = a.shape[-1]
    if m.conv:
        return a.transpose(3, 2, 0, 1), b.T[:, :, None, None]
    return a.reshape(-1, r).T, b.reshape(r, -1).T


def _from_hf(m: _Module, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PEFT's lora_A, lora_B -> ours `[in..., r]`, `[r, out...]` (inverse of `_to_hf`)."""
    r = a.shape[0]
    if m.conv:
        return a.transpose(2, 3, 1, 0), b[:, :, 0, 0].T
    return a.T.reshape(*m.in_dims, r), b.T.reshape(r, *m.out_dims)


def _short(canonical: str) -> str:
    return re.split(r"[./]", canonical)[-1]


def _target_modules(adapted: set[str], modules: Mapping[str, _Module]) -> list[str] | str:
    """PEFT's `target_modules` selecting exactly the `adapted` modules of the model.

    The short names (`q_proj`, `fc1`, ...) when every module of each of those names is adapted; else (e.g. q/k/v of
    one tower only) a regex string, which PEFT full-matches against module names (transformers 4 and 5 prefixes).
    """
    names = {_short(c) for c in adapted}
    if all(c in adapted for c in modules if _short(c) in names):
        return sorted(names)
    patterns = set()
    for c in adapted:
        tag, rest = modules[c].template.split("/", 1)
        prefixes = "|".join(re.escape(p) for p, t in hf._HF_PREFIXES if t == tag + "/")
        patterns.add(rf"(?:.*\.)?(?:{prefixes})" + re.escape(rest).replace(re.escape("{i}"), r"\d+"))
    return "(?:" + "|".join(sorted(patterns)) + ")"


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def save_peft(
    adapters: Mapping[str, Any],
    model_config: Mapping[str, Any],
    lora_config: lora.LoraConfig | Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
    dtype: Any = None,
) -> int:
    """Writes our LoRA factors as a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`).

    `PeftModel.from_pretrained(hf_model, out_dir)` on the transformers model of the same base weights
    (`checkpoints.save_hf`) then computes what `lora.adapted_model` computes with these factors.

    Args:
      adapters: `{name: array}` of every factor of `lora_config` (`..._lora_a`, `..._lora_b`), flat ("/"-joined) or
        nested; other leaves (base weights) are ignored.
      model_config: the model config the adapters belong to.
      lora_config: their `LoraConfig` (or its dict): rank, alpha and dropout go to the PEFT config.
      out_dir: the folder to write (created).
      base_model_name_or_path: written to the config (the base model PEFT loads when given none).
      task_type: PEFT's task type ("CAUSAL_LM" makes a PeftModelForCausalLM; None a plain PeftModel).
      dtype: cast every factor ("float32", "bfloat16", ...); default: as given.

    Returns:
      Bytes written.

    Raises:
      ValueError: factors missing or of the wrong shape for `lora_config`, or an adapted weight transformers has no
        module for (the MAP head's attention).
    """
    cfg = lora.LoraConfig.from_dict(lora_config)
    flat = {k: np.asarray(v) for k, v in flatten(adapters).items() if lora.is_adapter(k)}
    expected = lora.adapter_shapes(model_config, cfg)
    problems = compare_shapes(
        {k: tuple(s.shape) for k, s in expected.items()}, {k: shape_of(v) for k, v in flat.items()}
    )
    if problems:
        raise mismatch_error("adapters", problems, what=f"the adapters of lora targets {list(cfg.targets)}")
    weights = {lora.adapted_weight(n) for n in expected}
    every_module = _modules(model_config)
    modules = {c: m for c, m in every_module.items() if m.ours in weights}
    missing = sorted(weights - {m.ours for m in modules.values()})
    if missing:
        raise ValueError(
            f"PEFT/transformers has no module for the adapted weight(s) {missing}; drop them from targets."
        )
    tensors = {}
    for c, m in modules.items():
        a, b = flat[m.ours + "_lora_a"], flat[m.ours + "_lora_b"]
        if m.layer is not None:
            a, b = a[m.layer], b[m.layer]
        if m.part is not None:
            b = b[:, m.part]
        key = _KEY_PREFIX + hf.hf_module_name(c)
        tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"] = _to_hf(m, a, b)
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "r": cfg.rank,
        "lora_alpha": _number(cfg.alpha),
        "lora_dropout": float(cfg.dropout),
        "target_modules": _target_modules(set(modules), every_module),
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "lora_bias": False,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    out_dir = os.fspath(out_dir)
    paths.makedirs(out_dir)
    size = write_safetensors(paths.join(out_dir, ADAPTER_WEIGHTS_FILE), tensors, as_dtype(dtype), {"format": "pt"})
    blob = json.dumps(config, indent=2).encode("utf-8")
    paths.atomic_write(paths.join(out_dir, ADAPTER_CONFIG_FILE), lambda f: f.write(blob))
    return size + len(blob)


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's `rank_pattern` / `alpha_pattern` lookup: the first key that matches the end of the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclasses.dataclass(frozen=True)
class _PeftConfig:
    """What `adapter_config.json` says about the factors: each module's rank and scale, and the dropout."""

    r: float
    alpha: float
    rslora: bool
    rank_pattern: Mapping[str, Any]
    alpha_pattern: Mapping[str, Any]
    dropout: float

    def rank(self, module: str) -> float:
        """The rank PEFT gives `module` (its name as stored, e.g. `model.language_model.layers.0.self_attn.q_proj`)."""
        return float(_pattern_value(self.rank_pattern, module, self.r))

    def scale(self, module: str) -> float:
        """PEFT's factor on `B A` for `module`: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        r, alpha = self.rank(module), float(_pattern_value(self.alpha_pattern, module, self.alpha))
        return alpha / (math.sqrt(r) if self.rslora else r)

    @classmethod
    def read(cls, config_file: str) -> _PeftConfig:
        """The config of `config_file`; one CheckpointError naming the file and the field for what we cannot compute."""
        meta = read_json(config_file)

        def refuse(field: str, why: str):
            return CheckpointError(
                f"{config_file}: {field} = {meta.get(field)!r}: {why}, which this project's LoRA cannot represent "
                "exactly."
            )

        if meta.get("peft_type", "LORA") != "LORA":
            raise refuse("peft_type", "not a LoRA adapter")
        if meta.get("bias", "none") not in ("none", None):
            raise refuse("bias", "the base model's biases are trained too")
        for field, why in _REFUSED_FIELDS.items():
            if meta.get(field):
                raise refuse(field, why)

        def number(field: str, default: float, low: float, high: float = math.inf) -> float:
            value = meta.get(field, default)
            value = default if value is None else value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise CheckpointError(f"{config_file}: {field} = {value!r}: expected a number in [{low}, {high}).")
            return float(value)

        patterns = {}
        for field in ("rank_pattern", "alpha_pattern"):
            value = meta.get(field) or {}
            if not isinstance(value, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value.values()
            ):
                raise CheckpointError(f"{config_file}: {field} = {value!r}: expected an object of positive numbers.")
            patterns[field] = value
        return cls(
            r=number("r", 8, 1),
            alpha=number("lora_alpha", 8, 1e-30),
            rslora=bool(meta.get("use_rslora")),
            rank_pattern=patterns["rank_pattern"],
            alpha_pattern=patterns["alpha_pattern"],
            dropout=number("lora_dropout", 0.0, 0.0, 1.0),
        )


def load_peft(
    path: str | os.PathLike, model_config: Mapping[str, Any], *, dtype: Any = None
) -> tuple[lora.LoraConfig, dict[str, np.ndarray]]:
    """Reads a PEFT LoRA adapter folder (written by `save_peft`, PEFT or transformers) as our factors, exactly.

    Keys of any transformers version's module names are read (`model.language_model.*`, `language_model.model.*`,
    `vision_tower[.vision_model].*`, `multi_modal_projector.*`).

    Args:
      path: the folder with `adapter_config.json` and `adapter_model.safetensors`.
      model_config: the config of the base model the adapter applies to.
      dtype: the factors' dtype; default: the model's parameter dtype (what `lora.init_adapters` gives).

    Returns:
      `(lora_config, adapters)`: a `LoraConfig` with rank = alpha = R (scale 1) and `targets` the anchored names of
      the adapted weights, and the flat `{name: numpy array}` of every factor. Applied with the base params through
      `lora.adapted_model`, they compute what PEFT computes.

    Raises:
      CheckpointError: (a ValueError) a missing or unreadable file, an adapter this project cannot represent exactly
        (the message names the file and the field or tensors), or shapes that do not fit `model_config`.
    """
    path = os.fspath(path)
    config_file, weights_file = paths.join(path, ADAPTER_CONFIG_FILE), paths.join(path, ADAPTER_WEIGHTS_FILE)
    if not paths.isdir(path):
        raise CheckpointError(f"{path}: no such PEFT adapter folder.")
    for f in (config_file, weights_file):
        if not paths.isfile(f):
            bins = [x for x in paths.listdir(path) if x.endswith((".bin", ".pt", ".pth"))]
            hint = f" ({', '.join(sorted(bins))}: pickle files, which are never loaded)" if bins else ""
            raise CheckpointError(
                f"{f}: missing; a PEFT adapter folder holds {ADAPTER_CONFIG_FILE} and {ADAPTER_WEIGHTS_FILE}{hint}."
            )
    peft_config = _PeftConfig.read(config_file)
    reader = SafetensorsFile(weights_file)
    modules = _modules(model_config)

    # Tensor names -> module: {canonical module: {"lora_A.weight": stored name, ...}}, and the module names as stored.
    problems, found, stored_module = [], {}, {}
    for key in sorted(reader.tensors):
        name = key[len(_KEY_PREFIX) :] if key.startswith(_KEY_PREFIX) else key
        module, sep, factor = name.partition(".lora_")
        factor = "lora_" + factor
        canonical = hf.canonical_hf_name(module + ".weight") if sep else None
        if sep and (canonical is None or canonical[: -len(".weight")] not in modules):
            problems.append(f"{key}: module {module!r} has no adaptable counterpart in this model")
        elif not sep or factor not in _FACTORS:
            problems.append(f"{key}: not a LoRA A/B weight (this project's LoRA has only lora_A and lora_B)")
        else:
            found.setdefault(canonical[: -len(".weight")], {})[factor] = key
            stored_module[canonical[: -len(".weight")]] = module
    if not reader.tensors:
        problems.append("no tensors")

    # Each module's pair, in our layout, with its scale folded into B.
    pairs: dict[str, dict[int | None, dict[int | None, tuple[np.ndarray, np.ndarray]]]] = {}
    for c, factors in sorted(found.items()):
        m = modules[c]
        if len(factors) != 2:
            problems.append(
                f"{next(iter(factors.values()))}: its {'lora_B' if 'lora_A.weight' in factors else 'lora_A'} is missing"
            )
            continue
        a_key, b_key = factors["lora_A.weight"], factors["lora_B.weight"]
        rank = reader.tensors[a_key][1][0] if reader.tensors[a_key][1] else 0
        want_a, want_b = _hf_factor_shapes(m, rank)
        for k, want in ((a_key, want_a), (b_key, want_b)):
            if reader.tensors[k][1] != want:
                problems.append(f"{k}: shape {reader.tensors[k][1]}, expected {want} for the model config")
        r = peft_config.rank(stored_module[c])
        if r != rank and reader.tensors[a_key][1] == want_a:
            problems.append(f"{a_key}: rank {rank}, but {ADAPTER_CONFIG_FILE} (r / rank_pattern) says {_number(r)}")
        if problems:
            continue
        scale = peft_config.scale(stored_module[c])
        a, b = _from_hf(m, reader.array(a_key).astype(np.float64), reader.array(b_key).astype(np.float64))
        pairs.setdefault(m.ours, {}).setdefault(m.layer, {})[m.part] = (a, b * scale)
    if problems:
        raise CheckpointError(
            f"{weights_file}: cannot be read as this project's LoRA adapters ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n" + "\n".join(f"  {p}" for p in problems)
        )

    # One (A, B) per layer of each weight: the parts' A's stacked along the rank (one A when all are equal), B
    # block-diagonal; then every pair zero-padded to the largest rank R.
    combined: dict[str, dict[int | None, tuple[np.ndarray, list[tuple[int | None, int, np.ndarray]]]]] = {}
    for ours, layers in pairs.items():
        for layer, parts in layers.items():
            a_list = [a for a, _ in parts.values()]
            if all(np.array_equal(a_list[0], x) for x in a_list[1:]):
                a, blocks = a_list[0], [(p, 0, b) for p, (_, b) in parts.items()]
            else:
                offsets = np.cumsum([0] + [x.shape[-1] for x in a_list])
                a = np.concatenate(a_list, axis=-1)
                blocks = [(p, int(o), b) for (p, (_, b)), o in zip(parts.items(), offsets, strict=False)]
            combined.setdefault(ours, {})[layer] = (a, blocks)
    rank = max(a.shape[-1] for layers in combined.values() for a, _ in layers.values())
    cfg = lora.LoraConfig(
        rank=int(rank),
        alpha=float(rank),
        targets=tuple(f"^{re.escape(w)}$" for w in sorted(combined)),
        dropout=peft_config.dropout,
    )
    shapes = lora.adapter_shapes(model_config, cfg)
    out = {}
    for ours, layers in combined.items():
        sa, sb = shapes[ours + "_lora_a"], shapes[ours + "_lora_b"]
        a_full, b_full = np.zeros(sa.shape, np.float64), np.zeros(sb.shape, np.float64)
        for layer, (a, blocks) in layers.items():
            a_dest = a_full if layer is None else a_full[layer]
            b_dest = b_full if layer is None else b_full[layer]
            a_dest[..., : a.shape[-1]] = a
            for part, offset, b in blocks:
                rows = slice(offset, offset + b.shape[0])
                if part is None:
                    b_dest[rows] = b
                else:
                    b_dest[rows, part] = b
        target = np.dtype(sa.dtype) if dtype is None else as_dtype(dtype)
        out[ours + "_lora_a"], out[ours + "_lora_b"] = a_full.astype(target), b_full.astype(target)
    return cfg, out
