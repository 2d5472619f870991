"""TFDS builder for DocVQA, Single Page (https://rrc.cvc.uab.es/?ch=17), from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build docvqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image            the document page, as stored (PNG bytes, not re-encoded; many pages are grayscale)
  question         text
  question_id      int64, the official `questionId` (the id of the submission file's entries)
  answers          the accepted answers (usually 1-3; empty for test)
  doc_id           int64, the official `docId`
  question_types   e.g. "table/list", "form", "layout" (empty where the file has none, e.g. test)

Splits: train (39,463 questions, 10,194 pages), validation (5,349 questions, 1,286 pages) and, when its file is
present, test (5,188 questions, 1,287 pages; no answers).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Register at https://rrc.cvc.uab.es/?ch=17 (Downloads, "Single Document VQA"), download train.tar.gz, val.tar.gz and
test.tar.gz and extract them into one folder (the manual_dir) so that it holds:

  manual_dir/
    train/train_v1.0.json          <- train.tar.gz  (train_v1.0_withQT.json is used instead when present)
    train/documents/xxxx_yyy.png   <- train.tar.gz
    val/val_v1.0.json              <- val.tar.gz    (or val_v1.0_withQT.json)
    val/documents/xxxx_yyy.png     <- val.tar.gz
    test/test_v1.0.json            <- test.tar.gz   (optional: test split)
    test/documents/xxxx_yyy.png    <- test.tar.gz   (optional)

The JSON files may also sit directly in manual_dir (manual_dir/train_v1.0.json); the images are always read from the
split's folder: the entries' "image" field ("documents/xxxx_yyy.png") relative to manual_dir/train, val or test.
The ocr_results/ folders are not used.

Then: python -m datasets.build docvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> (folder and file prefix in the official archives, required)
_SPLITS = {
    "train": ("train", True),
    "validation": ("val", True),
    "test": ("test", False),
}


def find_questions_file(manual_dir: str, folder: str) -> str | None:
    """Path of a split's question JSON (`<folder>_v1.0[_withQT].json` in manual_dir/<folder> or manual_dir), or None."""
    for directory in (os.path.join(manual_dir, folder), manual_dir):
        for name in (f"{folder}_v1.0_withQT.json", f"{folder}_v1.0.json"):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    for folder, required in _SPLITS.values():
        has_questions = find_questions_file(manual_dir, folder) is not None
        if not required and not has_questions:
            continue  # optional split, not provided
        if not has_questions:
            missing.append(f"{folder}/{folder}_v1.0.json")
        if not os.path.isdir(os.path.join(manual_dir, folder, "documents")):
            missing.append(f"{folder}/documents/")
    return missing


def _load_questions(path: str) -> list[dict]:
    what = 'an official DocVQA question file (expected a JSON object with a "data" list of questions)'
    return common.load_data(path, "DocVQA", what=what)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DocVQA (single page), one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official DocVQA v1.0 question files with the document page images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://rrc.cvc.uab.es/?ch=17",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="png"),
                    "question": tfds.features.Text(),
                    "question_id": np.int64,
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "doc_id": np.int64,
                    "question_types": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        missing = missing_manual_files(manual_dir)
        if missing:
            raise FileNotFoundError(
                f"DocVQA: missing in manual_dir {manual_dir}: {', '.join(missing)}\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        splits = {}
        for split, (folder, _) in _SPLITS.items():
            questions_file = find_questions_file(manual_dir, folder)
            if questions_file:
                splits[split] = self._generate_examples(questions_file, os.path.join(manual_dir, folder))
        return splits

    def _generate_examples(self, questions_file, image_root):
        read = common.LastFileReader("DocVQA")  # questions on one page usually come in a row: read each page once
        for q in _load_questions(questions_file):
            image = read(
                os.path.join(image_root, q["image"]),
                what="image",
                context=f"of question {q['questionId']} ({questions_file})",
            )
            yield (
                int(q["questionId"]),
                {
                    "image": image,
                    "question": q["question"],
                    "question_id": int(q["questionId"]),
                    "answers": list(q.get("answers") or []),
                    "doc_id": int(q["docId"]),
                    "question_types": list(q.get("question_types") or []),
                },
            )
