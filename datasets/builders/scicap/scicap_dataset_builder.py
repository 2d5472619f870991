"""TFDS builder for SciCap (https://github.com/tingyaohsu/SciCap), first sentence, no subfigure, official files.

SciCap pairs graph plots from arXiv computer-science papers with their captions. This builds the subset of the
model card's row: the figure lists of the "First-Sentence" experiment, figures without subfigures. Nothing is
downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build scicap --data_dir DIR --manual_dir MANUAL_DIR`.

One example per figure:
  image              the figure, as stored (PNG bytes, not re-encoded)
  image_id           the figure's file name without .png, e.g. "1001.0025v1-Figure5-1"
  caption            the caption as SciCap preprocessed it (lower-cased, tokenized, figure index removed: the
                     "1-lowercase-and-token-and-remove-figure-index" caption of the figure's JSON file; the text that
                     big_vision's SciCap transfer trains on and scores against)
  caption/original   the caption as extracted from the paper ("0-originally-extracted")

Splits, each built when its figure list is present: train (106,834 figures), validation (13,354) and test (13,355).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "SciCap"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download scicap_data.zip (about 18 GB) from the link in https://github.com/tingyaohsu/SciCap ("Download the
Dataset") and unzip it; the manual_dir is the unzipped scicap_data/ folder (or the folder holding it):

  manual_dir/
    List-of-Files-for-Each-Experiments/First-Sentence/No-Subfig/train/file_idx.json   (train split)
                                                   .../No-Subfig/val/file_idx.json     (validation split)
                                                   .../No-Subfig/test/file_idx.json    (test split)
    SciCap-Caption-All/train/<figure>.json, val/, test/      (one caption file per figure)
    SciCap-No-Subfig-Img/train/<figure>.png, val/, test/     (the figures)

The split folders may be capitalised (Train/, Val/, Test/). Each file_idx.json is a JSON list of figure file names
("<figure>.png"); any split may be left out. The Yes-Subfig images and the arXiv metadata are not used.

Then: python -m datasets.build scicap --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

LISTS = ("List-of-Files-for-Each-Experiments", "First-Sentence", "No-Subfig")
CAPTIONS = "SciCap-Caption-All"
IMAGES = "SciCap-No-Subfig-Img"
# TFDS split -> the official split folder
_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def subdir(parent: str, name: str) -> str | None:
    """`parent/name`, matching `name` regardless of case ("val" finds "Val"), or None."""
    path = os.path.join(parent, name)
    if os.path.isdir(path):
        return path
    if os.path.isdir(parent):
        for entry in sorted(os.listdir(parent)):
            if entry.lower() == name.lower() and os.path.isdir(os.path.join(parent, entry)):
                return os.path.join(parent, entry)
    return None


def data_root(manual_dir: str) -> str:
    """manual_dir, or manual_dir/scicap_data when that holds the release."""
    nested = os.path.join(manual_dir, "scicap_data")
    return nested if os.path.isdir(nested) and not os.path.isdir(os.path.join(manual_dir, CAPTIONS)) else manual_dir


def find_list(manual_dir: str, folder: str) -> str | None:
    """Path of a split's file_idx.json (the First-Sentence / No-Subfig figure list), or None."""
    directory = data_root(manual_dir)
    for name in (*LISTS, folder):
        directory = subdir(directory, name)
        if directory is None:
            return None
    path = os.path.join(directory, "file_idx.json")
    return path if os.path.isfile(path) else None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [folder for folder in _SPLITS.values() if find_list(manual_dir, folder)]
    if not present:
        return ["/".join(LISTS) + "/{train,val,test}/file_idx.json"]
    root = data_root(manual_dir)
    missing = []
    for top in (CAPTIONS, IMAGES):
        for folder in present:
            if subdir(root, top) is None or subdir(subdir(root, top), folder) is None:
                missing.append(f"{top}/{folder}/")
    return missing


class Builder(tfds.core.GeneratorBasedBuilder):
    """SciCap, first sentence, no subfigure: one example per figure with its caption."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official SciCap release, First-Sentence / No-Subfig figure lists."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_list)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/tingyaohsu/SciCap",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="png"),
                    "image_id": tfds.features.Text(),
                    "caption": tfds.features.Text(),
                    "caption/original": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        root, folder = data_root(manual_dir), _SPLITS[split]
        captions = subdir(subdir(root, CAPTIONS), folder)
        images = subdir(subdir(root, IMAGES), folder)
        names = common.load_json(path, DATASET, expect=list, what="an official SciCap figure list (a JSON list)")
        for name in names:
            if not isinstance(name, str) or not name.endswith(".png"):
                raise ValueError(f"{DATASET}: {path}: {name!r} is not a figure file name (<figure>.png)")
            figure = name[: -len(".png")]
            caption_file = os.path.join(captions, f"{figure}.json")
            what = "an official SciCap caption file (a JSON object per figure)"
            record = common.load_json(caption_file, DATASET, expect=dict, what=what)
            processed = common.field(record, "1-lowercase-and-token-and-remove-figure-index", caption_file, DATASET)
            if not isinstance(processed, dict) or not isinstance(processed.get("caption"), str):
                raise ValueError(f"{DATASET}: {caption_file} is not {what} (no processed caption)")
            yield (
                figure,
                {
                    "image": common.read_bytes(
                        os.path.join(images, name), DATASET, what="image", context=f"(listed in {path})"
                    ),
                    "image_id": figure,
                    "caption": processed["caption"],
                    "caption/original": str(record.get("0-originally-extracted", "")),
                },
            )
