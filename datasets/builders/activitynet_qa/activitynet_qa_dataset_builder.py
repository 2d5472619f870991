"""TFDS builder for ActivityNet-QA (Yu et al. 2019), from the official question/answer files and the ActivityNet videos.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build activitynet_qa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question, about the whole video (as the PaliGemma transfer, big_vision `transfers/activitynet_qa.py`):
  video          the ActivityNet video file, as stored (not re-encoded)
  question       text
  answers        its one answer (a list, the form the VQA evaluator reads)
  id             the official question_id, e.g. "v_QOlSCBRmfWY_1"
  video_id       the official video_name (a YouTube id, e.g. "QOlSCBRmfWY")
  question_type  the official `type` as a name: motion, spatial, temporal (the three question types), yes_no, color,
                 object, location, number, other (the answer types of the free questions); the number itself when
                 it is not one of the nine

Splits, each built when both its files are present: train (32,000 questions on 3,200 videos), validation (18,000 on
1,800) and test (8,000 on 800). Every question carries its video, so a prepared split holds each video ten times
(ActivityNet videos average 2 minutes): build on a disk with room.

Videos come from YouTube and some are gone: a question whose video is not in manual_dir/videos is left out, and the
build logs how many videos and questions each split lost (big_vision's splits kept 86-88%).
"""

from __future__ import annotations

import functools
import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "ActivityNet-QA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the question/answer files from https://github.com/MILVLG/activitynet-qa (folder dataset/) and the
ActivityNet v1.3 videos from http://activity-net.org/download.html (the official request form, or the YouTube ids in
video_name), into one folder (the manual_dir) so that it holds:

  manual_dir/
    train_q.json  train_a.json      <- dataset/ of the repository (train split)
    val_q.json    val_a.json        <- (validation split)
    test_q.json   test_a.json       <- (test split)
    videos/v_<video_name>.mp4       <- the ActivityNet videos (ActivityNet's own names; <video_name>.mp4 without the
                                       v_ prefix, .mkv and .webm are accepted too)

Any split may be left out; at least one is needed. Videos that are missing are skipped (the build logs how many).

Then: python -m datasets.build activitynet_qa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLITS = {"train": "train", "validation": "val", "test": "test"}
VIDEO_DIR = "videos"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")
# The official `type` (dataset/README.md of the repository): question types 0-2, answer types of free questions 3-8.
TYPES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other")


def _files(prefix: str) -> tuple[str, str]:
    return f"{prefix}_q.json", f"{prefix}_a.json"


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    present = [p for p in _SPLITS.values() if any(os.path.isfile(os.path.join(manual_dir, f)) for f in _files(p))]
    if not present:
        return [" or ".join(_files(p)[0] for p in _SPLITS.values())]
    return common.missing_files(manual_dir, [f for p in present for f in _files(p)] + [VIDEO_DIR + "/"])


def load_questions(manual_dir: str, prefix: str) -> list[dict]:
    """The questions of one split with their answers, in file order (dicts of the example's text fields)."""
    q_path, a_path = (os.path.join(manual_dir, f) for f in _files(prefix))
    questions = common.load_json(q_path, DATASET, expect=list, what="an official ActivityNet-QA question file")
    answers = common.load_json(a_path, DATASET, expect=list, what="an official ActivityNet-QA answer file")
    by_id = {common.field(a, "question_id", a_path, DATASET): a for a in answers}
    out = []
    for q in questions:
        qid = common.field(q, "question_id", q_path, DATASET)
        if qid not in by_id:
            raise ValueError(f"{DATASET}: question {qid} of {q_path} has no answer in {a_path}")
        a = by_id[qid]
        kind = common.field(a, "type", a_path, DATASET)
        out.append(
            dict(
                id=str(qid),
                video_id=str(common.field(q, "video_name", q_path, DATASET)),
                question=common.field(q, "question", q_path, DATASET),
                answers=[str(common.field(a, "answer", a_path, DATASET))],
                question_type=TYPES[kind] if isinstance(kind, int) and 0 <= kind < len(TYPES) else str(kind),
            )
        )
    return out


def find_questions(manual_dir: str, prefix: str) -> str | None:
    """Path of a split's question file `<prefix>_q.json`, or None."""
    path = os.path.join(manual_dir, _files(prefix)[0])
    return path if os.path.isfile(path) else None


def find_video(folder: str, video_name: str) -> str | None:
    """manual_dir/videos/v_<video_name>.mp4 (ActivityNet's names), or the same without the v_ prefix."""
    return common.find_file(folder, "v_" + video_name, VIDEO_EXTENSIONS) or common.find_file(
        folder, video_name, VIDEO_EXTENSIONS
    )


class Builder(tfds.core.GeneratorBasedBuilder):
    """ActivityNet-QA, one example per question with its whole video."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official questions/answers (train, val, test) with the ActivityNet videos as stored."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_questions)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/MILVLG/activitynet-qa",
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                    "video_id": tfds.features.Text(),
                    "question_type": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, _):
        questions = load_questions(manual_dir, _SPLITS[split])
        folder = os.path.join(manual_dir, VIDEO_DIR)
        read = common.VideoReader(DATASET)  # the questions of one video come in a row
        find = functools.partial(find_video, folder)
        for _, q, path in common.present_videos(questions, find, DATASET, split, folder):
            yield q["id"], dict(q, video=read(path, context=f"(question {q['id']})"))
