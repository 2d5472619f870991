"""The suffix-only loss (logits only where mask_loss is set) equals the full-vocabulary loss at every position: same
loss and gradients (relative 1e-6, float32) for prompts of varied length, examples without suffix tokens, label
smoothing, both loss_norm modes and accumulated microbatches; and it never builds the `[B, T, V]` logits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paligemma import loss
from paligemma import model as model_lib
from paligemma.tree import flatten
from trainers import step

B, T, RES = 6, 12, 32
# Per example: (prompt length, suffix length); example 1 has no suffix token, example 4 a suffix up to the end.
LAYOUT = [(3, 4), (5, 0), (2, 7), (7, 2), (1, 11), (4, 1)]


def _batch(seed: int, vocab: int, layout=LAYOUT) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (len(layout), T)
    text = rng.integers(1, vocab, shape).astype(np.int32)
    mask_ar, mask_loss, mask_input = (np.zeros(shape, np.int32) for _ in range(3))
    for b, (prompt, suffix) in enumerate(layout):
        mask_ar[b, prompt : prompt + suffix] = 1
        mask_loss[b, prompt : prompt + suffix] = 1
        mask_input[b, : prompt + suffix] = 1
        text[b, prompt + suffix :] = 0  # padding
    image = rng.uniform(-1, 1, (len(layout), RES, RES, 3)).astype(np.float32)
    return dict(image=image, text=text, mask_ar=mask_ar, mask_loss=mask_loss, mask_input=mask_input)


def _reference_loss_fn(model, label_smoothing, loss_norm):
    """The loss as it was: float32 logits over the whole vocabulary at every text position."""

    def loss_fn(params, micro, key):
        inputs, keywords, targets, weights = step.model_inputs(micro)
        logits, _ = model.apply({"params": params}, *inputs, **keywords, train=True, rngs={"dropout": key})
        return step.loss_parts(loss.token_nll(logits, targets, label_smoothing), weights, loss_norm)

    return loss_fn


def _model(name: str, **llm):
    config = model_lib.get_config(name)
    config["llm"].update(llm)
    return model_lib.Model(**config), model_lib.init_params(config, jax.random.key(0)), config


def _relative_error(new, ref) -> float:
    """max |new - ref| over the whole tree, relative to max |ref| over the whole tree."""
    new, ref = flatten(new), flatten(ref)
    scale = max(float(jnp.max(jnp.abs(r))) for r in ref.values())
    return max(float(jnp.max(jnp.abs(new[k] - ref[k]))) for k in ref) / scale


@pytest.mark.parametrize(
    "name, label_smoothing, loss_norm, chunk",
    [
        ("paligemma-tiny", 0.0, "example", 3),
        ("paligemma-tiny", 0.3, "token", 1),
        ("paligemma2-tiny", 0.1, "example", 100),  # soft-capped logits; one chunk longer than the sequence
    ],
)
def test_loss_and_gradients_equal_the_full_vocabulary_loss(name, label_smoothing, loss_norm, chunk):
    model, params, config = _model(name, dropout=0.1)
    batch = _batch(0, config["llm"]["vocab_size"])
    key = jax.random.key(3)
    new_fn = step.make_loss_fn(model, label_smoothing=label_smoothing, loss_norm=loss_norm, loss_chunk=chunk)
    ref_fn = _reference_loss_fn(model, label_smoothing, loss_norm)

    def value_and_grad(fn):
        return jax.jit(jax.value_and_grad(lambda p: (lambda t, d: t / d)(*fn(p, batch, key))))(params)

    new_loss, new_grads = value_and_grad(new_fn)
    ref_loss, ref_grads = value_and_grad(ref_fn)
    assert float(ref_loss) > 0
    assert abs(float(new_loss) - float(ref_loss)) <= 1e-6 * abs(float(ref_loss))
    assert _relative_error(new_grads, ref_grads) <= 1e-6
    new_parts, ref_parts = new_fn(params, batch, key), ref_fn(params, batch, key)
    np.testing.assert_allclose(np.asarray(new_parts), np.asarray(ref_parts), rtol=1e-6)


def test_weighted_nll_sums_handle_rows_without_weights_and_any_chunk():
    rng = np.random.default_rng(1)
    hidden = jnp.asarray(rng.normal(size=(4, 7, 5)), jnp.float32)
    proj = jnp.asarray(rng.normal(size=(5, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (4, 7)), jnp.int32)
    weights = jnp.asarray([[0, 1, 1, 0, 1, 0, 0], [0] * 7, [1] * 7, [0, 0, 0, 0, 0, 0, 2]], jnp.float32)
    logits_fn = lambda h: h @ proj  # noqa: E731
    expected = jnp.sum(loss.token_nll(logits_fn(hidden), targets, 0.2) * weights, axis=-1)
    for chunk in (1, 2, 3, 7, 50):
        got = loss.weighted_nll_sums(hidden, targets, weights, logits_fn, label_smoothing=0.2, chunk=chunk)
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6)
        assert float(got[1]) == 0.0
    # No weighted position at all: loss 0 and zero gradients (every chunk is skipped).
    zero = jnp.zeros_like(weights)
    grad = jax.grad(lambda h: jnp.sum(loss.weighted_nll_sums(h, targets, zero, logits_fn, chunk=2)))(hidden)
    assert float(jnp.max(jnp.abs(grad))) == 0.0


def test_the_full_logits_are_never_built():
    model, params, config = _model("paligemma-tiny")
    vocab = config["llm"]["vocab_size"]
    batch = _batch(0, vocab)
    loss_fn = step.make_loss_fn(model, loss_chunk=4)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss_fn(p, batch, jax.random.key(0))[0]))(params))
    assert f"f32[{B},4,{vocab}]" in jaxpr  # one chunk of logits at a time
    assert f"f32[{B},{T - 1},{vocab}]" not in jaxpr
    reference = str(
        jax.make_jaxpr(lambda p: _reference_loss_fn(model, 0.0, "example")(p, batch, jax.random.key(0))[0])(params)
    )
    assert f"f32[{B},{T - 1},{vocab}]" in reference


@pytest.mark.parametrize("accum_steps, loss_norm", [(1, "token"), (3, "example")])
def test_train_step_equals_the_full_vocabulary_step(accum_steps, loss_norm, monkeypatch):
    model, params, config = _model("paligemma-tiny")
    batch = _batch(2, config["llm"]["vocab_size"])
    tx = optax.sgd(1.0)  # the update is the gradient itself
    trainable = [n for n in flatten(params) if not n.startswith("img/")]  # the image encoder frozen
    train_tree = {n: v for n, v in flatten(params).items() if n in trainable}
    from paligemma.tree import unflatten

    opt_state = tx.init(unflatten(train_tree))

    def run():
        fn = step.make_train_step(
            model,
            tx,
            trainable=trainable,
            lr_fn=lambda c: 1.0,
            accum_steps=accum_steps,
            label_smoothing=0.2,
            loss_norm=loss_norm,
            loss_chunk=2,
        )
        return jax.jit(fn)(params, opt_state, batch, jnp.int32(0), jax.random.key(1))

    new_params, _, new_metrics = run()
    monkeypatch.setattr(
        step,
        "make_loss_fn",
        lambda model, label_smoothing, loss_norm, loss_chunk: _reference_loss_fn(model, label_smoothing, loss_norm),
    )
    ref_params, _, ref_metrics = run()
    for k in ("training_loss", "grad_norm"):
        assert abs(float(new_metrics[k]) - float(ref_metrics[k])) <= 1e-6 * abs(float(ref_metrics[k])), k
    delta = lambda p: jax.tree.map(lambda a, b: a - b, p, params)  # noqa: E731  (the updates)
    assert _relative_error(delta(new_params), delta(ref_params)) <= 1e-6


def test_the_perplexity_evaluator_equals_the_full_logits_nll():
    from evaluators import perplexity as P
    from evaluators import tasks

    model, params, config = _model("paligemma2-tiny")
    batch = _batch(4, config["llm"]["vocab_size"])
    nll, count = jax.jit(lambda p, b: tasks._suffix_nll(model, p, b))(params, batch)
    inputs, _, targets, weights = step.model_inputs(batch)
    expected = P.per_example_nll(model.apply({"params": params}, *inputs)[0], targets, weights)
    np.testing.assert_allclose(np.asarray(nll), np.asarray(expected), rtol=1e-6)
    assert count.tolist() == [s for _, s in LAYOUT] and float(nll[1]) == 0.0


def test_a_training_batch_frame_mask_hides_padded_frames():
    """A batch's `frame_mask` reaches the model: padded frames (mask 0) leave the loss as without them."""
    model, params, config = _model("paligemma-tiny")
    batch = _batch(5, config["llm"]["vocab_size"])
    rng = np.random.default_rng(6)
    two = rng.uniform(-1, 1, (B, 2, RES, RES, 3)).astype(np.float32)
    three = np.concatenate([two, rng.uniform(-1, 1, (B, 1, RES, RES, 3)).astype(np.float32)], axis=1)
    loss_fn = jax.jit(step.make_loss_fn(model))
    want = loss_fn(params, dict(batch, image=two), jax.random.key(0))
    mask = np.tile(np.asarray([1, 1, 0], np.int32), (B, 1))
    got = loss_fn(params, dict(batch, image=three, frame_mask=mask), jax.random.key(0))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5)
    unmasked = loss_fn(params, dict(batch, image=three), jax.random.key(0))
    assert abs(float(unmasked[0]) - float(want[0])) > 1e-4


def test_loss_chunk_default_is_one_pass_on_cpu_and_small_chunks_on_accelerators():
    """`config.loss_chunk=None`: the whole text's logits at once on CPU (fastest), 4 positions at a time on TPU/GPU."""
    import types

    from trainers.state import loss_chunk

    def mesh(platform):
        devices = np.empty(1, dtype=object)
        devices[0] = types.SimpleNamespace(platform=platform)
        return types.SimpleNamespace(devices=devices)

    assert loss_chunk(None, mesh("cpu")) is None and loss_chunk(None, mesh("tpu")) == 4
    assert loss_chunk(None, mesh("gpu")) == 4 and loss_chunk(16, mesh("cpu")) == 16
