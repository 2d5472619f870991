"""TFDS builder: RefCOCO family, one example per referring expression.

Features:
  image         the COCO train2014 JPEG (as stored)
  image_id      int64 COCO image id;  height, width: int64 image size in pixels
  refexp        the expression (raw text);  refexp_id: its sentence id
  refexps       all expressions of the same object (raw), for training with a random choice
  ref_id, ann_id, label (COCO category id), category (name, when known)
  bbox          tfds BBox, normalised (ymin, xmin, ymax, xmax) in [0, 1]
  mask          the object's mask at full image resolution, PNG, uint8 0 / 255 (one channel)

Splits per config: refcoco_unc / refcocoplus_unc: train, validation, testA, testB; refcoco_google: train,
validation, test; refcocog_umd: train, validation, test; refcocog_google: train, validation. A split with no
expressions in the given files is left out.

refcocox_combined: the training data of the model card's RefCOCO row, train only: the train expressions of
refcoco_unc, refcocoplus_unc and refcocog_umd together, leaving out every image that has an expression in a validation
or test split of any of the three (the three share COCO train2014 images, so a train image of one may be a test
image of another). Its example keys are "<dataset>/<sentence id>" (sentence ids repeat across the three).
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Put the COCO train2014 images and the RefCOCO annotations in one folder (the manual_dir), in either layout:

(a) the layout of the stock TFDS `ref_coco` builder (so one manual_dir serves both):
  manual_dir/refcoco.json       <- made by tensorflow_datasets/datasets/ref_coco/manual_download_process.py from the
                                   files of https://github.com/lichengunc/refer (see `tfds.builder("ref_coco")`'s
                                   MANUAL_DOWNLOAD_INSTRUCTIONS)
  manual_dir/coco_train2014/COCO_train2014_000000xxxxxx.jpg   <- http://images.cocodataset.org/zips/train2014.zip

(b) the raw files of https://github.com/lichengunc/refer (no conversion step):
  manual_dir/refcoco/instances.json, manual_dir/refcoco/refs(unc).p, refs(google).p     <- refcoco.zip
  manual_dir/refcoco+/instances.json, manual_dir/refcoco+/refs(unc).p                   <- refcoco+.zip
  manual_dir/refcocog/instances.json, manual_dir/refcocog/refs(umd).p, refs(google).p   <- refcocog.zip
  manual_dir/coco_train2014/COCO_train2014_000000xxxxxx.jpg
  (the zips are linked from the refer README; the .p files are Python pickles, read as plain data only.)

Then: python -m datasets.build refcoco/refcoco_unc --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dict, list, str, numbers...).

    Any class or function reference is refused, so a tampered refs file cannot run code.
    """

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing {module}.{name} in a RefCOCO refs file: only plain data is allowed "
            "(use the official refs(...).p files)"
        )


def _load_plain_pickle(raw: bytes, encoding: str = "ASCII"):
    return _PlainDataUnpickler(io.BytesIO(raw), encoding=encoding).load()


_SPLITS = {
    ("refcoco", "unc"): ["train", "val", "testA", "testB"],
    ("refcoco", "google"): ["train", "val", "test"],
    ("refcoco+", "unc"): ["train", "val", "testA", "testB"],
    ("refcocog", "umd"): ["train", "val", "test"],
    ("refcocog", "google"): ["train", "val"],
}
# The three (dataset, partition) whose train splits `refcocox_combined` joins, without their val/test images.
COMBINED = (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"))


def missing_manual_files(manual_dir, dataset="refcoco", partition="unc") -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if (dataset, partition) == ("refcocox", "combined"):
        return list(dict.fromkeys(m for d, p in COMBINED for m in missing_manual_files(manual_dir, d, p)))
    missing = []
    if not os.path.isdir(os.path.join(manual_dir, "coco_train2014")):
        missing.append("coco_train2014/")
    stock = os.path.isfile(os.path.join(manual_dir, "refcoco.json"))
    raw = all(os.path.isfile(os.path.join(manual_dir, dataset, f)) for f in ("instances.json", f"refs({partition}).p"))
    if not stock and not raw:
        missing.append(f"refcoco.json (or {dataset}/instances.json + {dataset}/refs({partition}).p)")
    return missing


class RefCocoConfig(tfds.core.BuilderConfig):
    """One RefCOCO variant (refcoco, refcoco+, refcocog) and its split partition (unc, google, umd)."""

    def __init__(self, dataset, partition, **kwargs):
        super().__init__(name=f"{dataset.replace('+', 'plus')}_{partition}", **kwargs)
        self.dataset, self.partition = dataset, partition


def _load(manual_dir, dataset, partition):
    """(refs, images, anns, categories): refs of this dataset/partition; COCO image info and annotations by id."""
    stock = os.path.join(manual_dir, "refcoco.json")
    if os.path.isfile(stock):
        with open(stock) as f:
            data = json.load(f)
        refs = [r for r in data["ref"] if r["dataset"] == dataset and r["dataset_partition"] == partition]
        images = {int(k): v["info"] for k, v in data["coco_anns"].items()}
        anns = {a["id"]: a for v in data["coco_anns"].values() for a in v["anns"]}
        for r in refs:
            anns.setdefault(r["ann"]["id"], r["ann"])
        return refs, images, anns, {}
    with open(os.path.join(manual_dir, dataset, f"refs({partition}).p"), "rb") as f:
        raw = f.read()
    try:  # the official refer files are Python (2) pickles of plain lists/dicts
        refs = _load_plain_pickle(raw)
    except UnicodeDecodeError:
        refs = _load_plain_pickle(raw, encoding="latin1")
    with open(os.path.join(manual_dir, dataset, "instances.json")) as f:
        inst = json.load(f)
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    cats = {c["id"]: c["name"] for c in inst.get("categories", [])}
    return refs, images, anns, cats


def _mask_png(ann, h, w) -> bytes:
    # Imported here: pycocotools is not in requirements.txt; only building RefCOCO from manual files needs it.
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    rles = mask_utils.frPyObjects(seg, h, w)
    rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
    m = (mask_utils.decode(rle).reshape(h, w, 1) > 0).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(m[:, :, 0], mode="L").save(buf, format="PNG")
    return buf.getvalue()


class Builder(tfds.core.GeneratorBasedBuilder):
    """RefCOCO family, flattened to referring expressions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One example per referring expression, with masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [RefCocoConfig(d, p) for d, p in _SPLITS] + [RefCocoConfig("refcocox", "combined")]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/lichengunc/refer",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "image_id": np.int64,
                    "height": np.int64,
                    "width": np.int64,
                    "refexp": tfds.features.Text(),
                    "refexp_id": np.int64,
                    "refexps": tfds.features.Sequence(tfds.features.Text()),
                    "ref_id": np.int64,
                    "ann_id": np.int64,
                    "label": np.int64,
                    "category": tfds.features.Text(),
                    "bbox": tfds.features.BBoxFeature(),
                    "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        bc = self.builder_config
        missing = missing_manual_files(manual_dir, bc.dataset, bc.partition)
        if missing:
            raise FileNotFoundError(
                f"RefCOCO: missing in manual_dir {manual_dir}: {', '.join(missing)}\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        if (bc.dataset, bc.partition) == ("refcocox", "combined"):
            return {"train": self._generate_combined(manual_dir)}
        refs, images, anns, cats = _load(manual_dir, bc.dataset, bc.partition)
        by_split = collections.defaultdict(list)
        for r in refs:
            by_split[r["split"]].append(r)
        out = {}
        for split in _SPLITS[(bc.dataset, bc.partition)]:
            if by_split.get(split):
                name = "validation" if split == "val" else split
                out[name] = self._generate_examples(manual_dir, by_split[split], images, anns, cats)
        return out

    def _generate_combined(self, manual_dir):
        loaded = {key: _load(manual_dir, *key) for key in COMBINED}
        held_out = {int(r["image_id"]) for refs, *_ in loaded.values() for r in refs if r["split"] != "train"}
        for (dataset, _), (refs, images, anns, cats) in loaded.items():
            train = [r for r in refs if r["split"] == "train" and int(r["image_id"]) not in held_out]
            for key, example in self._generate_examples(manual_dir, train, images, anns, cats):
                yield f"{dataset}/{key}", example

    def _generate_examples(self, manual_dir, refs, images, anns, cats):
        for r in sorted(refs, key=lambda r: r["ref_id"]):
            image_id = int(r["image_id"])
            info = images[image_id]
            h, w = int(info["height"]), int(info["width"])
            ann = anns[r["ann_id"]] if "ann_id" in r else r["ann"]
            x, y, bw, bh = ann["bbox"]
            bbox = tfds.features.BBox(
                ymin=max(0.0, y / h), xmin=max(0.0, x / w), ymax=min(1.0, (y + bh) / h), xmax=min(1.0, (x + bw) / w)
            )
            path = os.path.join(
                manual_dir, "coco_train2014", info.get("file_name", f"COCO_train2014_{image_id:012d}.jpg")
            )
            mask = _mask_png(ann, h, w)
            sentences = sorted(r["sentences"], key=lambda s: s["sent_id"])
            for s in sentences:
                yield (
                    int(s["sent_id"]),
                    {
                        "image": path,
                        "image_id": image_id,
                        "height": h,
                        "width": w,
                        "refexp": s["raw"].strip(),
                        "refexp_id": int(s["sent_id"]),
                        "refexps": [t["raw"].strip() for t in sentences],
                        "ref_id": int(r["ref_id"]),
                        "ann_id": int(ann["id"]),
                        "label": int(ann["category_id"]),
                        "category": cats.get(ann["category_id"], ""),
                        "bbox": bbox,
                        "mask": mask,
                    },
                )
