"""The pure training step: next-token loss on the suffix, gradient accumulation, optimizer update (no TensorFlow).

Batch layout (the `tok_paligemma` pp op): image float [B, H, W, 3] (or [B, F, H, W, 3], then optionally frame_mask
[B, F]) in [-1, 1], and int32 [B, T]
`text`, `mask_ar`, `mask_loss`, `mask_input`. The model reads `text[:, :-1]` (with `mask_ar[:, :-1]`,
`mask_input[:, :-1]`) and predicts `text[:, 1:]`, weighted by `mask_loss[:, 1:]`.

Loss normalisation (`loss_norm`): "example" averages each example's suffix tokens, then the examples (docs/reference.md
§2.2; an example without suffix tokens contributes 0 but still counts); "token" averages all suffix tokens of
the batch. Either way the loss is a ratio `sum / denominator` whose parts add up over microbatches, so accumulating
`accum_steps` microbatches gives exactly the full-batch loss and gradient.

Suffix-only logits: the model's output projection (257,152 entries for the released vocabulary) is applied only
where the loss weight can be nonzero. Each example's weighted positions are gathered to the front of its row (in
order), the rows are cut into chunks of `loss_chunk` positions, and a scan over the chunks computes one chunk's
float32 logits at a time, skipping (`lax.cond`) the chunks without any weighted position and rematerialising the
logits in the backward pass. The loss and its gradient are the full-vocabulary cross-entropy at every position,
summed in another order (tests/trainers/test_step_loss.py: relative 1e-6 in float32). The chunked projection runs
on about `max suffix length / T` of the positions (plus its recomputation in the backward pass); the logits held at
once are one chunk's `[B, loss_chunk, V]` instead of `[B, T, V]`, at the price of a float32 accumulator of the
embedding's gradient in the loop. Measured for paligemma-3b-224 on v5e:2x4 (batch 32 per chip): the loss alone
needs ~1.9 GiB of temporaries per chip (chunk 4; full logits: 0.95 GiB at T=31, 2.0 GiB at T=63, growing with T),
and with remat the train step's peak lies in the layers' backward pass, not in the loss (whole step: see the README).

`loss_positions` = P, a static bound on any example's suffix (checked on the host before each step), keeps only the
first P gathered positions: without chunks, one pass computes `[B, P, V]` logits instead of `[B, T, V]` (bench-s
on CPU: 21 instead of 31 positions, see the README).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paligemma.loss import weighted_nll_sums
from paligemma.tree import flatten, unflatten
from trainers.config import ConfigError

REQUIRED_KEYS = ("image", "text", "mask_ar", "mask_loss", "mask_input")


def check_batch(batch: Mapping[str, Any]) -> None:
    """Raises ValueError when the training batch lacks a field the step needs."""
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise ValueError(
            f"the training batch lacks {missing} (has {sorted(batch)}); the training pp must produce "
            f'{list(REQUIRED_KEYS)} (tok_paligemma(...)|keep("image", "text", "mask_ar", '
            f'"mask_loss", "mask_input")).'
        )


class LossPositionsError(ConfigError):
    """A training example has more positions with a loss than `config.loss_positions` allows."""


def check_loss_positions(batch: Mapping[str, Any], limit: int | None) -> None:
    """Raises LossPositionsError when an example of the host batch has more than `limit` loss positions.

    batch: the host (numpy) training batch, weighed as the step does (`model_inputs`); limit: `config.loss_positions`
    (None: no bound, nothing to check).
    """
    if limit is None:
        return
    counts = np.count_nonzero(model_inputs(batch)[3], axis=1)
    worst = int(counts.max(initial=0))
    if worst > limit:
        raise LossPositionsError(
            f"a training example has {worst} positions with a loss (its suffix tokens), more than "
            f"config.loss_positions={limit}, the most the train step computes logits for; raise "
            f"config.loss_positions to at least {worst} (or None: every text position)."
        )


def loss_parts(nll: jax.Array, weights: jax.Array, loss_norm: str = "example") -> tuple[jax.Array, jax.Array]:
    """(sum, denominator) of the batch loss from per-token nll and weights (both [B, T]); loss = sum / denominator."""
    weights = weights.astype(jnp.float32)
    return normalise(jnp.sum(nll * weights, axis=-1), jnp.sum(weights, axis=-1), loss_norm)


def normalise(total: jax.Array, count: jax.Array, loss_norm: str = "example") -> tuple[jax.Array, jax.Array]:
    """(sum, denominator) of the batch loss from float32 per-example weighted nll sums and weight sums (both [B])."""
    if loss_norm == "token":
        return jnp.sum(total), jnp.sum(count)
    if loss_norm != "example":
        raise ValueError(f"loss_norm must be 'example' or 'token', got {loss_norm!r}.")
    per_example = jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)
    return jnp.sum(per_example), jnp.asarray(total.shape[0], jnp.float32)


def model_inputs(batch: Mapping[str, jax.Array]) -> tuple[tuple, dict[str, jax.Array], jax.Array, jax.Array]:
    """((image, text_in, mask_ar_in, input_mask_in), keyword inputs, targets, weights) for next-token prediction.

    The keyword inputs hold `frame_mask` when the batch has one (several frames per example, some padded).
    """
    text = batch["text"]
    inputs = (batch["image"], text[:, :-1], batch["mask_ar"][:, :-1], batch["mask_input"][:, :-1].astype(bool))
    keywords = {"frame_mask": batch["frame_mask"]} if "frame_mask" in batch else {}
    return inputs, keywords, text[:, 1:], batch["mask_loss"][:, 1:]


def split_microbatches(batch: Mapping[str, jax.Array], accum_steps: int) -> dict[str, jax.Array]:
    """[B, ...] -> [accum_steps, B / accum_steps, ...]; microbatch j holds rows j, j + k, j + 2k, ... (k = steps).

    Interleaving keeps each device's rows on that device when the batch is split over devices in blocks.
    """

    def split(x):
        if x.shape[0] % accum_steps:
            raise ValueError(f"batch size {x.shape[0]} is not divisible by accum_steps {accum_steps}.")
        x = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return {k: split(v) for k, v in batch.items()}


def make_loss_fn(
    model: Any,
    *,
    label_smoothing: float = 0.0,
    loss_norm: str = "example",
    loss_chunk: int | None = 4,
    loss_positions: int | None = None,
):
    """Builds `loss_fn(params, micro, key) -> (sum, denominator)` (float32 scalars; loss = sum / denominator).

    params: the nested parameter tree of `model` (a `paligemma.model.Model`); micro: a (micro)batch dict (see the
    module docstring); key: the dropout PRNG key. The logits are computed only at weighted positions, `loss_chunk`
    positions per example at a time, at `loss_positions` positions per example (the most any example has, checked by
    `check_loss_positions`; None: all T; see the module docstring); the result equals
    `loss_parts(token_nll(model.apply(...)[0], targets, label_smoothing), weights, loss_norm)`.
    """

    def loss_fn(params, micro, key):
        variables = {"params": params}
        inputs, keywords, targets, weights = model_inputs(micro)
        hidden, _ = model.apply(
            variables, *inputs, **keywords, train=True, rngs={"dropout": key}, method="hidden_states"
        )
        logits_fn = lambda h: model.apply(variables, h, method="logits")  # noqa: E731
        total = weighted_nll_sums(
            hidden,
            targets,
            weights,
            logits_fn,
            label_smoothing=label_smoothing,
            chunk=loss_chunk,
            positions=loss_positions,
        )
        return normalise(total, jnp.sum(weights.astype(jnp.float32), axis=-1), loss_norm)

    return loss_fn


def all_finite(tree: Any) -> jax.Array:
    """A bool scalar: True when every float leaf of `tree` is free of NaN/Inf (integer leaves, e.g. counts, pass).

    One float sum per leaf: `sum(x - x)` is 0 when every entry is finite and NaN otherwise (inf - inf is NaN), and
    cannot overflow. XLA on CPU sums floats several times faster than it reduces `isfinite`'s booleans, and
    `x - x` reads each leaf once, where `x * 0` also read a broadcast zero array as large as the leaf: over the
    bench-s state (params, mu, nu: 3 x 176M entries) 150 ms, then 45 ms less per step.
    """
    sums = [
        jnp.sum(jnp.subtract(x, x), dtype=jnp.float32)
        for x in jax.tree.leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.isfinite(sum(sums)) if sums else jnp.asarray(True)


def make_train_step(
    model: Any,
    tx: optax.GradientTransformation,
    *,
    trainable: Sequence[str],
    lr_fn: Callable[[Any], jax.Array],
    accum_steps: int = 1,
    label_smoothing: float = 0.0,
    loss_norm: str = "example",
    constrain_micro: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] | None = None,
    loss_chunk: int | None = 4,
    loss_positions: int | None = None,
):
    """Builds `step(params, opt_state, batch, count, rng) -> (params, opt_state, metrics)` (pure; jit it).

    params: the full nested parameter tree (frozen ones included, returned unchanged); opt_state: `tx`'s state for
    the trainable subtree (names in `trainable`); batch: dict of [B, ...] arrays (see the module docstring);
    count: int32 scalar, the number of updates before this one (selects the learning rate and the dropout key);
    rng: a PRNG key. metrics (float32 scalars): training_loss, grad_norm (before clipping), lr, finite (1.0 when
    the loss, the gradient norm, the updated parameters and the updated optimizer state are all finite: a step that
    fails it must never be saved) and state_finite (1.0 when the updated parameters and optimizer state are). Frozen
    parameters are closed over as constants of the differentiated function, so no gradient is computed for them (nor
    for anything that depends only on them). `loss_chunk`: the positions per example whose logits are computed at
    once, `loss_positions` the most weighted positions of any example (see `make_loss_fn`).
    """
    trainable = tuple(trainable)
    bound = {} if loss_positions is None else {"loss_positions": loss_positions}
    micro_loss = make_loss_fn(
        model, label_smoothing=label_smoothing, loss_norm=loss_norm, loss_chunk=loss_chunk, **bound
    )

    def loss_fn(train_tree, frozen, micro, key):
        return micro_loss(unflatten({**frozen, **flatten(train_tree)}), micro, key)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    trainable_set = frozenset(trainable)

    def accumulate(train_tree, frozen, batch, key):
        if accum_steps == 1:
            (total, denom), grads = grad_fn(train_tree, frozen, batch, key)
            return grads, total, denom
        micro = split_microbatches(batch, accum_steps)
        if constrain_micro is not None:
            micro = constrain_micro(micro)

        def body(carry, xs):
            grads, total, denom = carry
            index, mb = xs
            (t, d), g = grad_fn(train_tree, frozen, mb, jax.random.fold_in(key, index))
            return (jax.tree.map(jnp.add, grads, g), total + t, denom + d), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), train_tree)
        init = (zeros, jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32))
        (grads, total, denom), _ = jax.lax.scan(body, init, (jnp.arange(accum_steps), micro))
        return grads, total, denom

    def step(params, opt_state, batch, count, rng):
        flat = flatten(params)
        train_tree = unflatten({n: flat[n] for n in trainable})
        frozen = {n: v for n, v in flat.items() if n not in trainable_set}
        key = jax.random.fold_in(rng, count)
        grads, total, denom = accumulate(train_tree, frozen, batch, key)
        denom = jnp.maximum(denom, 1e-9)  # a token-normalised batch without any suffix token: loss 0
        grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads, train_tree)
        loss = total / denom
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, train_tree)
        train_tree = optax.apply_updates(train_tree, updates)
        params = unflatten({**flat, **flatten(train_tree)})
        state_finite = all_finite((train_tree, opt_state))
        metrics = dict(
            training_loss=loss,
            grad_norm=grad_norm,
            lr=jnp.asarray(lr_fn(count), jnp.float32),
            finite=(jnp.isfinite(loss) & jnp.isfinite(grad_norm) & state_finite).astype(jnp.float32),
            state_finite=state_finite.astype(jnp.float32),
        )
        return params, opt_state, metrics

    return step
