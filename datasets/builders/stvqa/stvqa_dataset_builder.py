"""TFDS builder for ST-VQA, task 3 "open dictionary" (https://rrc.cvc.uab.es/?ch=11), from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build stvqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image        the picture, as stored: the release's copy, or for COCO-Text pictures the full-size COCO train2014
               file when manual_dir/train2014/ is there (the release's COCO-Text copies are downscaled; the
               original PaliGemma transfer used COCO's)
  question     text
  question_id  int64, the official `question_id` (the key of the test server's submission file)
  answers      the accepted answers, as in the file (empty for test)
  file_path    the entry's `file_path`, e.g. "coco-text/COCO_train2014_000000135143.jpg"

Splits: the release has train (26,074 questions) and test (4,070, no answers: the test server scores it) only.
As the original transfer did, a validation split is held out of train, by picture: the questions on the pictures
whose `file_path` has `zlib.crc32(file_path) % 10 == 0` (about a tenth) form `validation`, the rest `train`.
(The original held out 2,628 questions on a list of pictures that was not published, so the two held-out sets
differ.) train + validation is the whole official train set.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "ST-VQA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Register at https://rrc.cvc.uab.es/?ch=11 (Downloads): take the task 3 annotations (train_task_3.json,
test_task_3.json) and the train and test images, and extract them into one folder (the manual_dir):

  manual_dir/
    train_task_3.json                         <- the task 3 training annotations (train and validation splits)
    test_task_3.json                          <- the task 3 test annotations (test split, no answers)
    train_images/<file_path>                  <- the training images (coco-text/, visual7w/, imageNet/, ...)
    test_task3_images/<file_path>             <- the task 3 test images
    train2014/COCO_train2014_xxxxxxxxxxxx.jpg <- optional, recommended: http://images.cocodataset.org/zips/train2014.zip

Each question's picture is <images folder>/<its "file_path">. With train2014/ present, the COCO-Text pictures
("file_path" coco-text/...) are read from it instead, at full size (every COCO-Text picture is a COCO train2014
one). Either JSON file may be left out (its splits are not built).

Then: python -m datasets.build stvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# official file -> (its image folder, the TFDS splits built from it)
_FILES = {
    "train_task_3.json": ("train_images", ("train", "validation")),
    "test_task_3.json": ("test_task3_images", ("test",)),
}
_COCO = "train2014"
_WHAT = 'an official ST-VQA task 3 file (expected a JSON object with a "data" list of questions)'


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [name for name in _FILES if os.path.isfile(os.path.join(manual_dir, name))]
    if not present:
        return [" or ".join(_FILES)]
    return common.missing_files(manual_dir, [_FILES[name][0] + "/" for name in present])


def held_out(file_path: str) -> bool:
    """Whether a training picture's questions belong to the validation split (about 1 picture in 10)."""
    return zlib.crc32(file_path.encode("utf-8")) % 10 == 0


def image_path(manual_dir: str, folder: str, file_path: str) -> str:
    """Where a question's picture is: COCO's full-size file for COCO-Text when train2014/ is there, else the copy."""
    coco = os.path.join(manual_dir, _COCO)
    if file_path.startswith("coco-text/") and os.path.isdir(coco):
        return os.path.join(coco, os.path.basename(file_path))
    return os.path.join(manual_dir, folder, file_path)


def _split_generators(builder, dl_manager):
    manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
    generators = {}
    for name, (_, splits) in _FILES.items():
        path = os.path.join(manual_dir, name)
        if os.path.isfile(path):
            generators.update({split: builder._generate_examples(manual_dir, split, path) for split in splits})
    return generators


class Builder(tfds.core.GeneratorBasedBuilder):
    """ST-VQA task 3, one example per question; validation held out of train by picture."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official ST-VQA task 3 questions; validation = the train pictures with crc32 % 10 == 0."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = _split_generators

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://rrc.cvc.uab.es/?ch=11",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "question_id": np.int64,
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "file_path": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        folder = _FILES[os.path.basename(path)][0]
        read = common.LastFileReader(DATASET)
        for q in common.load_data(path, DATASET, what=_WHAT):
            file_path = str(common.field(q, "file_path", path, DATASET))
            if split != "test" and held_out(file_path) != (split == "validation"):
                continue
            question_id = int(common.field(q, "question_id", path, DATASET))
            image = read(
                image_path(manual_dir, folder, file_path),
                what="image",
                context=f"of question {question_id} ({path})",
            )
            yield (
                question_id,
                {
                    "image": image,
                    "question": common.field(q, "question", path, DATASET),
                    "question_id": question_id,
                    "answers": list(q.get("answers") or []),
                    "file_path": file_path,
                },
            )
