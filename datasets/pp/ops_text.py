"""Text and key-management pp ops: strfmt, lower, choice, choice_cycle, copy, keep, drop, rename."""

from __future__ import annotations

import string

import tensorflow as tf

from datasets.pp import utils
from datasets.pp.registry import register

__all__ = ["strfmt", "lower", "choice", "choice_cycle", "copy", "keep", "drop", "rename"]


def _keys_in(key, inkey, outkey, default: str, op: str) -> tuple[str, str]:
    """Resolves the `key` / `inkey` / `outkey` convention.

    `key` sets both; otherwise inkey defaults to `default` and outkey to inkey.
    """
    if key is not None:
        if inkey is not None or outkey is not None:
            raise ValueError(f"{op}: pass either key= or inkey=/outkey=, not both")
        return key, key
    inkey = default if inkey is None else inkey
    return inkey, inkey if outkey is None else outkey


def _str_field(v, name: str) -> tf.Tensor:
    v = tf.convert_to_tensor(v)
    if v.dtype != tf.string:
        v = tf.strings.as_string(v)
    if v.shape.rank != 0:
        v = tf.strings.reduce_join(tf.reshape(v, [-1]), separator=", ")
    return v


@register("strfmt")
def strfmt(template: str, outkey: str = "prefix"):
    """Formats `template` with fields of the example: `strfmt("answer en {question}", outkey="prefix")`.

    Fields are keys of the example (`{objects/label}` works too); string scalars are inserted as is, numbers
    through `tf.strings.as_string`, 1-D fields joined with `", "`. `{{`/`}}` are literal braces; format
    specs and conversions (`{x:3d}`, `{x!r}`) are not supported. Output: `data[outkey]` scalar tf.string.
    """
    if not isinstance(template, str):
        raise ValueError(f"strfmt: template must be a str, got {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"strfmt: bad template {template!r}: {e}") from None
    for _, field, spec, conv in parts:
        if field is not None and (spec or conv):
            raise ValueError(f"strfmt: format specs/conversions are not supported ({{{field}!{conv}:{spec}}})")
        if field == "" or (field is not None and field.isdigit()):
            raise ValueError(f"strfmt: fields must be named after example keys, got {{{field}}} in {template!r}")

    def fn(data):
        pieces = []
        for literal, field, _, _ in parts:
            if literal:
                pieces.append(tf.constant(literal))
            if field is not None:
                pieces.append(_str_field(utils.get_key(data, field, "strfmt"), field))
        data[outkey] = tf.strings.join(pieces) if pieces else tf.constant("")
        return data

    return fn


@register("lower")
def lower(key: str = "text", outkey: str | None = None):
    """Lower-cases (Unicode, UTF-8) the string tensor `data[key]` (any shape) into `data[outkey or key]`."""

    def fn(data):
        data[outkey or key] = tf.strings.lower(utils.get_key(data, key, "lower"), encoding="utf-8")
        return data

    return fn


def _take(values: tf.Tensor, idx, data, op: str, inkey: str):
    n = tf.shape(values)[0]
    check = tf.debugging.Assert(n > 0, [f"{op}: {inkey!r} is empty in example", utils.example_id(data)])
    with tf.control_dependencies([check]):
        idx = tf.math.floormod(tf.cast(idx, tf.int64), tf.cast(tf.maximum(n, 1), tf.int64))
        return tf.gather(values, idx)


@register("choice")
def choice(inkey: str | None = None, outkey: str | None = None, key: str | None = None, rng_key: str = utils.RNG_KEY):
    """Picks one element of `data[inkey]` (shape `[N, ...]`, N >= 1, any dtype) uniformly at random.

    Output: `data[outkey]` with shape `[...]` (a string scalar for a list of answers). `inkey` defaults to
    `"answers"`, `outkey` to `inkey`; `key` sets both. Random draw: stateless from the example's
    `rng_key` seed ([2] ints), or else its `_seed` (added by `datasets.pipeline`), when present, so the same
    seed gives the same answer; otherwise `tf.random`.
    An empty list fails, naming the example. See `choice_cycle` for a choice that is reproducible per epoch.
    """
    inkey, outkey = _keys_in(key, inkey, outkey, "answers", "choice")

    def fn(data):
        values = tf.convert_to_tensor(utils.get_key(data, inkey, "choice"))
        if values.shape.rank == 0:
            raise ValueError(f"choice: {inkey!r} must have a leading list dimension, got a scalar")
        idx = utils.uniform_int(data, f"choice/{inkey}/{outkey}", tf.maximum(tf.shape(values)[0], 1), rng_key)
        data[outkey] = _take(values, idx, data, "choice", inkey)
        return data

    return fn


@register("choice_cycle")
def choice_cycle(
    inkey: str | None = None,
    outkey: str | None = None,
    key: str | None = None,
    counter_key: str = "epoch",
    offset_key: str | None = None,
):
    """Deterministic choice that cycles through `data[inkey]` (shape `[N, ...]`) by a counter.

    Index = `(data[counter_key] + offset) mod N` where `offset` is 0, or, with `offset_key`, a stable
    FarmHash of `data[offset_key]` (e.g. `offset_key="question_id"`, so that examples do not all start at
    their first answer). Keying: the choice is a pure function of (example, counter), so a run resumed at epoch
    `e` sees exactly the answers the original run saw; over N epochs every answer is used once. The pipeline
    must put the integer counter (the epoch index of a repeated dataset, or any step/visit counter) into the
    example, e.g. `Dataset.range(epochs).flat_map(lambda e: ds.map(lambda x: {**x, "epoch": e}))`.
    Output: `data[outkey]` with shape `[...]`; `inkey` defaults to `"answers"`, `outkey` to `inkey`.
    """
    inkey, outkey = _keys_in(key, inkey, outkey, "answers", "choice_cycle")

    def fn(data):
        if counter_key not in data:
            raise KeyError(
                f"choice_cycle: counter key {counter_key!r} is not in the example (keys: "
                f"{sorted(data)}); the input pipeline must add the epoch/step counter"
            )
        values = tf.convert_to_tensor(utils.get_key(data, inkey, "choice_cycle"))
        if values.shape.rank == 0:
            raise ValueError(f"choice_cycle: {inkey!r} must have a leading list dimension, got a scalar")
        idx = tf.cast(tf.reshape(data[counter_key], []), tf.int64)
        if offset_key is not None:
            off = _str_field(utils.get_key(data, offset_key, "choice_cycle"), offset_key)
            idx += tf.strings.to_hash_bucket_fast(off, 2**31 - 1)
        n = tf.cast(tf.maximum(tf.shape(values)[0], 1), tf.int64)
        data[outkey] = _take(values, tf.math.floormod(idx, n), data, "choice_cycle", inkey)
        return data

    return fn


@register("copy")
def copy(inkey: str, outkey: str):
    """Copies `data[inkey]` to `data[outkey]` (any dtype/shape; the tensor is shared, tensors are immutable)."""

    def fn(data):
        data[outkey] = utils.get_key(data, inkey, "copy")
        return data

    return fn


def _check_keys(keys, op: str):
    for k in keys:
        if not isinstance(k, str):
            raise ValueError(f"{op}: keys must be strings, got {k!r}")


_ALWAYS_KEPT = "text_truncated"  # datasets.pipeline.TRUNCATION_KEY (the pipeline imports this package, not back)


@register("keep")
def keep(*keys: str, missing_ok: bool = False):
    """Keeps only `keys` (in any dtype/shape) and `text_truncated`; other keys are dropped.

    `text_truncated` (the per-example flag of `tok_paligemma`) is always kept when present, listed or not: the
    pipeline counts it, reports truncation and removes it before the batch reaches the model
    (`datasets.pipeline.TRUNCATION_KEY`). A requested key that is missing is an error (listing the available keys)
    unless `missing_ok=True`.
    """
    _check_keys(keys, "keep")

    def fn(data):
        if not missing_ok:
            missing = [k for k in keys if k not in data]
            if missing:
                raise KeyError(f"keep: keys {missing} not in the example; available keys: {sorted(data)}")
        return {k: data[k] for k in (*keys, _ALWAYS_KEPT) if k in data}

    return fn


@register("drop")
def drop(*keys: str, missing_ok: bool = True):
    """Removes `keys` from the example (absent keys are ignored unless `missing_ok=False`)."""
    _check_keys(keys, "drop")

    def fn(data):
        if not missing_ok:
            missing = [k for k in keys if k not in data]
            if missing:
                raise KeyError(f"drop: keys {missing} not in the example; available keys: {sorted(data)}")
        return {k: v for k, v in data.items() if k not in keys}

    return fn


@register("rename")
def rename(inkey: str | None = None, outkey: str | None = None, **mapping: str):
    """Renames keys: `rename("objects/bbox", "boxes")` and/or `rename(old="new", ...)` (identifier keys).

    The old keys are removed. Values are unchanged (any dtype/shape).
    """
    pairs = dict(mapping)
    if (inkey is None) != (outkey is None):
        raise ValueError("rename: pass both inkey and outkey")
    if inkey is not None:
        pairs[inkey] = outkey
    if not pairs:
        raise ValueError("rename: nothing to rename")
    _check_keys(list(pairs) + list(pairs.values()), "rename")

    def fn(data):
        out = dict(data)
        for old in pairs:
            utils.get_key(data, old, "rename")
            del out[old]
        for old, new in pairs.items():
            out[new] = data[old]
        return out

    return fn
