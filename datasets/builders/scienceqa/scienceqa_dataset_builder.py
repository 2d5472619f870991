"""TFDS builder for ScienceQA (https://scienceqa.github.io), the questions that come with an image.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build scienceqa --data_dir DIR --manual_dir MANUAL_DIR`.

Only the "IMG" subset is built (the questions whose `image` field names a picture; the model card's "Img subset"):
the text-only questions are left out. One example per question:
  image            the question's picture (`image.png`, as stored)
  question         text
  choices          the options, in the official order (2 to 5)
  answer           ClassLabel "A".."E": the index of the correct option in `choices` (the official `answer`)
  answer_text      the correct option's text
  indexed_choices  the options as one line, "(A) first, (B) second, ..." (the ScienceQA reference prompt's form)
  indexed_answer   the correct option's letter, "A", "B", ...
  hint             the question's context text, "N/A" where the file has none (as the reference prompts write it)
  lecture, solution, subject, topic, category, skill, grade, task
                   the problem's other official fields (texts)
  id               the official problem id (the key of problems.json), e.g. "5"

Splits (the problem's `split` field): train (6,218 image questions), validation ("val", 2,097) and test (2,017).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
ScienceQA's files are linked from https://scienceqa.github.io/#download (also in the GitHub repository
lupantech/ScienceQA, data/scienceqa/, and the Hugging Face copy): problems.json and the image archives train.zip,
val.zip, test.zip (each holds <split>/<problem id>/image.png). Put them in one folder (the manual_dir):

  manual_dir/
    problems.json                        <- every problem (questions, choices, answers, split, image name)
    images/train/<id>/image.png          <- train.zip   (only problems with an image have a folder)
    images/val/<id>/image.png            <- val.zip
    images/test/<id>/image.png           <- test.zip

The image folders may also sit directly in manual_dir (manual_dir/train/<id>/image.png). pid_splits.json and
captions.json are not needed (each problem states its split). Only problems with an image are built.

Then: python -m datasets.build scienceqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "ScienceQA"
PROBLEMS = "problems.json"
# TFDS split -> the official split name (the problems' "split" field and the image folder)
_SPLITS = {"train": "train", "validation": "val", "test": "test"}
LETTERS = list("ABCDE")  # ScienceQA questions have 2 to 5 options
_TEXT_FIELDS = ("lecture", "solution", "subject", "topic", "category", "skill", "grade", "task")


def image_root(manual_dir: str, folder: str) -> str | None:
    """The folder of a split's images (manual_dir/images/<folder> or manual_dir/<folder>), or None."""
    for path in (os.path.join(manual_dir, "images", folder), os.path.join(manual_dir, folder)):
        if os.path.isdir(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = common.missing_files(manual_dir, [PROBLEMS])
    return missing + [f"images/{f}/" for f in _SPLITS.values() if image_root(manual_dir, f) is None]


def load_problems(path: str) -> dict[str, dict]:
    """{problem id: problem} of `problems.json`."""
    what = "the official ScienceQA problems.json (a JSON object of problems by id)"
    problems = common.load_json(path, DATASET, expect=dict, what=what)
    for pid, problem in problems.items():
        if not isinstance(problem, dict):
            raise ValueError(f"{DATASET}: {path} is not {what} (problem {pid} is not an object)")
    return problems


def indexed(choices: list[str]) -> str:
    """The options with their letters, as one line: "(A) first, (B) second, ..."."""
    return ", ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


class Builder(tfds.core.GeneratorBasedBuilder):
    """ScienceQA image questions, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "ScienceQA problems.json, the questions with an image (IMG subset)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        texts = {name: tfds.features.Text() for name in _TEXT_FIELDS}
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://scienceqa.github.io",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "choices": tfds.features.Sequence(tfds.features.Text()),
                    "answer": tfds.features.ClassLabel(names=LETTERS),
                    "answer_text": tfds.features.Text(),
                    "indexed_choices": tfds.features.Text(),
                    "indexed_answer": tfds.features.Text(),
                    "hint": tfds.features.Text(),
                    **texts,
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
        path = os.path.join(manual_dir, PROBLEMS)
        problems = load_problems(path)
        return {
            split: self._generate_examples(problems, path, folder, image_root(manual_dir, folder))
            for split, folder in _SPLITS.items()
        }

    def _generate_examples(self, problems, path, folder, root):
        for pid, p in problems.items():
            if common.field(p, "split", path, DATASET) != folder or not p.get("image"):
                continue
            choices = [str(c) for c in common.field(p, "choices", path, DATASET)]
            answer = common.field(p, "answer", path, DATASET)
            if not isinstance(answer, int) or not 0 <= answer < len(choices) or len(choices) > len(LETTERS):
                raise ValueError(f"{DATASET}: {path}: problem {pid} has answer {answer!r} outside its choices")
            image = common.read_bytes(
                os.path.join(root, pid, p["image"]), DATASET, what="image", context=f"of problem {pid}"
            )
            yield (
                pid,
                {
                    "image": image,
                    "question": common.field(p, "question", path, DATASET),
                    "choices": choices,
                    "answer": answer,
                    "answer_text": choices[answer],
                    "indexed_choices": indexed(choices),
                    "indexed_answer": LETTERS[answer],
                    "hint": p.get("hint") or "N/A",
                    **{name: str(p.get(name) or "") for name in _TEXT_FIELDS},
                    "id": pid,
                },
            )
