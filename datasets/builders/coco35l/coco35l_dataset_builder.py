"""TFDS builder for COCO-35L (https://google.github.io/crossmodal-3600/), from the official files.

COCO-35L is COCO 2014 with the English captions of the Karpathy splits machine-translated into 34 other languages
(released by Google with Crossmodal-3600 and used by PaLI / PaliGemma). Nothing is downloaded by the builder: put
the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build coco35l --data_dir DIR --manual_dir MANUAL_DIR`.

One example per (image, language):
  image       the COCO 2014 file, as stored (JPEG bytes, not re-encoded)
  image/id    int64, the COCO image id
  id          "<image id>_<language>", e.g. "391895_de" (unique in a split)
  language    the language code, one of the 35 in `LANGUAGES` ("en" for the English source captions)
  captions    the image's captions in that language, tokenized as in the official files (words separated by
              spaces, also for languages written without them); usually 5

The English captions are the source side of the translation pairs (`caption_tokenized`), the others the
translations (`translation_tokenized` of the pairs whose `trg_lang` is that language).

Splits, each built when its file is present: train (`coco_mt_train.jsonl`: the 113,287 Karpathy train+restval
images, 566,435 captions per language) and validation (`coco_mt_dev.jsonl`, the dev set of the model card's
"CIDEr dev": a held-out set of Karpathy-split COCO images, the same images in every language; `python -m
datasets.build` prints each split's count). Every split holds each of its images once per language (35 times): a
train split of 35 x 113,287 = 3,965,045 examples, each with its own copy of the JPEG (about 35 x 18 GB on disk;
big_vision's per-language splits store them the same way).
"""

from __future__ import annotations

import bz2
import json
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "COCO-35L"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
COCO-35L's captions come from the Crossmodal-3600 release (https://google.github.io/crossmodal-3600/), its images
from COCO 2014 (https://cocodataset.org/#download). Download into one folder (the manual_dir):

  https://storage.googleapis.com/crossmodal-3600/coco_mt_train.jsonl.bz2   (train split)
  https://storage.googleapis.com/crossmodal-3600/coco_mt_dev.jsonl.bz2     (validation split)
  http://images.cocodataset.org/zips/train2014.zip and val2014.zip        (unzip both)

so that it holds:

  manual_dir/
    coco_mt_train.jsonl               <- coco_mt_train.jsonl.bz2 (the .bz2 itself is read too, no need to unpack)
    coco_mt_dev.jsonl                 <- coco_mt_dev.jsonl.bz2
    train2014/COCO_train2014_000000xxxxxx.jpg   <- train2014.zip
    val2014/COCO_val2014_000000xxxxxx.jpg       <- val2014.zip

The image folders may also sit in manual_dir/images/. Either caption file may be left out (its split is then not
built); both image folders are needed (the Karpathy splits draw on both). Each line of a caption file is one
translation pair: {"image_id": "<COCO id>_<n>", "src_lang": "en", "caption_tokenized": ..., "trg_lang": "de",
"translation_tokenized": ...}.

Then: python -m datasets.build coco35l --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# The 35 languages of COCO-35L: English and the 34 languages it was translated into.
LANGUAGES = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr", "hu", "id", "it",
    "ja", "ko", "mi", "nl", "no", "pl", "pt", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip
# The English source captions are read from the pairs of one target language (each source caption comes once per
# target language).
ENGLISH_FROM = "de"
# TFDS split -> the official file's stem
_SPLITS = {"train": "coco_mt_train", "validation": "coco_mt_dev"}
_IMAGE_FOLDERS = ("train2014", "val2014")


def find_captions(manual_dir: str, stem: str) -> str | None:
    """Path of `<stem>.jsonl` (or the downloaded `<stem>.jsonl.bz2`) in manual_dir, or None."""
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.bz2"):
        path = os.path.join(manual_dir, name)
        if os.path.isfile(path):
            return path
    return None


def image_root(manual_dir: str) -> str | None:
    """The folder holding train2014/ and val2014/ (manual_dir or manual_dir/images), or None."""
    for root in (manual_dir, os.path.join(manual_dir, "images")):
        if all(os.path.isdir(os.path.join(root, folder)) for folder in _IMAGE_FOLDERS):
            return root
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    if not any(find_captions(manual_dir, stem) for stem in _SPLITS.values()):
        missing.append(" or ".join(f"{stem}.jsonl" for stem in _SPLITS.values()))
    if image_root(manual_dir) is None:
        missing += [f"{folder}/" for folder in _IMAGE_FOLDERS if not os.path.isdir(os.path.join(manual_dir, folder))]
    return missing


def read_pairs(path: str) -> Iterator[tuple[int, str, str, str]]:
    """(COCO image id, target language, English caption, translation) of each line of an official caption file."""
    what = "an official COCO-35L caption file (JSON lines of translation pairs)"
    opener = bz2.open if path.endswith(".bz2") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(
                        f"{DATASET}: {path} line {number} is not a JSON object ({e}); is it {what}?"
                    ) from None
                where = f"{path} line {number}"
                image_id = str(common.field(record, "image_id", where, DATASET))
                try:
                    coco_id = int(image_id.split("_")[0])
                except ValueError:
                    raise ValueError(
                        f"{DATASET}: {where}: image_id {image_id!r} does not start with a COCO id"
                    ) from None
                yield (
                    coco_id,
                    str(common.field(record, "trg_lang", where, DATASET)),
                    common.field(record, "caption_tokenized", where, DATASET),
                    common.field(record, "translation_tokenized", where, DATASET),
                )
    except (UnicodeDecodeError, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{DATASET}: {path} cannot be read ({e}); is it {what}?") from None


def captions_of(path: str, language: str) -> dict[int, list[str]]:
    """{COCO id: captions in `language`} of a caption file, in file order (one pass over the file)."""
    captions: dict[int, list[str]] = {}
    source = language == "en"
    for coco_id, target, english, translation in read_pairs(path):
        if target == (ENGLISH_FROM if source else language):
            captions.setdefault(coco_id, []).append(english if source else translation)
    return captions


def image_path(root: str, coco_id: int) -> str | None:
    """The COCO 2014 file of `coco_id` (train2014/ or val2014/), or None."""
    for folder in _IMAGE_FOLDERS:
        path = os.path.join(root, folder, f"COCO_{folder}_{coco_id:012d}.jpg")
        if os.path.isfile(path):
            return path
    return None


class Builder(tfds.core.GeneratorBasedBuilder):
    """COCO-35L, one example per (image, language) with that language's captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official COCO-35L train/dev caption files with the COCO 2014 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_captions)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://google.github.io/crossmodal-3600/",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image/id": np.int64,
                    "id": tfds.features.Text(),
                    "language": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        root = image_root(manual_dir)
        read = common.LastFileReader(DATASET)
        # One pass over the file per language: only one language's captions are held in memory at a time.
        for language in LANGUAGES:
            for coco_id, captions in captions_of(path, language).items():
                file = image_path(root, coco_id)
                if file is None:
                    raise FileNotFoundError(
                        f"{DATASET}: image COCO_train2014_{coco_id:012d}.jpg / COCO_val2014_{coco_id:012d}.jpg "
                        f"(COCO id {coco_id} in {path}) not found in {root}/train2014 or val2014"
                    )
                key = f"{coco_id}_{language}"
                yield (
                    key,
                    {
                        "image": read(file, what="image"),
                        "image/id": coco_id,
                        "id": key,
                        "language": language,
                        "captions": captions,
                    },
                )
