"""Helpers shared by the pp ops: key access, per-example ids, seeded randomness, tokenizer cache."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from paligemma.tokenizer import Tokenizer

__all__ = [
    "get_key",
    "example_id",
    "ID_KEYS",
    "RNG_KEY",
    "op_seed",
    "uniform",
    "uniform_int",
    "get_tokenizer",
    "as_size",
]

# Fields that identify an example, in order of preference, for error messages.
ID_KEYS: tuple[str, ...] = (
    "image/id",
    "question_id",
    "id",
    "image_id",
    "example_id",
    "tfds_id",
    "image/filename",
    "filename",
)

# Per-example seed key: a [2] integer tensor (e.g. from `tf.data.Dataset.random(seed).batch(2)` zipped in, or
# `tf.random.experimental.stateless_split`). When present, random ops are stateless functions of it. If an op's
# rng_key is absent, the FALLBACK_RNG_KEYS are tried (`_seed` is what datasets.pipeline adds to every example).
RNG_KEY = "rng"
FALLBACK_RNG_KEYS: tuple[str, ...] = ("_seed",)


def get_key(data: Mapping[str, Any], key: str, op: str) -> Any:
    """`data[key]` with a KeyError that names the op and lists the available keys.

    A key with `/` that is not a key of its own (TFDS names some flat fields `image/id`) walks nested feature
    dicts: `"captions/text"` is `data["captions"]["text"]` (TFDS `Sequence({"text": ...})` features).
    """
    if key in data:
        return data[key]
    node = data
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"{op}: key {key!r} not in the example; available keys: {sorted(data)}")
        node = node[part]
    return node


def example_id(data: Mapping[str, Any], id_keys: Sequence[str] | None = None) -> tf.Tensor:
    """A scalar tf.string naming the example: `"<key>=<value>"` of the first id field present, or `"?"`."""
    for k in id_keys or ID_KEYS:
        if k in data:
            v = tf.convert_to_tensor(data[k])
            if v.dtype != tf.string:
                v = tf.strings.as_string(v)
            v = tf.strings.reduce_join(tf.reshape(v, [-1]), separator=",")
            return tf.strings.join([f"{k}=", v])
    return tf.constant(f"<no id field; looked for {', '.join(id_keys or ID_KEYS)}>")


def op_seed(data: Mapping[str, Any], salt: str, rng_key: str = RNG_KEY) -> tf.Tensor | None:
    """Stateless seed ([2] int64) for one random op, or None when the example has no seed.

    The seed is `data[rng_key]`, else the first of `FALLBACK_RNG_KEYS` present (`_seed`, which
    `datasets.pipeline` adds). It is folded with a stable hash of `salt` (op name + key), so different ops
    drawing from the same example seed are independent, and the same op on the same example always draws the same
    value.
    """
    key = next((k for k in (rng_key, *FALLBACK_RNG_KEYS) if k in data), None)
    if key is None:
        return None
    rng = tf.cast(tf.reshape(data[key], [-1])[:2], tf.int64)
    rng.set_shape([2])
    return tf.random.experimental.stateless_fold_in(rng, zlib.crc32(salt.encode()) & 0x7FFFFFFF)


def uniform(data, salt: str, shape=(), rng_key: str = RNG_KEY) -> tf.Tensor:
    """float32 in [0, 1): stateless from the example seed if present, else `tf.random.uniform`."""
    seed = op_seed(data, salt, rng_key)
    if seed is None:
        return tf.random.uniform(shape, 0.0, 1.0, dtype=tf.float32)
    return tf.random.stateless_uniform(shape, seed=seed, minval=0.0, maxval=1.0, dtype=tf.float32)


def uniform_int(data, salt: str, maxval, rng_key: str = RNG_KEY) -> tf.Tensor:
    """A scalar int32 in [0, maxval) (maxval a tensor >= 1), seeded as `uniform`."""
    maxval = tf.cast(maxval, tf.int32)
    u = uniform(data, salt, (), rng_key)
    return tf.minimum(tf.cast(tf.floor(u * tf.cast(maxval, tf.float32)), tf.int32), maxval - 1)


def as_size(size, op: str) -> tuple[int, int]:
    """`224` -> (224, 224); `(h, w)` -> (h, w); ValueError otherwise."""
    if isinstance(size, bool):
        raise ValueError(f"{op}: size must be an int or (height, width), got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{op}: size must be a positive int or (height, width) of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


_TOKENIZERS: dict[str, Any] = {}
_TOK_LOCK = threading.Lock()


def get_tokenizer(path: str | None, op: str):
    """Loads (once per path, thread-safe) a `paligemma.tokenizer.Tokenizer`."""
    if not path:
        raise ValueError(
            f"{op}: no tokenizer: pass tokenizer='path/to.model' to the op or get_preprocess_fn(..., tokenizer=...)"
        )
    tok = _TOKENIZERS.get(path)
    if tok is None:
        with _TOK_LOCK:
            tok = _TOKENIZERS.get(path)
            if tok is None:
                tok = _TOKENIZERS[path] = Tokenizer(path)
    return tok
