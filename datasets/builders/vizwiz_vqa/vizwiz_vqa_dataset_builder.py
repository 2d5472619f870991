"""TFDS builder for VizWiz VQA (https://vizwiz.org/tasks-and-datasets/vqa/), from the official annotations and images.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build vizwiz_vqa --data_dir DIR --manual_dir MANUAL_DIR`.

The questions were asked by blind people about photos they took; many cannot be answered from the photo (blurred,
the object out of frame), and their annotators then answered "unanswerable": a model learns to say so, and the
official evaluation scores "unanswerable" as any other answer. One example per question (VizWiz has one question
per image):
  image                the photo, as stored (JPEG, not re-encoded)
  question             text
  file_name            the image's file name, e.g. "VizWiz_val_00000000.jpg" (the key of the test server's
                       submission entries, `{"image": file_name, "answer": ...}`)
  answers              the crowd answers (10 per question; the few empty ones are left out; empty for test)
  answer_confidences   their "yes" / "maybe" / "no" confidences
  answer_type          "other", "yes/no", "number" or "unanswerable" ("" for test)
  answerable           int32: 1 when the question can be answered from the image, 0 when not, -1 for test

Splits, each built when its annotation file is present (at least one): train (20,523 questions), validation
(4,319) and test (8,000; no answers: predictions go to the evaluation server at https://eval.ai, "VizWiz VQA").
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "VizWiz VQA"
MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download from https://vizwiz.org/tasks-and-datasets/vqa/ the annotations (Annotations.zip) and the images
(train.zip, val.zip, test.zip; https://vizwiz.cs.colorado.edu/VizWiz_final/images/) and unzip them into one folder
(the manual_dir) so that it holds:

  manual_dir/
    Annotations/train.json          <- Annotations.zip   (train split)
    Annotations/val.json            <- Annotations.zip   (validation split)
    Annotations/test.json           <- Annotations.zip   (test split: questions only)
    train/VizWiz_train_xxxxxxxx.jpg <- train.zip
    val/VizWiz_val_xxxxxxxx.jpg     <- val.zip
    test/VizWiz_test_xxxxxxxx.jpg   <- test.zip

The annotation folder may also be named annotations/. Any split may be left out (with its image folder); at least
one annotation file is needed.

Then: python -m datasets.build vizwiz_vqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> the official split name (annotation file stem and image folder)
_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def find_annotations(manual_dir: str, official: str) -> str | None:
    """Path of a split's annotation file (Annotations/<split>.json or annotations/<split>.json), or None."""
    folders = (os.path.join(manual_dir, "Annotations"), os.path.join(manual_dir, "annotations"))
    return common.find_in(folders, f"{official}.json")


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [s for s in _SPLITS.values() if find_annotations(manual_dir, s)]
    if not present:
        return [" or ".join(f"Annotations/{s}.json" for s in _SPLITS.values())]
    return [f"{s}/" for s in present if not os.path.isdir(os.path.join(manual_dir, s))]


class Builder(tfds.core.GeneratorBasedBuilder):
    """VizWiz VQA, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official VizWiz VQA train/val/test annotations with their images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find=find_annotations)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://vizwiz.org/tasks-and-datasets/vqa/",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "question": tfds.features.Text(),
                    "file_name": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "answer_confidences": tfds.features.Sequence(tfds.features.Text()),
                    "answer_type": tfds.features.Text(),
                    "answerable": np.int32,
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        what = "an official VizWiz VQA annotation file (a JSON array of questions)"
        records = common.load_records(path, DATASET, what=what)
        image_dir = os.path.join(manual_dir, _SPLITS[split])
        for record in records:
            file_name = str(common.field(record, "image", path, DATASET))
            answers = [a for a in record.get("answers") or [] if isinstance(a, dict) and a.get("answer")]
            yield (
                file_name,
                {
                    "image": common.read_bytes(os.path.join(image_dir, file_name), DATASET, what="image"),
                    "question": common.field(record, "question", path, DATASET),
                    "file_name": file_name,
                    "answers": [a["answer"] for a in answers],
                    "answer_confidences": [a.get("answer_confidence", "") for a in answers],
                    "answer_type": record.get("answer_type", ""),
                    "answerable": int(record.get("answerable", -1)),
                },
            )
