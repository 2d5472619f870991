"""TFDS builder for TallyQA (https://github.com/manoja328/TallyQA_dataset), counting questions.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build tallyqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image         the Visual Genome or COCO picture, as stored (JPEG)
  question      text, e.g. "How many dogs are on the couch?"
  answer        int32, the count
  answers       [the count as text] ("3"; the reference the evaluator compares against)
  issimple      int32: 1 simple, 0 complex (test); -1 on train, whose file does not say (as big_vision)
  question_id   int64, the official `question_id`
  image_id      int64, the official `image_id`
  image_file    the file named by the official `image` field, e.g. "VG_100K_2/2410408.jpg"
  image_source  the official `data_source` (e.g. "amt", "imported_genome", "imported_vqa")

Splits: train (249,318 questions) and test (38,589: 22,991 simple + 15,598 complex; the model card reports the
accuracy on each kind).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
TallyQA's questions are tallyqa.zip in https://github.com/manoja328/TallyQA_dataset (train.json, test.json); its
images are Visual Genome's (https://homes.cs.washington.edu/~ranjay/visualgenome/api.html: images.zip ->
VG_100K/, images2.zip -> VG_100K_2/) and COCO 2014's (https://cocodataset.org/#download: train2014.zip,
val2014.zip). Put them in one folder (the manual_dir):

  manual_dir/
    train.json                 <- tallyqa.zip
    test.json                  <- tallyqa.zip
    VG_100K/, VG_100K_2/       <- Visual Genome images.zip, images2.zip
    train2014/, val2014/       <- COCO train2014.zip, val2014.zip (train questions use COCO pictures too)

Each entry's "image" field (e.g. "VG_100K_2/2410408.jpg", "train2014/COCO_train2014_000000000009.jpg") is read
relative to manual_dir (or manual_dir/images). Either split may be left out; at least one JSON file is needed.

Then: python -m datasets.build tallyqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "TallyQA"
_SPLITS = {"train": "train.json", "test": "test.json"}


def missing_manual_files(manual_dir) -> list[str]:
    """The required files that are not in manual_dir (empty: ready to build)."""
    if not common.split_files(manual_dir, _SPLITS):
        return [" or ".join(_SPLITS.values())]
    return []


def find_image(manual_dir: str, name: str) -> str | None:
    """`manual_dir/name` or `manual_dir/images/name`, whichever is a file, or None."""
    return common.find_in((manual_dir, os.path.join(manual_dir, "images")), name)


class Builder(tfds.core.GeneratorBasedBuilder):
    """TallyQA, one example per counting question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "TallyQA train.json / test.json with Visual Genome and COCO 2014 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/manoja328/TallyQA_dataset",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "answer": np.int32,
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "issimple": np.int32,
                    "question_id": np.int64,
                    "image_id": np.int64,
                    "image_file": tfds.features.Text(),
                    "image_source": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, json_path):
        what = "an official TallyQA file (a JSON array of questions)"
        records = common.load_json(json_path, DATASET, expect=list, what=what)
        read = common.LastFileReader(DATASET)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"{DATASET}: {json_path} is not {what} (an entry is not an object)")
            qid = int(common.field(record, "question_id", json_path, DATASET))
            name = str(common.field(record, "image", json_path, DATASET))
            answer = common.field(record, "answer", json_path, DATASET)
            if not str(answer).isdigit():
                raise ValueError(f"{DATASET}: {json_path}: question {qid} has a non-integer answer {answer!r}")
            path = find_image(manual_dir, name) or os.path.join(manual_dir, name)
            issimple = record.get("issimple")
            yield (
                index,  # question ids are not unique across the Visual Genome and COCO questions
                {
                    "image": read(path, what="image", context=f"of question {qid} ({json_path})"),
                    "question": str(common.field(record, "question", json_path, DATASET)),
                    "answer": int(answer),
                    "answers": [str(int(answer))],
                    "issimple": -1 if issimple is None else int(bool(issimple)),
                    "question_id": qid,
                    "image_id": int(record.get("image_id", -1)),
                    "image_file": name,
                    "image_source": str(record.get("data_source", "")),
                },
            )
