"""TFDS builder for Screen2words (https://github.com/google-research-datasets/screen2words), from the official files.

Screen2words summarises mobile app screens (RICO screenshots) in a sentence. Nothing is downloaded by the builder:
put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build screen2words --data_dir DIR --manual_dir MANUAL_DIR`.

One example per screen:
  image       the RICO screenshot, as stored (JPEG bytes, not re-encoded)
  screen_id   int64, the RICO screen id
  captions    the screen's summaries in file order (5 per screen)

Splits, each built when its split file is present: train (15,743 screens), validation (2,364, the official
"dev") and test (4,310); 22,417 screens and 112,085 summaries in all.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "Screen2words"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Screen2words' summaries and splits are in https://github.com/google-research-datasets/screen2words
(screen_summaries.csv, split/*.txt); the screenshots are RICO's "UI screenshots and view hierarchies"
(https://storage.googleapis.com/crowdstf-rico-uiuc-4540/rico_dataset_v0.1/unique_uis.tar.gz, which unpacks to
combined/). Put them in one folder (the manual_dir):

  manual_dir/
    screen_summaries.csv          <- the repository's screen_summaries.csv (columns screenId, summary)
    split/train_screens.txt       <- the repository's split/ folder (one screen id a line; train split)
    split/dev_screens.txt         (validation split)
    split/test_screens.txt        (test split)
    combined/<screenId>.jpg       <- unique_uis.tar.gz (the .json view hierarchies next to them are not used)

The split files may also sit directly in manual_dir; any split may be left out.

Then: python -m datasets.build screen2words --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

SUMMARIES = "screen_summaries.csv"
IMAGES = "combined"
# TFDS split -> the official split file
_SPLITS = {"train": "train_screens.txt", "validation": "dev_screens.txt", "test": "test_screens.txt"}


def find_split(manual_dir: str, name: str) -> str | None:
    """Path of a split file in manual_dir/split or manual_dir, or None."""
    for folder in (os.path.join(manual_dir, "split"), manual_dir):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = common.missing_files(manual_dir, [SUMMARIES, f"{IMAGES}/"])
    if not any(find_split(manual_dir, name) for name in _SPLITS.values()):
        missing.append(" or ".join(f"split/{name}" for name in _SPLITS.values()))
    return missing


def read_screen_ids(path: str, dataset: str) -> list[int]:
    """The screen ids of an official split file (one integer a line; blank lines skipped)."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    ids.append(int(line.strip()))
                except ValueError:
                    raise ValueError(
                        f"{dataset}: {path} line {number} is not a screen id ({line.strip()[:50]!r}); "
                        "is it an official split file (one RICO screen id a line)?"
                    ) from None
    return ids


def read_csv(path: str, dataset: str, columns: tuple[str, ...]) -> list[dict]:
    """The rows of an official CSV file; ValueError naming the file when it lacks one of `columns`."""
    import csv  # noqa: PLC0415

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {path} not found")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            absent = [c for c in columns if c not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(
                    f"{dataset}: {path} is not the official CSV file (no {', '.join(absent)} column; "
                    f"columns: {reader.fieldnames})"
                )
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{dataset}: {path} is not a readable CSV file ({e})") from None


def load_summaries(path: str) -> dict[int, list[str]]:
    """{screen id: summaries} of screen_summaries.csv, in file order."""
    summaries: dict[int, list[str]] = {}
    for row in read_csv(path, DATASET, ("screenId", "summary")):
        try:
            screen_id = int(row["screenId"])
        except (TypeError, ValueError):
            raise ValueError(f"{DATASET}: {path}: screenId {row['screenId']!r} is not a number") from None
        summaries.setdefault(screen_id, []).append(row["summary"])
    return summaries


class Builder(tfds.core.GeneratorBasedBuilder):
    """Screen2words, one example per screen with its summaries."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official Screen2words summaries and splits with the RICO screenshots."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_split)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/google-research-datasets/screen2words",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "screen_id": np.int64,
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        summaries_file = os.path.join(manual_dir, SUMMARIES)
        summaries = load_summaries(summaries_file)
        for screen_id in read_screen_ids(path, DATASET):
            if screen_id not in summaries:
                raise ValueError(f"{DATASET}: screen {screen_id} of {path} has no summary in {summaries_file}")
            image = common.read_bytes(
                os.path.join(manual_dir, IMAGES, f"{screen_id}.jpg"), DATASET, what="screenshot", context=f"({path})"
            )
            yield screen_id, {"image": image, "screen_id": screen_id, "captions": summaries[screen_id]}
