"""TFDS builder for TextVQA 0.5.1 (https://textvqa.org), from the official JSON files and OpenImages pictures.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build textvqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image        the picture (`<image_id>.jpg`), as stored; re-encoded (JPEG, quality 100) only when the optional
               OpenImages `rotation.csv` says it is rotated, then turned upright as the original transfer did
  image_id     the OpenImages id, e.g. "0054c91397f2fe05"
  question     text
  question_id  int64, the official `question_id` (the key of the test server's submission file)
  answers      the 10 human answers (empty for test)

Splits, each built when its JSON file is present: train (34,602 questions on 21,953 images), validation (5,000 on
3,166; its images are in the train folder) and test (5,734 on 3,289; no answers: the test server scores it).
"""

from __future__ import annotations

import csv
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "TextVQA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download TextVQA 0.5.1 from https://textvqa.org/dataset (the files live under
https://dl.fbaipublicfiles.com/textvqa/) and unzip the images into one folder (the manual_dir):

  manual_dir/
    TextVQA_0.5.1_train.json          <- data/TextVQA_0.5.1_train.json   (train split)
    TextVQA_0.5.1_val.json            <- data/TextVQA_0.5.1_val.json     (validation split)
    TextVQA_0.5.1_test.json           <- data/TextVQA_0.5.1_test.json    (test split, no answers)
    train_images/<image_id>.jpg       <- images/train_val_images.zip     (train and validation pictures)
    test_images/<image_id>.jpg        <- images/test_images.zip
    train_images/rotation.csv         <- optional: OpenImages 2018_04 train-images-boxable-with-rotation.csv
    test_images/rotation.csv          <- optional: OpenImages 2018_04 test-images-with-rotation.csv

Any split may be left out; at least one JSON file is needed. Some OpenImages pictures are stored rotated: with the
rotation.csv files (https://storage.googleapis.com/openimages/2018_04/{train,test}/...; columns ImageID and
Rotation, in degrees) those are turned upright while building, as the original PaliGemma transfer did. The Rosetta
OCR files are not used.

Then: python -m datasets.build textvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> (question file, image folder)
_SPLITS = {
    "train": ("TextVQA_0.5.1_train.json", "train_images"),
    "validation": ("TextVQA_0.5.1_val.json", "train_images"),
    "test": ("TextVQA_0.5.1_test.json", "test_images"),
}
_WHAT = 'an official TextVQA 0.5.1 question file (expected a JSON object with a "data" list of questions)'


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return common.missing_files_and_folders(manual_dir, _SPLITS)


def load_rotations(folder: str) -> dict[str, int]:
    """{image id: degrees} from `folder/rotation.csv` (OpenImages' ImageID / Rotation columns), {} without the file.

    Only the rotated pictures (a multiple of 90 other than 0) are listed; an empty Rotation cell means 0.
    """
    path = os.path.join(folder, "rotation.csv")
    if not os.path.isfile(path):
        return {}
    rotations = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"ImageID", "Rotation"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{DATASET}: {path} is not an OpenImages image list (no ImageID and Rotation columns)")
        for row in reader:
            cell = (row["Rotation"] or "").strip()
            try:
                degrees = int(float(cell)) if cell and cell.lower() != "nan" else 0
            except ValueError:
                raise ValueError(f"{DATASET}: {path}: Rotation {cell!r} of {row['ImageID']} is not a number") from None
            if degrees % 90:
                raise ValueError(f"{DATASET}: {path}: Rotation {degrees} of {row['ImageID']} is not a multiple of 90")
            if degrees % 360:
                rotations[row["ImageID"]] = degrees % 360
    return rotations


def upright(image: bytes, degrees: int) -> bytes:
    """The JPEG turned counter-clockwise by `degrees` (what undoes OpenImages' Rotation), re-encoded at quality 100."""
    import tensorflow as tf  # here: importing TensorFlow prints its banner, which CLIs that only check files avoid

    pixels = tf.io.decode_jpeg(image, channels=3)
    return tf.io.encode_jpeg(tf.image.rot90(pixels, k=degrees // 90), quality=100).numpy()


class Builder(tfds.core.GeneratorBasedBuilder):
    """TextVQA 0.5.1, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official TextVQA 0.5.1 questions with their pictures (rotated ones turned upright)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://textvqa.org",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "image_id": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "question_id": np.int64,
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        folder = os.path.join(manual_dir, _SPLITS[split][1])
        rotations = load_rotations(folder)
        read = common.LastFileReader(DATASET)
        for q in common.load_data(path, DATASET, what=_WHAT):
            question_id = int(common.field(q, "question_id", path, DATASET))
            image_id = str(common.field(q, "image_id", path, DATASET))
            image = read(
                os.path.join(folder, image_id + ".jpg"), what="image", context=f"of question {question_id} ({path})"
            )
            if image_id in rotations:
                image = upright(image, rotations[image_id])
            yield (
                question_id,
                {
                    "image": image,
                    "image_id": image_id,
                    "question": common.field(q, "question", path, DATASET),
                    "question_id": question_id,
                    "answers": list(q.get("answers") or []),
                },
            )
