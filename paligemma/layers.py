"""Building blocks shared by the image encoder and the decoder.

Stacking layers along a depth axis, and keeping activations split over the batch axes of the current device mesh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec

# Mesh axes the batch is split over (`paligemma.sharding` uses the same; "tensor" never splits the batch).
BATCH_AXES = ("data", "fsdp")


def constrain_batch(x: jax.Array, dim: int = 0) -> jax.Array:
    """`x` with its dim `dim` (the batch) split over the batch axes of the current mesh, the other dims replicated.

    The mesh is the one of the context (`jax.set_mesh(mesh)` or `jax.sharding.use_abstract_mesh(...)` around the
    tracing of a jitted function); its `data` and `fsdp` axes of size > 1 split the batch, as the trainer's input
    batches are. Without a mesh context, without such axes, or when their size does not divide `x.shape[dim]`, `x`
    is returned unchanged (single-device use, tests and decoding without a mesh compute exactly as before). Inside
    a jitted program this is a sharding constraint: XLA keeps each chip's rows of the activation on that chip
    instead of splitting the weights' dims and holding the whole batch everywhere. Any shape and dtype.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    axes = tuple(a for a in BATCH_AXES if mesh.shape.get(a, 1) > 1)
    size = math.prod(mesh.shape[a] for a in axes)
    if not axes or x.ndim <= dim or x.shape[dim] % size:
        return x
    spec = [None] * x.ndim
    spec[dim] = axes[0] if len(axes) == 1 else axes
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))


# Names a config can use for `remat_policy` (what to keep from the forward pass for the backward pass).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,  # no rematerialisation
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def stacked(
    block: type[nn.Module],
    depth: int,
    remat_policy: str = "none",
    unroll: int = 1,
    in_axes: Any = nn.broadcast,
    static_argnums: Sequence[int] = (),
) -> type[nn.Module]:
    """Returns `block` scanned `depth` times with its parameters stacked on a leading depth axis.

    The parameters always have the released checkpoints' stacked layout; `unroll` (1..depth) trades compile time for
    the speed of an unrolled loop (`unroll=depth` is a plain Python-style unrolled stack). `remat_policy` is a key of
    `REMAT_POLICIES`. The block's `__call__(carry, *args)` must return `(carry, per_layer_output)`; `in_axes` says
    which of `args` are broadcast (`nn.broadcast`) or sliced per layer (`0`).
    """
    if remat_policy not in REMAT_POLICIES:
        raise ValueError(f"Unknown remat_policy {remat_policy!r}; choose one of {sorted(REMAT_POLICIES)}.")
    if remat_policy != "none":
        block = nn.remat(
            block, policy=REMAT_POLICIES[remat_policy], prevent_cse=False, static_argnums=tuple(static_argnums)
        )
    return nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=in_axes,
        length=depth,
        unroll=max(1, min(unroll, depth)),
    )


class QwixFriendly:
    """Mixin for linen modules whose einsum weights Qwix's LoRA may adapt (`paligemma.lora`).

    Qwix 0.1.8's LoRA einsum records the adapter's equation on the calling module (`<param>_lora_einsum_str`, a
    debugging aid). Linen modules refuse new attributes outside `setup`, so that write would fail inside `__call__`;
    this lets exactly those names through and leaves every other attribute rule as it is.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name.endswith("_lora_einsum_str"):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
