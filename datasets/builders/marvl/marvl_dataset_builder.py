"""TFDS builder for MaRVL (https://marvl-challenge.github.io), the multilingual NLVR2-style test sets.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build marvl --data_dir DIR --manual_dir MANUAL_DIR`.

One example per statement (the features of `nlvr2`, plus the language):
  images     the pair [left_img, right_img] of the statement's concept folder, as stored (JPEG bytes)
  question   the statement (caption) in its language
  answers    ["true"] or ["false"] (the official boolean label)
  id         the official example id, e.g. "id-17"
  language   id, sw, ta, tr or zh
  concept    the concept folder, e.g. "1-Bawang"

Splits, one per language, each built when its annotation file is present: test_id (Indonesian, 1,128 statements),
test_sw (Swahili, 1,108), test_ta (Tamil, 1,242), test_tr (Turkish, 1,180), test_zh (Mandarin Chinese, 1,012).
MaRVL has no training data: PaliGemma evaluates an NLVR2-trained model on it zero-shot.
"""

from __future__ import annotations

import os
import unicodedata

import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download MaRVL from its Dataverse portal, https://dataverse.scholarsportal.info/dataset.xhtml?persistentId=doi:10.5683/SP3/42VZ4P
(linked from https://marvl-challenge.github.io and marvl-challenge/marvl-code data/README.md): the annotations and
the images of each language (id, sw, ta, tr, zh). Extract them into one folder (the manual_dir):

  manual_dir/
    marvl-annotations/marvl-id.jsonl        <- the annotations (one JSON object per line; also accepted directly
    marvl-annotations/marvl-sw.jsonl           in manual_dir, or as IGLUE's zero_shot/annotations/)
    ...  marvl-ta.jsonl, marvl-tr.jsonl, marvl-zh.jsonl
    marvl-images/id/images/<concept>/<left_img or right_img>   <- the images (marvl-images/<lang>/images/...;
    marvl-images/sw/images/...                                    <lang>/images/... is accepted too)
    ...

Any language may be left out; at least one annotation file is needed. The extra/ folders are not used.

Then: python -m datasets.build marvl --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "MaRVL"
LANGUAGES = ("id", "sw", "ta", "tr", "zh")
_SPLITS = {f"test_{lang}": lang for lang in LANGUAGES}  # one test split per language
_ANNOTATION_DIRS = ("marvl-annotations", "", os.path.join("zero_shot", "annotations"))


def find_annotations(manual_dir: str, language: str) -> str | None:
    """Path of `marvl-<language>.jsonl` (marvl-annotations/, manual_dir or zero_shot/annotations/), or None."""
    for folder in _ANNOTATION_DIRS:
        path = os.path.join(manual_dir, folder, f"marvl-{language}.jsonl")
        if os.path.isfile(path):
            return path
    return None


def find_image_root(manual_dir: str, language: str) -> str | None:
    """The folder holding a language's concept folders (marvl-images/<lang>/images or <lang>/images), or None."""
    for path in (
        os.path.join(manual_dir, "marvl-images", language, "images"),
        os.path.join(manual_dir, language, "images"),
        os.path.join(manual_dir, "images", language, "images"),
    ):
        if os.path.isdir(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [lang for lang in LANGUAGES if find_annotations(manual_dir, lang)]
    if not present:
        return [" or ".join(f"marvl-annotations/marvl-{lang}.jsonl" for lang in LANGUAGES)]
    return [f"marvl-images/{lang}/images/" for lang in present if find_image_root(manual_dir, lang) is None]


def _image_path(root: str, concept: str, name: str) -> str:
    """`root/concept/name`, trying the NFC and NFD forms of the names (file systems store non-ASCII differently)."""
    first = os.path.join(root, concept, name)
    for form in ("NFC", "NFD"):
        path = os.path.join(root, unicodedata.normalize(form, concept), unicodedata.normalize(form, name))
        if os.path.isfile(path):
            return path
    return first


class Builder(tfds.core.GeneratorBasedBuilder):
    """MaRVL, one example per statement about an image pair; one split per language."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official MaRVL v1.0 annotations (id, sw, ta, tr, zh) with their images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_annotations)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://marvl-challenge.github.io",
            features=tfds.features.FeaturesDict(
                {
                    "images": tfds.features.Sequence(tfds.features.Image(), length=2),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                    "language": tfds.features.Text(),
                    "concept": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        language = _SPLITS[split]
        image_root = find_image_root(manual_dir, language)
        for index, record in enumerate(common.load_records(path, DATASET, what="an official MaRVL annotation file")):
            concept = str(common.field(record, "concept", path, DATASET))
            caption = common.field(record, "caption", path, DATASET)
            label = str(common.field(record, "label", path, DATASET)).strip().lower()
            if label not in ("true", "false"):
                raise ValueError(f"{DATASET}: {path}: label {record['label']!r} is neither true nor false")
            example_id = str(record.get("id", f"{language}-{index}"))
            images = [
                common.read_bytes(
                    _image_path(image_root, concept, str(common.field(record, key, path, DATASET))),
                    DATASET,
                    what="image",
                    context=f"of {example_id} ({path})",
                )
                for key in ("left_img", "right_img")
            ]
            yield (
                example_id,
                {
                    "images": images,
                    "question": caption,
                    "answers": [label],
                    "id": example_id,
                    "language": str(record.get("language", language)),
                    "concept": concept,
                },
            )
