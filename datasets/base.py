"""The interface every data source implements (`Source`), and what all of them share.

Every source has `num_examples` (examples in the whole split; for a mixture the sum of its parts) and
`get_tfdata(*, process_index=0, process_count=1, ordered=False, seed=None)`, which returns a `tf.data.Dataset` of
this process's shard: the split is cut into `process_count` contiguous, disjoint blocks (sizes differ by at most one),
so the processes together see every example exactly once.
  * `ordered=True`: the block in split order (for evaluation).
  * `ordered=False`: the block in an order that depends only on `seed` (JSONL: a full permutation; TFDS: the shard
    files in a shuffled order, interleaved). `seed` may be a scalar int64 tensor, so the call can sit inside
    `tf.data.Dataset.flat_map` (`datasets.pipeline` reshuffles every epoch that way). `seed=None`: unseeded.
`shard_num_examples(process_index, process_count)` tells how many examples that shard holds.

Examples are dicts of tensors. Images are NOT decoded: `image` is the encoded file (JPEG/PNG bytes, a scalar
tf.string) and the pp op `decode` decodes it.

The sources: `datasets.tfds_source` (TFDS), `datasets.jsonl` (JSONL), `datasets.mock` (random TFDS-shaped
examples), `datasets.filtered` (`where`), `datasets.mixture` (weighted mixtures); `datasets.sources.get_source`
builds one from a config dict.
"""

from __future__ import annotations

import tensorflow as tf

from paligemma.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


class DataError(UserError, ValueError):
    """A problem with the data itself (a bad row, missing files), with where it is."""


def shard_bounds(n: int, process_index: int, process_count: int) -> tuple[int, int]:
    """[start, end) of the contiguous block of n examples that process `process_index` of `process_count` reads."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return (process_index * n) // process_count, ((process_index + 1) * n) // process_count


def mix_seed(*parts) -> tf.Tensor:
    """Combines ints / int64 scalar tensors into one non-negative int64 seed (graph friendly, deterministic)."""
    h = tf.constant(0x2545F491, tf.int64)
    for p in parts:
        p = tf.cast(p, tf.int64)
        h = tf.math.floormod(h * 1_000_003 + p * 7919 + 0x9E3779B1, 2**31 - 1)
    return h


class Source:
    """Interface of every data source."""

    num_examples: int
    pp: str | None = None  # an optional `pp` string given next to the source in its config (used for mixture parts)

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        """Examples in the shard of process `process_index` of `process_count`."""
        start, end = shard_bounds(self.num_examples, process_index, process_count)
        return end - start

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        raise NotImplementedError

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        return f"{type(self).__name__}({self.num_examples} examples)"

    def __repr__(self):
        return self.describe()
