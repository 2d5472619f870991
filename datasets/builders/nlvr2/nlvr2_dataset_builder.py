"""TFDS builder for NLVR2 (https://lil.nlp.cornell.edu/nlvr/), from the official JSON files and image pairs.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build nlvr2 --data_dir DIR --manual_dir MANUAL_DIR`.

One example per sentence:
  images     the pair [left, right] (`<pair>-img0.png`, `<pair>-img1.png`), as stored: not re-encoded (despite
             the .png names some files are JPEGs; decoding goes by the bytes)
  question   the sentence, e.g. "The left image contains twice the number of dogs as the right image."
  answers    ["true"] or ["false"] (the official label, lower-cased; empty where a file has no labels)
  id         the official identifier, `split-set_id-pair_id-sentence_id` (the key of the evaluation script's CSV)

Splits, each built when its JSON file is present: train (86,373 sentences, `train.json`), validation (6,982,
`dev.json`) and test (6,967, `test1.json`, the public test set). The hidden test2 is not distributed with labels.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
NLVR2's sentences are in https://github.com/lil-lab/nlvr (nlvr2/data/train.json, dev.json, test1.json, JSON lines);
its images come from the authors after the request form linked in nlvr2/README.md ("Direct image download"), as
train.zip (folders 0..99), dev.zip and test1.zip. Put them in one folder (the manual_dir):

  manual_dir/
    train.json                                  <- nlvr2/data/train.json   (or manual_dir/data/train.json)
    dev.json                                    <- nlvr2/data/dev.json     (validation split)
    test1.json                                  <- nlvr2/data/test1.json   (test split)
    images/train/<directory>/train-xxxx-y-img0.png, -img1.png   <- train.zip (<directory>: the entry's "directory")
    dev/dev-xxxx-y-img0.png, -img1.png                          <- dev.zip
    test1/test1-xxxx-y-img0.png, -img1.png                      <- test1.zip

Each image folder may also be images/<split>/, <split>/ or <split>/images/, with or without the <directory>
level (<split> = train, dev, test1). Any split may be left out; at least one JSON file is needed. The image pair of
sentence `train-10171-0-0` is `train-10171-0-img0.png` / `-img1.png`.

Then: python -m datasets.build nlvr2 --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "NLVR2"
# TFDS split -> the official file stem (JSON file and image folder)
_SPLITS = {"train": "train", "validation": "dev", "test": "test1"}


def find_json(manual_dir: str, stem: str) -> str | None:
    """Path of `<stem>.json` in manual_dir or manual_dir/data (the repository's layout), or None."""
    for folder in (manual_dir, os.path.join(manual_dir, "data")):
        path = os.path.join(folder, f"{stem}.json")
        if os.path.isfile(path):
            return path
    return None


def image_roots(manual_dir: str, stem: str) -> list[str]:
    """The folders that may hold a split's images, in order of preference (only those that exist)."""
    candidates = [
        os.path.join(manual_dir, "images", stem),
        os.path.join(manual_dir, stem, "images"),
        os.path.join(manual_dir, stem),
    ]
    return [c for c in candidates if os.path.isdir(c)]


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [stem for stem in _SPLITS.values() if find_json(manual_dir, stem)]
    if not present:
        return [" or ".join(f"{stem}.json" for stem in _SPLITS.values())]
    return [f"images/{stem}/" for stem in present if not image_roots(manual_dir, stem)]


def find_pair(roots: list[str], record: dict, identifier: str) -> list[str] | None:
    """The paths [img0, img1] of a sentence's image pair under the first root that has both, or None."""
    pair = identifier.rsplit("-", 1)[0]
    names = [f"{pair}-img0.png", f"{pair}-img1.png"]
    subdirs = [str(record["directory"])] if "directory" in record else []
    for root in roots:
        for sub in subdirs + [""]:
            paths = [os.path.join(root, sub, n) for n in names]
            if all(os.path.isfile(p) for p in paths):
                return paths
    return None


def answer(label, path: str) -> list[str]:
    """The official label (True/False as text or JSON boolean) -> ["true"] / ["false"]; [] when absent."""
    if label is None:
        return []
    text = str(label).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{DATASET}: {path}: label {label!r} is neither true nor false")
    return [text]


class Builder(tfds.core.GeneratorBasedBuilder):
    """NLVR2, one example per sentence about an image pair."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official NLVR2 train/dev/test1 sentences with their image pairs."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_json)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://lil.nlp.cornell.edu/nlvr/",
            features=tfds.features.FeaturesDict(
                {
                    "images": tfds.features.Sequence(tfds.features.Image(), length=2),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, json_path):
        roots = image_roots(manual_dir, _SPLITS[split])
        for record in common.load_records(json_path, DATASET, what="an official NLVR2 file (JSON lines)"):
            identifier = str(common.field(record, "identifier", json_path, DATASET))
            sentence = common.field(record, "sentence", json_path, DATASET)
            paths = find_pair(roots, record, identifier)
            if paths is None:
                pair = identifier.rsplit("-", 1)[0]
                raise FileNotFoundError(
                    f"{DATASET}: image pair {pair}-img0.png / -img1.png of {identifier} ({json_path}) not found "
                    f"under {', '.join(roots)}"
                )
            yield (
                identifier,
                {
                    "images": [common.read_bytes(p, DATASET, what="image") for p in paths],
                    "question": sentence,
                    "answers": answer(record.get("label"), json_path),
                    "id": identifier,
                },
            )
