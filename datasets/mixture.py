"""Weighted mixtures of sources: `get_source(dict(mixture=[(part_config, weight), ...], seed=0))`.

Each part is any source config (TFDS, JSONL, `where`, even a mixture) and may carry its own `pp` string.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from datasets.base import Source, mix_seed


class MixtureSource(Source):
    """A weighted mixture of sources.

    Shuffled (`ordered=False`): an infinite stream that draws each next example from part i with probability
    weight_i / sum(weights) (`tf.data.Dataset.sample_from_datasets`, seeded), each part repeated forever.
    Ordered: every example of every part once, the parts one after the other (for evaluation).
    `datasets.pipeline.make_train_iterator` builds its own, resumable version of the shuffled stream.
    """

    def __init__(self, parts: Sequence[tuple[Source, float]], seed: int = 0):
        if not parts:
            raise ValueError("A mixture needs at least one part.")
        weights = [float(w) for _, w in parts]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"Mixture weights must be >= 0 with a positive sum: {weights}")
        self.parts = [s for s, _ in parts]
        self.weights = [w / sum(weights) for w in weights]
        self.seed = seed
        self.num_examples = sum(s.num_examples for s in self.parts)

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        return "mixture[" + ", ".join(f"{w:.3f} x {s.describe()}" for s, w in zip(self.parts, self.weights)) + "]"

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        """Examples in the shard of process `process_index` of `process_count`."""
        return sum(s.shard_num_examples(process_index, process_count) for s in self.parts)

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        kw = dict(process_index=process_index, process_count=process_count)
        if ordered:
            ds = None
            for s in self.parts:
                d = s.get_tfdata(ordered=True, **kw)
                ds = d if ds is None else ds.concatenate(d)
            return ds
        seed = self.seed if seed is None else seed
        parts = [s.get_tfdata(ordered=False, seed=mix_seed(seed, i), **kw).repeat() for i, s in enumerate(self.parts)]
        return tf.data.Dataset.sample_from_datasets(parts, weights=self.weights, seed=seed, stop_on_empty_dataset=False)
