"""TFDS source: a split of a TFDS dataset, stock or this project's own (`datasets/builders/`).

    TfdsSource("easy_vqa", "train", data_dir=None)        # or get_source(dict(name="easy_vqa", split="train"))

Stock datasets are built with `tfds build` (or `tfds.builder(name).download_and_prepare()`) beforehand; this
project's own builders are registered when a `TfdsSource` is made and built with
`python -m datasets.build NAME --data_dir DIR`. Builders that need no manual files (easy_vqa) are built on first use
when missing from `data_dir` (`prepare="auto"`); nothing is ever downloaded here. `data_dir=None` means TFDS's default
(`$TFDS_DATA_DIR` or ~/tensorflow_datasets). Image features are read with `tfds.decode.SkipDecoding` (encoded bytes;
the pp op `decode` decodes them) unless `decode_images=True`.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import build, builders
from datasets.base import AUTOTUNE, DataError, Source

log = logging.getLogger(__name__)


def skip_image_decoders(feature):
    """A `decoders` structure that keeps every (possibly nested) tfds Image feature encoded; None if there is none."""
    if isinstance(feature, tfds.features.Image):
        return tfds.decode.SkipDecoding()
    if isinstance(feature, tfds.features.FeaturesDict):
        out = {}
        for k, v in feature.items():
            d = skip_image_decoders(v)
            if d is not None:
                out[k] = d
        return out or None
    if isinstance(feature, tfds.features.Sequence):
        return skip_image_decoders(feature.feature)
    return None


def not_prepared_message(name: str, data_dir: str | None) -> str:
    """The error message for a TFDS dataset not prepared in data_dir: how to build it."""
    base = name.split("/")[0].split(":")[0]
    where = default_data_dir(data_dir)
    if base in builders.BUILDERS:
        return (
            f"TFDS dataset {name!r} is not prepared in {where}. Build it first:\n"
            f"  python -m datasets.build {name} --data_dir {where} [--manual_dir DIR]\n"
            f"(`python -m datasets.build {name} --help_manual` shows which files it needs)."
        )
    return (
        f"TFDS dataset {name!r} is not prepared in {where}. This project never downloads at run time; prepare it "
        f"beforehand, e.g. `tfds build {name} --data_dir {where}` (with `--manual_dir` for datasets "
        f"that need manually downloaded files), or point `data_dir` at a folder where it is prepared."
    )


def default_data_dir(data_dir: str | None = None) -> str:
    """The TFDS data_dir actually read: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (as TFDS does)."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(os.path.join("~", "tensorflow_datasets"))


class TfdsSource(Source):
    """A split of a TFDS dataset (stock or from `datasets/builders`)."""

    def __init__(
        self, name: str, split: str, data_dir: str | None = None, *, decode_images: bool = False, prepare="auto"
    ):
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
                    default_data_dir(data_dir),
                )
                build.prepare(name, data_dir=data_dir)
                self.builder = tfds.builder(name, data_dir=data_dir)
            else:
                raise DataError(not_prepared_message(name, data_dir))
        info = self.builder.info
        try:
            self.num_examples = int(info.splits[split].num_examples)
        except (KeyError, ValueError) as e:  # TFDS raises ValueError("Unknown split ...") for a bad split string
            raise DataError(f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(info.splits)}") from e
        self._decoders = None if decode_images else skip_image_decoders(info.features)
        self._tfrecord = info.file_format in (None, tfds.core.FileFormat.TFRECORD)

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        return f"tfds:{self.name}[{self.split}] ({self.num_examples} examples)"

    def _subsplit(self, process_index, process_count):
        if process_count == 1:
            return self.split
        return tfds.even_splits(self.split, n=process_count, drop_remainder=False)[process_index]

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        """Examples in the shard of process `process_index` of `process_count`."""
        return int(self.builder.info.splits[self._subsplit(process_index, process_count)].num_examples)

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        sub = self._subsplit(process_index, process_count)
        if not self._tfrecord:  # e.g. array_record: let TFDS read it (file order then only shuffled by a Python seed).
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
