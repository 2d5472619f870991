"""TFDS builder for MSRVTT-QA (Xu et al., ACM MM 2017), video question answering on the MSR-VTT clips.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build msrvtt_qa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question:
  video      the MSR-VTT clip (`video<N>.mp4`) as stored, a scalar tf.string (`common.EncodedVideo`), decoded by
             the pp op `frames_from_video`
  question   text, e.g. "what is a man doing?"
  answers    [the answer] (one word)
  id         int64, the official question id
  video_id   the clip, e.g. "video7010"

Splits, each built when its file is present: train (158,581 questions on 6,513 clips), validation (12,278 on 497)
and test (72,821 on 2,990). Every question carries its clip's file (the questions of one clip are read together,
but stored with each): the prepared train split is ~25x the size of its videos.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common
from datasets.builders.msrvtt import msrvtt_dataset_builder as msrvtt

MANUAL_DOWNLOAD_INSTRUCTIONS = """
MSRVTT-QA's questions are train_qa.json, val_qa.json and test_qa.json of the MSRVTT-QA release (Xu et al. 2017,
https://github.com/xudejing/video-question-answering, "MSRVTT-QA"); the clips are MSR-VTT's (see
`python -m datasets.build msrvtt --help_manual`). Put them in one folder (the manual_dir):

  manual_dir/
    train_qa.json      <- MSRVTT-QA (a JSON array of {"question", "answer", "video_id": 0, "id", ...}); the three
    val_qa.json           files may also sit in MSRVTT-QA/ or msrvtt_qa/
    test_qa.json
    TrainValVideo/video0.mp4 ... video7009.mp4     <- MSR-VTT train_val_videos.zip
    TestVideo/video7010.mp4 ... video9999.mp4      <- MSR-VTT test_videos.zip
      (or all clips in one videos/ or videos/all/ folder, as for the msrvtt dataset: one manual_dir serves both)

Any split may be left out; at least one question file is needed.

Then: python -m datasets.build msrvtt_qa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "MSRVTT-QA"
# TFDS split -> the official question file
_SPLITS = {"train": "train_qa.json", "validation": "val_qa.json", "test": "test_qa.json"}
_QA_DIRS = ("", "MSRVTT-QA", "msrvtt_qa")


def find_questions(manual_dir: str, name: str) -> str | None:
    """Path of a question file in manual_dir, MSRVTT-QA/ or msrvtt_qa/, or None."""
    for folder in _QA_DIRS:
        path = os.path.join(manual_dir, folder, name)
        if os.path.isfile(path):
            return path
    return None


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    if not any(find_questions(manual_dir, name) for name in _SPLITS.values()):
        missing.append(" or ".join(_SPLITS.values()))
    if not msrvtt.has_videos(manual_dir):
        missing.append("TrainValVideo/ (or videos/)")
    return missing


class Builder(tfds.core.GeneratorBasedBuilder):
    """MSRVTT-QA, one example per question with its MSR-VTT clip."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official MSRVTT-QA train/val/test questions with the MSR-VTT clips."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files, find_questions)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/xudejing/video-question-answering",
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(doc="the clip's file bytes (mp4), decoded by frames_from_video"),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "id": np.int64,
                    "video_id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, path):
        dirs = msrvtt.video_dirs(manual_dir)
        questions = common.load_records(path, DATASET, what="an official MSRVTT-QA question file")
        last_id, last_bytes = None, b""  # the questions of one clip come in a row: read it once for them
        for index, q in enumerate(questions):
            qid = int(q.get("id", index))
            video_id = msrvtt.video_name(common.field(q, "video_id", path, DATASET))
            if video_id != last_id:
                last_id, last_bytes = (
                    video_id,
                    msrvtt.read_video(dirs, video_id, f"of question {qid} ({path})", DATASET),
                )
            yield (
                qid,
                {
                    "video": last_bytes,
                    "question": common.field(q, "question", path, DATASET),
                    "answers": [str(common.field(q, "answer", path, DATASET))],
                    "id": qid,
                    "video_id": video_id,
                },
            )
