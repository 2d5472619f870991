"""TFDS builder for AI2D (AI2 Diagrams, https://allenai.org/data/diagrams), from the official release.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build ai2d --data_dir DIR --manual_dir MANUAL_DIR`.

One example per multiple-choice question:
  image        the diagram, as stored (PNG). For questions that name diagram labels by letter (the release's
               `abcLabel`), each text box of the diagram is painted over with its letter (the annotation's
               `replacementText`) and the picture re-encoded as PNG, as big_vision's AI2D converter does
  question     text
  choices      the answer options (usually 4), in the official order
  answers      [the correct option's text] (one reference; what the exact-match evaluator compares against)
  label        int32, the index of the correct option in `choices` (the release's `correctAnswer`)
  abc_label    bool, the release's `abcLabel`
  id           the official `questionId`, e.g. "4021.png-0"
  image_name   the diagram's file name, e.g. "4021.png"

Splits: train (12,413 questions) and test (3,088 questions on the 982 diagrams listed in `ai2d_test_ids.csv`, the
test split big_vision and the model card use).
"""

from __future__ import annotations

import functools
import io
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the AI2D release and the list of its test diagrams (AI2 / AllenAI, https://allenai.org/data/diagrams):

  https://ai2-public-datasets.s3.amazonaws.com/diagrams/ai2d-all.zip
  https://s3-us-east-2.amazonaws.com/prior-datasets/ai2d_test_ids.csv

Unzip ai2d-all.zip into the manual_dir, next to the CSV file:

  manual_dir/
    ai2d_test_ids.csv                   <- the test diagrams' ids, one a line (e.g. "4021")
    ai2d/images/<id>.png                <- ai2d-all.zip
    ai2d/questions/<id>.png.json        <- ai2d-all.zip: the questions of one diagram
    ai2d/annotations/<id>.png.json      <- ai2d-all.zip: its text boxes (used to draw letter labels)

The images/, questions/ and annotations/ folders may also sit directly in manual_dir. Diagrams whose id is in
ai2d_test_ids.csv form the test split, the others the train split. Letter labels are drawn with Pillow's built-in
font (no font file needed).

Then: python -m datasets.build ai2d --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "AI2D"
TEST_IDS = "ai2d_test_ids.csv"
_FOLDERS = ("images", "questions", "annotations")


def release_root(manual_dir: str) -> str:
    """The folder holding images/, questions/ and annotations/: manual_dir/ai2d when it exists, else manual_dir."""
    nested = os.path.join(manual_dir, "ai2d")
    return nested if os.path.isdir(os.path.join(nested, "questions")) else manual_dir


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    root = release_root(manual_dir)
    prefix = "ai2d/" if root != manual_dir or not os.path.isdir(os.path.join(manual_dir, "questions")) else ""
    missing = common.missing_files(manual_dir, [TEST_IDS])
    return missing + [f"{prefix}{folder}/" for folder in _FOLDERS if not os.path.isdir(os.path.join(root, folder))]


def load_test_ids(path: str) -> set[str]:
    """The diagram ids of `ai2d_test_ids.csv` (one integer a line; blank lines skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DATASET}: {path} not found")
    with open(path, encoding="utf-8") as f:
        ids = [line.strip() for line in f if line.strip()]
    bad = [i for i in ids if not i.isdigit()]
    if bad or not ids:
        shown = f" (line {ids.index(bad[0]) + 1}: {bad[0][:40]!r})" if bad else " (it is empty)"
        raise ValueError(f"{DATASET}: {path} is not the official list of test diagram ids{shown}")
    return set(ids)


def _number(name: str) -> tuple[int, str]:
    match = re.match(r"\d+", name)
    return (int(match.group()) if match else -1, name)


def question_files(root: str) -> list[tuple[str, str]]:
    """(diagram id, path) of every `questions/<id>.png.json`, in numeric order of the id."""
    folder = os.path.join(root, "questions")
    names = sorted((n for n in os.listdir(folder) if n.endswith(".json")), key=_number)
    return [(n.split(".")[0], os.path.join(folder, n)) for n in names]


@functools.cache
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(size, 1))


def draw_letters(image_bytes: bytes, text_boxes: dict, path: str) -> bytes:
    """The diagram with each text box filled white and its `replacementText` drawn inside (PNG bytes).

    The letter is drawn at the largest font size that fits the box, centred horizontally at the box's top.
    """
    try:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{DATASET}: image {path} is not a readable image ({e})") from None
    draw = ImageDraw.Draw(image)
    for box in text_boxes.values():
        (x0, y0), (x1, y1) = box["rectangle"]
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        draw.rectangle([x0, y0, x1, y1], fill="white")
        text = str(box.get("replacementText", ""))
        if not text:
            continue
        size = max(int(y1 - y0), 1)
        font = _font(size)
        while size > 1:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            if right - left <= x1 - x0 and bottom - top <= y1 - y0:
                break
            size -= 1
            font = _font(size)
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        draw.text((x0 + (x1 - x0 - (right - left)) / 2 - left, y0), text, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _text_boxes(path: str) -> dict:
    what = 'an official AI2D annotation file (a JSON object with a "text" object of text boxes)'
    content = common.load_json(path, DATASET, expect=dict, keys=("text",), what=what)
    boxes = content["text"]
    if not isinstance(boxes, dict) or any(
        not isinstance(b, dict) or "rectangle" not in b or len(b["rectangle"]) != 2 for b in boxes.values()
    ):
        raise ValueError(f'{DATASET}: {path} is not {what} (each with a two-point "rectangle")')
    return boxes


def _questions(path: str) -> tuple[str, dict]:
    what = 'an official AI2D question file (a JSON object with "imageName" and a "questions" object)'
    content = common.load_json(path, DATASET, expect=dict, keys=("imageName", "questions"), what=what)
    if not isinstance(content["questions"], dict):
        raise ValueError(f"{DATASET}: {path} is not {what}")
    return content["imageName"], content["questions"]


class Builder(tfds.core.GeneratorBasedBuilder):
    """AI2D, one example per multiple-choice question about a diagram."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "AI2D release (ai2d-all.zip) with the ai2d_test_ids.csv test split."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://allenai.org/data/diagrams",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(),
                    "question": tfds.features.Text(),
                    "choices": tfds.features.Sequence(tfds.features.Text()),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "label": np.int32,
                    "abc_label": np.bool_,
                    "id": tfds.features.Text(),
                    "image_name": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
        test_ids = load_test_ids(os.path.join(manual_dir, TEST_IDS))
        root = release_root(manual_dir)
        files = question_files(root)
        return {
            "train": self._generate_examples(root, [f for f in files if f[0] not in test_ids]),
            "test": self._generate_examples(root, [f for f in files if f[0] in test_ids]),
        }

    def _generate_examples(self, root, files):
        for _, path in files:
            image_name, questions = _questions(path)
            image_path = os.path.join(root, "images", image_name)
            original, lettered = None, None
            for text, q in questions.items():
                qid = str(common.field(q, "questionId", path, DATASET))
                choices = [str(c) for c in common.field(q, "answerTexts", path, DATASET)]
                label = common.field(q, "correctAnswer", path, DATASET)
                if not str(label).isdigit() or int(label) >= len(choices):
                    raise ValueError(
                        f"{DATASET}: {path}: question {qid} has correctAnswer {label!r} outside its "
                        f"{len(choices)} answerTexts"
                    )
                abc = bool(q.get("abcLabel", False))
                if original is None:
                    original = common.read_bytes(image_path, DATASET, what="image", context=f"of {path}")
                if abc and lettered is None:
                    boxes = _text_boxes(os.path.join(root, "annotations", os.path.basename(path)))
                    lettered = draw_letters(original, boxes, image_path)
                yield (
                    qid,
                    {
                        "image": lettered if abc else original,
                        "question": text,
                        "choices": choices,
                        "answers": [choices[int(label)]],
                        "label": int(label),
                        "abc_label": abc,
                        "id": qid,
                        "image_name": image_name,
                    },
                )
