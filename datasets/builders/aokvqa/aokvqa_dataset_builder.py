"""TFDS builder for A-OKVQA v1.0 (https://aokvqa.allenai.org), from the official JSON files and COCO 2017.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build aokvqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question, for both A-OKVQA tasks (multiple choice and direct answer):
  image                     the COCO 2017 JPEG, as stored (not re-encoded)
  question                  text
  question_id               text, the official id (e.g. "22MexNkBPpdZGX6sxbxVBH"; the key of the leaderboard's
                            prediction files)
  image_id                  int64, the COCO image id
  choices                   the 4 answer options of the multiple-choice task
  correct_choice_idx        ClassLabel 0..3, the index of the correct option in `choices` (-1 for test: hidden)
  correct_choice            the correct option's text, `choices[correct_choice_idx]` ("" for test): the training
                            target of the multiple-choice task
  direct_answers            the 10 free-form answers of the direct-answer task (empty for test)
  difficult_direct_answer   bool, the annotators' flag for questions whose direct answers disagree
  rationales                the 3 explanations of the answer (empty for test)

Splits, each built when its file is present (at least one): train (17,056 questions, COCO train2017 images),
validation (1,145, val2017) and test (6,702, test2017; no answers: predictions go to the leaderboard at
https://leaderboard.allenai.org/aokvqa).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "A-OKVQA"
MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download aokvqa_v1p0.tar.gz (https://prior-datasets.s3.us-east-2.amazonaws.com/aokvqa/aokvqa_v1p0.tar.gz, linked
from https://github.com/allenai/aokvqa) and the COCO 2017 images (https://cocodataset.org/#download), and extract
them into one folder (the manual_dir) so that it holds:

  manual_dir/
    aokvqa_v1p0_train.json        <- aokvqa_v1p0.tar.gz   (train split)
    aokvqa_v1p0_val.json          <- aokvqa_v1p0.tar.gz   (validation split)
    aokvqa_v1p0_test.json         <- aokvqa_v1p0.tar.gz   (test split: questions and choices only)
    train2017/000000xxxxxx.jpg    <- http://images.cocodataset.org/zips/train2017.zip
    val2017/000000xxxxxx.jpg      <- http://images.cocodataset.org/zips/val2017.zip
    test2017/000000xxxxxx.jpg     <- http://images.cocodataset.org/zips/test2017.zip

Any split may be left out (with its image folder); at least one JSON file is needed.

Then: python -m datasets.build aokvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> the official split name (in the JSON file name and the COCO 2017 image folder)
_SPLITS = {"train": "train", "validation": "val", "test": "test"}
NUM_CHOICES = 4


def _json_name(official: str) -> str:
    return f"aokvqa_v1p0_{official}.json"


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [s for s in _SPLITS.values() if os.path.isfile(os.path.join(manual_dir, _json_name(s)))]
    if not present:
        return [" or ".join(_json_name(s) for s in _SPLITS.values())]
    return [f"{s}2017/" for s in present if not os.path.isdir(os.path.join(manual_dir, f"{s}2017"))]


def _list(record: dict, key: str, path: str, length: int | None = None) -> list[str]:
    """`record[key]` checked to be a list of texts (of `length` items when given)."""
    value = common.field(record, key, path, DATASET)
    if not isinstance(value, list) or (length is not None and len(value) != length):
        size = f"{length} " if length is not None else ""
        raise ValueError(
            f"{DATASET}: {path}: question {record.get('question_id')}: {key!r} is not a list of {size}texts: {value!r}"
        )
    return [str(v) for v in value]


class Builder(tfds.core.GeneratorBasedBuilder):
    """A-OKVQA v1.0, one example per question (multiple-choice and direct-answer fields)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official A-OKVQA v1.0 train/val/test files with the COCO 2017 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(
        DATASET, {split: _json_name(official) for split, official in _SPLITS.items()}, missing_manual_files
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://aokvqa.allenai.org",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "question": tfds.features.Text(),
                    "question_id": tfds.features.Text(),
                    "image_id": np.int64,
                    "choices": tfds.features.Sequence(tfds.features.Text(), length=NUM_CHOICES),
                    "correct_choice_idx": tfds.features.ClassLabel(num_classes=NUM_CHOICES),
                    "correct_choice": tfds.features.Text(),
                    "direct_answers": tfds.features.Sequence(tfds.features.Text()),
                    "difficult_direct_answer": np.bool_,
                    "rationales": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        official = _SPLITS[split]
        what = "an official A-OKVQA file (a JSON array of questions)"
        records = common.load_json(path, DATASET, expect=list, what=what)
        read = common.LastFileReader(DATASET)
        for record in records:
            if not isinstance(record, dict):
                raise ValueError(f"{DATASET}: {path} is not {what}: it holds {type(record).__name__} entries")
            question_id = str(common.field(record, "question_id", path, DATASET))
            image_id = int(common.field(record, "image_id", path, DATASET))
            image_path = os.path.join(manual_dir, f"{official}2017", f"{image_id:012d}.jpg")
            image = read(image_path, what="image", context=f"of question {question_id}")
            correct = record.get("correct_choice_idx")
            if correct is not None and not (isinstance(correct, int) and 0 <= correct < NUM_CHOICES):
                raise ValueError(
                    f"{DATASET}: {path}: question {question_id}: correct_choice_idx {correct!r} not in 0..3"
                )
            choices = _list(record, "choices", path, NUM_CHOICES)
            yield (
                question_id,
                {
                    "image": image,
                    "question": common.field(record, "question", path, DATASET),
                    "question_id": question_id,
                    "image_id": image_id,
                    "choices": choices,
                    "correct_choice_idx": -1 if correct is None else correct,
                    "correct_choice": "" if correct is None else choices[correct],
                    "direct_answers": _list(record, "direct_answers", path) if "direct_answers" in record else [],
                    "difficult_direct_answer": bool(record.get("difficult_direct_answer", False)),
                    "rationales": _list(record, "rationales", path) if "rationales" in record else [],
                },
            )
