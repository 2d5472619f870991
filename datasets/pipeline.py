"""Input pipelines: a source (`datasets.sources`) + a preprocessing function -> numpy batches.

    source = sources.get_source(config.input.data)
    pp_fn = pp.get_preprocess_fn(config.input.pp, tokenizer=config.input.tokenizer)   # or any dict -> dict fn
    it = make_train_iterator(source, pp_fn, batch_size=32, shuffle_buffer_size=10_000, seed=0)
    batch = next(it)                     # dict of numpy arrays, leading axis = per-process batch size
    ...
    checkpoint["data_position"] = it.position   # = examples this process consumed = start_example + steps * batch_size
    # later: make_train_iterator(..., start_example=checkpoint["data_position"]) continues with the very same batches.

`pp_fn` may be a callable (`dict -> dict` of tensors, traced in graph mode by `tf.data.Dataset.map`), a pp string
(turned into a function with `datasets.pp.get_preprocess_fn(pp_fn, tokenizer=tokenizer)`), None (no preprocessing;
for a mixture: each part's own `pp` string from its config), or for a mixture a list with one entry per part.
Mixture parts are preprocessed separately and mixed afterwards, so their outputs must have the same structure.

Training stream (per process), exactly reproducible and resumable
-----------------------------------------------------------------
Process i of n reads its own disjoint block of the split (`Source.get_tfdata(process_index=i, ...)`). Epoch e of
that block is a fixed function of (seed, i, e): the source's seeded order (JSONL: a permutation; TFDS: the order of
the shard files) followed by a shuffle buffer seeded with (seed, i, e). The epochs are chained
(`Dataset.range(e0, inf).flat_map(epoch)`), so batches run across epoch boundaries and no example is dropped. Example
number k of the stream (k = 0, 1, ...) therefore never depends on where the run started: resuming at
`start_example=k` starts at epoch k // shard_size and skips k % shard_size raw (undecoded) records of it -- at most
one epoch of reading, no preprocessing. Each example also gets `_seed` (int64 [2], a function of seed, process and
k) and `epoch` (int64, k // shard size, the counter `choice_cycle` cycles answers by; 0 in evaluation) before
preprocessing: pp ops that need randomness should draw it with stateless ops seeded from `_seed`
(`tf.random.stateless_*`), which makes random augmentations part of the exact replay too (stateful random ops inside a
parallel map are not reproducible). `_seed` and `epoch` are removed after preprocessing. The map is parallel but
deterministic, batches drop the remainder.

Mixtures: example k comes from part c_k, where c_0, c_1, ... is a seeded categorical sequence (weights normalised),
computed in blocks of 1024 from stateless random numbers -- the same draw as `tf.data.Dataset.sample_from_datasets`,
but counter-based, so that on resume the position of every part (the number of earlier k with c_k = part) is recomputed
exactly. Each part then runs the single-source stream above from that position.

Evaluation stream
-----------------
`make_eval_iterator` reads this process's block in order, every example exactly once across processes. All
processes yield the same number of batches (ceil(largest block / batch_size)), the last ones padded with zeros; the
`_mask` field (int32, 1 = real example, 0 = padding) tells them apart. List fields whose length varies per example
(COCO captions, DocVQA answers) are padded with "" / 0 to the longest in their batch.

Truncation: when the preprocessing emits a per-example `text_truncated` flag (the tokenizer op does when a text does
not fit in text_len), it is removed from the batch and counted: `iterator.stats` = dict(examples=..., truncated=...).
Reporting the counts is the consumer's (the trainer logs them per step and warns, `trainers.data.TrainData`), so that
a run with several data shards says it once, with the counts of all of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf

from datasets import pp
from datasets.base import DataError, mix_seed, shard_bounds
from datasets.mixture import MixtureSource
from datasets.sources import get_source

AUTOTUNE = tf.data.AUTOTUNE
TRUNCATION_KEY = "text_truncated"
SEED_KEY = "_seed"
EPOCH_KEY = "epoch"  # the counter `choice_cycle` cycles answers by; removed after preprocessing like `_seed`
MASK_KEY = "_mask"
_MIX_BLOCK = 1024
_FOREVER = 2**62

PPFn = Callable[[dict], dict]


# --------------------------------------------------------------------------------------------------------------
# Preprocessing functions.


def resolve_pp(pp_fn, tokenizer=None) -> PPFn | None:
    """A callable for `pp_fn` (callable, pp string or None)."""
    if pp_fn is None or callable(pp_fn):
        return pp_fn
    if isinstance(pp_fn, str):
        return pp.get_preprocess_fn(pp_fn, tokenizer=tokenizer)
    raise TypeError(f"pp_fn must be a callable, a pp string or None, got {type(pp_fn).__name__}")


def _part_pps(source, pp_fn, tokenizer) -> list[PPFn | None]:
    parts = source.parts
    if isinstance(pp_fn, (list, tuple)):
        if len(pp_fn) != len(parts):
            raise ValueError(f"{len(pp_fn)} pp functions for a mixture of {len(parts)} parts")
        return [resolve_pp(f, tokenizer) for f in pp_fn]
    if pp_fn is None:
        return [resolve_pp(p.pp, tokenizer) for p in parts]
    return [resolve_pp(pp_fn, tokenizer)] * len(parts)


def _wrap_pp(pp_fn: PPFn | None) -> Callable[[dict], dict]:
    def fn(ex):
        out = pp_fn(dict(ex)) if pp_fn is not None else dict(ex)
        if not isinstance(out, dict):
            raise TypeError(f"A pp function must return a dict, got {type(out).__name__}")
        out = dict(out)
        out.pop(SEED_KEY, None)
        out.pop(EPOCH_KEY, None)
        return out

    return fn


# --------------------------------------------------------------------------------------------------------------
# Training.


def _single_train_stream(
    source, pp_fn, *, process_index, process_count, seed, start, buffer_size, num_parallel
) -> tf.data.Dataset:
    n = source.shard_num_examples(process_index, process_count)
    if n <= 0:
        raise DataError(f"{source.describe()}: process {process_index} of {process_count} has no examples")
    epoch0, offset = divmod(int(start), n)

    def epoch(e):
        ds = source.get_tfdata(
            process_index=process_index,
            process_count=process_count,
            ordered=False,
            seed=mix_seed(seed, e, 0),
        )
        if buffer_size and buffer_size > 1:
            ds = ds.shuffle(buffer_size, seed=mix_seed(seed, e, 1), reshuffle_each_iteration=False)
        return ds

    ds = tf.data.Dataset.range(epoch0, _FOREVER).flat_map(epoch)
    if offset:
        ds = ds.skip(offset)
    ex_seed = mix_seed(seed, 2)

    def add_seed(k, ex):
        ex = dict(ex)
        ex[SEED_KEY] = tf.stack([ex_seed, k])
        ex[EPOCH_KEY] = k // n  # epoch of this process's block: a resumed run sees the same value per example
        return ex

    ds = ds.enumerate(start=int(start)).map(add_seed)
    return ds.map(_wrap_pp(pp_fn), num_parallel_calls=num_parallel, deterministic=True)


def _mixture_block(log_weights, seed, b):
    """The part chosen for examples [b * 1024, (b + 1) * 1024) of a mixture stream."""
    s = tf.stack([tf.cast(seed, tf.int64), tf.cast(b, tf.int64)])
    return tf.random.stateless_categorical(log_weights[None, :], _MIX_BLOCK, seed=s, dtype=tf.int64)[0]


def mixture_part_positions(weights: Sequence[float], seed: int, start: int) -> np.ndarray:
    """How many of the first `start` examples of a mixture stream come from each part."""
    log_w = tf.math.log(tf.constant(weights, tf.float32))
    k = len(weights)
    full, rest = divmod(int(start), _MIX_BLOCK)
    counts = np.zeros(k, np.int64)
    if full:
        ds = tf.data.Dataset.range(full).map(
            lambda b: tf.math.bincount(_mixture_block(log_w, seed, b), minlength=k, maxlength=k, dtype=tf.int64),
            num_parallel_calls=AUTOTUNE,
        )
        counts += ds.reduce(tf.zeros([k], tf.int64), lambda a, c: a + c).numpy()
    if rest:
        counts += np.bincount(_mixture_block(log_w, seed, full).numpy()[:rest], minlength=k)
    return counts


def _mixture_train_stream(
    source, pp_fns, *, process_index, process_count, seed, start, buffer_size, num_parallel
) -> tf.data.Dataset:
    weights = list(source.weights)
    mseed = int(mix_seed(seed, 3).numpy())
    positions = mixture_part_positions(weights, mseed, start)
    live = [i for i, w in enumerate(weights) if w > 0]  # zero-weight parts are never drawn
    parts = [
        _single_train_stream(
            source.parts[i],
            pp_fns[i],
            process_index=process_index,
            process_count=process_count,
            seed=mix_seed(seed, 10 + i),
            start=int(positions[i]),
            buffer_size=buffer_size,
            num_parallel=num_parallel,
        )
        for i in live
    ]
    for i, p in zip(live[1:], parts[1:]):
        if p.element_spec.keys() != parts[0].element_spec.keys():
            raise ValueError(
                f"Mixture parts {live[0]} and {i} give different fields after preprocessing: "
                f"{sorted(parts[0].element_spec)} vs {sorted(p.element_spec)}; preprocess them to the same "
                "structure (e.g. end each pp with the same keep(...))."
            )
    if len(parts) == 1:
        return parts[0]
    log_w = tf.math.log(tf.constant(weights, tf.float32))
    full, rest = divmod(int(start), _MIX_BLOCK)
    choices = tf.data.Dataset.range(full, _FOREVER).map(lambda b: _mixture_block(log_w, mseed, b)).unbatch()
    if rest:
        choices = choices.skip(rest)
    if len(live) < len(weights):  # renumber the parts that are left
        table = tf.constant(np.cumsum([w > 0 for w in weights]) - 1, tf.int64)
        choices = choices.map(lambda c: tf.gather(table, c))
    return tf.data.Dataset.choose_from_datasets(parts, choices, stop_on_empty_dataset=True)


def make_train_dataset(
    source,
    pp_fn,
    *,
    batch_size: int,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
    start_example: int = 0,
    num_parallel=AUTOTUNE,
    prefetch: int = 2,
    process_index: int | None = None,
    process_count: int | None = None,
    tokenizer=None,
) -> tf.data.Dataset:
    """The batched training `tf.data.Dataset` behind `make_train_iterator` (same arguments)."""
    process_index, process_count = _process(process_index, process_count)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if start_example < 0:
        raise ValueError(f"start_example must be >= 0, got {start_example}")
    seed = int(mix_seed(int(seed), process_index).numpy())
    kw = dict(
        process_index=process_index,
        process_count=process_count,
        seed=seed,
        start=start_example,
        buffer_size=shuffle_buffer_size,
        num_parallel=num_parallel,
    )
    if isinstance(source, MixtureSource):
        ds = _mixture_train_stream(source, _part_pps(source, pp_fn, tokenizer), **kw)
    else:
        ds = _single_train_stream(source, resolve_pp(pp_fn if pp_fn is not None else source.pp, tokenizer), **kw)
    ds = ds.batch(batch_size, drop_remainder=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def data_error(error: tf.errors.OpError, where: str) -> DataError:
    """A one-line DataError for a TensorFlow error raised while reading data (a bad image, a failed assertion).

    The message is TensorFlow's without its graph noise (function names, op names, "assertion failed: [...]"),
    prefixed by `where` (the source) unless it already names a file.
    """
    msg = error.message.split("Traceback (most recent call last)", 1)[0]  # a py_function's Python traceback
    msg = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", msg)
    msg = re.sub(r"\s*\[\[\{\{node [^\]]*\]\]", "", msg)
    msg = re.sub(r"\s*\[Op:\w+\].*$", "", msg, flags=re.S)
    msg = re.sub(r"^.*?(Error in user-defined function[^:]*:[^:]*:\s*)", "", msg, flags=re.S)
    asserted = re.search(r"assertion failed: \[(.*?)\]\s*(\[\[|$)", msg, flags=re.S)
    if asserted:
        msg = asserted.group(1)
    msg = re.sub(r"^(Iterator::\S+:\s*)?(\w+(Error|Exception):\s*)?", "", msg.strip())
    msg = " ".join(msg.split())
    return DataError(f"{where}: {msg}" if where and where.split(" ")[0].split(":", 1)[-1] not in msg else msg)


class TrainIterator:
    """Infinite iterator of numpy batches; `position` is where a resumed run should start (`start_example`)."""

    def __init__(self, dataset: tf.data.Dataset, batch_size: int, start_example: int, where: str = ""):
        self.dataset = dataset
        self.batch_size = batch_size
        self.where = where  # the source, named by data errors
        self.position = int(start_example)
        self.examples = 0
        self.truncated = 0
        self._it: Iterator | None = None

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = self.dataset.as_numpy_iterator()
        try:
            batch = next(self._it)
        except tf.errors.OpError as e:
            raise data_error(e, self.where) from None
        self.position += self.batch_size
        self.examples += self.batch_size
        flag = batch.pop(TRUNCATION_KEY, None) if isinstance(batch, dict) else None
        if flag is not None:
            self.truncated += int(np.count_nonzero(flag))
        return batch

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: dict(examples=..., truncated=...) (texts cut to fit text_len)."""
        return dict(examples=self.examples, truncated=self.truncated)


def make_train_iterator(
    source,
    pp_fn,
    *,
    batch_size: int,
    shuffle_buffer_size: int = 10_000,
    seed: int = 0,
    start_example: int = 0,
    num_parallel=AUTOTUNE,
    prefetch: int = 2,
    process_index: int | None = None,
    process_count: int | None = None,
    tokenizer=None,
) -> TrainIterator:
    """Infinite, shuffled, preprocessed numpy batches of this process's shard (see the module docstring).

    Args:
      source: a `datasets.sources` source (or a data config dict, passed to `get_source`).
      pp_fn: callable / pp string / None / list (mixtures), see the module docstring.
      batch_size: examples per batch on this process.
      shuffle_buffer_size: examples in the shuffle buffer (0 or 1: no buffer, only the source's seeded order).
      seed: the run's data seed. Process i uses a seed derived from (seed, i).
      start_example: position in this process's stream to start at (resume with `iterator.position`).
      num_parallel: parallel calls of the preprocessing map (deterministic order either way).
      prefetch: batches prefetched by tf.data.
      process_index, process_count: default jax.process_index() / jax.process_count().
      tokenizer: passed to `pp.get_preprocess_fn` when pp_fn is a string.
    """
    if isinstance(source, dict) or hasattr(source, "to_dict"):
        source = get_source(source)
    ds = make_train_dataset(
        source,
        pp_fn,
        batch_size=batch_size,
        shuffle_buffer_size=shuffle_buffer_size,
        seed=seed,
        start_example=start_example,
        num_parallel=num_parallel,
        prefetch=prefetch,
        process_index=process_index,
        process_count=process_count,
        tokenizer=tokenizer,
    )
    return TrainIterator(ds, batch_size, start_example, where=source.describe())


# --------------------------------------------------------------------------------------------------------------
# Evaluation.


def _zeros_like_spec(spec: tf.TensorSpec, batch_size: int):
    shape = [batch_size] + [d if d is not None else 0 for d in spec.shape.as_list()[1:]]
    if spec.dtype == tf.string:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)


def _pad_rows(x: np.ndarray, batch_size: int) -> np.ndarray:
    n = x.shape[0]
    if n == batch_size:
        return x
    pad = np.zeros((batch_size - n,) + x.shape[1:], dtype=x.dtype)
    if x.dtype == object:
        pad[...] = b""
    return np.concatenate([x, pad], axis=0)


class EvalIterator:
    """Ordered numpy batches of this process's block, each example once; padded, with `_mask`. Re-iterable."""

    def __init__(
        self, dataset: tf.data.Dataset, *, batch_size: int, num_examples: int, num_batches: int, where: str = ""
    ):
        self.dataset = dataset
        self.where = where  # the source, named by data errors
        self.batch_size = batch_size
        self.num_examples = num_examples  # real examples on this process
        self.num_batches = num_batches  # the same on every process
        self.examples = 0
        self.truncated = 0

    def __len__(self):
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.examples = self.truncated = 0
        bs, emitted = self.batch_size, 0
        batches = self.dataset.as_numpy_iterator()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                raise data_error(e, self.where) from None
            n = len(tf.nest.flatten(batch)[0])
            batch = tf.nest.map_structure(lambda x: _pad_rows(np.asarray(x), bs), batch)
            batch[MASK_KEY] = (np.arange(bs) < n).astype(np.int32)
            self._count(batch, n)
            emitted += 1
            yield batch
        while emitted < self.num_batches:  # other processes have more: pad with whole batches of nothing
            spec = self.dataset.element_spec
            batch = tf.nest.map_structure(lambda s: _zeros_like_spec(s, bs), spec)
            batch.pop(TRUNCATION_KEY, None)
            batch[MASK_KEY] = np.zeros([bs], np.int32)
            emitted += 1
            yield batch

    def _count(self, batch, n):
        self.examples += n
        flag = batch.pop(TRUNCATION_KEY, None)
        if flag is not None:
            self.truncated += int(np.count_nonzero(np.asarray(flag)[:n]))

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: dict(examples=..., truncated=...) (texts cut to fit text_len)."""
        return dict(examples=self.examples, truncated=self.truncated)


def _ordered_part(source, fn, process_index, process_count, part_index, num_parallel):
    ds = source.get_tfdata(process_index=process_index, process_count=process_count, ordered=True)
    start, _ = shard_bounds(source.num_examples, process_index, process_count)
    ex_seed = tf.constant(part_index, tf.int64)

    def add_seed(k, ex):  # Same `_seed` contract as training: fixed per example (part, index in the split).
        ex = dict(ex)
        ex[SEED_KEY] = tf.stack([ex_seed, k])
        ex[EPOCH_KEY] = tf.constant(0, tf.int64)
        return ex

    ds = ds.enumerate(start=start).map(add_seed)
    return ds.map(_wrap_pp(fn), num_parallel_calls=num_parallel, deterministic=True)


def make_eval_dataset(
    source, pp_fn, *, process_index: int, process_count: int, num_parallel=AUTOTUNE, tokenizer=None
) -> tf.data.Dataset:
    """Unbatched, ordered, preprocessed examples of this process's block."""
    if isinstance(source, MixtureSource):
        ds = None
        for i, (part, fn) in enumerate(zip(source.parts, _part_pps(source, pp_fn, tokenizer))):
            d = _ordered_part(part, fn, process_index, process_count, i, num_parallel)
            ds = d if ds is None else ds.concatenate(d)
        return ds
    fn = resolve_pp(pp_fn if pp_fn is not None else source.pp, tokenizer)
    return _ordered_part(source, fn, process_index, process_count, 0, num_parallel)


def make_eval_iterator(
    source,
    pp_fn,
    *,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    num_parallel=AUTOTUNE,
    prefetch: int = 2,
    tokenizer=None,
) -> EvalIterator:
    """Every example of the split exactly once across processes, in order; see the module docstring."""
    if isinstance(source, dict) or hasattr(source, "to_dict"):
        source = get_source(source)
    process_index, process_count = _process(process_index, process_count)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ds = make_eval_dataset(
        source,
        pp_fn,
        process_index=process_index,
        process_count=process_count,
        num_parallel=num_parallel,
        tokenizer=tokenizer,
    )
    # Padded: list fields whose length varies per example (COCO captions, DocVQA answers) are padded with ""/0 to
    # the longest in the batch; evaluators ignore empty strings.
    ds = ds.padded_batch(batch_size, drop_remainder=False)
    if prefetch:
        ds = ds.prefetch(prefetch)
    largest = max(source.shard_num_examples(i, process_count) for i in range(process_count))
    return EvalIterator(
        ds,
        batch_size=batch_size,
        num_examples=source.shard_num_examples(process_index, process_count),
        num_batches=math.ceil(largest / batch_size),
        where=source.describe(),
    )


def _process(process_index, process_count):
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return int(process_index), int(process_count)
