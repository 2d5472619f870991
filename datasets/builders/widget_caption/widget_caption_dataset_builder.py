"""TFDS builder for Widget Captioning (https://github.com/google-research-datasets/widget-caption), official files.

Widget Captioning describes what one UI element (a button, an icon, ...) of a mobile app screen does; the element
is given by its bounding box on the RICO screenshot. Nothing is downloaded by the builder: put the files in a
manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build widget_caption --data_dir DIR --manual_dir MANUAL_DIR`.

One example per captioned element:
  image       the RICO screenshot, as stored (JPEG bytes, not re-encoded); the same for all elements of a screen
  id          "<screenId>_<nodeId>", e.g. "10046_0.0.1" (unique)
  screen_id   int64, the RICO screen id
  node_id     the element's path in the screen's view hierarchy ("0.2.1": the root's 3rd child's 2nd child)
  captions    the element's captions (the CSV's "|"-separated list; usually 3)
  bbox        the element's box on the screenshot (tfds BBox: ymin, xmin, ymax, xmax in [0, 1]): its view
              hierarchy "bounds" on RICO's 1440 x 2560 canvas scaled by the screenshot's height / 2560 and divided
              by the screenshot's size, clipped to the image (the conversion of big_vision's builder)

Splits by screen, each built when its split file is present: train, validation (the official "dev") and test;
61,285 elements on 21,750 screens and 162,859 captions in all.
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from datasets.builders import common, rico

DATASET = "Widget Captioning"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Widget Captioning's captions and splits are in https://github.com/google-research-datasets/widget-caption
(widget_captions.csv, split/train.txt, dev.txt, test.txt); the screenshots and view hierarchies are RICO's
"UI screenshots and view hierarchies"
(https://storage.googleapis.com/crowdstf-rico-uiuc-4540/rico_dataset_v0.1/unique_uis.tar.gz, which unpacks to
combined/). Put them in one folder (the manual_dir):

  manual_dir/
    widget_captions.csv           <- the repository's widget_captions.csv (columns screenId, nodeId, captions)
    split/train.txt               <- the repository's split/ folder (one screen id a line; train split)
    split/dev.txt                 (validation split)
    split/test.txt                (test split)
    combined/<screenId>.jpg       <- unique_uis.tar.gz: the screenshot
    combined/<screenId>.json      <- unique_uis.tar.gz: its view hierarchy (the element boxes)

The split files may also sit directly in manual_dir; any split may be left out.

Then: python -m datasets.build widget_caption --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

CAPTIONS = "widget_captions.csv"
RICO_CANVAS_HEIGHT = 2560  # the view hierarchies' coordinates are on a 1440 x 2560 canvas
# TFDS split -> the official split file
_SPLITS = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    return rico.missing(manual_dir, CAPTIONS, _SPLITS)


def node_bounds(hierarchy: dict, node_id: str, path: str) -> list[float]:
    """The "bounds" [x1, y1, x2, y2] of node `node_id` ("0.2.1": child indices below the root) of a view hierarchy."""
    try:
        node = hierarchy["activity"]["root"]
        for index in node_id.split(".")[1:]:
            node = node["children"][int(index)]
        bounds = [float(v) for v in node["bounds"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ValueError(f"{DATASET}: {path} has no element {node_id!r} with bounds (a RICO view hierarchy?)") from None
    if len(bounds) != 4:
        raise ValueError(f"{DATASET}: {path}: element {node_id!r} has bounds {bounds}, not [x1, y1, x2, y2]")
    return bounds


def normalized_box(bounds: list[float], width: int, height: int) -> tfds.features.BBox:
    """The canvas `bounds` of an element as a box on a `width` x `height` screenshot, in [0, 1]."""
    scale = height / RICO_CANVAS_HEIGHT
    x1, y1, x2, y2 = (v * scale for v in bounds)

    def clip(v):
        return float(min(1.0, max(0.0, v)))

    ymin, ymax = clip(y1 / height), clip(y2 / height)
    xmin, xmax = clip(x1 / width), clip(x2 / width)
    return tfds.features.BBox(ymin=min(ymin, ymax), xmin=min(xmin, xmax), ymax=max(ymin, ymax), xmax=max(xmin, xmax))


class Builder(tfds.core.GeneratorBasedBuilder):
    """Widget Captioning, one example per UI element with its screenshot, box and captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official widget_captions.csv and splits with the RICO screenshots and hierarchies."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, rico.find_split)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/google-research-datasets/widget-caption",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "id": tfds.features.Text(),
                    "screen_id": np.int64,
                    "node_id": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "bbox": tfds.features.BBoxFeature(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        screens = set(rico.read_screen_ids(path, DATASET))
        csv_path = os.path.join(manual_dir, CAPTIONS)
        rows = [
            r
            for r in rico.read_csv(csv_path, DATASET, ("screenId", "nodeId", "captions"))
            if rico.screen_id(r, csv_path, DATASET) in screens
        ]
        rows.sort(key=lambda r: int(r["screenId"]))  # the elements of a screen in a row: each file is read once
        read = common.LastFileReader(DATASET)
        hierarchies: dict[int, dict] = {}
        for row in rows:
            screen_id, node_id = int(row["screenId"]), row["nodeId"]
            image = read(rico.screen_file(manual_dir, screen_id, ".jpg"), what="screenshot", context=f"({path})")
            json_path = rico.screen_file(manual_dir, screen_id, ".json")
            if screen_id not in hierarchies:
                hierarchies.clear()
                hierarchies[screen_id] = common.load_json(
                    json_path, DATASET, expect=dict, what="a RICO view hierarchy (a JSON object)"
                )
            width, height = _size(image, screen_id)
            bounds = node_bounds(hierarchies[screen_id], node_id, json_path)
            key = f"{screen_id}_{node_id}"
            yield (
                key,
                {
                    "image": image,
                    "id": key,
                    "screen_id": screen_id,
                    "node_id": node_id,
                    "captions": [c.strip() for c in row["captions"].split("|") if c.strip()],
                    "bbox": normalized_box(bounds, width, height),
                },
            )


def _size(image: bytes, screen_id: int) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(image)) as im:
            return im.size
    except OSError as e:
        raise ValueError(f"{DATASET}: the screenshot of screen {screen_id} is not a readable image ({e})") from None
