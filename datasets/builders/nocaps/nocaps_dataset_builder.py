"""TFDS builder for NoCaps (https://nocaps.org), validation and test, from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build nocaps --data_dir DIR --manual_dir MANUAL_DIR`.

One example per image:
  image       the Open Images file, as stored (JPEG bytes, not re-encoded)
  image_id    int64, the NoCaps image id (the id of the evaluation server's entries)
  file_name   e.g. "0013ea2087020901.jpg"
  domain      "in-domain", "near-domain" or "out-domain"
  captions    the human reference captions in annotation-id order (10 per validation image; empty for test)

Splits, each built when its JSON file is present: validation (4,500 images, 45,000 captions) and test (10,600
images, no captions).
"""

from __future__ import annotations

import collections
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download from https://nocaps.org/download the annotation files and the validation/test images (Open Images files)
into one folder (the manual_dir) so that it holds:

  manual_dir/
    nocaps_val_4500_captions.json     <- validation captions (validation split)
    validation/xxxxxxxxxxxxxxxx.jpg   <- the validation images (a folder named val/ is accepted too)
    nocaps_test_image_info.json       <- test image info (test split)
    test/xxxxxxxxxxxxxxxx.jpg         <- the test images

Either split may be left out; at least one is needed. Image paths are the folder joined with each image's
"file_name" in the JSON.

Then: python -m datasets.build nocaps --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

# TFDS split -> (JSON file, accepted image folders in order of preference)
_SPLITS = {
    "validation": ("nocaps_val_4500_captions.json", ("validation", "val")),
    "test": ("nocaps_test_image_info.json", ("test",)),
}


def find_image_dir(manual_dir: str, split: str) -> str | None:
    """The folder holding a split's images (manual_dir/validation or val, manual_dir/test), or None."""
    for folder in _SPLITS[split][1]:
        path = os.path.join(manual_dir, folder)
        if os.path.isdir(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [s for s, (json_file, _) in _SPLITS.items() if os.path.isfile(os.path.join(manual_dir, json_file))]
    if not present:
        return [" or ".join(json_file for json_file, _ in _SPLITS.values())]
    return [f"{_SPLITS[s][1][0]}/" for s in present if find_image_dir(manual_dir, s) is None]


def _load(path: str) -> tuple[list[dict], dict[int, list[str]]]:
    """(images, captions by image id) of an official NoCaps JSON file (COCO style)."""
    what = 'an official NoCaps file (expected a JSON object with an "images" list, COCO style)'
    content = common.load_json(path, "NoCaps", expect=dict, keys=("images",), what=what)
    if not isinstance(content["images"], list):
        raise ValueError(f"NoCaps: {path} is not {what}")
    captions = collections.defaultdict(list)
    for a in sorted(content.get("annotations", []), key=lambda a: a["id"]):
        captions[int(a["image_id"])].append(a["caption"])
    return content["images"], captions


class Builder(tfds.core.GeneratorBasedBuilder):
    """NoCaps validation/test, one example per image with all its reference captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official NoCaps validation captions and test image info with the Open Images files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://nocaps.org",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image_id": np.int64,
                    "file_name": tfds.features.Text(),
                    "domain": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        missing = missing_manual_files(manual_dir)
        if missing:
            raise FileNotFoundError(
                f"NoCaps: missing in manual_dir {manual_dir}: {', '.join(missing)}\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return {
            split: self._generate_examples(os.path.join(manual_dir, json_file), find_image_dir(manual_dir, split))
            for split, (json_file, _) in _SPLITS.items()
            if os.path.isfile(os.path.join(manual_dir, json_file))
        }

    def _generate_examples(self, json_path, image_dir):
        images, captions = _load(json_path)
        for info in images:
            image_id = int(info["id"])
            path = os.path.join(image_dir, info["file_name"])
            image = common.read_bytes(path, "NoCaps", what="image", context=f"(image id {image_id} in {json_path})")
            yield (
                image_id,
                {
                    "image": image,
                    "image_id": image_id,
                    "file_name": info["file_name"],
                    "domain": info.get("domain", ""),
                    "captions": captions.get(image_id, []),
                },
            )
