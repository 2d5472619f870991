"""TFDS builder for VATEX (Wang et al. 2019), English captions, from the official JSON files and the clips.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build vatex --data_dir DIR --manual_dir MANUAL_DIR`.

One example per clip (as the PaliGemma transfer, big_vision `transfers/vatex_cap.py`: a random caption per visit in
training, all of them as references in evaluation):
  video          the 10-second clip's file, as stored (not re-encoded)
  captions       its 10 English captions (`enCap`), in file order
  id             the official videoID, "<youtube_id>_<start>_<end>" (start/end: 6-digit seconds)

Splits, each built when its JSON file is present: train (vatex_training_v1.0.json, 25,991 clips), validation
(vatex_validation_v1.0.json, 3,000) and test (vatex_public_test_english_v1.1.json, the public test with English
captions, 6,000). The Chinese captions (`chCap`) are not kept.

Clips come from YouTube and some are gone: a clip that is not in manual_dir/videos is left out, and the build logs how
many each split lost (big_vision's splits kept 86%: 22,315 / 2,584 / 5,135).
"""

from __future__ import annotations

import functools
import os

import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "VATEX"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the annotations from https://eric-xw.github.io/vatex-website/download.html and the clips from YouTube (each
videoID is <youtube_id>_<start>_<end>: the video's seconds start to end, e.g. cut with
`ffmpeg -ss START -to END -i FULL.mp4 CLIP.mp4`), into one folder (the manual_dir) so that it holds:

  manual_dir/
    vatex_training_v1.0.json                 <- train split
    vatex_validation_v1.0.json               <- validation split
    vatex_public_test_english_v1.1.json      <- test split (public test, English captions)
    videos/<videoID>.mp4                     <- one clip per videoID (.webm / .mkv / .avi are accepted too)

Any of the three JSON files may be left out; at least one is needed. Clips that are missing are skipped (the build
logs how many).

Then: python -m datasets.build vatex --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLITS = {
    "train": "vatex_training_v1.0.json",
    "validation": "vatex_validation_v1.0.json",
    "test": "vatex_public_test_english_v1.1.json",
}
VIDEO_DIR = "videos"
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if not any(os.path.isfile(os.path.join(manual_dir, name)) for name in _SPLITS.values()):
        return [" or ".join(_SPLITS.values())]
    return common.missing_files(manual_dir, [VIDEO_DIR + "/"])


def load_clips(path: str) -> list[dict]:
    """(id, captions) of every clip of an official VATEX file, in file order."""
    entries = common.load_json(path, DATASET, expect=list, what="an official VATEX annotation file")
    clips = []
    for entry in entries:
        captions = common.field(entry, "enCap", path, DATASET)
        if not isinstance(captions, list):
            raise ValueError(f"{DATASET}: {path}: enCap of {entry.get('videoID')} is not a list of captions")
        clips.append(
            dict(id=str(common.field(entry, "videoID", path, DATASET)), captions=[c.strip() for c in captions])
        )
    return clips


class Builder(tfds.core.GeneratorBasedBuilder):
    """VATEX, one example per clip with its 10 English captions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Official training/validation v1.0 and public test v1.1 English captions, with the clips."
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://eric-xw.github.io/vatex-website/",
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, json_path):
        clips = load_clips(json_path)
        folder = os.path.join(manual_dir, VIDEO_DIR)
        read = common.VideoReader(DATASET)
        find = functools.partial(common.find_file, folder, extensions=VIDEO_EXTENSIONS)
        for _, clip, path in common.present_videos(clips, find, DATASET, split, folder, key="id"):
            yield clip["id"], dict(clip, video=read(path, context=f"(clip {clip['id']} of {json_path})"))
