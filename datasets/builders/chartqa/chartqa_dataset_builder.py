"""TFDS builder for ChartQA (https://github.com/vis-nlp/ChartQA), from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build chartqa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question, the human-written and the augmented (machine-generated) questions together:
  image        the chart, as stored (PNG bytes, not re-encoded)
  question     text (the file's "query")
  answers      the one official answer (the file's "label") as a list of one, e.g. ["17"], ["Yes"]
  source       "human" (from `<split>_human.json`) or "augmented" (from `<split>_augmented.json`)
  question_id  "<source>_<k>": the k-th entry (from 0) of its file (the release has no question ids)
  imgname      the chart's file name in png/

Splits, each built when its folder is present: train (7,398 human + 20,901 augmented questions), validation
(960 + 960) and test (1,250 + 1,250). ChartQA's reported number is the mean of the relaxed accuracy on the
human and on the augmented test questions: select them with `source`.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "ChartQA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the ChartQA dataset (the "ChartQA Dataset" folder linked from https://github.com/vis-nlp/ChartQA, also at
https://huggingface.co/datasets/ahmed-masry/ChartQA as "ChartQA Dataset.zip") and extract it; the manual_dir is the
folder that holds train/, val/ and test/:

  manual_dir/
    train/train_human.json, train/train_augmented.json, train/png/<imgname>     (train split)
    val/val_human.json, val/val_augmented.json, val/png/<imgname>               (validation split)
    test/test_human.json, test/test_augmented.json, test/png/<imgname>          (test split)

Any split folder may be left out; at least one is needed. The annotations/ and tables/ folders are not used.

Then: python -m datasets.build chartqa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLITS = {"train": "train", "validation": "val", "test": "test"}  # TFDS split -> folder
SOURCES = ("human", "augmented")
_WHAT = 'an official ChartQA file (expected a JSON array of {"imgname", "query", "label"} objects)'


def _files(folder: str) -> list[str]:
    return [f"{folder}/{folder}_{source}.json" for source in SOURCES] + [f"{folder}/png/"]


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [folder for folder in _SPLITS.values() if os.path.isdir(os.path.join(manual_dir, folder))]
    if not present:
        return [" or ".join(f"{folder}/" for folder in _SPLITS.values())]
    return common.missing_files(manual_dir, [name for folder in present for name in _files(folder)])


def _split_generators(builder, dl_manager):
    manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {
        split: builder._generate_examples(os.path.join(manual_dir, folder))
        for split, folder in _SPLITS.items()
        if os.path.isdir(os.path.join(manual_dir, folder))
    }


class Builder(tfds.core.GeneratorBasedBuilder):
    """ChartQA, one example per question (human and augmented)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official ChartQA human and augmented questions with their charts."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = _split_generators

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/vis-nlp/ChartQA",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "source": tfds.features.Text(),
                    "question_id": tfds.features.Text(),
                    "imgname": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, folder):
        split = os.path.basename(folder)
        read = common.LastFileReader(DATASET)
        for source in SOURCES:
            path = os.path.join(folder, f"{split}_{source}.json")
            for k, entry in enumerate(common.load_records(path, DATASET, what=_WHAT)):
                question_id = f"{source}_{k}"
                name = str(common.field(entry, "imgname", path, DATASET))
                yield (
                    question_id,
                    {
                        "image": read(
                            os.path.join(folder, "png", name), what="chart", context=f"of entry {k} of {path}"
                        ),
                        "question": common.field(entry, "query", path, DATASET),
                        "answers": [str(common.field(entry, "label", path, DATASET))],
                        "source": source,
                        "question_id": question_id,
                        "imgname": name,
                    },
                )
