"""TFDS builder for RSVQA-HR (USGS aerial images, 512x512 at 15 cm), its non-numeric questions.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build rsvqa_hr --data_dir DIR --manual_dir MANUAL_DIR`.

Features and file format: `datasets.builders.rsvqa` (one example per question; the question types kept are
presence and comp; count and area questions are left out).

Splits (active non-numeric questions): train (371,834), validation (`val`, 60,405), test (131,468; the same area
as training) and test_2 (`test_phili`, 62,554; Philadelphia, another area and sensor: the model card's "test2").
"""

from __future__ import annotations

from datasets.builders import rsvqa

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the RSVQA high-resolution release from Zenodo (https://zenodo.org/records/6344367, linked from
https://rsvqa.sylvainlobry.com): the USGS_split_* JSON files and the image archive (Images.tar / Data.zip, which
holds Data/<image id>.png and .tif). Put them in one folder (the manual_dir) and extract the images there:

  manual_dir/
    USGS_split_train_questions.json, USGS_split_train_answers.json              <- train split
    USGS_split_val_questions.json, USGS_split_val_answers.json                  <- validation split
    USGS_split_test_questions.json, USGS_split_test_answers.json                <- test split
    USGS_split_test_phili_questions.json, USGS_split_test_phili_answers.json    <- test_2 split
    Data/<image id>.png (or .tif)                                               <- the image archive

The USGS_split_*_images.json files are not needed. Each split is built when its two files are there (train and test
are required). Only the non-numeric questions are built (count and area questions are left out). When both a .png
and a .tif of an image are there, the .png is used (as big_vision does).

Then: python -m datasets.build rsvqa_hr --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""


class Builder(rsvqa.RsvqaBuilder):
    """RSVQA-HR, one example per non-numeric question."""

    RELEASE_NOTES = {"1.0.0": "RSVQA-HR (Zenodo 6344367), active questions other than count and area."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    DATASET = "RSVQA-HR"
    PREFIX = "USGS"
    IMAGES = "Data"
    # TFDS split -> the official split in the file names (train and test are required: `REQUIRED`)
    SPLITS = {"train": "train", "validation": "val", "test": "test", "test_2": "test_phili"}


missing_manual_files = Builder.missing_manual_files
