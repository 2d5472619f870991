"""TFDS builder for VQAv2 (https://visualqa.org), from the official JSON files and the COCO images.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build vqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image                   the COCO JPEG, as stored (not re-encoded)
  question                text
  question_id, image_id   int64 (the official ids)
  answers                 the 10 human answers (empty for the test splits)
  answer_confidences      their "yes" / "maybe" / "no" confidences
  multiple_choice_answer  the most frequent answer ("" for test)
  answer_type             "yes/no", "number" or "other" ("" for test)
  question_type           e.g. "what color is the" ("" for test)

Splits: train (443,757 questions, COCO train2014), validation (214,354, val2014), and when their question files are
present test_dev (107,394) and test (447,793), both on COCO test2015. Every example carries its image, so the
prepared train split is large (roughly 70 GB); build on a disk with room.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download from https://visualqa.org/download.html (VQAv2 "Balanced Real Images") and https://cocodataset.org/#download
and unzip into one folder (the manual_dir) so that it holds:

  manual_dir/
    v2_OpenEnded_mscoco_train2014_questions.json      <- v2_Questions_Train_mscoco.zip
    v2_OpenEnded_mscoco_val2014_questions.json        <- v2_Questions_Val_mscoco.zip
    v2_mscoco_train2014_annotations.json              <- v2_Annotations_Train_mscoco.zip
    v2_mscoco_val2014_annotations.json                <- v2_Annotations_Val_mscoco.zip
    v2_OpenEnded_mscoco_test-dev2015_questions.json   <- v2_Questions_Test_mscoco.zip  (optional: test_dev split)
    v2_OpenEnded_mscoco_test2015_questions.json       <- v2_Questions_Test_mscoco.zip  (optional: test split)
    train2014/COCO_train2014_000000xxxxxx.jpg         <- http://images.cocodataset.org/zips/train2014.zip
    val2014/COCO_val2014_000000xxxxxx.jpg             <- http://images.cocodataset.org/zips/val2014.zip
    test2015/COCO_test2015_000000xxxxxx.jpg           <- http://images.cocodataset.org/zips/test2015.zip (optional)

Then: python -m datasets.build vqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# split -> (questions file, annotations file or None, image folder, image file prefix, required)
_SPLITS = {
    "train": (
        "v2_OpenEnded_mscoco_train2014_questions.json",
        "v2_mscoco_train2014_annotations.json",
        "train2014",
        "COCO_train2014_",
        True,
    ),
    "validation": (
        "v2_OpenEnded_mscoco_val2014_questions.json",
        "v2_mscoco_val2014_annotations.json",
        "val2014",
        "COCO_val2014_",
        True,
    ),
    "test_dev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None, "test2015", "COCO_test2015_", False),
    "test": ("v2_OpenEnded_mscoco_test2015_questions.json", None, "test2015", "COCO_test2015_", False),
}


def missing_in(manual_dir: str, splits: dict) -> list[str]:
    """The required files/folders of a split table that are not in manual_dir (empty: ready to build).

    `splits`: {split: (questions file, annotations file or None, image folder, image file prefix, required)}; an
    optional split counts only when its question file is there.
    """
    missing = []
    for questions, annotations_file, image_dir, _, required in splits.values():
        names = [questions] + ([annotations_file] if annotations_file else [])
        if not required:
            if not os.path.exists(os.path.join(manual_dir, questions)):
                continue  # optional split, not provided
            names = []
        for name in names:
            if not os.path.isfile(os.path.join(manual_dir, name)):
                missing.append(name)
        if not os.path.isdir(os.path.join(manual_dir, image_dir)) and image_dir + "/" not in missing:
            missing.append(image_dir + "/")
    return missing


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return missing_in(manual_dir, _SPLITS)


def features(names: tuple[str, ...] | None = None) -> tfds.features.FeaturesDict:
    """The features of the VQA format (all of `Builder`'s, or those of `names`: another data set's, e.g. OK-VQA)."""
    all_features = {
        "image": tfds.features.Image(encoding_format="jpeg"),
        "question": tfds.features.Text(),
        "question_id": np.int64,
        "image_id": np.int64,
        "answers": tfds.features.Sequence(tfds.features.Text()),
        "answer_confidences": tfds.features.Sequence(tfds.features.Text()),
        "multiple_choice_answer": tfds.features.Text(),
        "answer_type": tfds.features.Text(),
        "question_type": tfds.features.Text(),
    }
    return tfds.features.FeaturesDict({k: v for k, v in all_features.items() if names is None or k in names})


def generate_examples(dataset: str, manual_dir: str, questions_file, annotations_file, image_dir, prefix):
    """(question_id, example) of each question of a split in the VQA format (VQAv2, OK-VQA).

    `questions_file` holds {"questions": [{"question_id", "image_id", "question"}]}, `annotations_file` (None for test
    splits) {"annotations": [{"question_id", "answers": [{"answer", "answer_confidence"}], ...}]}; the image of
    `image_id` is `manual_dir/image_dir/<prefix><image_id, 12 digits>.jpg` (the COCO file names). Examples carry
    every feature of `Builder` ("" / [] where the files have no value). `dataset` names the data set in errors.
    """
    what = f"an official {dataset} question file"
    questions_path = os.path.join(manual_dir, questions_file)
    questions = common.load_json(questions_path, dataset, expect=dict, keys=("questions",), what=what)["questions"]
    annotations, annotations_path = {}, None
    if annotations_file:
        annotations_path = os.path.join(manual_dir, annotations_file)
        what = f"an official {dataset} annotation file"
        content = common.load_json(annotations_path, dataset, expect=dict, keys=("annotations",), what=what)
        annotations = {
            int(common.field(a, "question_id", annotations_path, dataset)): a for a in content["annotations"]
        }
    read = common.LastFileReader(dataset)  # questions come grouped by image: read each image once in a row
    for q in questions:
        question_id = int(common.field(q, "question_id", questions_path, dataset))
        image_id = int(common.field(q, "image_id", questions_path, dataset))
        path = os.path.join(manual_dir, image_dir, f"{prefix}{image_id:012d}.jpg")
        image = read(path, what="image", context=f"of question {question_id}")
        a = annotations.get(question_id)
        if annotations and a is None:
            raise ValueError(f"{dataset}: question {question_id} has no annotation in {annotations_file}")
        answers = common.field(a, "answers", annotations_path, dataset) if a else []
        yield (
            question_id,
            {
                "image": image,
                "question": common.field(q, "question", questions_path, dataset),
                "question_id": question_id,
                "image_id": image_id,
                "answers": [common.field(x, "answer", annotations_path, dataset) for x in answers],
                "answer_confidences": [x.get("answer_confidence", "") for x in answers],
                "multiple_choice_answer": a.get("multiple_choice_answer", "") if a else "",
                "answer_type": a.get("answer_type", "") if a else "",
                "question_type": a.get("question_type", "") if a else "",
            },
        )


class Builder(tfds.core.GeneratorBasedBuilder):
    """VQAv2 (balanced real images), one example per question."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official VQAv2 questions/annotations with COCO 2014/2015 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://visualqa.org",
            features=features(),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        missing = missing_manual_files(manual_dir)
        if missing:
            raise FileNotFoundError(
                f"VQAv2: missing in manual_dir {manual_dir}: {', '.join(missing)}\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return {
            split: self._generate_examples(manual_dir, *spec[:4])
            for split, spec in _SPLITS.items()
            if os.path.isfile(os.path.join(manual_dir, spec[0]))
        }

    def _generate_examples(self, manual_dir, questions_file, annotations_file, image_dir, prefix):
        return generate_examples("VQAv2", manual_dir, questions_file, annotations_file, image_dir, prefix)
