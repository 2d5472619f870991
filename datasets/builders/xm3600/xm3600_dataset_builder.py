"""TFDS builder for Crossmodal-3600 (XM3600, https://google.github.io/crossmodal-3600/), from the official files.

XM3600 is an evaluation set: 3,600 Open Images photos from around the world, each captioned by native speakers in
36 languages (261,375 captions). Nothing is downloaded by the builder: put the files in a manual_dir (see
MANUAL_DOWNLOAD_INSTRUCTIONS) and run `python -m datasets.build xm3600 --data_dir DIR --manual_dir MANUAL_DIR`.

One example per (image, language):
  image               the photo, as stored (JPEG bytes, not re-encoded)
  image/id            the official image key, e.g. "000411001ff7dd4f" (the file name without .jpg)
  id                  "<image key>_<language>", e.g. "000411001ff7dd4f_fil" (unique)
  language            the language code: the 35 of COCO-35L (`datasets.builders.coco35l.LANGUAGES`) and "quz"
                      (Cusco Quechua)
  captions            the captions in that language as the official file tokenizes them ("caption/tokenized":
                      words separated by spaces, also for languages written without them; the references of CIDEr)
  captions/original   the same captions as written ("caption")

One split, test: 3,600 images x 36 languages = 129,600 examples (the languages are told apart by `language`).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "XM3600"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the Crossmodal-3600 captions and images (https://google.github.io/crossmodal-3600/):

  https://google.github.io/crossmodal-3600/web-data/captions.zip            (unzip: captions.jsonl)
  https://open-images-dataset.s3.amazonaws.com/crossmodal-3600/images.tgz   (untar into images/)

into one folder (the manual_dir) so that it holds:

  manual_dir/
    captions.jsonl                 <- captions.zip
    images/<image key>.jpg         <- images.tgz (3,600 files, e.g. images/000411001ff7dd4f.jpg)

Each line of captions.jsonl is one image: {"image/key": ..., "image/locale": ..., "<language>": {"caption": [...],
"caption/tokenized": [...], ...}, ...} for the 36 languages.

Then: python -m datasets.build xm3600 --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

CAPTIONS = "captions.jsonl"
IMAGES = "images"


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return common.missing_files(manual_dir, [CAPTIONS, f"{IMAGES}/"])


def languages(record: dict) -> list[str]:
    """The language codes of an image's record: its keys that hold a {"caption": [...]} object."""
    return [k for k, v in record.items() if isinstance(v, dict) and "caption" in v]


def _texts(value, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{DATASET}: {where} is not a list of captions: {str(value)[:200]}")
    return value


class Builder(tfds.core.GeneratorBasedBuilder):
    """Crossmodal-3600, one example per (image, language) with that language's captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official Crossmodal-3600 captions.jsonl with its images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, {"test": CAPTIONS}, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://google.github.io/crossmodal-3600/",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image/id": tfds.features.Text(),
                    "id": tfds.features.Text(),
                    "language": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "captions/original": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        what = "the official Crossmodal-3600 captions.jsonl (one JSON object per image)"
        records = common.load_records(path, DATASET, what=what)
        for record in records:
            key = str(common.field(record, "image/key", path, DATASET))
            langs = languages(record)
            if not langs:
                raise ValueError(f"{DATASET}: {path}: image {key} has no captions (no language entry); is it {what}?")
            image = common.read_bytes(
                os.path.join(manual_dir, IMAGES, f"{key}.jpg"), DATASET, what="image", context=f"(in {path})"
            )
            for language in langs:
                entry = record[language]
                where = f"{path}: the {language!r} captions of image {key}"
                original = _texts(entry["caption"], where)
                tokenized = _texts(entry.get("caption/tokenized", original), where)
                yield (
                    f"{key}_{language}",
                    {
                        "image": image,
                        "image/id": key,
                        "id": f"{key}_{language}",
                        "language": language,
                        "captions": tokenized,
                        "captions/original": original,
                    },
                )
