"""The pure training step: next-token loss on the suffix, gradient accumulation, optimizer update (no TensorFlow).

Batch layout (the `tok_paligemma` pp op): image float [B, H, W, 3] (or [B, F, H, W, 3]) in [-1, 1], and int32 [B, T]
`text`, `mask_ar`, `mask_loss`, `mask_input`. The model reads `text[:, :-1]` (with `mask_ar[:, :-1]`,
`mask_input[:, :-1]`) and predicts `text[:, 1:]`, weighted by `mask_loss[:, 1:]`.

Loss normalisation (`loss_norm`): "example" averages each example's suffix tokens, then the examples (REFERENCE.md
section 2; an example without suffix tokens contributes 0 but still counts); "token" averages all suffix tokens of
the batch. Either way the loss is a ratio `sum / denominator` whose parts add up over microbatches, so accumulating
`accum_steps` microbatches gives exactly the full-batch loss and gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from paligemma.checkpoints import flatten, unflatten

REQUIRED_KEYS = ("image", "text", "mask_ar", "mask_loss", "mask_input")


def check_batch(batch: Mapping[str, Any]) -> None:
    """Raises ValueError when the training batch lacks a field the step needs."""
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise ValueError(f"the training batch lacks {missing} (has {sorted(batch)}); the training pp must produce "
                         f"{list(REQUIRED_KEYS)} (tok_paligemma(...)|keep(\"image\", \"text\", \"mask_ar\", "
                         f"\"mask_loss\", \"mask_input\")).")


def token_nll(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """float logits [B, T, V], int targets [B, T] -> float32 [B, T] cross-entropy.

    With label smoothing e the target distribution is (1 - e) * onehot + e / V.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target_logp = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    if not label_smoothing:
        return -target_logp
    return -((1.0 - label_smoothing) * target_logp + label_smoothing * jnp.mean(logp, axis=-1))


def loss_parts(nll: jax.Array, weights: jax.Array, loss_norm: str = "example") -> tuple[jax.Array, jax.Array]:
    """(sum, denominator) of the batch loss from per-token nll and weights (both [B, T]); loss = sum / denominator."""
    weights = weights.astype(jnp.float32)
    total = jnp.sum(nll * weights, axis=-1)
    count = jnp.sum(weights, axis=-1)
    if loss_norm == "token":
        return jnp.sum(total), jnp.sum(count)
    if loss_norm != "example":
        raise ValueError(f"loss_norm must be 'example' or 'token', got {loss_norm!r}.")
    per_example = jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)
    return jnp.sum(per_example), jnp.asarray(nll.shape[0], jnp.float32)


def model_inputs(batch: Mapping[str, jax.Array]) -> tuple[tuple, jax.Array, jax.Array]:
    """((image, text_in, mask_ar_in, input_mask_in), targets, weights) for next-token prediction."""
    text = batch["text"]
    inputs = (batch["image"], text[:, :-1], batch["mask_ar"][:, :-1], batch["mask_input"][:, :-1].astype(bool))
    return inputs, text[:, 1:], batch["mask_loss"][:, 1:]


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


def make_train_step(model: Any, tx: optax.GradientTransformation, *, trainable: Sequence[str],
                    lr_fn: Callable[[Any], jax.Array], accum_steps: int = 1, label_smoothing: float = 0.0,
                    loss_norm: str = "example",
                    constrain_micro: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] | None = None):
    """Builds `step(params, opt_state, batch, count, rng) -> (params, opt_state, metrics)` (pure; jit it).

    params: the full nested parameter tree (frozen ones included, returned unchanged); opt_state: `tx`'s state for
    the trainable subtree (names in `trainable`); batch: dict of [B, ...] arrays (see the module docstring);
    count: int32 scalar, the number of updates before this one (selects the learning rate and the dropout key);
    rng: a PRNG key. metrics (float32 scalars): training_loss, grad_norm (before clipping), lr, finite (1.0 when
    loss and gradient norm are finite). Frozen parameters are closed over as constants of the differentiated
    function, so no gradient is computed for them (nor for anything that depends only on them).
    """
    trainable = tuple(trainable)

    def loss_fn(train_tree, frozen, micro, key):
        params = unflatten({**frozen, **flatten(train_tree)})
        inputs, targets, weights = model_inputs(micro)
        logits, _ = model.apply({"params": params}, *inputs, train=True, rngs={"dropout": key})
        total, denom = loss_parts(token_nll(logits, targets, label_smoothing), weights, loss_norm)
        return total, denom

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
        metrics = dict(training_loss=loss, grad_norm=grad_norm, lr=jnp.asarray(lr_fn(count), jnp.float32),
                       finite=(jnp.isfinite(loss) & jnp.isfinite(grad_norm)).astype(jnp.float32))
        return params, opt_state, metrics

    return step
