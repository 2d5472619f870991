"""Optimizer of the trainer: optax transforms, learning-rate schedule, regex multipliers and freezing (no TensorFlow).

The optimizer acts on the *trainable* parameters only (a nested dict without the frozen ones), so frozen
parameters get neither gradients nor optimizer state. One update, for trainable parameter p with gradient g at
update t = 0, 1, ... (s(t) = the schedule factor in [0, 1]):

    g  = clip_by_global_norm(g, grad_clip_norm)            over all trainable parameters
    d  = direction(g)                                      adam/adamw: scale_by_adam, adafactor: factored RMS,
                                                           sgd: momentum (optax.trace) or g itself
    p -= s(t) * (lr * lr_mult(p) * d + wd * wd_mult(p) * p)

so weight decay is decoupled from the gradient and from `lr` (big_vision's convention), and follows the schedule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paligemma.errors import UserError
from paligemma.tree import flatten, unflatten

Schedule = Callable[[Any], jax.Array]


class OptimizerConfigError(UserError, ValueError):
    """An optimizer setting that cannot be used; the message names the config key."""


def first_match(name: str, rules: Sequence[Sequence[Any]], default: Any) -> Any:
    """Value of the first `(regex, value)` rule whose regex `re.search`es `name`, else `default`."""
    for regex, value in rules or ():
        if re.search(regex, name):
            return value
    return default


def frozen_names(names: Sequence[str], freeze: Sequence[str]) -> list[str]:
    """Parameter names (e.g. "img/head/kernel") matching any of the `freeze` regexes."""
    return [n for n in names if any(re.search(r, n) for r in freeze or ())]


def multipliers(names: Sequence[str], rules: Sequence[Sequence[Any]], default: float) -> dict[str, float]:
    """`{name: float}` from (regex, multiplier) rules, first match wins."""
    return {n: float(first_match(n, rules, default)) for n in names}


def make_schedule(schedule: Mapping[str, Any], total_steps: int) -> Schedule:
    """The schedule factor s(t) (float32, in [0, 1]) for update t = 0 .. total_steps - 1.

    Linear warmup over the first W updates (s = (t + 1) / W), W = warmup_steps or round(warmup_percent * total),
    then `decay_type` over the remaining updates with progress q = (t - W) / (total - W):
    cosine: e + (1 - e) * (1 + cos(pi q)) / 2; linear: 1 - (1 - e) q; rsqrt: 1 / sqrt(1 + (t - W) / timescale);
    constant: 1 (e = end_factor).
    """
    kind = schedule.get("decay_type", "cosine")
    warmup = schedule.get("warmup_steps")
    if warmup is None:
        warmup = int(round(float(schedule.get("warmup_percent", 0.0)) * total_steps))
    warmup = min(int(warmup), total_steps)
    end = float(schedule.get("end_factor", 0.0))
    timescale = float(schedule.get("timescale", 10_000))
    span = max(1, total_steps - warmup)

    def fn(count):
        t = jnp.asarray(count, jnp.float32)
        q = jnp.clip((t - warmup) / span, 0.0, 1.0)
        if kind == "cosine":
            decay = end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(math.pi * q))
        elif kind == "linear":
            decay = 1.0 - (1.0 - end) * q
        elif kind == "rsqrt":
            decay = jax.lax.rsqrt(1.0 + jnp.maximum(t - warmup, 0.0) / timescale)
        elif kind == "constant":
            decay = jnp.ones_like(t)
        else:
            raise OptimizerConfigError(f"config.schedule.decay_type {kind!r} unknown.")
        if warmup == 0:
            return decay
        return jnp.where(t < warmup, (t + 1.0) / warmup, decay)

    return fn


class ScheduleState(NamedTuple):
    """Number of updates applied so far (int32 scalar)."""

    count: jax.Array


def scale_and_decay(
    lr: float, wd: float, schedule: Schedule, lr_mults: Mapping[str, float], wd_mults: Mapping[str, float]
) -> optax.GradientTransformation:
    """`u -> -s(t) * (lr * lr_mult * u + wd * wd_mult * p)` per parameter (multipliers keyed by "/"-joined name)."""

    def init(params):
        del params
        return ScheduleState(jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        if params is None and wd:
            raise ValueError("scale_and_decay needs params for weight decay.")
        s = schedule(state.count)
        flat_u = flatten(updates)
        flat_p = flatten(params) if params is not None else {}
        out = {}
        for name, u in flat_u.items():
            step = -s * lr * lr_mults.get(name, 1.0) * u
            decay = wd * wd_mults.get(name, 0.0)
            if decay:
                step = step - s * decay * flat_p[name]
            out[name] = step.astype(u.dtype)
        return unflatten(out), ScheduleState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def _direction(name: str, kwargs: Mapping[str, Any]) -> optax.GradientTransformation:
    kwargs = dict(kwargs)
    try:
        if name in ("adam", "adamw"):
            return optax.scale_by_adam(**kwargs)
        if name == "adafactor":
            return optax.scale_by_factored_rms(**kwargs)
        if name == "sgd":
            momentum = kwargs.pop("momentum", None)
            nesterov = kwargs.pop("nesterov", False)
            if kwargs:
                raise TypeError(f"unexpected arguments {sorted(kwargs)} (sgd takes momentum, nesterov)")
            return optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity()
    except TypeError as e:
        raise OptimizerConfigError(f"config.optax for optax_name={name!r}: {e}.") from None
    raise OptimizerConfigError(f"config.optax_name {name!r} unknown; use adam, adamw, adafactor or sgd.")


def make_optimizer(
    config: Any, trainable: Mapping[str, Any], total_steps: int
) -> tuple[optax.GradientTransformation, Callable[[Any], jax.Array]]:
    """The optax transform for the trainable parameter tree, and `lr_fn(t)` (the learning rate of update t).

    `config` carries optax_name, optax, lr, wd, wd_mults, lr_mults, schedule, grad_clip_norm (see
    trainers.config); `trainable` is a nested dict of arrays or ShapeDtypeStructs (names are "/"-joined paths).
    """
    names = list(flatten(trainable))
    schedule = make_schedule(dict(config.schedule), total_steps)
    parts = []
    if config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
    parts.append(_direction(config.optax_name, config.optax or {}))
    parts.append(
        scale_and_decay(
            float(config.lr),
            float(config.wd),
            schedule,
            multipliers(names, config.lr_mults, 1.0),
            multipliers(names, config.wd_mults, 0.0),
        )
    )
    lr = float(config.lr)
    return optax.chain(*parts), lambda t: lr * schedule(t)
