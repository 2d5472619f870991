"""Building blocks shared by the image encoder and the decoder: stacking layers along a depth axis."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

# Names a config can use for `remat_policy` (what to keep from the forward pass for the backward pass).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,  # no rematerialisation
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def stacked(block: type[nn.Module], depth: int, remat_policy: str = "none", unroll: int = 1,
            in_axes: Any = nn.broadcast, static_argnums: Sequence[int] = ()) -> type[nn.Module]:
    """Returns `block` scanned `depth` times with its parameters stacked on a leading depth axis.

    The parameters always have the released checkpoints' stacked layout; `unroll` (1..depth) trades compile time for
    the speed of an unrolled loop (`unroll=depth` is a plain Python-style unrolled stack). `remat_policy` is a key of
    `REMAT_POLICIES`. The block's `__call__(carry, *args)` must return `(carry, per_layer_output)`; `in_axes` says
    which of `args` are broadcast (`nn.broadcast`) or sliced per layer (`0`).
    """
    if remat_policy not in REMAT_POLICIES:
        raise ValueError(f"Unknown remat_policy {remat_policy!r}; choose one of {sorted(REMAT_POLICIES)}.")
    if remat_policy != "none":
        block = nn.remat(block, policy=REMAT_POLICIES[remat_policy], prevent_cse=False,
                         static_argnums=tuple(static_argnums))
    return nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                   in_axes=in_axes, length=depth, unroll=max(1, min(unroll, depth)))
