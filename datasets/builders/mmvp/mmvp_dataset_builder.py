"""TFDS builder for MMVP (Multimodal Visual Patterns, https://tsb0601.github.io/mmvp_blog/), its VQA benchmark.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build mmvp --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question (`Questions.csv` row):
  image        `MMVP Images/<Index>.jpg`, as stored
  question     text, e.g. "Are the butterfly's wings closer to being open or closed?"
  options      the option texts without their letters (["Open", "Closed"])
  options_text the official options cell, "(a) Open (b) Closed"
  answer       the correct option's text ("Open")
  answers      [the correct option's text]
  label        ClassLabel "a" / "b": the correct option's letter (the official "Correct Answer" cell, "(a)")
  id           int64, the official Index (1..300)
  pair_id      int64, (Index - 1) // 2: the two questions of a pair (rows 1-2, 3-4, ...) ask the same about two
               images that look alike; paired accuracy counts a pair only when both are answered right

Split: test (300 questions, 150 pairs).
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
MMVP is the Hugging Face dataset repository MMVP/MMVP (https://huggingface.co/datasets/MMVP/MMVP: `git clone` it, or
download Questions.csv and the "MMVP Images" folder). The clone is the manual_dir:

  manual_dir/
    Questions.csv              <- columns Index, Question, Options, Correct Answer (300 rows)
    MMVP Images/<Index>.jpg    <- 1.jpg ... 300.jpg

Then: python -m datasets.build mmvp --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "MMVP"
QUESTIONS = "Questions.csv"
IMAGES = "MMVP Images"
LETTERS = ["a", "b"]
_COLUMNS = ("Index", "Question", "Options", "Correct Answer")
_OPTION = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.IGNORECASE | re.DOTALL)


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return common.missing_files(manual_dir, [QUESTIONS, IMAGES + "/"])


def parse_options(text: str) -> list[tuple[str, str]]:
    """The (letter, text) of each option: "(a) Open (b) Closed" -> [("a", "Open"), ("b", "Closed")]."""
    return [(letter.lower(), option) for letter, option in _OPTION.findall(text.strip())]


def load_rows(path: str) -> list[dict]:
    """The rows of `Questions.csv`; ValueError naming the file when a column is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DATASET}: {path} not found")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [c.strip() for c in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{DATASET}: {path} is not the official Questions.csv ({e})") from None
    absent = [c for c in _COLUMNS if c not in header]
    if absent:
        raise ValueError(f"{DATASET}: {path} is not the official Questions.csv (no {', '.join(absent)} column)")
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]


class Builder(tfds.core.GeneratorBasedBuilder):
    """MMVP, one example per question; pairs share `pair_id`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "MMVP Questions.csv with MMVP Images (Hugging Face MMVP/MMVP)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://tsb0601.github.io/mmvp_blog/",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "options": tfds.features.Sequence(tfds.features.Text()),
                    "options_text": tfds.features.Text(),
                    "answer": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "label": tfds.features.ClassLabel(names=LETTERS),
                    "id": np.int64,
                    "pair_id": np.int64,
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
        return {"test": self._generate_examples(manual_dir)}

    def _generate_examples(self, manual_dir):
        path = os.path.join(manual_dir, QUESTIONS)
        for number, row in enumerate(load_rows(path), 2):  # line 1 is the header
            where = f"{path} line {number}"
            if not row.get("Index", "").isdigit():
                raise ValueError(f"{DATASET}: {where}: Index {row.get('Index')!r} is not a number")
            index = int(row["Index"])
            options = parse_options(row["Options"])
            correct = row["Correct Answer"].strip("() .").lower()
            letters = [letter for letter, _ in options]
            if len(options) != 2 or letters != LETTERS or correct not in LETTERS:
                raise ValueError(
                    f'{DATASET}: {where}: expected options "(a) ... (b) ..." and a correct answer (a) or (b), '
                    f"got {row['Options']!r} / {row['Correct Answer']!r}"
                )
            answer = options[LETTERS.index(correct)][1]
            image = common.read_bytes(
                os.path.join(manual_dir, IMAGES, f"{index}.jpg"), DATASET, what="image", context=f"of {where}"
            )
            yield (
                index,
                {
                    "image": image,
                    "question": row["Question"],
                    "options": [option for _, option in options],
                    "options_text": row["Options"],
                    "answer": answer,
                    "answers": [answer],
                    "label": correct,
                    "id": index,
                    "pair_id": (index - 1) // 2,
                },
            )
