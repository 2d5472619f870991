"""`config.loss_positions`: the logits at the suffix positions only, up to a static bound, with the same loss.

A user who knows the longest suffix of the data sets the bound; the step then computes `[B, P, V]` logits instead
of `[B, T, V]` and still gives the full-vocabulary loss and gradients. A batch over the bound stops the run with
the fix named, keeping the steps done so far.
"""

import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paligemma import loss
from paligemma import model as model_lib
from paligemma.checkpoints import training as checkpointing
from paligemma.tree import flatten, unflatten
from trainers import config as config_lib
from trainers import step
from trainers import train as train_lib

B, T, RES = 5, 12, 32
LAYOUT = [(3, 4), (5, 0), (2, 7), (7, 2), (4, 1)]  # (prompt, suffix) per example: at most 7 loss positions
TINY = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "train", "tiny.py"))


def _batch(vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    text = rng.integers(1, vocab, (B, T)).astype(np.int32)
    mask_ar, mask_loss, mask_input = (np.zeros((B, T), np.int32) for _ in range(3))
    for b, (prompt, suffix) in enumerate(LAYOUT):
        mask_ar[b, prompt : prompt + suffix] = mask_loss[b, prompt : prompt + suffix] = 1
        mask_input[b, : prompt + suffix] = 1
    image = rng.uniform(-1, 1, (B, RES, RES, 3)).astype(np.float32)
    return dict(image=image, text=text, mask_ar=mask_ar, mask_loss=mask_loss, mask_input=mask_input)


def _relative_error(new, ref) -> float:
    new, ref = flatten(new), flatten(ref)
    scale = max(float(jnp.max(jnp.abs(r))) for r in ref.values())
    return max(float(jnp.max(jnp.abs(new[k] - ref[k]))) for k in ref) / scale


def test_weighted_nll_sums_with_a_bound_equal_the_sum_over_every_position():
    rng = np.random.default_rng(1)
    hidden = jnp.asarray(rng.normal(size=(4, 7, 5)), jnp.float32)
    proj = jnp.asarray(rng.normal(size=(5, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (4, 7)), jnp.int32)
    weights = jnp.asarray([[0, 1, 1, 0, 1, 0, 0], [0] * 7, [0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 2]], jnp.float32)
    logits_fn = lambda h: h @ proj  # noqa: E731
    expected = jnp.sum(loss.token_nll(logits_fn(hidden), targets, 0.1) * weights, axis=-1)
    for positions, chunk in [(3, None), (3, 2), (4, None), (7, None), (100, 3)]:
        got = loss.weighted_nll_sums(
            hidden, targets, weights, logits_fn, label_smoothing=0.1, chunk=chunk, positions=positions
        )
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6)
    # The logits are computed at the bound's positions only.
    jaxpr = str(
        jax.make_jaxpr(lambda h: loss.weighted_nll_sums(h, targets, weights, logits_fn, chunk=None, positions=3))(
            hidden
        )
    )
    assert "f32[4,3,11]" in jaxpr and "f32[4,7,11]" not in jaxpr


def test_train_step_with_the_bound_equals_the_step_without_it():
    config = model_lib.get_config("paligemma-tiny")
    model, params = model_lib.Model(**config), model_lib.init_params(config, jax.random.key(0))
    batch = _batch(config["llm"]["vocab_size"])
    tx = optax.sgd(1.0)  # the update is the gradient itself
    trainable = list(flatten(params))
    opt_state = tx.init(unflatten(dict(flatten(params))))

    def run(**kw):
        fn = step.make_train_step(model, tx, trainable=trainable, lr_fn=lambda c: 1.0, label_smoothing=0.1, **kw)
        return jax.jit(fn)(params, opt_state, batch, jnp.int32(0), jax.random.key(1))

    ref_params, _, ref_metrics = run(loss_chunk=None)
    for kw in (dict(loss_chunk=None, loss_positions=7), dict(loss_chunk=3, loss_positions=7)):
        new_params, _, new_metrics = run(**kw)
        for k in ("training_loss", "grad_norm"):
            assert abs(float(new_metrics[k]) - float(ref_metrics[k])) <= 1e-6 * abs(float(ref_metrics[k])), (kw, k)
        delta = lambda p: jax.tree.map(lambda a, b: a - b, p, params)  # noqa: E731  (the updates)
        assert _relative_error(delta(new_params), delta(ref_params)) <= 1e-6, kw


def test_a_batch_over_the_bound_names_the_key_and_the_length_it_needs():
    batch = _batch(100)
    step.check_loss_positions(batch, 7)
    step.check_loss_positions(batch, None)
    with pytest.raises(step.LossPositionsError, match=r"has 7 positions.*config.loss_positions=6.*at least 7"):
        step.check_loss_positions(batch, 6)
    for bad in (0, -1, 2.5, True, "21"):
        with pytest.raises(config_lib.ConfigError, match=r"config.loss_positions must be None or a positive int"):
            config_lib.resolve(TINY["override"](TINY["get_config"]("assets"), loss_positions=bad))


def test_a_run_stops_before_compiling_when_the_first_batch_is_over_the_bound(tiny_assets, tmp_path):
    config = TINY["override"](TINY["get_config"](tiny_assets), total_steps=2, loss_positions=1)
    with pytest.raises(step.LossPositionsError, match=r"config.loss_positions=1"):
        train_lib.train(config, str(tmp_path), compiler_options=TINY["FAST_XLA"])
    assert checkpointing.checkpoint_steps(str(tmp_path)) == []


def test_a_later_batch_over_the_bound_saves_the_steps_done_before_stopping(tiny_assets, tmp_path, monkeypatch):
    """The third batch is over the bound: steps 1 and 2 are kept, and the rerun with a larger bound resumes at 2."""
    calls = []
    checked = step.check_loss_positions

    def over_on_third_batch(batch, limit):
        calls.append(limit)
        if len(calls) == 3:
            raise step.LossPositionsError("a training example has 9 positions with a loss")
        checked(batch, limit)

    monkeypatch.setattr(step, "check_loss_positions", over_on_third_batch)
    config = TINY["override"](TINY["get_config"](tiny_assets), total_steps=4, ckpt_steps=10, loss_positions=8)
    with pytest.raises(step.LossPositionsError):
        train_lib.train(config, str(tmp_path), compiler_options=TINY["FAST_XLA"])
    assert checkpointing.checkpoint_steps(str(tmp_path)) == [2]
    monkeypatch.setattr(step, "check_loss_positions", checked)
    train_lib.train(config, str(tmp_path), compiler_options=TINY["FAST_XLA"])
    assert checkpointing.checkpoint_steps(str(tmp_path))[-1] == 4
