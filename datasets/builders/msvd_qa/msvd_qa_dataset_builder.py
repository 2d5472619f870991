"""TFDS builder for MSVD-QA (Xu et al. 2017), from the official QA files and the MSVD clips.

Nothing is downloaded by the builder: put the files in a manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS) and run
`python -m datasets.build msvd_qa --data_dir DIR --manual_dir MANUAL_DIR`.

One example per question (as the PaliGemma transfer, big_vision `transfers/msvd_qa.py`):
  video          the MSVD clip (YouTubeClips/<clip>.avi), as stored
  question       text
  answers        its one answer (a list, the form the VQA evaluator reads)
  id             int64, the official question id
  video_id       the clip's name, e.g. "-4wsuPCjDBc_5_15" (youtube_mapping.txt maps it to the QA files' vid<N>)

Splits: train (train_qa.json, 30,933 questions), validation (val_qa.json, 6,415) and test (test_qa.json, 13,157), on
1,970 clips; each split is built when its file is present. The clips come as one archive, so a missing clip is an
error naming it (not a skipped question, as for the datasets whose videos are fetched from YouTube one by one).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.builders import common

DATASET = "MSVD-QA"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download MSVD-QA from https://github.com/xudejing/video-question-answering (the MSVD-QA data: train_qa.json,
val_qa.json, test_qa.json, youtube_mapping.txt) and the MSVD clips (YouTubeClips.tar, from the Microsoft Research
Video Description Corpus, https://www.cs.utexas.edu/users/ml/clamp/videoDescription/), into one folder (the
manual_dir) so that it holds:

  manual_dir/
    train_qa.json  val_qa.json  test_qa.json   <- the splits
    youtube_mapping.txt                        <- "<clip> vid<N>" per line: the clip of the QA files' video_id N
    YouTubeClips/<clip>.avi                    <- YouTubeClips.tar, unpacked (1,970 clips)

Any of the three QA files may be left out; at least one is needed.

Then: python -m datasets.build msvd_qa --data_dir DATA_DIR --manual_dir MANUAL_DIR
"""

_SPLITS = {"train": "train_qa.json", "validation": "val_qa.json", "test": "test_qa.json"}
MAPPING = "youtube_mapping.txt"
VIDEO_DIR = "YouTubeClips"
VIDEO_EXTENSIONS = (".avi", ".mp4")


def missing_manual_files(manual_dir) -> list[str]:
    """The required files/folders that are not in manual_dir (empty: ready to build)."""
    if not any(os.path.isfile(os.path.join(manual_dir, name)) for name in _SPLITS.values()):
        return [" or ".join(_SPLITS.values())]
    return common.missing_files(manual_dir, [MAPPING, VIDEO_DIR + "/"])


def load_mapping(path: str) -> dict[int, str]:
    """youtube_mapping.txt: {N: clip name} from its "<clip> vid<N>" lines (blank lines skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DATASET}: {path} not found")
    mapping = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
                raise ValueError(
                    f'{DATASET}: {path} line {number} is not "<clip> vid<N>" ({line.strip()[:80]!r}); is it the '
                    "official youtube_mapping.txt?"
                )
            mapping[int(parts[1][3:])] = parts[0]
    return mapping


def load_questions(path: str, mapping: dict[int, str], mapping_path: str) -> list[dict]:
    """The questions of one official QA file, in file order (dicts of the example's text fields)."""
    entries = common.load_json(path, DATASET, expect=list, what="an official MSVD-QA file")
    out = []
    for e in entries:
        video = common.field(e, "video_id", path, DATASET)
        if video not in mapping:
            raise ValueError(f"{DATASET}: video_id {video} of {path} is not in {mapping_path}")
        out.append(
            dict(
                id=int(common.field(e, "id", path, DATASET)),
                question=common.field(e, "question", path, DATASET),
                answers=[str(common.field(e, "answer", path, DATASET))],
                video_id=mapping[video],
            )
        )
    return out


class Builder(tfds.core.GeneratorBasedBuilder):
    """MSVD-QA, one example per question with its clip."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official MSVD-QA train/val/test with the MSVD YouTubeClips."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    _split_generators = common.split_generators(DATASET, _SPLITS, missing_manual_files)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            homepage="https://github.com/xudejing/video-question-answering",
            features=tfds.features.FeaturesDict(
                {
                    "video": common.EncodedVideo(),
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "id": np.int64,
                    "video_id": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _generate_examples(self, manual_dir, split, json_path):
        mapping_path = os.path.join(manual_dir, MAPPING)
        questions = load_questions(json_path, load_mapping(mapping_path), mapping_path)
        folder = os.path.join(manual_dir, VIDEO_DIR)
        read = common.VideoReader(DATASET)  # the questions of one clip come in a row
        for q in questions:
            context = f"(clip {q['video_id']} of question {q['id']})"
            path = common.find_file(folder, q["video_id"], VIDEO_EXTENSIONS)
            if path is None:
                raise FileNotFoundError(
                    f"{DATASET}: video {os.path.join(folder, q['video_id'])}.avi {context} not found"
                )
            yield q["id"], dict(q, video=read(path, context=context))
