"""TFDS builder for xGQA (https://github.com/adapter-hub/xGQA), the zero-shot test sets, with the GQA images.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build xgqa --data_dir DIR --manual_dir MANUAL_DIR`.

xGQA is GQA's balanced testdev set (12,578 questions on 398 images) with its questions translated into 7 languages;
the answers stay English. Its files have the GQA question-file format, read by the `gqa` builder's `gqa_examples`.
One example per question and language:
  image          the GQA JPEG, as stored (not re-encoded)
  question       text, in the split's language
  question_id    text, the GQA question id (the same question has the same id in every language)
  image_id       text, the GQA `imageId`
  answer         the English short answer (scored by exact match)
  full_answer    the English answer sentence
  structural_type, semantic_type, detailed_type
                 the GQA question types
  language       the split's language code (the per-language accuracy's key when splits are combined)

Splits: test_zs_<lang> for lang in bn, de, en, id, ko, pt, ru, zh (Bengali, German, English, Indonesian, Korean,
Portuguese, Russian, Chinese), each built when its file is present (at least one). These are the zero-shot test
files; the few-shot train/dev/test subsets of the release are not used.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common
from datasets.builders.gqa import gqa_dataset_builder as gqa

DATASET = "xGQA"
LANGUAGES = ("bn", "de", "en", "id", "ko", "pt", "ru", "zh")
MANUAL_DOWNLOAD_INSTRUCTIONS = """
The xGQA questions are in https://github.com/e-bug/iglue (datasets/xGQA/annotations/zero_shot/, one file per
language; xGQA's own repository https://github.com/adapter-hub/xGQA links the same files); the images are GQA's
(https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip). Put them in one folder (the manual_dir):

  manual_dir/
    annotations/zero_shot/testdev_balanced_questions_<lang>.json   <- iglue datasets/xGQA/annotations/zero_shot/
                                            (lang: bn, de, en, id, ko, pt, ru, zh; split test_zs_<lang>)
    images/<imageId>.jpg                    <- GQA's images.zip (only the 398 testdev images are used; a link to
                                               a GQA manual_dir's images/ works)

The question files may also sit in manual_dir/zero_shot/ or directly in manual_dir. Any language may be left out;
at least one file is needed.

Then: python -m datasets.build xgqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""


def find_questions(manual_dir: str, lang: str) -> str | None:
    """Path of a language's zero-shot question file (annotations/zero_shot/, zero_shot/ or manual_dir), or None."""
    name = f"testdev_balanced_questions_{lang}.json"
    for folder in (os.path.join(manual_dir, "annotations", "zero_shot"), os.path.join(manual_dir, "zero_shot")):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    path = os.path.join(manual_dir, name)
    return path if os.path.isfile(path) else None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    if not any(find_questions(manual_dir, lang) for lang in LANGUAGES):
        missing.append("annotations/zero_shot/testdev_balanced_questions_<lang>.json (any of the 8 languages)")
    if not os.path.isdir(os.path.join(manual_dir, "images")):
        missing.append("images/")
    return missing


class Builder(tfds.core.GeneratorBasedBuilder):
    """xGQA zero-shot test sets, one split per language."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "xGQA zero-shot test questions in 8 languages with the GQA images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(
        DATASET,
        {f"test_zs_{lang}": lang for lang in LANGUAGES},
        missing_manual_files,
        find=find_questions,
    )

    def _info(self) -> tfds.core.DatasetInfo:
        features = gqa.features()
        features = tfds.features.FeaturesDict({**features, "language": tfds.features.Text()})
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/adapter-hub/xGQA",
            features=features,
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        lang = split.removeprefix("test_zs_")
        for key, example in gqa.gqa_examples(path, os.path.join(manual_dir, "images"), DATASET):
            yield key, {**example, "language": lang}
