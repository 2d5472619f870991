"""TFDS builder for OK-VQA v1.1 (https://okvqa.allenai.org), from the official JSON files and the COCO 2014 images.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build okvqa --data_dir DIR --manual_dir MANUAL_DIR`.

OK-VQA ships its questions and answers in the VQAv2 file format, so the examples are read by the `vqa` builder's
`generate_examples`. One example per question:
  image                   the COCO 2014 JPEG, as stored (not re-encoded)
  question                text
  question_id, image_id   int64 (the official ids)
  answers                 the 10 human answers (the stemmed `answer` fields, which the official evaluation uses)
  answer_confidences      their "yes" / "no" confidences
  answer_type             "other" for every question of the release
  question_type           the knowledge category: "one" (vehicles and transportation) ... "ten" (weather and
                          climate), or "other"

Splits: train (9,009 questions on COCO train2014 images) and validation (5,046 questions on val2014 images; the
split the model card reports). Both are required.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from datasets.builders import common
from datasets.builders.vqa import vqa_dataset_builder as vqa

DATASET = "OK-VQA"
MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download from https://okvqa.allenai.org/download.html (the questions and annotations, v1.1) and
https://cocodataset.org/#download (the 2014 images), and unzip into one folder (the manual_dir) so that it holds:

  manual_dir/
    OpenEnded_mscoco_train2014_questions.json   <- OpenEnded_mscoco_train2014_questions.json.zip
    OpenEnded_mscoco_val2014_questions.json     <- OpenEnded_mscoco_val2014_questions.json.zip
    mscoco_train2014_annotations.json           <- mscoco_train2014_annotations.json.zip
    mscoco_val2014_annotations.json             <- mscoco_val2014_annotations.json.zip
    train2014/COCO_train2014_000000xxxxxx.jpg   <- http://images.cocodataset.org/zips/train2014.zip
    val2014/COCO_val2014_000000xxxxxx.jpg       <- http://images.cocodataset.org/zips/val2014.zip

The COCO folders may be links to those of a VQAv2 manual_dir (the same images).

Then: python -m datasets.build okvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# split -> (questions file, annotations file, image folder, image file prefix, required): `vqa.missing_in`'s table
_SPLITS = {
    "train": (
        "OpenEnded_mscoco_train2014_questions.json",
        "mscoco_train2014_annotations.json",
        "train2014",
        "COCO_train2014_",
        True,
    ),
    "validation": (
        "OpenEnded_mscoco_val2014_questions.json",
        "mscoco_val2014_annotations.json",
        "val2014",
        "COCO_val2014_",
        True,
    ),
}
# The `vqa` example's fields that OK-VQA has (its annotations have no "multiple_choice_answer").
_FEATURES = (
    "image",
    "question",
    "question_id",
    "image_id",
    "answers",
    "answer_confidences",
    "answer_type",
    "question_type",
)


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return vqa.missing_in(manual_dir, _SPLITS)


class Builder(tfds.core.GeneratorBasedBuilder):
    """OK-VQA v1.1, one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official OK-VQA v1.1 questions/annotations with the COCO 2014 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://okvqa.allenai.org",
            features=vqa.features(_FEATURES),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        for key, example in vqa.generate_examples(DATASET, manual_dir, *_SPLITS[split][:4]):
            yield key, {name: example[name] for name in _FEATURES}
