"""TFDS builder for RSVQA-LR (Sentinel-2 images of the Netherlands, 256x256 at 10 m), its non-numeric questions.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build rsvqa_lr --data_dir DIR --manual_dir MANUAL_DIR`.

Features and file format: `datasets.builders.rsvqa` (one example per question; the question types kept are
presence, comp and rural_urban; count questions are left out).

Splits (active non-numeric questions): train (39,441), validation (`val`, 6,782) and test (6,782).
"""

from __future__ import annotations

from datasets.builders import rsvqa

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the RSVQA low-resolution release from Zenodo (https://zenodo.org/records/6344334, linked from
https://rsvqa.sylvainlobry.com): the LR_split_* JSON files and Images_LR.zip. Put them in one folder (the
manual_dir) and unzip the images there:

  manual_dir/
    LR_split_train_questions.json, LR_split_train_answers.json     <- train split
    LR_split_val_questions.json, LR_split_val_answers.json         <- validation split
    LR_split_test_questions.json, LR_split_test_answers.json       <- test split
    Images_LR/<image id>.tif                                       <- Images_LR.zip

The LR_split_*_images.json files are not needed. Each split is built when its two files are there (train and test
are required). Only the non-numeric questions are built (count questions are left out).

Then: python -m datasets.build rsvqa_lr --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""


class Builder(rsvqa.RsvqaBuilder):
    """RSVQA-LR, one example per non-numeric question."""

    RELEASE_NOTES = {"1.0.0": "RSVQA-LR (Zenodo 6344334), active questions other than count."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    DATASET = "RSVQA-LR"
    PREFIX = "LR"
    IMAGES = "Images_LR"
    # TFDS split -> the official split in the file names (train and test are required: `REQUIRED`)
    SPLITS = {"train": "train", "validation": "val", "test": "test"}


missing_manual_files = Builder.missing_manual_files
