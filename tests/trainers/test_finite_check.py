"""The train step's finiteness check: any NaN or Inf anywhere in the state is caught, and nothing else is."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainers.step import all_finite


def _state(**changes):
    state = {
        "params": {"w": np.full((1000, 8), 3e38, np.float32), "b": np.ones((8,), jnp.bfloat16)},
        "mu": np.zeros((1000, 8), np.float32),
        "count": np.int32(7),
    }
    for path, (index, value) in changes.items():
        leaf = state
        *parents, name = path.split("/")
        for p in parents:
            leaf = leaf[p]
        leaf[name] = leaf[name].copy()
        leaf[name][index] = value
    return state


def test_huge_finite_values_are_finite():
    # 8,000 entries of 3e38: their plain sum overflows to Inf, yet every entry is finite.
    assert bool(all_finite(_state()))
    assert bool(jax.jit(all_finite)(_state()))
    assert bool(all_finite({}))
    assert bool(all_finite({"count": np.int32(3)}))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["params/w", "params/b", "mu"])
def test_one_bad_entry_anywhere_is_caught(bad, where):
    state = _state(**{where: ((3, 5) if where != "params/b" else 2, bad)})
    assert not bool(all_finite(state))
    assert not bool(jax.jit(all_finite)(state))  # as compiled into the train step
