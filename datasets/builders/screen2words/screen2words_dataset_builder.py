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

from datasets.builders import common, rico

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
# TFDS split -> the official split file
_SPLITS = {"train": "train_screens.txt", "validation": "dev_screens.txt", "test": "test_screens.txt"}


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return rico.missing(manual_dir, SUMMARIES, _SPLITS)


def load_summaries(path: str) -> dict[int, list[str]]:
    """{screen id: summaries} of screen_summaries.csv, in file order."""
    summaries: dict[int, list[str]] = {}
    for row in rico.read_csv(path, DATASET, ("screenId", "summary")):
        summaries.setdefault(rico.screen_id(row, path, DATASET), []).append(row["summary"])
    return summaries


class Builder(tfds.core.GeneratorBasedBuilder):
    """Screen2words, one example per screen with its summaries."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official Screen2words summaries and splits with the RICO screenshots."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, rico.find_split)

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
        for screen_id in rico.read_screen_ids(path, DATASET):
            if screen_id not in summaries:
                raise ValueError(f"{DATASET}: screen {screen_id} of {path} has no summary in {summaries_file}")
            image = common.read_bytes(
                rico.screen_file(manual_dir, screen_id, ".jpg"), DATASET, what="screenshot", context=f"({path})"
            )
            yield screen_id, {"image": image, "screen_id": screen_id, "captions": summaries[screen_id]}
