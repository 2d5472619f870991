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

Every source (`datasets.base.Source`) has `num_examples`, `shard_num_examples(process_index, process_count)` and
`get_tfdata(*, process_index=0, process_count=1, ordered=False, seed=None)` (a `tf.data.Dataset` of this process's
contiguous block of the split; see `datasets.base`). Images are NOT decoded: `image` is the encoded file and the pp
op `decode` decodes it.

Where each source lives: `datasets.tfds_source.TfdsSource`, `datasets.jsonl.JsonlSource`,
`datasets.mock.MockTfdsSource`, `datasets.filtered.FilteredSource` (`where`), `datasets.mixture.MixtureSource`. This
module builds them from config dicts and re-exports them (`sources.JsonlSource`, `sources.DataError`, ...).

TFDS: stock datasets are built with `tfds build` (or `tfds.builder(name).download_and_prepare()`) beforehand; this
project's own builders (`datasets/builders/`) are registered when a TFDS source is made and built with
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

from collections.abc import Mapping

from datasets.base import AUTOTUNE, DataError, Source, mix_seed, shard_bounds
from datasets.filtered import FilteredSource
from datasets.jsonl import JsonlSource
from datasets.mixture import MixtureSource
from datasets.mock import MockTfdsSource
from datasets.tfds_source import TfdsSource, not_prepared_message
from paligemma.tree import plain

__all__ = [
    "get_source",
    "Source",
    "DataError",
    "TfdsSource",
    "JsonlSource",
    "MockTfdsSource",
    "FilteredSource",
    "MixtureSource",
    "AUTOTUNE",
    "mix_seed",
    "shard_bounds",
    "not_prepared_message",
]


def get_source(config) -> Source:
    """The source described by a `config.input.data`-style dict (see the module docstring)."""
    if not isinstance(config, Mapping) and not hasattr(config, "to_dict"):
        raise TypeError(f"A data config must be a dict or ConfigDict, got {type(config).__name__}")
    config = plain(config)
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
        return JsonlSource(
            config["path"], image_root=config.get("image_root"), skip_bad_rows=bool(config.get("skip_bad_rows", False))
        )
    unknown = set(config) - {"name", "split", "data_dir", "decode_images", "prepare", "mock"}
    if unknown:
        raise ValueError(f"Unknown keys for a TFDS source: {sorted(unknown)}")
    if "split" not in config:
        raise ValueError(f"A TFDS source needs `split`: {config}")
    if config.get("mock"):  # random examples with the dataset's features (datasets/mock.py); nothing is read
        mock = config["mock"]
        return MockTfdsSource(name, config["split"], num_examples=32 if mock is True else int(mock))
    return TfdsSource(
        name,
        config["split"],
        data_dir=config.get("data_dir"),
        decode_images=bool(config.get("decode_images", False)),
        prepare=config.get("prepare", "auto"),
    )
