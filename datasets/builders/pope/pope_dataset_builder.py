"""TFDS builder for POPE (object hallucination, https://github.com/RUCAIBox/POPE), its COCO question files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build pope --data_dir DIR --manual_dir MANUAL_DIR`.

One example per yes/no question "Is there a <object> in the image?":
  image        the COCO val2014 picture, as stored (JPEG)
  question     text
  answer       "yes" or "no" (the official label, lower-cased)
  label        ClassLabel ("no" = 0, "yes" = 1): the same label as a class
  object       the object asked about ("snowboard"), taken from the question
  question_id  int64, the official `question_id` (numbered per file)
  image_file   the COCO file name, e.g. "COCO_val2014_000000310196.jpg"

Splits, one per way of choosing the absent objects, each built when its file is present: random, popular and
adversarial (3,000 questions each: 500 COCO val2014 images with 3 present and 3 absent objects; the model card
reports the accuracy of each).
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
POPE's question files are in https://github.com/RUCAIBox/POPE (output/coco/coco_pope_random.json,
coco_pope_popular.json, coco_pope_adversarial.json: JSON lines, one question a line); its images are COCO val2014
(http://images.cocodataset.org/zips/val2014.zip). Put them in one folder (the manual_dir):

  manual_dir/
    coco_pope_random.json          <- output/coco/   (random split; .jsonl also accepted)
    coco_pope_popular.json         <- output/coco/   (popular split)
    coco_pope_adversarial.json     <- output/coco/   (adversarial split)
    val2014/COCO_val2014_*.jpg     <- val2014.zip

The question files may also sit in manual_dir/output/coco/ (a clone of the repository). Any split may be left out;
at least one file is needed.

Then: python -m datasets.build pope --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "POPE"
IMAGES = "val2014"
_SPLITS = {name: f"coco_pope_{name}" for name in ("random", "popular", "adversarial")}
_OBJECT = re.compile(r"^is there (?:an?|the|some)?\s*(.+?)\s+in the (?:image|picture)\s*\?*$", re.IGNORECASE)


def find_questions(manual_dir: str, stem: str) -> str | None:
    """`<stem>.json` or `.jsonl` in manual_dir or manual_dir/output/coco, or None."""
    for folder in (manual_dir, os.path.join(manual_dir, "output", "coco")):
        found = common.find_file(folder, stem, (".json", ".jsonl"))
        if found:
            return found
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if not common.split_files(manual_dir, _SPLITS, find_questions):
        return [" or ".join(f"{stem}.json" for stem in _SPLITS.values())]
    return common.missing_files(manual_dir, [IMAGES + "/"])


def object_of(question: str) -> str:
    """The object a POPE question asks about ("Is there a dining table in the image?" -> "dining table")."""
    match = _OBJECT.match(question.strip())
    return match.group(1) if match else ""


class Builder(tfds.core.GeneratorBasedBuilder):
    """POPE, one example per yes/no question; one split per sampling setting."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "POPE COCO question files (random / popular / adversarial) with COCO val2014 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_questions)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/RUCAIBox/POPE",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "answer": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["no", "yes"]),
                    "object": tfds.features.Text(),
                    "question_id": np.int64,
                    "image_file": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        read = common.LastFileReader(DATASET)
        records = common.load_records(path, DATASET, what="an official POPE question file (JSON lines)")
        for index, record in enumerate(records):
            qid = int(record.get("question_id", index + 1))
            label = str(common.field(record, "label", path, DATASET)).strip().lower()
            if label not in ("yes", "no"):
                raise ValueError(f"{DATASET}: {path}: question {qid} has label {label!r}, neither yes nor no")
            name = str(common.field(record, "image", path, DATASET))
            question = str(common.field(record, "text", path, DATASET))
            image = read(os.path.join(manual_dir, IMAGES, name), what="image", context=f"of question {qid} ({path})")
            yield (
                index,
                {
                    "image": image,
                    "question": question,
                    "answer": label,
                    "label": label,
                    "object": object_of(question),
                    "question_id": qid,
                    "image_file": name,
                },
            )
