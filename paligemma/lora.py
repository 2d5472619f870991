"""LoRA and QLoRA adapters on PaliGemma's weights, through Qwix.

An adapted weight `W` (any einsum, dense or conv weight of the decoder or the image encoder) computes
`x W + (alpha / rank) * (x A) B` with two small trainable factors: `A` over W's input dims (plus a rank axis) and `B`
over its output dims. Qwix (`qwix.LoraProvider`) intercepts the model's einsum/dot_general/conv calls and adds the
adapters; this module chooses which weights it adapts, builds the adapter parameters and merges them back.

    cfg = LoraConfig.from_dict(dict(rank=16, alpha=16, targets=[r"llm/layers/attn/.*"]))
    model = adapted_model(model_lib.Model(**model_config), cfg)     # a Model whose calls add the adapters
    params = {**base_params merged with init_adapters(model_config, cfg, rng)}
    merged = merge(params, model_config, cfg)                         # a plain parameter tree, same logits

Adapter parameters sit next to the weight they adapt, named `<weight>_lora_a` and `<weight>_lora_b` (for example
`llm/layers/attn/q_einsum/w_lora_a`); weights inside the scanned layer stacks get a leading depth axis like their
weight. `B` starts at zero, so a freshly adapted model computes exactly what the base model computes. Adapters are
float32 whatever the base's dtype (a bfloat16 base stays bfloat16; each adapted call returns its usual dtype).

QLoRA (`quantize="int8"|"int4"`): the frozen base weights are quantized by Qwix (weight-only, per channel or in
blocks of `tile_size`) and the adapters train in the compute dtype on top of them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import qwix
from qwix._src.core import einsum_info
from qwix._src.providers import ptq
from qwix._src.utils import flax_util

from paligemma import model as model_lib
from paligemma import quantization
from paligemma.tree import flatten, unflatten

ADAPTER_SUFFIXES = ("_lora_a", "_lora_b")

# The decoder's attention and MLP weights: what LoRA on PaliGemma usually adapts (transformers' q/k/v/o/gate/up/down).
DEFAULT_TARGETS = (r"^llm/layers/(attn|mlp)/",)


# Weights no adapter may target: the token table is also read by a lookup (`jnp.take`) that Qwix does not see, so an
# adapter there would change the logits but not the input embeddings, and could not be merged into one table.
_UNADAPTABLE = re.compile(r"^llm/embedder/input_embedding$")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """What to adapt and how: the `config.lora` section of a run.

    rank: rank r of each adapter pair. alpha: the update is scaled by alpha / rank. targets: regexes over "/"-joined
    parameter names (e.g. `llm/layers/attn/q_einsum/w`, `img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel`);
    a weight matching any is adapted. dropout: dropout rate on an adapter's input while training. quantize: None, or
    "int8"/"int4" to quantize the frozen base weights (QLoRA). tile_size: None (per-channel scales) or the block size of
    the quantization along each weight's last input axis.
    """

    rank: int = 16
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    dropout: float = 0.0
    quantize: str | None = None
    tile_size: int | None = None

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank must be a positive integer; got {self.rank!r}.")
        if not float(self.alpha) > 0:
            raise ValueError(f"lora.alpha must be > 0; got {self.alpha!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1); got {self.dropout!r}.")
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError("lora.targets is empty: give regexes over parameter names, e.g. ['^llm/layers/attn/'].")
        for pattern in self.targets:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"lora.targets: {pattern!r} is not a regex ({e}).") from None
        if self.quantize not in (None, *quantization.QTYPES):
            raise ValueError(f"lora.quantize must be None, 'int8' or 'int4'; got {self.quantize!r}.")
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or self.tile_size < 1):
            raise ValueError(f"lora.tile_size must be None or a positive integer; got {self.tile_size!r}.")

    @property
    def scale(self) -> float:
        """The factor on `(x A) B`: alpha / rank."""
        return float(self.alpha) / self.rank

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | LoraConfig) -> LoraConfig:
        """The config from a `config.lora` mapping; an unknown key raises ValueError naming it and the known ones."""
        if isinstance(section, LoraConfig):
            return section
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"lora: unknown key(s) {unknown}; known keys: {known}.")
        return cls(**{k: tuple(v) if k == "targets" and not isinstance(v, str) else v for k, v in section.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (`from_dict` inverts it)."""
        return {**dataclasses.asdict(self), "targets": list(self.targets)}

    def targeted(self, name: str) -> bool:
        """Whether parameter `name` ("/"-joined) gets an adapter."""
        return any(re.search(p, name) for p in self.targets)


def is_adapter(name: str) -> bool:
    """Whether "/"-joined parameter `name` is an adapter factor (`..._lora_a` / `..._lora_b`)."""
    return name.endswith(ADAPTER_SUFFIXES)


def adapted_weight(name: str) -> str:
    """The weight an adapter factor belongs to: `.../w_lora_a` -> `.../w`."""
    for suffix in ADAPTER_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"{name!r} is not an adapter parameter (no suffix {ADAPTER_SUFFIXES}).")


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one weight was used when an adapter was built for it (what merging the pair back into it needs)."""

    kind: str  # "einsum" | "dot_general" | "conv"
    weight_shape: tuple[int, ...]  # as called: inside a scanned stack, one layer's weight (no depth axis)
    einsum: str = ""  # kind "einsum": the equation
    lhs_ndim: int = 0  # kind "einsum": the activation's rank
    dimension_numbers: Any = None  # kind "dot_general": ((lhs_c, rhs_c), (lhs_b, rhs_b))


class _Provider(qwix.LoraProvider):
    """Qwix's LoRA provider, adapting only the weights whose full name matches a `LoraConfig` target.

    Qwix's rules select modules; PaliGemma's MLP keeps two weights in one module, so the choice is made here by
    parameter name. Weights that are not targeted still pass through Qwix's PTQ path (quantized base in QLoRA). Every
    adapted call's layout is recorded in `layouts` (name -> `_Layout`) for `merge`.
    """

    def __init__(self, cfg: LoraConfig):
        lora = dict(rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
        if cfg.quantize:  # QLoRA: the base weights quantized as `paligemma.quantization.rules` says
            skip, weights = quantization.rules(cfg.quantize, cfg.tile_size)
            rules = [
                qwix.LoraRule(module_path=skip.module_path, **lora),  # the token table stays as stored
                qwix.LoraRule(
                    module_path=weights.module_path,
                    op_names=weights.op_names,
                    weight_qtype=weights.weight_qtype,
                    tile_size=weights.tile_size,
                    **lora,
                ),
                qwix.LoraRule(module_path=".*", **lora),  # convolutions: float (no weight-only PTQ for them)
            ]
        else:
            rules = [qwix.LoraRule(module_path=".*", **lora)]
        super().__init__(rules)
        self.cfg = cfg
        self.layouts: dict[str, _Layout] = {}

    def nn_param(self, module: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """Qwix's param interception; a quantized base weight comes back castable (`quantization.castable`)."""
        return quantization.castable(super().nn_param(module, name, *args, **kwargs))

    def _target(self, rhs: Any) -> str | None:
        weight = flax_util.find_param(rhs, ptq.WithAux)
        if weight is None:
            module = flax_util.get_current_module()
            if any(isinstance(v, np.ndarray) for v in module.scope._collection("params").values()):  # noqa: SLF001
                # Qwix finds a weight by identity among jax arrays: with numpy params nothing would be adapted.
                raise TypeError(
                    "An adapted (LoRA) model needs its params as jax arrays: call it inside jax.jit, or pass "
                    "jax.tree.map(jnp.asarray, params)."
                )
            return None
        name = "/".join((*(str(p) for p in flax_util.get_current_module_path()), weight))
        if not self.cfg.targeted(name):
            return None
        if _UNADAPTABLE.search(name):
            raise ValueError(
                f"lora.targets matches {name!r}, which cannot take an adapter (it is also read by a table lookup); "
                "narrow the regexes."
            )
        return name

    def einsum(self, einsum_str, *operands, **kwargs):
        """LoRA einsum on targeted weights, Qwix's PTQ einsum on the others."""
        name = self._target(operands[1]) if len(operands) == 2 else None
        if name is None:
            return ptq.PtqProvider.einsum(self, einsum_str, *operands, **kwargs)
        self.layouts[name] = _Layout("einsum", tuple(operands[1].shape), einsum=einsum_str, lhs_ndim=operands[0].ndim)
        return _as_base(super().einsum(einsum_str, *operands, **kwargs), *operands, kwargs)

    def dot_general(self, lhs, rhs, dimension_numbers, *args, **kwargs):
        """LoRA dot_general on targeted weights, Qwix's PTQ dot_general on the others."""
        name = self._target(rhs)
        if name is None:
            return ptq.PtqProvider.dot_general(self, lhs, rhs, dimension_numbers, *args, **kwargs)
        self.layouts[name] = _Layout("dot_general", tuple(rhs.shape), dimension_numbers=dimension_numbers)
        return _as_base(super().dot_general(lhs, rhs, dimension_numbers, *args, **kwargs), lhs, rhs, kwargs)

    def conv_general_dilated(self, lhs, rhs, *args, **kwargs):
        """LoRA conv on targeted weights, Qwix's PTQ conv on the others."""
        name = self._target(rhs)
        if name is None:
            return ptq.PtqProvider.conv_general_dilated(self, lhs, rhs, *args, **kwargs)
        if lhs.dtype != jnp.float32:
            raise ValueError(
                f"lora.targets matches the convolution {name!r}, whose input is {lhs.dtype}: Qwix's convolution "
                "adapter needs float32 inputs (its float32 factors cannot mix with other dtypes in a convolution); "
                "leave it out of the targets or compute the image tower in float32."
            )
        self.layouts[name] = _Layout("conv", tuple(rhs.shape))
        return _as_base(super().conv_general_dilated(lhs, rhs, *args, **kwargs), lhs, rhs, kwargs)


def _as_base(out: jax.Array, lhs: Any, rhs: Any, kwargs: Mapping[str, Any]) -> jax.Array:
    """`out` in the dtype the call has without an adapter: float32 adapters must not promote bfloat16 activations."""
    want = kwargs.get("preferred_element_type")
    if want is None:
        want = jnp.result_type(lhs.dtype, rhs.dtype) if isinstance(rhs, jax.Array) else lhs.dtype
    return out if out.dtype == want else out.astype(want)


def _config_key(model_config: Mapping[str, Any]) -> model_lib.Model:
    return model_lib.Model(**model_config)


@functools.lru_cache(maxsize=32)
def _adapted(model: model_lib.Model, cfg: LoraConfig) -> tuple[Any, _Provider]:
    provider = _Provider(cfg)
    return qwix.quantize_model(quantization.qwix_ready(model), provider, methods=quantization.METHODS), provider


def adapted_model(model: model_lib.Model, cfg: LoraConfig) -> model_lib.Model:
    """`model` with adapters on the targeted weights: a Qwix-wrapped `Model` taking the base params plus the factors.

    Equal arguments give the same object, so jitted programs keyed on it are reused.
    """
    return _adapted(model, cfg)[0]


@functools.lru_cache(maxsize=32)
def _abstract(model: model_lib.Model, cfg: LoraConfig) -> tuple[dict[str, Any], dict[str, _Layout]]:
    wrapped, provider = _adapted(model, cfg)
    image, text, mask_ar = model_lib.dummy_inputs({"img": dict(model.img), "llm": dict(model.llm)})
    shapes = jax.eval_shape(lambda: wrapped.init(jax.random.key(0), image, text, mask_ar))["params"]
    flat = flatten(shapes)  # a quantized weight (`WithAux`) is one leaf
    # Adapters are float32 whatever the base's dtype: trained in bfloat16, their small updates would round away.
    flat = {n: jax.ShapeDtypeStruct(s.shape, jnp.float32) if is_adapter(n) else s for n, s in flat.items()}
    missed = sorted(n for n in provider.layouts if n + "_lora_a" not in flat)
    if missed:  # seen by the provider as targets, but Qwix attached no adapter (its own weight lookup failed)
        raise ValueError(
            f"Qwix could not attach adapters to {missed[:3]}{' ...' if len(missed) > 3 else ''}"
            + (
                " with a quantized base: QLoRA adapts the decoder's einsum weights, not the image encoder's dense "
                "layers (Qwix 0.1.8); leave those out of lora.targets, or train them with LoRA without quantize."
                if cfg.quantize
                else "; leave them out of lora.targets."
            )
        )
    if not any(is_adapter(n) for n in flat):
        raise ValueError(
            f"lora.targets {list(cfg.targets)} match no adaptable weight of this model; parameter names look like "
            "'llm/layers/attn/q_einsum/w' or 'img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel'."
        )
    return flat, dict(provider.layouts)


def param_shapes(model_config: Mapping[str, Any], cfg: LoraConfig) -> dict[str, Any]:
    """Nested `jax.ShapeDtypeStruct` tree of the adapted model: the base weights plus every adapter factor.

    With `cfg.quantize`, quantized base weights appear as Qwix's `WithAux` leaves (see `quantize_base`).
    """
    flat, _ = _abstract(_config_key(model_config), cfg)
    return unflatten(flat)


def adapter_shapes(model_config: Mapping[str, Any], cfg: LoraConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """Flat `{name: ShapeDtypeStruct}` of the adapter factors only (A `[..., in dims, r]`, B `[..., r, out dims]`)."""
    flat, _ = _abstract(_config_key(model_config), cfg)
    return {n: s for n, s in flat.items() if is_adapter(n)}


def init_adapters(model_config: Mapping[str, Any], cfg: LoraConfig, rng: jax.Array) -> dict[str, jax.Array]:
    """Fresh adapter factors, flat float32 `{name: array}`: A He-uniform (as Qwix initialises it), B zeros (update 0).

    Independent of the base weights' values (nothing else is built).
    """
    flat, layouts = _abstract(_config_key(model_config), cfg)
    out = {}
    for i, name in enumerate(sorted(n for n in flat if is_adapter(n))):
        s = flat[name]
        if name.endswith("_lora_b"):
            out[name] = jnp.zeros(s.shape, s.dtype)
            continue
        stacked = flat[adapted_weight(name)].ndim == len(layouts[adapted_weight(name)].weight_shape) + 1
        fan_in = int(np.prod(s.shape[int(stacked) : -1]))  # one layer's A: every axis but the rank
        bound = float(np.sqrt(6.0 / fan_in))
        key = jax.random.fold_in(rng, i)
        out[name] = jax.random.uniform(key, s.shape, jnp.float32, -bound, bound).astype(s.dtype)
    return out


def _delta(layout: _Layout, a: jax.Array, b: jax.Array) -> jax.Array:
    """One layer's weight update `A B` in the weight's own layout (before the alpha / rank factor).

    The factors are laid out as Qwix builds them: for an einsum, A holds the weight's axes shared with the activation
    (in the weight's order) then the rank, B the rank then the weight's other axes; for a dot_general, A is
    `[batch..., prod(contracting), r]` and B `[batch..., r, prod(rest)]`; for a conv, A is `[window..., in, r]` and B
    `[r, out]`.
    """
    if layout.kind == "conv":
        return jnp.einsum("...r,ro->...o", a, b)
    if layout.kind == "dot_general":
        (_, rhs_c), (_, rhs_b) = layout.dimension_numbers
        rhs_r = [i for i in range(len(layout.weight_shape)) if i not in rhs_c and i not in rhs_b]
        order = [*rhs_b, *rhs_c, *rhs_r]
        delta = jnp.einsum("...cr,...rm->...cm", a, b).reshape([layout.weight_shape[i] for i in order])
        return jnp.transpose(delta, np.argsort(order))
    info = einsum_info.EinsumInfo.parse(layout.einsum, ndims=(layout.lhs_ndim, len(layout.weight_shape)))
    r = next(c for c in string.ascii_letters if c not in set(info.lhs) | set(info.rhs))
    a_str = "".join(c for c in info.rhs if c in info.lhs) + r
    b_str = r + "".join(c for c in info.rhs if c not in info.lhs)
    return jnp.einsum(f"{a_str},{b_str}->{info.rhs}", a, b)


def merge(params: Mapping[str, Any], model_config: Mapping[str, Any], cfg: LoraConfig) -> dict[str, Any]:
    """A plain parameter tree with every adapter folded into its weight: `W + (alpha / rank) * A B`.

    The sum is taken in float32 and cast back to W's dtype. The merged tree drives the plain `Model` to the adapted
    model's logits.

    `params`: nested tree of the adapted model (base weights + factors). A QLoRA base's quantized weights are
    dequantized first (`qvalue * scale`, in the scale's dtype), so the merged tree reproduces the quantized model.
    """
    flat = flatten(params)
    layouts = _abstract(_config_key(model_config), cfg)[1]
    out = {n: v for n, v in flat.items() if not is_adapter(n)}
    out = {n: dequantized(v) for n, v in out.items()}
    for name, layout in layouts.items():
        w, a, b = out[name], flat[name + "_lora_a"], flat[name + "_lora_b"]
        fn = functools.partial(_delta, layout)
        if w.ndim == len(layout.weight_shape) + 1:  # a scanned stack: one adapter pair per layer
            fn = jax.vmap(fn)
        delta = fn(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
        out[name] = (jnp.asarray(w, jnp.float32) + cfg.scale * delta.reshape(w.shape)).astype(w.dtype)
    return unflatten(out)


def is_quantized(value: Any) -> bool:
    """Whether a parameter (array, `ShapeDtypeStruct` or node) is a QLoRA base's quantized weight (`WithAux`)."""
    return isinstance(value, ptq.WithAux)


def dequantized(value: Any) -> Any:
    """A quantized (`WithAux(QArray)`) weight as a float array (`qvalue * scale`); any other leaf as it is."""
    if is_quantized(value):
        return qwix.dequantize(value.array)
    return value


def quantize_base(params: Mapping[str, Any], model_config: Mapping[str, Any], cfg: LoraConfig) -> dict[str, Any]:
    """QLoRA: `params` (nested: float base weights, with or without adapters) with the base quantized as `cfg` says.

    Quantized weights become `WithAux(QArray)` nodes (`paligemma.quantization`); adapters and the weights that stay
    float (token table, convolution, norms, biases) pass through. Jitted; `params` may be sharded.
    """
    if not cfg.quantize:
        return dict(params)
    flat, _ = _abstract(_config_key(model_config), cfg)
    names = set(flatten(params))
    abstract = unflatten({n: s for n, s in flat.items() if n in names})
    return jax.jit(functools.partial(quantization.quantize_params, abstract=abstract))(dict(params))
