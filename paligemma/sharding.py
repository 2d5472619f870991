"""Device meshes and parameter / batch shardings for training and inference (no TensorFlow).

    mesh = make_mesh([("data", -1)])                       # or [("fsdp", 4), ("tensor", 2)], ...
    specs = param_specs(param_shapes, mesh)                # tree of PartitionSpec, one per parameter
    shardings = to_shardings(specs, mesh)                  # tree of NamedSharding
    batch = put_batch(numpy_batch, mesh)                   # process-local rows -> global arrays over data(+fsdp)

Mesh axes (`AXES`): `data` (batch), `fsdp` (batch, and parameters split ZeRO-3 style), `tensor` (tensor-parallel
dims of the weights: attention heads, MLP hidden units, vocabulary). A mesh spec is a list of `(axis, size)` pairs
over `jax.devices()`; one size may be -1 (= all remaining devices). The batch is always split over `data` and `fsdp`.

Each parameter gets a `PartitionSpec` in two passes:

1. **Tensor rules** (`rules`, default `DEFAULT_TENSOR_RULES`): the first `(regex, spec)` whose regex matches the
   parameter's "/"-joined name (`re.search`) gives a per-dim spec, one entry per dim: None, an axis name, or a tuple
   of axis names. Axes the mesh lacks (or of size 1) are dropped; a dim that the axes' total size does not divide
   stays unsplit (logged at INFO).
2. **Strategy** (`strategy`, default `[(".*", "fsdp")]`): the first `(regex, strategy)` matching the name decides
   what happens to the dims left unsplit: `"replicate"` (nothing), or `"fsdp(axis=..., min_size_mb=4)"`: split the
   largest unsplit dim that the axis size divides over `axis` (a name or tuple of names; default: `fsdp` if the mesh
   has it with size > 1, else `data`). Parameters smaller than `min_size_mb` MiB stay replicated; for stacked
   per-layer parameters the leading layer dim is never chosen.
"""

from __future__ import annotations

import ast
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from paligemma.errors import UserError
from paligemma.layers import BATCH_AXES
from paligemma.tree import flatten, unflatten

log = logging.getLogger(__name__)

AXES = ("data", "fsdp", "tensor")

# Parameters stacked over a leading layer axis (scanned layers).
_STACKED = re.compile(r"^(llm/layers/|img/Transformer/encoderblock/)")

# Tensor-parallel (Megatron-style) splits of the PaliGemma parameters over the `tensor` axis. Shapes in comments;
# L = layers, N = heads, K = kv heads, H = head dim, D/W = width, F/M = MLP width, V = vocabulary.
T = "tensor"
DEFAULT_TENSOR_RULES: list[tuple[str, tuple]] = [
    (r"^llm/embedder/input_embedding$", (T, None)),  # (V, D)
    (r"^llm/layers/attn/q_einsum/w$", (None, T, None, None)),  # (L, N, D, H)
    (r"^llm/layers/attn/kv_einsum/w$", (None, None, T, None, None)),  # (L, 2, K, D, H)
    (r"^llm/layers/attn/qkv_einsum/w$", (None, None, T, None, None)),  # (L, 3, N, D, H)
    (r"^llm/layers/attn/attn_vec_einsum/w$", (None, T, None, None)),  # (L, N, H, D)
    (r"^llm/layers/mlp/gating_einsum$", (None, None, None, T)),  # (L, 2, D, F)
    (r"^llm/layers/mlp/linear$", (None, T, None)),  # (L, F, D)
    (r"/MultiHeadDotProductAttention_0/(query|key|value)/kernel$", (None, None, T, None)),  # (L, W, N, H)
    (r"/MultiHeadDotProductAttention_0/(query|key|value)/bias$", (None, T, None)),  # (L, N, H)
    (r"/MultiHeadDotProductAttention_0/out/kernel$", (None, T, None, None)),  # (L, N, H, W)
    (r"/MlpBlock_0/Dense_0/kernel$", (None, None, T)),  # (L, W, M)
    (r"/MlpBlock_0/Dense_0/bias$", (None, T)),  # (L, M)
    (r"/MlpBlock_0/Dense_1/kernel$", (None, T, None)),  # (L, M, W)
]
del T

DEFAULT_STRATEGY: list[tuple[str, str]] = [(".*", "fsdp")]


class ShardingError(UserError, ValueError):
    """A mesh or sharding rule that cannot be applied; the message says which and how to fix it."""


# --------------------------------------------------------------------------------------------------------------------
# Meshes.


def mesh_shape(spec: Sequence[Sequence[Any]], num_devices: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Resolves a mesh spec `[(axis, size), ...]` (one size may be -1) for `num_devices` devices.

    Returns `(axis_names, sizes)`. Raises ShardingError for unknown or repeated axes, several -1, or sizes whose
    product is not the device count.
    """
    pairs = [tuple(p) for p in spec]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ShardingError(f"mesh must be a non-empty list of (axis, size) pairs, e.g. [('data', -1)]; got {spec!r}.")
    names = tuple(str(n) for n, _ in pairs)
    unknown = [n for n in names if n not in AXES]
    if unknown:
        raise ShardingError(
            f"mesh axes {unknown} unknown; use {AXES} (e.g. [('data', -1)] or [('fsdp', -1), ('tensor', 2)])."
        )
    if len(set(names)) != len(names):
        raise ShardingError(f"mesh axis repeated in {spec!r}.")
    sizes = [int(s) for _, s in pairs]
    if sizes.count(-1) > 1:
        raise ShardingError(f"at most one mesh size may be -1 (the rest); got {spec!r}.")
    if any(s == 0 or s < -1 for s in sizes):
        raise ShardingError(f"mesh sizes must be positive or -1; got {spec!r}.")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % fixed:
            raise ShardingError(
                f"mesh {spec!r}: {num_devices} devices are not divisible by the fixed sizes' product {fixed}."
            )
        sizes[sizes.index(-1)] = num_devices // fixed
    elif fixed != num_devices:
        raise ShardingError(f"mesh {spec!r} has {fixed} devices but there are {num_devices}; make one size -1.")
    return names, tuple(sizes)


def make_mesh(spec: Sequence[Sequence[Any]] = (("data", -1),), devices: Sequence[Any] | None = None) -> Mesh:
    """A `Mesh` over `devices` (default: all of `jax.devices()`, every process) from `[(axis, size), ...]`.

    The device order follows `mesh_utils.create_device_mesh` (topology aware on TPU), so each process's devices
    form a contiguous block of the batch axes.
    """
    devices = list(jax.devices() if devices is None else devices)
    names, sizes = mesh_shape(spec, len(devices))
    try:
        grid = mesh_utils.create_device_mesh(sizes, devices)
    except (ValueError, NotImplementedError, AssertionError) as e:  # unusual topologies: plain order
        log.info("create_device_mesh failed (%s); using the devices in jax.devices() order.", e)
        grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, names)


def axis_size(mesh: Mesh, axes: str | Sequence[str] | None) -> int:
    """Product of the sizes of `axes` in `mesh` (axes the mesh lacks count as 1)."""
    if axes is None:
        return 1
    if isinstance(axes, str):
        axes = (axes,)
    return math.prod(mesh.shape.get(a, 1) for a in axes)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes the batch dimension is split over (`data` and `fsdp`, those present)."""
    return tuple(a for a in BATCH_AXES if a in mesh.shape)


def data_parallel_size(mesh: Mesh) -> int:
    """Number of batch shards (product of the `data` and `fsdp` sizes)."""
    return axis_size(mesh, batch_axes(mesh))


def batch_spec(mesh: Mesh) -> PartitionSpec:
    """`PartitionSpec` splitting dim 0 over the batch axes."""
    axes = batch_axes(mesh)
    return PartitionSpec(axes if axes else None)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """`NamedSharding` for arrays whose leading dim is the batch."""
    return NamedSharding(mesh, batch_spec(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    """A fully replicated `NamedSharding`."""
    return NamedSharding(mesh, PartitionSpec())


# --------------------------------------------------------------------------------------------------------------------
# Parameter specs.


def parse_strategy(text: str) -> tuple[str, dict[str, Any]]:
    """`"replicate"` or `"fsdp(axis='fsdp', min_size_mb=4)"` -> `(kind, kwargs)`; raises ShardingError."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        kind, kwargs = node.id, {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        kind = node.func.id
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ShardingError(f"sharding strategy {text!r}: arguments must be literals.") from None
    else:
        raise ShardingError(
            f"sharding strategy {text!r} not understood; use 'replicate' or "
            f"\"fsdp(axis='fsdp', min_size_mb=4)\" (keyword arguments only)."
        )
    allowed = {"replicate": set(), "fsdp": {"axis", "min_size_mb"}}
    if kind not in allowed:
        raise ShardingError(f"sharding strategy {text!r}: unknown kind {kind!r}; use 'replicate' or 'fsdp'.")
    extra = set(kwargs) - allowed[kind]
    if extra:
        raise ShardingError(
            f"sharding strategy {text!r}: unknown arguments {sorted(extra)}; "
            f"{kind} takes {sorted(allowed[kind]) or 'none'}."
        )
    return kind, kwargs


def _first_match(name: str, rules: Sequence[Sequence[Any]]) -> Any:
    for rule in rules:
        if len(rule) != 2:
            raise ShardingError(f"sharding rule {rule!r} must be a (regex, value) pair.")
        if re.search(rule[0], name):
            return rule[1]
    return None


def _axes_tuple(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def _tensor_dims(name: str, shape: tuple[int, ...], spec: Sequence[Any], mesh: Mesh) -> list[tuple[str, ...]]:
    if len(spec) != len(shape):
        raise ShardingError(
            f"sharding rule {tuple(spec)!r} has {len(spec)} entries but parameter {name} has shape "
            f"{shape}; give one entry (None, an axis or a tuple of axes) per dim."
        )
    dims: list[tuple[str, ...]] = []
    for d, entry in enumerate(spec):
        axes = tuple(a for a in _axes_tuple(entry) if a in mesh.shape and mesh.shape[a] > 1)
        for a in _axes_tuple(entry):
            if a not in AXES:
                raise ShardingError(f"sharding rule for {name}: unknown axis {a!r}; use one of {AXES}.")
        if axes and shape[d] % axis_size(mesh, axes):
            log.info(
                "%s: dim %d (size %d) not divisible by %s (size %d); left unsplit.",
                name,
                d,
                shape[d],
                axes,
                axis_size(mesh, axes),
            )
            axes = ()
        dims.append(axes)
    used = [a for axes in dims for a in axes]
    if len(used) != len(set(used)):
        raise ShardingError(f"sharding rule for {name} uses a mesh axis twice: {tuple(spec)!r}.")
    return dims


def _fsdp_axes(kwargs: Mapping[str, Any], mesh: Mesh) -> tuple[str, ...]:
    axis = kwargs.get("axis")
    if axis is None:
        axis = "fsdp" if mesh.shape.get("fsdp", 1) > 1 else "data"
    axes = _axes_tuple(axis)
    for a in axes:
        if a not in AXES:
            raise ShardingError(f"fsdp axis {a!r} unknown; use one of {AXES}.")
    return tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1)


def _apply_fsdp(
    name: str, shape: tuple[int, ...], itemsize: int, dims: list[tuple[str, ...]], kwargs: Mapping[str, Any], mesh: Mesh
) -> None:
    axes = tuple(a for a in _fsdp_axes(kwargs, mesh) if not any(a in d for d in dims))
    size = axis_size(mesh, axes)
    if size == 1 or math.prod(shape) * itemsize < float(kwargs.get("min_size_mb", 4)) * 2**20:
        return
    first = 1 if _STACKED.search(name) and len(shape) > 1 else 0
    candidates = [d for d in range(first, len(shape)) if not dims[d] and shape[d] % size == 0]
    if not candidates:
        log.info("%s %s: no dim divisible by the fsdp axes %s (size %d); replicated.", name, shape, axes, size)
        return
    best = max(candidates, key=lambda d: (shape[d], d))
    dims[best] = axes


def param_spec(
    name: str,
    shape: Sequence[int],
    mesh: Mesh,
    *,
    rules: Sequence[Sequence[Any]] | None = None,
    strategy: Sequence[Sequence[Any]] | None = None,
    itemsize: int = 4,
) -> PartitionSpec:
    """The `PartitionSpec` of one parameter (see the module docstring for `rules` and `strategy`)."""
    shape = tuple(int(s) for s in shape)
    rules = DEFAULT_TENSOR_RULES if rules is None else rules
    strategy = DEFAULT_STRATEGY if strategy is None else strategy
    tensor = _first_match(name, rules)
    dims = _tensor_dims(name, shape, tensor, mesh) if tensor is not None else [()] * len(shape)
    how = _first_match(name, strategy)
    if how is not None:
        kind, kwargs = parse_strategy(how)
        if kind == "fsdp":
            _apply_fsdp(name, shape, itemsize, dims, kwargs, mesh)
    return PartitionSpec(*[(d[0] if len(d) == 1 else d) if d else None for d in dims])


def param_specs(
    shapes: Mapping[str, Any],
    mesh: Mesh,
    *,
    rules: Sequence[Sequence[Any]] | None = None,
    strategy: Sequence[Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Tree of `PartitionSpec` with the structure of `shapes` (a nested dict of arrays or `ShapeDtypeStruct`s)."""
    flat = flatten(shapes)
    return unflatten(
        {
            name: param_spec(name, x.shape, mesh, rules=rules, strategy=strategy, itemsize=np.dtype(x.dtype).itemsize)
            for name, x in flat.items()
        }
    )


def to_shardings(specs: Any, mesh: Mesh) -> Any:
    """Tree of `PartitionSpec` -> tree of `NamedSharding` on `mesh`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def param_shardings(
    shapes: Mapping[str, Any],
    mesh: Mesh,
    *,
    rules: Sequence[Sequence[Any]] | None = None,
    strategy: Sequence[Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Tree of `NamedSharding` for the parameters (`param_specs` placed on `mesh`)."""
    return to_shardings(param_specs(shapes, mesh, rules=rules, strategy=strategy), mesh)


def describe(specs: Mapping[str, Any], shapes: Mapping[str, Any]) -> list[str]:
    """One line per parameter, `name shape -> spec`, for logs."""
    flat_specs, flat_shapes = flatten(specs), flatten(shapes)
    return [f"{name} {tuple(flat_shapes[name].shape)} -> {tuple(spec)}" for name, spec in flat_specs.items()]


# --------------------------------------------------------------------------------------------------------------------
# Batches.


def put_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, Any]:
    """Process-local numpy batch (leading dim = this process's rows) -> global jax arrays split over the batch axes.

    Every process passes its own rows (`global batch / process_count` of them, in the order of its devices on the
    mesh). Non-numeric leaves (strings, bytes, objects) stay numpy arrays on the host. With one process, a batch that
    the batch axes do not divide (e.g. a small eval batch) is replicated instead; with several it is an error.
    """
    sharding = batch_sharding(mesh)
    shards, processes = data_parallel_size(mesh), jax.process_count()

    def put(x):
        x = np.asarray(x)
        if x.dtype.kind in "OSUV":
            return x
        if x.ndim == 0 or (x.shape[0] * processes) % shards:
            if processes == 1:
                return jax.device_put(x, replicated(mesh))
            raise ShardingError(
                f"a batch of {x.shape[0] if x.ndim else 'no'} rows per process cannot be split over "
                f"the {shards} batch shards of the mesh; use a batch size that is a multiple of "
                f"{shards}."
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, dict(batch))
