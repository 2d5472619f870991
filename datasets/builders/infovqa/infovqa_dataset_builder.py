"""TFDS builder for InfographicVQA (https://rrc.cvc.uab.es/?ch=17, task 3), from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build infovqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image             the infographic, as stored (JPEG or PNG bytes, not re-encoded; many are tall, several
                    thousand pixels high)
  question          text
  question_id       int64, the official `questionId` (the key of the test server's submission file)
  answers           the accepted answers (empty for test); in the validation split, an answer listing several
                    items ("a, b, c") is followed by the other orders of its items, since the task scores a
                    multi-item answer in any order (as the original PaliGemma transfer did)
  image_local_name  the picture's file name, e.g. "37313.jpeg"

Splits, each built when its question file is present: train (23,946 questions on 4,406 infographics), validation
(2,801 on 500) and test (3,288 on 579; no answers: the test server scores it).
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "InfographicVQA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Register at https://rrc.cvc.uab.es/?ch=17 (Downloads, "Infographics VQA"), download the train, validation and test
annotations and the images, and extract them into one folder (the manual_dir):

  manual_dir/
    infographicsVQA_train_v1.0.json          <- the train annotations              (train split)
    infographicsVQA_val_v1.0_withQT.json     <- the validation annotations         (validation split; or
                                                infographicsVQA_val_v1.0.json)
    infographicsVQA_test_v1.0.json           <- the test annotations, no answers   (test split)
    infographicsvqa_images/<image_local_name> <- the images archive (every split's pictures; images/ also works)

Any split may be left out; at least one question file is needed. Each question's picture is the file named by its
"image_local_name". The OCR files are not used.

Then: python -m datasets.build infovqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> the accepted names of its question file, in order of preference
_SPLITS = {
    "train": ("infographicsVQA_train_v1.0_withQT.json", "infographicsVQA_train_v1.0.json"),
    "validation": ("infographicsVQA_val_v1.0_withQT.json", "infographicsVQA_val_v1.0.json"),
    "test": ("infographicsVQA_test_v1.0_withQT.json", "infographicsVQA_test_v1.0.json"),
}
_IMAGE_FOLDERS = ("infographicsvqa_images", "images")
_WHAT = 'an official InfographicVQA question file (expected a JSON object with a "data" list of questions)'
_MAX_ITEMS = 5  # multi-item answers with up to this many items get all their orders (5! = 120)


def find_questions_file(manual_dir: str, split: str) -> str | None:
    """Path of a split's question file in manual_dir, or None."""
    for name in _SPLITS[split]:
        path = os.path.join(manual_dir, name)
        if os.path.isfile(path):
            return path
    return None


def image_folder(manual_dir: str) -> str | None:
    """The folder of the pictures (infographicsvqa_images/ or images/), or None."""
    for name in _IMAGE_FOLDERS:
        if os.path.isdir(os.path.join(manual_dir, name)):
            return os.path.join(manual_dir, name)
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if not any(find_questions_file(manual_dir, split) for split in _SPLITS):
        return [" or ".join(names[-1] for names in _SPLITS.values())]
    return [] if image_folder(manual_dir) else [_IMAGE_FOLDERS[0] + "/"]


def any_order(answers: list[str]) -> list[str]:
    """`answers`, each multi-item answer ("a, b, c", items joined by ", ") followed by its other item orders.

    The InfographicVQA task accepts the items of such an answer in any order; answers with more than `_MAX_ITEMS`
    items are kept as they are. No duplicates; the official answers keep their places.
    """
    out = list(dict.fromkeys(answers))
    for answer in answers:
        items = answer.split(", ")
        if 1 < len(items) <= _MAX_ITEMS:
            out.extend(", ".join(p) for p in itertools.permutations(items) if ", ".join(p) not in out)
    return list(dict.fromkeys(out))


class Builder(tfds.core.GeneratorBasedBuilder):
    """InfographicVQA, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official InfographicVQA v1.0 questions with their infographics."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(
        DATASET, {split: split for split in _SPLITS}, missing_manual_files, find_questions_file
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://rrc.cvc.uab.es/?ch=17",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "question_id": np.int64,
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "image_local_name": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        folder = image_folder(manual_dir)
        read = common.LastFileReader(DATASET)
        for q in common.load_data(path, DATASET, what=_WHAT):
            question_id = int(common.field(q, "questionId", path, DATASET))
            name = str(common.field(q, "image_local_name", path, DATASET))
            answers = [str(a) for a in q.get("answers") or []]
            yield (
                question_id,
                {
                    "image": read(
                        os.path.join(folder, name), what="image", context=f"of question {question_id} ({path})"
                    ),
                    "question": common.field(q, "question", path, DATASET),
                    "question_id": question_id,
                    "answers": any_order(answers) if split == "validation" else answers,
                    "image_local_name": name,
                },
            )
