"""TFDS builder for TextCaps 0.1 (https://textvqa.org/textcaps/), from the official files.

TextCaps captions photos whose description needs the text in them (the TextVQA images, from Open Images).
Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build textcaps --data_dir DIR --manual_dir MANUAL_DIR`.

One example per image:
  image       the TextVQA image, as stored (JPEG bytes, not re-encoded)
  image_id    the official image id, e.g. "011e7e629fb9ae7b" (the `image_id` of the test server's entries)
  captions    the image's reference captions (`caption_str`) in file order: usually 5 per train/validation
              image; empty for test

Splits, each built when its JSON file is present: train (21,953 images, 109,765 captions), validation (3,166
images) and test (3,289 images, no captions: scored by the evaluation server).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "TextCaps"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the TextCaps 0.1 annotations and the TextVQA images (https://textvqa.org/textcaps/dataset/):

  https://dl.fbaipublicfiles.com/textvqa/data/textcaps/TextCaps_0.1_train.json
  https://dl.fbaipublicfiles.com/textvqa/data/textcaps/TextCaps_0.1_val.json
  https://dl.fbaipublicfiles.com/textvqa/data/textcaps/TextCaps_0.1_test.json
  https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip     (unzip: train_images/)
  https://dl.fbaipublicfiles.com/textvqa/images/test_images.zip          (unzip: test_images/)

into one folder (the manual_dir) so that it holds:

  manual_dir/
    TextCaps_0.1_train.json          (train split)
    TextCaps_0.1_val.json            (validation split)
    TextCaps_0.1_test.json           (test split)
    train_images/<image_id>.jpg      <- train_val_images.zip (the train and validation images)
    test_images/<image_id>.jpg       <- test_images.zip

Any split may be left out; at least one JSON file is needed. Each JSON file holds {"data": [...]} with one entry
per caption ("image_id", "image_name", "caption_str"; test entries have no caption); the image is
"<image_name>.jpg" in the split's image folder.

Then: python -m datasets.build textcaps --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> (official JSON file, image folder)
_SPLITS = {
    "train": ("TextCaps_0.1_train.json", "train_images"),
    "validation": ("TextCaps_0.1_val.json", "train_images"),
    "test": ("TextCaps_0.1_test.json", "test_images"),
}


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return common.missing_files_and_folders(manual_dir, _SPLITS)


def load_images(path: str) -> list[dict]:
    """[{"image_id", "image_name", "captions"}] of an official TextCaps file: its caption entries grouped by image."""
    what = 'an official TextCaps file (expected a JSON object with a "data" list)'
    content = common.load_json(path, DATASET, expect=dict, keys=("data",), what=what)
    if not isinstance(content["data"], list):
        raise ValueError(f"{DATASET}: {path} is not {what}")
    images: dict[str, dict] = {}
    for entry in content["data"]:
        image_id = str(common.field(entry, "image_id", path, DATASET))
        image = images.setdefault(
            image_id, dict(image_id=image_id, image_name=str(entry.get("image_name", image_id)), captions=[])
        )
        if entry.get("caption_str"):
            image["captions"].append(entry["caption_str"])
    return list(images.values())


class Builder(tfds.core.GeneratorBasedBuilder):
    """TextCaps 0.1, one example per image with its reference captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official TextCaps 0.1 train/val/test files with the TextVQA images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://textvqa.org/textcaps/",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image_id": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        folder = os.path.join(manual_dir, _SPLITS[split][1])
        for image in load_images(path):
            file = os.path.join(folder, f"{image['image_name']}.jpg")
            context = f"(image_id {image['image_id']} in {path})"
            yield (
                image["image_id"],
                {
                    "image": common.read_bytes(file, DATASET, what="image", context=context),
                    "image_id": image["image_id"],
                    "captions": image["captions"],
                },
            )
