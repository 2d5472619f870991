"""The model's next-token loss: per-token cross-entropy and its weighted sums over the suffix positions only.

The trainer's step and the perplexity evaluator share it.

Suffix-only logits: the model's output projection (257,152 entries for the released vocabulary) is applied only
where the loss weight can be nonzero. Each example's weighted positions are gathered to the front of its row (in
order), the rows are cut into chunks of `chunk` positions, and a scan over the chunks computes one chunk's float32
logits at a time, skipping (`lax.cond`) the chunks without any weighted position and rematerialising the logits in
the backward pass. The result and its gradient are the full-vocabulary cross-entropy at every position, summed in
another order (see `trainers/step.py` for the memory this saves).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from paligemma.layers import constrain_batch


def token_nll(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Float logits [B, T, V], int targets [B, T] -> float32 [B, T] cross-entropy.

    With label smoothing e the target distribution is (1 - e) * onehot + e / V.
    """
    logits = logits.astype(jnp.float32)
    # log p(target) = logit(target) - logsumexp(logits): no [B, T, V] log-probabilities are materialised.
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logp = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0] - lse
    if not label_smoothing:
        return -target_logp
    mean_logp = jnp.mean(logits, axis=-1) - lse
    return -((1.0 - label_smoothing) * target_logp + label_smoothing * mean_logp)


def weighted_nll_sums(
    hidden: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    logits_fn: Callable[[jax.Array], jax.Array],
    *,
    label_smoothing: float = 0.0,
    chunk: int | None = 4,
    positions: int | None = None,
) -> jax.Array:
    """Per-example `sum_t weights * token_nll(logits_fn(hidden))`, computing logits only where weights != 0.

    Args:
      hidden: `[B, T, D]` pre-logits hidden states (any float dtype).
      targets: int `[B, T]` next-token ids.
      weights: `[B, T]` loss weights (0 = no loss at that position).
      logits_fn: `[B, C, D]` -> float32 logits `[B, C, V]` (the model's output projection).
      label_smoothing: as in `token_nll`.
      chunk: positions per example whose logits are computed at once (C); None: all of them, in one pass.
      positions: a static bound on the weighted positions of any one example (P): the logits are computed at P
        positions per example instead of T. An example with more than P drops its weighted positions after the P-th
        from the sum: the caller checks the bound (the trainer does, on the host). None: T.

    Returns:
      float32 `[B]`. Equal to `jnp.sum(token_nll(logits_fn(hidden), targets, e) * weights, -1)` up to the order of the
      summation; its gradient is that expression's gradient.
    """
    batch, length = weights.shape
    limit = length if positions is None else max(1, min(int(positions), length))
    chunk = limit if chunk is None else max(1, min(int(chunk), limit))
    num_chunks = -(-limit // chunk)
    weights = weights.astype(jnp.float32)
    if limit < length or num_chunks > 1:
        # Weighted positions first, each row in its own order: a row with n of them has them in its first n slots.
        order = jnp.argsort(weights == 0, axis=1, stable=True)[:, :limit]

        def gather(x):
            return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)

        hidden, targets, weights = gather(hidden), gather(targets), gather(weights)
    if num_chunks == 1:  # one chunk: every position's logits at once, no loop (fastest where memory allows)
        nll = token_nll(logits_fn(hidden), targets, label_smoothing)
        return jnp.sum(jnp.where(weights != 0, nll * weights, 0.0), axis=-1)

    def chunks(x):  # [B, P, ...] -> [num_chunks, B, chunk, ...], zero-padded
        x = jnp.pad(x, [(0, 0), (0, num_chunks * chunk - limit)] + [(0, 0)] * (x.ndim - 2))
        return constrain_batch(jnp.moveaxis(x.reshape(batch, num_chunks, chunk, *x.shape[2:]), 1, 0), dim=1)

    def chunk_sums(h, t, w):
        nll = token_nll(logits_fn(h), t, label_smoothing)
        return jnp.sum(jnp.where(w != 0, nll * w, 0.0), axis=-1)

    @jax.checkpoint  # the backward pass recomputes a chunk's logits instead of keeping every chunk's
    def body(total, xs):
        h, t, w = xs
        sums = jax.lax.cond(jnp.any(w != 0), chunk_sums, lambda h, t, w: jnp.zeros((batch,), jnp.float32), h, t, w)
        return total + sums, None

    total, _ = jax.lax.scan(
        body, jnp.zeros((batch,), jnp.float32), (chunks(hidden), chunks(targets.astype(jnp.int32)), chunks(weights))
    )
    return total
