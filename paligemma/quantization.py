"""Weight-only int8 / int4 quantized inference with Qwix's post-training quantization (PTQ).

    qmodel, qparams = quantization.quantize(model, params, "int8")          # or "int4"; tile_size=128 for blocks
    out = decode.generate(qmodel, qparams, batch, max_decode_len=32, eos_id=tok.eos_id)
    logits, aux = qmodel.apply({"params": qparams}, image, text, mask_ar)

Every weight that an einsum or a `dot_general` multiplies (Gemma's attention and MLP einsums, SigLIP's dense
layers and the image-to-text projection `img/head`) is stored as integers with float scales (`qwix.QArray`: `qvalue`
int8/int4 of the weight's shape, `scale` in the layer's compute dtype), symmetric absmax, one scale per output
channel by default (per output channel and per head of the attention weights), or per block of `tile_size` values
along the innermost contracted axis when `tile_size` is given. Activations stay in the compute dtype: at run time
Qwix dequantizes a weight (`qvalue * scale`) right before its matmul (XLA can fuse the two).

Kept in their stored dtype: the token embedding table `llm/embedder/input_embedding` (a `jnp.take` lookup as well
as the tied output projection), the SigLIP patch embedding (a convolution: Qwix's PTQ quantizes convolutions only
together with their input activations, not weight-only), the position embedding, biases and norm scales: 18% of
PaliGemma 3B's parameters (20% of PaliGemma 2 3B's), almost all of it the 257,152-row embedding table. Weight
memory of `paligemma-3b-224` (`weight_bytes`): 11.69 GB float32, 4.51 GB int8, 3.31 GB int4 (int4 packed two per
byte).

The quantized model is Qwix's wrapper of `paligemma.model.Model` (a subclass built by `qwix.quantize_model`, with
every method the decoder and the evaluators call intercepted); the quantized params are the float tree with its
quantized leaves replaced by `WithAux(QArray)` nodes (pytrees: `jax.device_put`, `jax.jit` and shardings work on
them as on any param tree). Scanned layers keep their stacked layout: `qvalue [L, ...]` and `scale [L, ...]`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import qwix
from qwix._src.providers import ptq as qwix_ptq  # WithAux, the quantized-param node (not exported by qwix 0.1.8)

from paligemma import model as model_lib

QTYPES = ("int8", "int4")
_DTYPES = {"int8": jnp.int8, "int4": jnp.int4}

# Every Model method that runs the network: qwix intercepts only the methods it is given.
METHODS = ("__call__", "prefill", "extend", "embed_image", "hidden_states", "logits")

# The module holding the token table (input lookup and tied output projection): never quantized.
EMBEDDER = "llm/embedder"

# Parameter subtrees stacked on a leading depth axis (`layers.stacked`, an nn.scan): Qwix records how to quantize
# one layer's weight, so these are quantized layer by layer (vmapped over the depth axis).
_STACKED = (("llm", "layers"), ("img", "Transformer", "encoderblock"))


def check_qtype(qtype: Any) -> str:
    """`qtype` if it is one of `QTYPES` ("int8", "int4"); ValueError naming the allowed values otherwise."""
    if not isinstance(qtype, str) or qtype not in QTYPES:
        raise ValueError(f"unknown weight quantization {qtype!r}; choose one of {', '.join(QTYPES)}.")
    return qtype


def check_tile_size(tile_size: Any) -> int | None:
    """`tile_size` as an int >= 1, or None (per-channel scales); ValueError otherwise."""
    if tile_size is None:
        return None
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(
            f"quantization tile size must be an integer >= 1 (or None for per-channel), got {tile_size!r}."
        )
    return int(tile_size)


def flag_problems(quantize: str | None, tile_size: int | None) -> list[str]:
    """What is wrong with the command-line flags `--quantize` / `--quantize_tile` (one line each; [] when nothing).

    Shared by `tools.predict` and `evaluators.run`.
    """
    problems = []
    if quantize is not None and quantize not in QTYPES:
        problems.append(f"--quantize {quantize!r}: choose one of {', '.join(QTYPES)} (weight-only quantization)")
    if tile_size is not None and quantize is None:
        problems.append("--quantize_tile is for quantized inference; pass --quantize int8 or int4 too")
    elif tile_size is not None and tile_size < 1:
        problems.append(f"--quantize_tile must be >= 1, got {tile_size}")
    return problems


def rules(qtype: str, tile_size: int | None = None) -> list[qwix.QuantizationRule]:
    """Qwix rules for weight-only quantization of the whole model except the token embedding table.

    Args:
      qtype: "int8" or "int4": the integer type of the stored weights.
      tile_size: None: one scale per output channel (per channel and head of an attention weight). An int: one scale
        per block of `tile_size` consecutive values along the weight's innermost contracted axis (it must divide
        that axis; e.g. 128 for Gemma's `width`/`mlp_dim`/`head_dim` contractions).

    Returns:
      `[embedder rule (no quantization), weight rule]`, in Qwix's order of precedence: the first rule whose
      `module_path` regex matches a module's path (`llm/layers/attn/q_einsum`,
      `img/Transformer/encoderblock/MlpBlock_0/Dense_0`, ...) decides. Activations are never quantized
      (`act_qtype=None`); convolutions match no rule.
    """
    dtype = _DTYPES[check_qtype(qtype)]
    return [
        qwix.QuantizationRule(module_path=re.escape(EMBEDDER), weight_qtype=None),
        qwix.QuantizationRule(
            module_path=".*",
            op_names=("einsum", "dot_general"),
            weight_qtype=dtype,
            tile_size=check_tile_size(tile_size),
        ),
    ]


@flax.struct.dataclass
class _WithAux(qwix_ptq.WithAux):
    """Qwix's quantized-param node with a working `astype` (the dequantized dtype: the scale's).

    `gemma.Einsum` and `gemma.FeedForward` cast their weights to the compute dtype with `w.astype(dtype)`; qwix
    0.1.8's `WithAux.astype` raises for a QArray ("Unsupported type"), so the provider hands the modules this node.
    """

    def astype(self, dtype: Any) -> _WithAux:
        """The same quantized weight, dequantized to `dtype` (its scale cast to `dtype`)."""
        return self.replace(array=self.array.astype(dtype))


def castable(value: Any) -> Any:
    """A param as Qwix's provider hands it to a module, with a working `astype` when it is quantized (`_WithAux`).

    For providers built on `qwix.PtqProvider` (this module's, and `paligemma.lora`'s for QLoRA): their `nn_param`
    returns `castable(super().nn_param(...))`.
    """
    return _WithAux(value.array, value.how) if type(value) is qwix_ptq.WithAux else value


class _PtqProvider(qwix.PtqProvider):
    """`qwix.PtqProvider` whose quantized params support `astype` (`_WithAux`); otherwise the same."""

    def nn_param(self, module: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """Qwix's param interception; a quantized param comes back as a `_WithAux`."""
        return castable(super().nn_param(module, name, *args, **kwargs))


def quantized_model(model: model_lib.Model, qtype: str, tile_size: int | None = None) -> model_lib.Model:
    """The Qwix PTQ wrapper of `model` (same fields; its methods take the quantized params of `quantize`).

    Cached per (model, qtype, tile_size): Qwix builds a new class on every call, and equal wrappers must be the same
    object for `paligemma.decode`'s compiled programs (cached per model) to be reused. The wrapper is not equal to
    `model` (another class), so the float and the quantized model never share a compiled program.
    """
    return _quantized_model(model, check_qtype(qtype), check_tile_size(tile_size))


def qwix_ready(model: model_lib.Model) -> model_lib.Model:
    """`model` computing every weight Qwix may adapt with one einsum over that weight (Gemma's `mlp_one_einsum`).

    Qwix finds the weight of an einsum by the identity of the param; the plain model's decoding path multiplies the
    two halves of the MLP's gate/up weight separately, which Qwix would not see.
    """
    return model_lib.Model(img=model.img, llm={**model.llm, "mlp_one_einsum": True})


@functools.lru_cache(maxsize=16)
def _quantized_model(model: model_lib.Model, qtype: str, tile_size: int | None) -> model_lib.Model:
    provider = _PtqProvider(rules(qtype, tile_size))
    return qwix.quantize_model(qwix_ready(model), provider, methods=METHODS)


@functools.lru_cache(maxsize=16)
def _abstract_params(qmodel: model_lib.Model) -> Any:
    """`jax.ShapeDtypeStruct` tree of the quantized params (`WithAux(QArray)` where a weight is quantized)."""
    config = {"img": qmodel.img, "llm": qmodel.llm}
    return jax.eval_shape(lambda: qmodel.init(jax.random.key(0), *model_lib.dummy_inputs(config)))["params"]


def _pop(tree: dict, path: Sequence[str]) -> Any:
    for key in path[:-1]:
        tree = tree.get(key, {})
    return tree.pop(path[-1], None)


def _put(tree: dict, path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict | flax.core.FrozenDict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _copy_dicts(tree: Any) -> Any:
    """The nested dicts of `tree` copied (leaves shared), so that subtrees can be popped."""
    if isinstance(tree, dict | flax.core.FrozenDict):
        return {k: _copy_dicts(v) for k, v in tree.items()}
    return tree


def _in_compute_dtype(params: dict, abstract: Any) -> dict:
    """`params` with each weight to quantize cast to the dtype its layer multiplies in (the abstract QArray's).

    Qwix quantizes a weight where it is used, after the layer's cast to its compute dtype (a float32 weight of a
    bfloat16 layer gets bfloat16 scales); the other params keep their dtype.
    """
    flat = flax.traverse_util.flatten_dict(params)
    for path, value in flat.items():
        node = _get(abstract, path)
        if isinstance(node, qwix_ptq.WithAux):
            flat[path] = value.astype(node.dtype)
    return flax.traverse_util.unflatten_dict(flat)


def quantize_params(params: dict, abstract: Any) -> dict:
    """`qwix.quantize_params` over the whole tree; the scanned subtrees one layer at a time (vmapped).

    `params`: nested dict of float arrays; `abstract`: the wrapped model's `jax.eval_shape` params (`WithAux` where a
    weight is quantized). Leaves that are not quantized (biases, norms, LoRA adapters) pass through unchanged.
    """
    rest = _in_compute_dtype(params, abstract)
    stacked = {path: _pop(rest, path) for path in _STACKED}
    out = _copy_dicts(qwix.quantize_params(rest, abstract))
    for path, sub in stacked.items():
        if sub is None:
            continue
        # One layer's abstract params: Qwix's recipe (axes, tiles) is that of one layer's weight.
        layer = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), _get(abstract, path))
        _put(out, path, jax.vmap(lambda p, layer=layer: qwix.quantize_params(p, layer))(sub))
    return out


def quantize(
    model: model_lib.Model, params: Any, qtype: str, tile_size: int | None = None
) -> tuple[model_lib.Model, dict]:
    """Weight-only quantization of a PaliGemma model and its params (see the module docstring).

    Args:
      model: a `paligemma.model.Model` (unbound).
      params: its float parameter tree (numpy or jax arrays, any float dtype; stacked layers as loaded).
      qtype: "int8" or "int4".
      tile_size: None for per-channel scales, or the block size along each weight's innermost contracted axis.

    Returns:
      `(qmodel, qparams)`: the Qwix-wrapped model (cached: the same object for the same arguments) and the
      quantized params: the tree of `params` (jax arrays) whose quantized weights are `WithAux(QArray)` nodes with
      `qvalue` int8/int4 of the weight's shape and `scale` in its layer's compute dtype (`[L, ...]` in scanned
      layers).
      Use them wherever a model and its params go: `qmodel.apply({"params": qparams}, ...)`,
      `paligemma.decode.generate(qmodel, qparams, ...)`, the evaluators.

    Raises:
      ValueError: an unknown `qtype`, a bad `tile_size` or one that does not divide a weight's contracted axis, or
        params that do not fit the model.
    """
    qtype, tile_size = check_qtype(qtype), check_tile_size(tile_size)
    qmodel = quantized_model(model, qtype, tile_size)
    try:
        abstract = _abstract_params(qmodel)
    except ValueError as e:
        if tile_size is None or "cannot be tiled" not in str(e):
            raise
        raise ValueError(
            f"quantization tile size {tile_size} does not divide a contracted axis of the model's weights ({e}); "
            f"pick a divisor of the model's width, mlp_dim and head_dim."
        ) from None
    params = jax.tree.map(jnp.asarray, _copy_dicts(params))
    try:
        qparams = jax.jit(functools.partial(quantize_params, abstract=abstract))(params)
    except ValueError as e:
        raise ValueError(f"params do not fit the model: {e}") from None
    # Dtypes may differ from the model's: params that stay float keep theirs (e.g. loaded with --dtype).
    got, want = jax.tree.structure(qparams), jax.tree.structure(abstract)
    shapes = lambda t: [tuple(x.shape) for x in jax.tree.leaves(t)]  # noqa: E731
    if got != want or shapes(qparams) != shapes(abstract):
        raise ValueError("params do not fit the model: their tree or shapes differ from the model's parameters.")
    return qmodel, qparams


def _leaf_bytes(x: Any, packed_int4: bool) -> int:
    dtype = jnp.dtype(x.dtype)
    bits = jax.dtypes.itemsize_bits(dtype) if packed_int4 else 8 * dtype.itemsize
    return math.ceil(int(np.prod(x.shape)) * bits / 8)


def weight_bytes(params: Any, *, packed_int4: bool = True) -> int:
    """Bytes of a parameter tree, float or quantized.

    Args:
      params: a parameter tree: arrays (numpy or jax) or `jax.ShapeDtypeStruct`s, with or without quantized
        `WithAux(QArray)` nodes (e.g. `quantize`'s params, or `jax.eval_shape` of them).
      packed_int4: count int4 values as half a byte each, their size packed two per byte as XLA stores them on TPU.
        False counts a whole byte, as jax's `nbytes`, the CPU backend and a host numpy copy do.

    Returns:
      The total: every leaf's size times its dtype's size; a quantized weight counts its `qvalue` (1 byte per int8
      value, 0.5 or 1 per int4 value) and its `scale` (the float dtype's size per scale).
    """
    return sum(_leaf_bytes(x, packed_int4) for x in jax.tree.leaves(params))


__all__: Sequence[str] = (
    "QTYPES",
    "METHODS",
    "check_qtype",
    "check_tile_size",
    "flag_problems",
    "rules",
    "quantized_model",
    "quantize",
    "quantize_params",
    "castable",
    "weight_bytes",
)
