"""TFDS builder for GQA 1.2 (https://cs.stanford.edu/people/dorarad/gqa/), the balanced question sets and the images.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build gqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image          the scene's JPEG, as stored (not re-encoded)
  question       text
  question_id    text, the official question id (the key of the question file)
  image_id       text, the official `imageId` (e.g. "2354786", "n161313")
  answer         the one short answer (GQA is scored by exact match against it)
  full_answer    the answer as a sentence ("Yes, the sky is dark.")
  structural_type, semantic_type, detailed_type
                 the official question types (`types` of the file), e.g. "verify", "rel", "existRelS"

Splits (the balanced sets; each built when its file is present, at least one): train_balanced (943,000
questions), val_balanced (132,062) and testdev_balanced (12,578; the split the model card reports).
The unbalanced "all" sets and the answerless test/challenge/submission files are not used.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "GQA"
MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download questions1.2.zip and images.zip from https://cs.stanford.edu/people/dorarad/gqa/download.html
(https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip and .../images.zip) and unzip them into one folder
(the manual_dir) so that it holds:

  manual_dir/
    train_balanced_questions.json     <- questions1.2.zip   (train_balanced split)
    val_balanced_questions.json       <- questions1.2.zip   (val_balanced split)
    testdev_balanced_questions.json   <- questions1.2.zip   (testdev_balanced split)
    images/<imageId>.jpg              <- images.zip         (all splits' images, 148,854 JPEGs)

Any split may be left out; at least one question file is needed. The question files may also sit in
manual_dir/questions1.2/ (the zip's folder).

Then: python -m datasets.build gqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

SPLITS = ("train_balanced", "val_balanced", "testdev_balanced")
TYPES = ("structural", "semantic", "detailed")  # the question types of each entry


def find_questions(manual_dir: str, split: str) -> str | None:
    """Path of `<split>_questions.json` in manual_dir or manual_dir/questions1.2, or None."""
    for folder in (manual_dir, os.path.join(manual_dir, "questions1.2")):
        path = os.path.join(folder, f"{split}_questions.json")
        if os.path.isfile(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    if not any(find_questions(manual_dir, split) for split in SPLITS):
        missing.append(" or ".join(f"{split}_questions.json" for split in SPLITS))
    if not os.path.isdir(os.path.join(manual_dir, "images")):
        missing.append("images/")
    return missing


def load_questions(path: str, dataset: str) -> dict[str, dict]:
    """The {question id: question} object of a GQA-format question file (GQA, xGQA), each entry checked."""
    what = f"an official {dataset} question file (a JSON object of questions by id)"
    questions = common.load_json(path, dataset, expect=dict, what=what)
    for question_id, record in questions.items():
        if not isinstance(record, dict):
            raise ValueError(f"{dataset}: {path} is not {what}: question {question_id} is {type(record).__name__}")
    return questions


def gqa_examples(path: str, image_dir: str, dataset: str):
    """(question id, fields) of each question of a GQA-format file, with the image bytes from `image_dir`."""
    read = common.LastFileReader(dataset)  # a scene's questions come in a row: read each image once
    for question_id, record in load_questions(path, dataset).items():
        image_id = str(common.field(record, "imageId", path, dataset))
        image = read(os.path.join(image_dir, f"{image_id}.jpg"), what="image", context=f"of question {question_id}")
        yield (
            question_id,
            {
                "image": image,
                "question": common.field(record, "question", path, dataset),
                "question_id": question_id,
                "image_id": image_id,
                "answer": common.field(record, "answer", path, dataset),
                "full_answer": record.get("fullAnswer", ""),
                **{f"{k}_type": str((record.get("types") or {}).get(k) or "") for k in TYPES},
            },
        )


def features() -> tfds.features.FeaturesDict:
    """The features of a GQA-format example (GQA, xGQA)."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(encoding_format="jpeg"),
            "question": tfds.features.Text(),
            "question_id": tfds.features.Text(),
            "image_id": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "full_answer": tfds.features.Text(),
            **{f"{k}_type": tfds.features.Text() for k in TYPES},
        }
    )


class Builder(tfds.core.GeneratorBasedBuilder):
    """GQA balanced question sets, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official GQA 1.2 balanced train/val/testdev questions with the scene images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(
        DATASET, {split: split for split in SPLITS}, missing_manual_files, find=find_questions
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://cs.stanford.edu/people/dorarad/gqa/",
            features=features(),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        return gqa_examples(path, os.path.join(manual_dir, "images"), DATASET)
