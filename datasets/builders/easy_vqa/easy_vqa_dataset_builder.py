"""TFDS builder for easy-VQA (https://github.com/vzhou842/easy-VQA).

The `easy-vqa` pip package ships the whole dataset under `site-packages/easy_vqa/data/`:
`{train,test}/questions.json` (a list of `[question, answer, image_id]`), `{train,test}/images/<image_id>.png`
(64x64 RGB) and `answers.txt` (the 13 answers). Nothing is downloaded.

Features (one example per question):
  image          64x64x3 PNG (the shipped PNG bytes, not re-encoded)
  question       text, e.g. "what color is the shape?"
  answer         text, one of the 13 answers
  answers        the same answer as a 1-element list (so VQA-style ops such as `choice(inkey="answers")` work)
  question_id    int64, index of the question in the split's questions.json
  image_id       int64, the PNG's number
  question_type  "yes/no", "color" or "shape": derived from the answer (the package does not ship a type)

Splits: train 38,575 questions over 4,000 images; test 9,673 questions over 1,000 images.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import tensorflow_datasets as tfds

_SPLITS = {"train": 38_575, "test": 9_673}
_COLORS = {"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"}
_SHAPES = {"circle", "rectangle", "triangle"}


def find_data_dir() -> str:
    """The `data/` folder of the installed `easy-vqa` pip package (without importing it)."""
    spec = importlib.util.find_spec("easy_vqa")
    if spec is None or not spec.origin:
        raise FileNotFoundError("The `easy-vqa` pip package is not installed (pip install easy-vqa==1.0).")
    data_dir = os.path.join(os.path.dirname(spec.origin), "data")
    if not os.path.isfile(os.path.join(data_dir, "train", "questions.json")):
        raise FileNotFoundError(f"easy-vqa data files not found under {data_dir}")
    return data_dir


def question_type(answer: str) -> str:
    """The question type of an easy-VQA answer: yes/no, color, shape (else other)."""
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in _COLORS:
        return "color"
    if answer in _SHAPES:
        return "shape"
    return "other"


class Builder(tfds.core.GeneratorBasedBuilder):
    """easy-VQA: synthetic shapes, 13 answers."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "From the easy-vqa 1.0 pip package."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/vzhou842/easy-VQA",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="png"),
                    "question": tfds.features.Text(),
                    "answer": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "question_id": np.int64,
                    "image_id": np.int64,
                    "question_type": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is local.
        data_dir = find_data_dir()
        return {split: self._generate_examples(os.path.join(data_dir, split)) for split in _SPLITS}

    def _generate_examples(self, split_dir):
        with open(os.path.join(split_dir, "questions.json")) as f:
            questions = json.load(f)
        images = {}  # image_id -> PNG bytes, read once per image (about 10 questions per image)
        for qid, (question, answer, image_id) in enumerate(questions):
            image_id = int(image_id)
            if image_id not in images:
                with open(os.path.join(split_dir, "images", f"{image_id}.png"), "rb") as f:
                    images[image_id] = f.read()
            yield (
                qid,
                {
                    "image": images[image_id],
                    "question": question,
                    "answer": answer,
                    "answers": [answer],
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": question_type(answer),
                },
            )
