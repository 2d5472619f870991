"""Per-example negative log-likelihood of the suffix tokens (the cheap perplexity evaluator)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["per_example_nll", "perplexity"]


def per_example_nll(logits, targets, weights):
    """Mean NLL per example over the weighted (suffix) tokens.

    Numerically stable: logits are cast to float32 and go through `log_softmax` (max-subtracted
    log-sum-exp), so bf16/f16 logits and large magnitudes are fine.

    Args:
      logits: float `[B, T, V]` (numpy or jax; any float dtype).
      targets: int `[B, T]`, the next-token ids (`tokens[:, 1:]`).
      weights: `[B, T]` (0/1 mask `mask_loss[:, 1:]`, or real-valued weights).

    Returns:
      float32 jax array `[B]`: `sum_t w * -log p(target_t) / sum_t w`; an example with zero total weight gets
      0.0 (not NaN). jit-friendly.
    """
    logits = jnp.asarray(logits).astype(jnp.float32)
    targets = jnp.asarray(targets).astype(jnp.int32)
    weights = jnp.asarray(weights).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    token_logp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    total = jnp.sum(-token_logp * weights, axis=-1)
    count = jnp.sum(weights, axis=-1)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)


def perplexity(nll_per_example) -> float:
    """`exp(mean per-example NLL)` (the original trainer's per-example normalisation, then the batch mean)."""
    return float(jnp.exp(jnp.mean(jnp.asarray(nll_per_example, jnp.float32))))
