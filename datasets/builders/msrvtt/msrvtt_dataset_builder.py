"""TFDS builder for MSR-VTT video captioning (Xu et al., CVPR 2016; HOMEPAGE below), from the official files.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build msrvtt --data_dir DIR --manual_dir MANUAL_DIR`.

One example per video clip:
  video      the clip's file (`video<N>.mp4`), as stored: the container bytes (a scalar tf.string,
             `common.EncodedVideo`); the pp op `frames_from_video` decodes and samples its frames with PyAV
  captions   all its reference captions (20 per clip), in `sen_id` order
  id         the official video id, e.g. "video7010"

Splits of the official 2016 release (the `split` of each video): train (6,513 clips, video0-video6512), validation
("validate", 497 clips) and test (2,990 clips, video7010-video9999). Every example carries its video file; the
prepared dataset is about as large as the videos (~6 GB).
"""

from __future__ import annotations

import collections
import os
import re

import tensorflow_datasets as tfds

from datasets.builders import common

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download MSR-VTT (the 10,000 clips and their annotations; the official MSR-VTT 2016 release, "MSR-VTT 10K", linked
from the Microsoft Research dataset page, and mirrored by most video-language repositories) and extract it into one
folder (the manual_dir):

  manual_dir/
    train_val_videodatainfo.json   <- train_val_annotation.zip (train + validate clips and their captions)
    test_videodatainfo.json        <- test_videodatainfo.json / the test annotation (test clips and captions)
      (or one videodatainfo.json with all three splits; the files may also sit in annotation/ or annotations/)
    TrainValVideo/video0.mp4 ... video7009.mp4     <- train_val_videos.zip
    TestVideo/video7010.mp4 ... video9999.mp4      <- test_videos.zip
      (or all clips in one videos/ or videos/all/ folder; .mp4, .webm, .mkv and .avi are accepted)

Each JSON file holds "videos" ({"video_id": "video0", "split": "train" | "validate" | "test", ...}) and "sentences"
({"video_id", "caption", "sen_id"}). A split is built when its videos are listed in the JSON files present.

Then: python -m datasets.build msrvtt --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

DATASET = "MSR-VTT"
HOMEPAGE = "https://www.microsoft.com/en-us/research/publication/msr-vtt-a-large-video-description-dataset-for-bridging-video-and-language/"
ANNOTATION_FILES = ("videodatainfo.json", "train_val_videodatainfo.json", "test_videodatainfo.json")
_ANNOTATION_DIRS = ("", "annotation", "annotations")
VIDEO_DIRS = ("TrainValVideo", "TestVideo", "videos", os.path.join("videos", "all"), "video", "")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")
# the official `split` values -> TFDS split names
SPLITS = {"train": "train", "validate": "validation", "val": "validation", "test": "test"}


def find_annotation_files(manual_dir: str) -> list[str]:
    """The MSR-VTT annotation JSON files present (see ANNOTATION_FILES), in manual_dir or annotation(s)/."""
    found = []
    for name in ANNOTATION_FILES:
        for folder in _ANNOTATION_DIRS:
            path = os.path.join(manual_dir, folder, name)
            if os.path.isfile(path):
                found.append(path)
                break
    return found


def video_dirs(manual_dir: str) -> list[str]:
    """The folders that may hold the clips (see VIDEO_DIRS; manual_dir itself last), those that exist."""
    return [os.path.join(manual_dir, d) for d in VIDEO_DIRS if os.path.isdir(os.path.join(manual_dir, d))]


def has_videos(manual_dir: str) -> bool:
    """Whether one of the clip folders other than manual_dir itself exists, or manual_dir holds video files."""
    if any(os.path.isdir(os.path.join(manual_dir, d)) for d in VIDEO_DIRS if d):
        return True
    return any(re.fullmatch(r"video\d+\.\w+", n) for n in os.listdir(manual_dir))


def video_name(video_id) -> str:
    """The file stem of a clip: "video7" for 7, "7" or "video7"."""
    text = str(video_id)
    return text if text.startswith("video") else f"video{int(text)}"


def find_video(dirs: list[str], video_id) -> str | None:
    """Path of a clip `video<N>.<ext>` in the first of `dirs` that has it, or None."""
    for d in dirs:
        path = common.find_file(d, video_name(video_id), VIDEO_EXTENSIONS)
        if path:
            return path
    return None


def read_video(dirs: list[str], video_id, context: str = "", dataset: str = DATASET) -> bytes:
    """The bytes of a clip; FileNotFoundError (missing) or ValueError (PyAV cannot decode it) naming the clip."""
    path = find_video(dirs, video_id)
    if path is None:
        where = ", ".join(dirs) or "(no video folder)"
        exts = "/".join(VIDEO_EXTENSIONS)
        context = f" {context}" if context else ""
        raise FileNotFoundError(f"{dataset}: video {video_name(video_id)} ({exts}){context} not found in {where}")
    common.check_video(path, dataset, context=context)  # a truncated or corrupt clip: one error naming it, now
    return common.read_bytes(path, dataset, what="video")


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    missing = []
    if not find_annotation_files(manual_dir):
        missing.append("train_val_videodatainfo.json (and test_videodatainfo.json) or videodatainfo.json")
    if not has_videos(manual_dir):
        missing.append("TrainValVideo/ (or videos/)")
    return missing


def load_annotations(paths: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(video ids by TFDS split, captions by video id in sen_id order) over the annotation files."""
    videos: dict[str, list[str]] = collections.defaultdict(list)
    sentences: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    seen = set()
    for path in paths:
        content = common.load_json(
            path, DATASET, expect=dict, keys=("videos", "sentences"), what="an official MSR-VTT videodatainfo file"
        )
        for v in content["videos"]:
            video_id = str(common.field(v, "video_id", path, DATASET))
            split = str(common.field(v, "split", path, DATASET))
            if split not in SPLITS:
                raise ValueError(f"{DATASET}: {path}: video {video_id} has an unknown split {split!r}")
            if video_id not in seen:
                seen.add(video_id)
                videos[SPLITS[split]].append(video_id)
        for i, s in enumerate(content["sentences"]):
            video_id = str(common.field(s, "video_id", path, DATASET))
            sentences[video_id].append((int(s.get("sen_id", i)), common.field(s, "caption", path, DATASET)))
    captions = {}
    for video_id, items in sentences.items():
        unique = dict(sorted(items))  # the same sentence in two files (videodatainfo.json + a split file) counts once
        captions[video_id] = list(unique.values())
    return videos, captions


class Builder(tfds.core.GeneratorBasedBuilder):
    """MSR-VTT captioning, one example per clip with all its reference captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official MSR-VTT 2016 train/validate/test clips (container bytes) and captions."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage=HOMEPAGE,
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(doc="the clip's file bytes (mp4), decoded by frames_from_video"),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        manual_dir = common.checked_manual_dir(dl_manager, DATASET, missing_manual_files, MANUAL_DOWNLOAD_INSTRUCTIONS)
        videos, captions = load_annotations(find_annotation_files(manual_dir))
        dirs = video_dirs(manual_dir)
        return {split: self._generate_examples(ids, captions, dirs) for split, ids in sorted(videos.items())}

    def _generate_examples(self, video_ids, captions, dirs):
        for video_id in video_ids:
            yield (
                video_id,
                {
                    "video": read_video(dirs, video_id),
                    "captions": captions.get(video_id, []),
                    "id": video_id,
                },
            )
