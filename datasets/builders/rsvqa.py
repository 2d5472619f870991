"""What the `rsvqa_lr` and `rsvqa_hr` builders share: RSVQA's official file format (Lobry et al., 2020).

Both releases (https://rsvqa.sylvainlobry.com, Zenodo records 6344334 and 6344367) ship, per split, a questions file
`{"questions": [{"id", "img_id", "type", "question", "answers_ids": [answer id], "active", ...}]}` and an answers
file `{"answers": [{"id", "question_id", "answer", "active", ...}]}`, plus one image per `img_id` (GeoTIFF or PNG).
Inactive entries (`"active": false`) are not part of the dataset. The model card's RSVQA rows use the questions
with a non-numeric answer: count questions (and, in HR, area questions) are left out, as in big_vision's "nonum"
builds.

`RsvqaBuilder` is both builders but for their names (files, folders, splits) and download instructions.

One example per question:
  image          the image (PNG: GeoTIFF files are converted, PNG files stored as they are)
  question       text
  question_type  the official type: "presence", "comp" (comparison), "rural_urban" (LR only)
  answers        [the official answer] ("yes", "no", "rural", "urban")
  question_id    int64, the official question id
  image_id       int64, the official image id (`img_id`)
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, UnidentifiedImageError

from datasets.builders import common

NUMERIC_TYPES = ("count", "area")  # left out: the model card's "non numeric" RSVQA


def features() -> tfds.features.FeaturesDict:
    """The features of both builders."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(),
            "question": tfds.features.Text(),
            "question_type": tfds.features.Text(),
            "answers": tfds.features.Sequence(tfds.features.Text()),
            "question_id": np.int64,
            "image_id": np.int64,
        }
    )


def find_json(manual_dir: str, name: str) -> str | None:
    """`manual_dir/name`, or None when it is not there."""
    path = os.path.join(manual_dir, name)
    return path if os.path.isfile(path) else None


def missing(manual_dir: str, prefix: str, splits: dict[str, str], required: tuple[str, ...], images: str) -> list[str]:
    """The files of the `required` official splits (and the image folder) that manual_dir lacks.

    Optional splits (the others of `splits`) need both their files when one of them is there.
    """
    names = []
    for official in splits.values():
        files = [f"{prefix}_split_{official}_questions.json", f"{prefix}_split_{official}_answers.json"]
        if official in required or any(find_json(manual_dir, f) for f in files):
            names += files
    return common.missing_files(manual_dir, names + [images + "/"])


def _entries(path: str, key: str, dataset: str) -> list[dict]:
    what = f'an official RSVQA {key} file (a JSON object with an "{key}" list)'
    content = common.load_json(path, dataset, expect=dict, keys=(key,), what=what)
    if not isinstance(content[key], list) or not all(isinstance(e, dict) for e in content[key]):
        raise ValueError(f"{dataset}: {path} is not {what}")
    return content[key]


def read_image(image_dir: str, image_id, dataset: str, context: str) -> bytes:
    """The image `image_dir/<image_id>.png` (as stored) or `.tif` (converted to PNG); errors name the file."""
    path = common.find_file(image_dir, str(image_id), (".png", ".tif", ".tiff"))
    if path is None:
        raise FileNotFoundError(f"{dataset}: image {image_dir}/{image_id}.tif (or .png) {context} not found")
    data = common.read_bytes(path, dataset, what="image", context=context)
    if path.endswith(".png"):
        return data
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{dataset}: image {path} {context} is not a readable TIFF ({e})") from None
    if image.mode not in ("RGB", "L"):
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] > 3:
            array = array[..., :3]  # RGB bands only
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def generate_examples(questions_path: str, answers_path: str, image_dir: str, dataset: str):
    """(key, example) for each active non-numeric question of one split, in the questions file's order."""
    answers = {}
    for a in _entries(answers_path, "answers", dataset):
        answers[int(common.field(a, "id", answers_path, dataset))] = a
    last = (None, b"")
    for q in _entries(questions_path, "questions", dataset):
        if not q.get("active", True):
            continue
        qtype = str(common.field(q, "type", questions_path, dataset))
        if qtype in NUMERIC_TYPES:
            continue
        qid = int(common.field(q, "id", questions_path, dataset))
        answer_ids = common.field(q, "answers_ids", questions_path, dataset)
        answer = answers.get(int(answer_ids[0])) if answer_ids else None
        if answer is None:
            raise ValueError(
                f"{dataset}: {answers_path} has no answer {answer_ids} of question {qid} ({questions_path})"
            )
        image_id = int(common.field(q, "img_id", questions_path, dataset))
        if image_id != last[0]:  # the questions of one image come in a row: read (and convert) it once
            last = (image_id, read_image(image_dir, image_id, dataset, f"of question {qid}"))
        yield (
            qid,
            {
                "image": last[1],
                "question": str(common.field(q, "question", questions_path, dataset)),
                "question_type": qtype,
                "answers": [str(common.field(answer, "answer", answers_path, dataset))],
                "question_id": qid,
                "image_id": image_id,
            },
        )


class RsvqaBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """What both RSVQA builders do; a `Builder` subclass names its release.

    Its class attributes: `MANUAL_DOWNLOAD_INSTRUCTIONS`, `RELEASE_NOTES`, `DATASET` (the name in errors), `PREFIX`
    (of the official file names), `IMAGES` (the image folder), `SPLITS` (TFDS split -> the official split in the file
    names) and `REQUIRED` (the official splits that must be there). The description is the subclass module's
    docstring.
    """

    VERSION = tfds.core.Version("1.0.0")
    DATASET = PREFIX = IMAGES = ""
    SPLITS: dict[str, str] = {}
    REQUIRED = ("train", "test")

    @classmethod
    def missing_manual_files(cls, manual_dir) -> list[str]:
        """The required files/folders that are not in manual_dir (empty: ready to build)."""
        return missing(manual_dir, cls.PREFIX, cls.SPLITS, cls.REQUIRED, cls.IMAGES)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=sys.modules[type(self).__module__].__doc__,
            homepage="https://rsvqa.sylvainlobry.com",
            features=features(),
        )

    def _split_generators(self, dl_manager):
        """Each split whose two files are in manual_dir."""
        manual_dir = common.checked_manual_dir(
            dl_manager, self.DATASET, self.missing_manual_files, self.MANUAL_DOWNLOAD_INSTRUCTIONS
        )
        out = {}
        for split, official in self.SPLITS.items():
            questions = find_json(manual_dir, f"{self.PREFIX}_split_{official}_questions.json")
            answers = find_json(manual_dir, f"{self.PREFIX}_split_{official}_answers.json")
            if questions and answers:
                out[split] = self._generate_examples(questions, answers, os.path.join(manual_dir, self.IMAGES))
        return out

    def _generate_examples(self, questions_path, answers_path, image_dir):
        yield from generate_examples(questions_path, answers_path, image_dir, self.DATASET)
