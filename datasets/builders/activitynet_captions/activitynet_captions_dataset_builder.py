"""TFDS builder for ActivityNet Captions (Krishna et al. 2017), from the official JSON files and the ActivityNet videos.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build activitynet_captions --data_dir DIR --manual_dir MANUAL_DIR`.

One example per annotated segment (a temporal window of a video with its one sentence), as the PaliGemma transfer
did (big_vision `transfers/activitynet_cap.py`: DMVR's `activitynet_captions_mr`, each example a segment with one
caption, evaluated by id `{video_id}[{start}-{end}]`): captioning with ground-truth segments, not paragraph or
dense captioning. The segment is cut out of its video here (`common.cut_video`: the frames between the two
timestamps, re-encoded as an MP4), so the input pipeline's frame sampling covers exactly the segment.

  video          the segment's clip: MP4 (H.264) bytes at the source's frame rate and size
  captions       its one reference sentence (a list, the form the caption evaluator reads)
  id             "{video_id}[{start:.2f}-{end:.2f}]" (big_vision's evaluation id; unique unless two segments of
                 a video share their timestamps)
  video_id       e.g. "v_QOlSCBRmfWY" (the key in the JSON, the video's file name)
  segment_start, segment_end, duration   seconds (float32), as annotated

Splits, each built when its JSON file is present: train (train.json: 10,009 videos, 37,421 segments), validation
(val_1.json: 4,917 videos, 17,505 segments) and test (val_2.json: 4,885 videos, 17,031 segments). The official test
annotations were never released; val_2 is the test split of the PaliGemma transfer (its split sizes after missing
videos, 30,545 / 14,338 / 13,982, are 82% of these three).

Videos come from YouTube and many are no longer there: a segment whose video is not in manual_dir/videos is left out,
and the build logs how many videos and segments each split lost (the split's example count says what is left).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "ActivityNet Captions"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the captions from https://cs.stanford.edu/people/ranjaykrishna/densevid/ (captions.zip) and the ActivityNet
v1.3 videos from http://activity-net.org/download.html (the official request form, or the YouTube ids in the JSON
files), into one folder (the manual_dir) so that it holds:

  manual_dir/
    train.json              <- captions.zip (train split)
    val_1.json              <- captions.zip (validation split)
    val_2.json              <- captions.zip (test split: the released test annotations do not exist)
    videos/v_<id>.mp4       <- the ActivityNet videos, named by the keys of the JSON files (.mkv / .webm are
                               accepted too)

Any of the three JSON files may be left out; at least one is needed. Videos that are missing are skipped (the build
logs how many). Each segment is cut from its video and re-encoded (PyAV, x264), so building takes a while.

Then: python -m datasets.build activitynet_captions --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLITS = {"train": "train.json", "validation": "val_1.json", "test": "val_2.json"}
VIDEO_DIR = "videos"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if not any(os.path.isfile(os.path.join(manual_dir, name)) for name in _SPLITS.values()):
        return [" or ".join(_SPLITS.values())]
    return common.missing_files(manual_dir, [VIDEO_DIR + "/"])


def load_segments(path: str) -> list[dict]:
    """The segments of an official ActivityNet Captions file, in file order, each a dict of the example's fields."""
    what = "an official ActivityNet Captions file ({video_id: {duration, timestamps, sentences}})"
    content = common.load_json(path, DATASET, expect=dict, what=what)
    segments = []
    for video_id, entry in content.items():
        timestamps = common.field(entry, "timestamps", path, DATASET)
        sentences = common.field(entry, "sentences", path, DATASET)
        if not isinstance(timestamps, list) or not isinstance(sentences, list) or len(timestamps) != len(sentences):
            raise ValueError(f"{DATASET}: {path}: {video_id} needs as many timestamps as sentences (two lists)")
        duration = float(entry.get("duration", 0.0))
        for span, sentence in zip(timestamps, sentences):
            if not (isinstance(span, list) and len(span) == 2):
                raise ValueError(f"{DATASET}: {path}: {video_id} has a timestamp {span!r}, not [start, end]")
            start, end = sorted(float(t) for t in span)
            segments.append(
                dict(
                    video_id=video_id,
                    segment_start=start,
                    segment_end=end,
                    duration=duration,
                    captions=[str(sentence).strip()],
                    id=f"{video_id}[{start:.2f}-{end:.2f}]",
                )
            )
    return segments


class Builder(tfds.core.GeneratorBasedBuilder):
    """ActivityNet Captions, one example per annotated segment (its clip and sentence)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official captions (train, val_1, val_2) with segment clips cut from the videos."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://cs.stanford.edu/people/ranjaykrishna/densevid/",
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                    "video_id": tfds.features.Text(),
                    "segment_start": np.float32,
                    "segment_end": np.float32,
                    "duration": np.float32,
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, json_path):
        segments = load_segments(json_path)
        folder = os.path.join(manual_dir, VIDEO_DIR)
        find = functools.partial(common.find_file, folder, extensions=VIDEO_EXTENSIONS)
        for index, segment, path in common.present_videos(segments, find, DATASET, split, folder):
            clip, _ = common.cut_video(
                path, segment["segment_start"], segment["segment_end"], DATASET, context=f"(segment {segment['id']})"
            )
            yield f"{segment['video_id']}/{index}", dict(segment, video=clip)  # ids repeat when timestamps do
