"""Per-example suffix NLL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evaluators.metrics import per_example_nll, perplexity


def _np_reference(logits, targets, weights):
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    tok = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    return (-tok * weights).sum(-1) / weights.sum(-1)


def test_uniform_logits_give_log_vocab():
    logits = np.zeros((2, 5, 7), np.float32)
    targets = np.array([[1, 2, 3, 4, 5], [0, 0, 0, 0, 6]])
    weights = np.array([[0, 0, 1, 1, 1], [1, 0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(per_example_nll(logits, targets, weights), [np.log(7)] * 2, rtol=1e-6)


def test_hand_case_and_weighting():
    # One example, V = 2, logits (0, ln 3) -> p = (1/4, 3/4).
    logits = np.array([[[0.0, np.log(3.0)], [0.0, np.log(3.0)]]], np.float32)
    nll = per_example_nll(logits, np.array([[0, 1]]), np.array([[1.0, 0.0]]))
    assert float(nll[0]) == pytest.approx(np.log(4.0), rel=1e-6)
    nll = per_example_nll(logits, np.array([[0, 1]]), np.array([[1.0, 1.0]]))
    assert float(nll[0]) == pytest.approx((np.log(4.0) + np.log(4 / 3)) / 2, rel=1e-6)


def test_random_against_numpy_and_stability():
    rng = np.random.RandomState(0)
    logits = rng.randn(3, 6, 50).astype(np.float32) * 30 + 1e4  # large offset: needs the max subtraction
    targets = rng.randint(0, 50, (3, 6))
    weights = (rng.rand(3, 6) > 0.3).astype(np.float32)
    weights[:, 0] = 1
    got = np.asarray(per_example_nll(logits, targets, weights))
    np.testing.assert_allclose(got, _np_reference(logits, targets, weights), rtol=1e-4)
    got16 = per_example_nll(jnp.asarray(logits - 1e4, jnp.bfloat16), targets, weights)
    assert np.all(np.isfinite(np.asarray(got16)))


def test_zero_weight_example_and_jit():
    logits = np.zeros((2, 3, 4), np.float32)
    targets = np.zeros((2, 3), np.int32)
    weights = np.array([[0, 0, 0], [1, 1, 0]], np.float32)
    out = jax.jit(per_example_nll)(logits, targets, weights)
    assert out.shape == (2,)
    assert float(out[0]) == 0.0
    assert float(out[1]) == pytest.approx(np.log(4), rel=1e-6)
    assert perplexity(out[1:]) == pytest.approx(4.0, rel=1e-5)
