"""TFDS builder for OCR-VQA (https://ocr-vqa.github.io), from the official dataset.json and the book covers.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build ocrvqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  image        the book cover, as downloaded (JPEG, sometimes PNG or GIF; not re-encoded)
  image_id     the cover's key in dataset.json (an Amazon id, e.g. "0001055178")
  question     text, e.g. "Who wrote this book?", "Is this a comedy book?"
  question_id  "<image_id>_<k>": the k-th question (from 0) of that cover (the release has no question ids)
  answers      the one official answer, as a list of one (e.g. ["Sarah Waters"], ["Yes"])

Splits, by cover as dataset.json's "split" code says (1 train, 2 validation, 3 test): about 80% / 10% / 10% of the
207,572 covers, that is about 800k / 100k / 100k of the 1,002,146 questions. The covers are fetched from Amazon by
the release's script and some addresses no longer answer: the questions of a cover that is not in images/ are left
out, with one warning per split that counts them (an error when a split would be empty).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds
from absl import logging

from datasets.builders import common

DATASET = "OCR-VQA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Get dataset.json and loadDataset.py from https://ocr-vqa.github.io (the "Download" Google Drive folder) and run the
script there: it fetches every cover from its "imageURL" into images/<key><extension of the URL>. The manual_dir then
holds:

  manual_dir/
    dataset.json                  <- the official annotations: {key: {"imageURL", "questions", "answers", "title",
                                     "authorName", "genre", "split"}, ...}
    images/<key>.jpg              <- loadDataset.py (a few covers may be .png or .gif; missing ones are skipped)

Then: python -m datasets.build ocrvqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}
_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
_WHAT = "the official OCR-VQA dataset.json (a JSON object: cover id -> questions, answers, split)"


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return common.missing_files(manual_dir, ["dataset.json", "images/"])


def find_cover(folder: str, key: str, url: str) -> str | None:
    """`folder/<key><ext>`: the extension of `url` first (as loadDataset.py names files), then the usual ones."""
    url_ext = os.path.splitext(url.split("?")[0])[1]
    return common.find_file(folder, key, tuple(dict.fromkeys((url_ext, *_EXTENSIONS))) if url_ext else _EXTENSIONS)


def _covers(path: str) -> dict:
    content = common.load_json(path, DATASET, expect=dict, what=_WHAT)
    for key, cover in content.items():
        for name in ("questions", "answers", "split"):
            common.field(cover, name, path, DATASET)
        if not isinstance(cover["questions"], list) or len(cover["questions"]) != len(cover["answers"]):
            raise ValueError(f"{DATASET}: {path}: cover {key} does not have one answer per question")
    return content


def _split_generators(builder, dl_manager):
    manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
    covers = _covers(os.path.join(manual_dir, "dataset.json"))
    return {split: builder._generate_examples(manual_dir, split, covers) for split in _SPLIT_CODES}


class Builder(tfds.core.GeneratorBasedBuilder):
    """OCR-VQA, one example per question about a book cover."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official OCR-VQA dataset.json with the downloaded covers."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = _split_generators

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://ocr-vqa.github.io",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "image_id": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "question_id": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, covers):
        folder = os.path.join(manual_dir, "images")
        code = _SPLIT_CODES[split]
        absent, left_out, total = [], 0, 0
        for key, cover in covers.items():
            if int(cover["split"]) != code:
                continue
            total += len(cover["questions"])
            path = find_cover(folder, key, str(cover.get("imageURL") or ""))
            if path is None:
                absent.append(key)
                left_out += len(cover["questions"])
                continue
            image = common.read_bytes(path, DATASET, what="cover")
            for k, (question, answer) in enumerate(zip(cover["questions"], cover["answers"])):
                question_id = f"{key}_{k}"
                yield (
                    question_id,
                    {
                        "image": image,
                        "image_id": key,
                        "question": question,
                        "question_id": question_id,
                        "answers": [str(answer)],
                    },
                )
        if absent and left_out >= total:
            raise FileNotFoundError(f"{DATASET}: none of the covers of the {split} split is in {folder}")
        if absent:
            shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
            logging.warning(
                "%s: %d covers of the %s split are not in %s (%s); their %d of %d questions are left out.",
                *(DATASET, len(absent), split, folder, shown, left_out, total),
            )
