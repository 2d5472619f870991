"""Data sources: where examples come from, before any preprocessing.

One entry point, `get_source(config)`, for the `config.input.data` dict of a config:

  dict(name="easy_vqa", split="train", data_dir=None)          # any TFDS dataset: stock or this project's own
  dict(name="coco_captions", split="train[:90%]")                # TFDS split syntax works
  dict(name="vqa", split="train", mock=64)                       # 64 random examples with vqa's features (mock.py)
  dict(name="jsonl", path="data/train.jsonl", image_root=None, skip_bad_rows=False)
  dict(name="easy_vqa", split="train", where=dict(question_type="shape"))  # only the examples whose field matches
  dict(mixture=[(dict(name="easy_vqa", split="train"), 3.0),    # weighted mixture (infinite when shuffled)
                (dict(name="jsonl", path="extra.jsonl", pp="..."), 1.0)], seed=0)

A `pp` key next to a source is not used here; it is kept as `source.pp`, so that each part of a mixture can have its
own preprocessing (`datasets.pipeline` preprocesses each part before mixing, as their fields usually differ).

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
tf.string) and the pp op `decode` decodes it. (TFDS image features are read with `tfds.decode.SkipDecoding`.)

TFDS: stock datasets are built with `tfds build` (or `tfds.builder(name).download_and_prepare()`) beforehand; this
project's own builders (`datasets/builders/`) are registered on import of this module and built with
`python -m datasets.build NAME --data_dir DIR`. Builders that need no manual files (easy_vqa) are built on first use
when missing from `data_dir`; nothing is ever downloaded here. `data_dir=None` means TFDS's default
(`$TFDS_DATA_DIR` or ~/tensorflow_datasets).

`where` (any source): keeps the examples whose fields equal the given values (a list: any of them); keys may walk
nested features (`"a/b"`). The split is read once (images not decoded) to count the examples that match, so that
epochs, resumption and `num_examples` stay exact. Mixtures of filtered parts re-weight a dataset, e.g. to balance
question types.

JSONL (`datasets/jsonl.py`, `JsonlSource`): one JSON object per line; `image` is a path relative to the JSONL file's
folder (or `image_bytes` inline base64), other fields are kept. Bad rows (malformed, missing image, a path outside the
dataset's folder, ...) raise `DataError` with the file and line number, or are skipped and counted with
`skip_bad_rows=True`. See that module for the details.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import tensorflow as tf

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE


class DataError(ValueError):
    """A problem with the data itself (a bad row, missing files), with where it is."""


# --------------------------------------------------------------------------------------------------------------
# Helpers.


def _to_dict(config) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
        return config.to_dict()
    raise TypeError(f"A data config must be a dict or ConfigDict, got {type(config).__name__}")


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
        start, end = shard_bounds(self.num_examples, process_index, process_count)
        return end - start

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({self.num_examples} examples)"

    def __repr__(self):
        return self.describe()


def get_source(config) -> Source:
    """The source described by a `config.input.data`-style dict (see the module docstring)."""
    config = _to_dict(config)
    pp = config.pop("pp", None)
    source = _get_source(config)
    source.pp = pp
    return source


def _get_source(config: dict) -> Source:
    if "where" in config:
        where = config.pop("where")
        return FilteredSource(_get_source(config), where)
    if "mixture" in config:
        parts = []
        for item in config["mixture"]:
            if isinstance(item, Mapping):  # Also accept dict(data=..., weight=...).
                sub, weight = item["data"], item.get("weight", 1.0)
            else:
                sub, weight = item
            parts.append((get_source(sub), float(weight)))
        return MixtureSource(parts, seed=int(config.get("seed", 0)))
    name = config.get("name")
    if not name:
        raise ValueError(f"A data config needs `name` (a TFDS name or 'jsonl') or `mixture`: {config}")
    if name == "jsonl":
        unknown = set(config) - {"name", "path", "image_root", "skip_bad_rows", "split"}
        if unknown:
            raise ValueError(f"Unknown keys for a JSONL source: {sorted(unknown)}")
        if "path" not in config:
            raise ValueError("A JSONL source needs `path`.")
        from datasets.jsonl import JsonlSource  # pylint: disable=g-import-not-at-top

        return JsonlSource(
            config["path"], image_root=config.get("image_root"), skip_bad_rows=bool(config.get("skip_bad_rows", False))
        )
    unknown = set(config) - {"name", "split", "data_dir", "decode_images", "prepare", "mock"}
    if unknown:
        raise ValueError(f"Unknown keys for a TFDS source: {sorted(unknown)}")
    if "split" not in config:
        raise ValueError(f"A TFDS source needs `split`: {config}")
    if config.get("mock"):  # random examples with the dataset's features (datasets/mock.py); nothing is read
        from datasets.mock import MockTfdsSource  # pylint: disable=g-import-not-at-top

        mock = config["mock"]
        return MockTfdsSource(name, config["split"], num_examples=32 if mock is True else int(mock))
    return TfdsSource(
        name,
        config["split"],
        data_dir=config.get("data_dir"),
        decode_images=bool(config.get("decode_images", False)),
        prepare=config.get("prepare", "auto"),
    )


# --------------------------------------------------------------------------------------------------------------
# TFDS.


def _skip_image_decoders(feature):
    """A `decoders` structure that keeps every (possibly nested) tfds Image feature encoded; None if there is none."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    if isinstance(feature, tfds.features.Image):
        return tfds.decode.SkipDecoding()
    if isinstance(feature, tfds.features.FeaturesDict):
        out = {}
        for k, v in feature.items():
            d = _skip_image_decoders(v)
            if d is not None:
                out[k] = d
        return out or None
    if isinstance(feature, tfds.features.Sequence):
        return _skip_image_decoders(feature.feature)
    return None


def not_prepared_message(name: str, data_dir: str | None) -> str:
    from datasets import builders  # pylint: disable=g-import-not-at-top

    base = name.split("/")[0].split(":")[0]
    where = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    if base in builders.BUILDERS:
        return (
            f"TFDS dataset {name!r} is not prepared in {where}. Build it first:\n"
            f"  python -m datasets.build {name} --data_dir {data_dir or 'DIR'} [--manual_dir DIR]\n"
            f"(`python -m datasets.build {name} --help_manual` shows which files it needs)."
        )
    return (
        f"TFDS dataset {name!r} is not prepared in {where}. This project never downloads at run time; prepare it "
        f"beforehand, e.g. `tfds build {name} --data_dir {data_dir or 'DIR'}` (with `--manual_dir` for datasets "
        f"that need manually downloaded files), then point `data_dir` at it."
    )


class TfdsSource(Source):
    """A split of a TFDS dataset (stock or from `datasets/builders`)."""

    def __init__(
        self, name: str, split: str, data_dir: str | None = None, *, decode_images: bool = False, prepare="auto"
    ):
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

        from datasets import builders  # pylint: disable=g-import-not-at-top

        builders.register_all()
        self.name, self.split, self.data_dir = name, split, data_dir
        self.builder = tfds.builder(name, data_dir=data_dir)
        if not self.builder.is_prepared():
            base = name.split("/")[0].split(":")[0]
            own = builders.BUILDERS.get(base)
            offline = (
                own is not None
                and getattr(builders.get_builder_class(base), "MANUAL_DOWNLOAD_INSTRUCTIONS", None) is None
            )
            if prepare is True or (prepare == "auto" and offline):
                log.warning(
                    "Preparing TFDS dataset %s in %s (first use; nothing is downloaded).",
                    name,
                    data_dir or "the default data_dir",
                )
                from datasets import build  # pylint: disable=g-import-not-at-top

                build.prepare(name, data_dir=data_dir)
                self.builder = tfds.builder(name, data_dir=data_dir)
            else:
                raise DataError(not_prepared_message(name, data_dir))
        info = self.builder.info
        try:
            self.num_examples = int(info.splits[split].num_examples)
        except KeyError as e:
            raise DataError(f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(info.splits)}") from e
        self._decoders = None if decode_images else _skip_image_decoders(info.features)
        self._tfrecord = info.file_format in (None, tfds.core.FileFormat.TFRECORD)

    def describe(self) -> str:
        return f"tfds:{self.name}[{self.split}] ({self.num_examples} examples)"

    def _subsplit(self, process_index, process_count):
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

        if process_count == 1:
            return self.split
        return tfds.even_splits(self.split, n=process_count, drop_remainder=False)[process_index]

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        return int(self.builder.info.splits[self._subsplit(process_index, process_count)].num_examples)

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        sub = self._subsplit(process_index, process_count)
        if not self._tfrecord:  # e.g. array_record: let TFDS read it (file order then only shuffled by a Python seed).
            import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

            shuffle = not ordered and (seed is None or isinstance(seed, int))
            rc = tfds.ReadConfig(
                shuffle_seed=seed if shuffle else None, interleave_cycle_length=1 if ordered else 16, add_tfds_id=False
            )
            return self.builder.as_dataset(split=sub, shuffle_files=shuffle, decoders=self._decoders, read_config=rc)
        # TFRecord shards read by hand, so that the file order can depend on a seed *tensor* (one per epoch).
        instructions = self.builder.info.splits[sub].file_instructions
        files = tf.data.Dataset.from_tensor_slices(
            (
                tf.constant([os.fspath(fi.filename) for fi in instructions], tf.string),
                tf.constant([fi.skip for fi in instructions], tf.int64),
                tf.constant([fi.take for fi in instructions], tf.int64),
            )
        )
        if not ordered and len(instructions) > 1:
            files = files.shuffle(len(instructions), seed=seed, reshuffle_each_iteration=False)

        def read(filename, skip, take):
            return tf.data.TFRecordDataset(filename, buffer_size=1 << 20).skip(skip).take(take)

        if ordered or len(instructions) == 1:
            ds = files.flat_map(read)
        else:
            ds = files.interleave(
                read,
                cycle_length=min(16, len(instructions)),
                block_length=1,
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        features, decoders = self.builder.info.features, self._decoders
        return ds.map(
            lambda x: features.deserialize_example(x, decoders=decoders),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )


# --------------------------------------------------------------------------------------------------------------
# Filters.


class FilteredSource(Source):
    """The examples of `base` whose fields equal the values in `where` (`{key: value or [values]}`; all keys must match).

    Counting the matches reads the base split once per process shard (on first need); the filtered stream keeps the
    base's order, so shuffling, epochs and resumption behave as for any other source.
    """

    def __init__(self, base: Source, where):
        where = _to_dict(where)
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
        return f"{self.base.describe()} where {self.where} ({self.num_examples} examples)"

    def _check_fields(self, spec) -> None:
        """Raises DataError unless every `where` key names a scalar field of the base examples."""
        from datasets.pp.utils import get_key  # pylint: disable=g-import-not-at-top

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
        from datasets.pp.utils import get_key  # pylint: disable=g-import-not-at-top

        ok = tf.constant(True)
        for key, values in self.where.items():
            field = get_key(ex, key, "where")
            match = tf.constant(False)
            for v in values:
                match = match | tf.equal(field, tf.constant(v, dtype=field.dtype))
            ok = ok & match
        return ok

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
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
        ds = self.base.get_tfdata(process_index=process_index, process_count=process_count, ordered=ordered, seed=seed)
        return ds.filter(self._keep)


# --------------------------------------------------------------------------------------------------------------
# Mixtures.


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
        return "mixture[" + ", ".join(f"{w:.3f} x {s.describe()}" for s, w in zip(self.parts, self.weights)) + "]"

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        return sum(s.shard_num_examples(process_index, process_count) for s in self.parts)

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
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


def __getattr__(name):  # `sources.JsonlSource` without a circular import (it lives in datasets/jsonl.py)
    if name == "JsonlSource":
        from datasets.jsonl import JsonlSource  # pylint: disable=g-import-not-at-top

        return JsonlSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
