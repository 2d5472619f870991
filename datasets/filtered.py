"""`where`: the examples of a source whose fields equal given values.

    get_source(dict(name="easy_vqa", split="train", where=dict(question_type="shape")))
    FilteredSource(base, {"question_type": "shape", "a/b": [1, 2]})     # a list: any of them; "a/b": nested fields

The split is read once (images not decoded) to count the examples that match, so that epochs, resumption and
`num_examples` stay exact. Mixtures of filtered parts re-weight a dataset, e.g. to balance question types.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from datasets.base import AUTOTUNE, DataError, Source
from datasets.pp.utils import get_key
from paligemma.tree import plain


class FilteredSource(Source):
    """The examples of `base` whose fields equal the values in `where` (`{key: value or [values]}`; all must match).

    Counting the matches reads the base split once per process shard (on first need); the filtered stream keeps the
    base's order, so shuffling, epochs and resumption behave as for any other source.
    """

    def __init__(self, base: Source, where):
        if not isinstance(where, Mapping) and not hasattr(where, "to_dict"):
            raise TypeError(f"`where` must be a dict or ConfigDict, got {type(where).__name__}")
        where = plain(where)
        if not where:
            raise ValueError("`where` needs at least one {field: value} condition.")
        self.base = base
        self.where = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in where.items()}
        for k, values in self.where.items():
            if not values:
                raise ValueError(f"`where` gives no value for field {k!r}.")
        whole = base.get_tfdata(ordered=True)
        self._check_fields(whole.element_spec)
        self._counts = {(0, 1): self._count(whole)}  # matches per (process_index, process_count) shard
        self.num_examples = self._counts[(0, 1)]
        if self.num_examples == 0:
            raise DataError(
                f"No example of {base.describe()} matches where={self.where}; check the field names and "
                "values (`python -m datasets.inspect` shows some examples)."
            )

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        return f"{self.base.describe()} where {self.where} ({self.num_examples} examples)"

    def _check_fields(self, spec) -> None:
        """Raises DataError unless every `where` key names a scalar field of the base examples."""
        for key in self.where:
            try:
                field = get_key(spec, key, "where")
            except KeyError as e:
                raise DataError(f"{self.base.describe()}: {e.args[0]}") from None
            if not isinstance(field, tf.TensorSpec) or field.shape.rank != 0:
                raise DataError(
                    f"where: field {key!r} of {self.base.describe()} is not a scalar ({field}); filter on "
                    "scalar fields."
                )
            text = field.dtype == tf.string
            for v in self.where[key]:
                if isinstance(v, (str, bytes)) != text or isinstance(v, bool):
                    raise DataError(f"where: field {key!r} holds {field.dtype.name} values; {v!r} cannot match it.")

    def _keep(self, ex) -> tf.Tensor:
        ok = tf.constant(True)
        for key, values in self.where.items():
            field = get_key(ex, key, "where")
            match = tf.constant(False)
            for v in values:
                match = match | tf.equal(field, tf.constant(v, dtype=field.dtype))
            ok = ok & match
        return ok

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        """Examples in the shard of process `process_index` of `process_count`."""
        if (process_index, process_count) not in self._counts:
            self._counts[(process_index, process_count)] = self._count(
                self.base.get_tfdata(process_index=process_index, process_count=process_count, ordered=True)
            )
        return self._counts[(process_index, process_count)]

    def _count(self, ds: tf.data.Dataset) -> int:
        matches = ds.map(lambda ex: tf.cast(self._keep(ex), tf.int64), num_parallel_calls=AUTOTUNE)
        return int(matches.reduce(tf.constant(0, tf.int64), tf.add).numpy())

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        ds = self.base.get_tfdata(process_index=process_index, process_count=process_count, ordered=ordered, seed=seed)
        return ds.filter(self._keep)
