"""NLVR2, MaRVL, MSR-VTT and MSRVTT-QA builders on tiny fixtures in the official formats, written by the tests.

Image pairs are tiny PNG/JPEG files, videos tiny MPEG-4 clips encoded with PyAV; every dataset is built offline
into a temporary data_dir and read back through `datasets.sources`.
"""

import json
import os
import subprocess
import sys
import unicodedata

import av
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import build, sources, video
from datasets.builders import common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _image(path, size, color, fmt="PNG"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def _video(path, num_frames=6, size=(32, 24)):
    """A tiny MPEG-4 clip (w x h) whose frame k is uniformly grey 40 * k."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * k, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_json(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)


def _examples(name, split, data_dir):
    source = sources.get_source(dict(name=name, split=split, data_dir=data_dir))
    exs = list(source.get_tfdata(ordered=True).as_numpy_iterator())
    assert len(exs) == source.num_examples
    return {e["id"].decode() if isinstance(e["id"], bytes) else int(e["id"]): e for e in exs}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------------------
# NLVR2


def _nlvr2_manual(root):
    """train.json (images/train/<directory>/), data/dev.json (dev/), test1.json (test1/images/): the 3 layouts."""
    _write_jsonl(
        root / "train.json",
        [
            {"identifier": "train-10171-0-0", "sentence": "One dog is on the left.", "label": "True", "directory": 7},
            {"identifier": "train-10171-0-1", "sentence": "There are two cats.", "label": "False", "directory": 7},
            {"identifier": "train-55-3-0", "sentence": "Both images show birds.", "label": "False", "directory": 12},
        ],
    )
    _image(str(root / "images/train/7/train-10171-0-img0.png"), (20, 16), (255, 0, 0))
    _image(str(root / "images/train/7/train-10171-0-img1.png"), (12, 10), (0, 255, 0))
    _image(str(root / "images/train/12/train-55-3-img0.png"), (8, 8), (0, 0, 255))
    # Despite the .png name, some official files are JPEGs: stored as-is, decoded by their bytes.
    _image(str(root / "images/train/12/train-55-3-img1.png"), (16, 8), (200, 200, 200), fmt="JPEG")
    _write_jsonl(root / "data/dev.json", [{"identifier": "dev-850-0-0", "sentence": "A red car.", "label": "True"}])
    _image(str(root / "dev/dev-850-0-img0.png"), (10, 10), (255, 0, 0))
    _image(str(root / "dev/dev-850-0-img1.png"), (10, 10), (0, 0, 0))
    _write_jsonl(root / "test1.json", [{"identifier": "test1-0-1-1", "sentence": "Two boats.", "label": "false"}])
    _image(str(root / "test1/images/test1-0-1-img0.png"), (6, 6), (1, 2, 3))
    _image(str(root / "test1/images/test1-0-1-img1.png"), (6, 6), (4, 5, 6))


def test_nlvr2_builder(tmp_path):
    manual = tmp_path / "manual"
    _nlvr2_manual(manual)
    builder = build.prepare("nlvr2", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "validation": 1, "test": 1}
    train = _examples("nlvr2", "train", str(tmp_path / "data"))
    e = train["train-10171-0-1"]
    assert e["question"] == b"There are two cats." and e["answers"].tolist() == [b"false"]
    assert [tf.io.decode_image(x).shape for x in e["images"]] == [(16, 20, 3), (10, 12, 3)]  # [left, right]
    assert train["train-10171-0-0"]["answers"].tolist() == [b"true"]
    jpeg = train["train-55-3-0"]["images"][1]
    assert jpeg == _read(manual / "images/train/12/train-55-3-img1.png") and jpeg[:3] == b"\xff\xd8\xff"
    dev = _examples("nlvr2", "validation", str(tmp_path / "data"))
    assert dev["dev-850-0-0"]["answers"].tolist() == [b"true"]
    test = _examples("nlvr2", "test", str(tmp_path / "data"))
    assert tf.io.decode_png(test["test1-0-1-1"]["images"][1])[0, 0].numpy().tolist() == [4, 5, 6]


def test_nlvr2_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("nlvr2", str(manual))
    assert "train.json or dev.json or test1.json" in str(e.value) and "lil-lab/nlvr" in e.value.details
    _nlvr2_manual(manual)
    os.remove(manual / "images/train/12/train-55-3-img1.png")
    with pytest.raises(FileNotFoundError, match=r"train-55-3-img0\.png / -img1\.png of train-55-3-0 .*train\.json"):
        build.prepare("nlvr2", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    _image(str(manual / "images/train/12/train-55-3-img1.png"), (4, 4), (0, 0, 0))
    with open(manual / "data/dev.json", "a") as f:
        f.write('{"identifier": "dev-1-0-0", "sentence": \n')  # a truncated line
    with pytest.raises(ValueError, match=r"NLVR2: .*dev\.json line 2 is not a JSON object"):
        build.prepare("nlvr2", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    _write_jsonl(manual / "data/dev.json", [{"identifier": "dev-850-0-0", "label": "True"}])
    with pytest.raises(ValueError, match=r"dev\.json: an entry has no 'sentence' field"):
        build.prepare("nlvr2", data_dir=str(tmp_path / "c"), manual_dir=str(manual))
    assert not os.path.exists(tmp_path / "a" / "nlvr2" / "1.0.0" / "dataset_info.json")  # nothing half-built


# ----------------------------------------------------------------------------------------------------------
# MaRVL


def _statement(example_id, concept, caption, images, label, **extra):
    """One line of an official MaRVL annotation file: a statement about the image pair `images` (left, right)."""
    language = example_id.split("-")[0]
    left, right = images
    return dict(
        concept=concept,
        language=language,
        caption=caption,
        left_img=left,
        right_img=right,
        label=label,
        id=example_id,
        **extra,
    )


def test_marvl_builder_and_errors(tmp_path):
    manual = tmp_path / "manual"
    concept_zh = "2-\u7897"  # non-ASCII concept folder
    _write_jsonl(
        manual / "marvl-annotations/marvl-id.jsonl",
        [
            _statement("id-0", "1-Bawang", "Kedua gambar berisi bawang.", ("1-1.jpg", "1-2.jpg"), True, chapter="Food"),
            _statement("id-1", "1-Bawang", "Gambar kiri berisi satu bawang.", ("1-2.jpg", "1-3.jpg"), False),
        ],
    )
    _write_jsonl(
        manual / "marvl-annotations/marvl-zh.jsonl",
        [
            _statement(
                "zh-0",
                concept_zh,
                "\u4e24\u5f20\u56fe\u7247\u91cc\u90fd\u6709\u7897\u3002",
                ("2-\u00e9.jpg", "2-2.jpg"),
                True,
            )
        ],
    )
    for k, size in ((1, (12, 8)), (2, (8, 8)), (3, (8, 12))):
        _image(str(manual / f"marvl-images/id/images/1-Bawang/1-{k}.jpg"), size, (10 * k, 0, 0), fmt="JPEG")
    # The file system holds the decomposed (NFD) form of a name the annotation writes composed (NFC).
    _image(
        str(manual / "marvl-images/zh/images" / concept_zh / unicodedata.normalize("NFD", "2-\u00e9.jpg")),
        (8, 8),
        (0, 0, 0),
        fmt="JPEG",
    )
    _image(str(manual / "marvl-images/zh/images" / concept_zh / "2-2.jpg"), (8, 8), (0, 0, 0), fmt="JPEG")
    builder = build.prepare("marvl", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"test_id": 2, "test_zh": 1}
    ids = _examples("marvl", "test_id", str(tmp_path / "data"))
    e = ids["id-1"]
    assert e["answers"].tolist() == [b"false"] and e["language"] == b"id" and e["concept"] == b"1-Bawang"
    assert e["question"] == b"Gambar kiri berisi satu bawang."
    assert [tf.io.decode_jpeg(x).shape for x in e["images"]] == [(8, 8, 3), (12, 8, 3)]
    assert ids["id-0"]["images"][0] == _read(manual / "marvl-images/id/images/1-Bawang/1-1.jpg")
    zh = _examples("marvl", "test_zh", str(tmp_path / "data"))
    assert zh["zh-0"]["question"].decode() == "\u4e24\u5f20\u56fe\u7247\u91cc\u90fd\u6709\u7897\u3002"
    # All five languages' test splits in one source, as configs/transfer/marvl.py reads them (here: two).
    both = sources.get_source(dict(name="marvl", split="test_id+test_zh", data_dir=str(tmp_path / "data")))
    assert both.num_examples == 3

    os.remove(manual / "marvl-images/id/images/1-Bawang/1-3.jpg")
    with pytest.raises(FileNotFoundError, match=r"MaRVL: image .*1-Bawang/1-3\.jpg of id-1 .*marvl-id\.jsonl"):
        build.prepare("marvl", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "marvl-annotations/marvl-id.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"marvl-id\.jsonl line 1 is not a JSON object"):
        build.prepare("marvl", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    for f in ("marvl-id.jsonl", "marvl-zh.jsonl"):
        os.remove(manual / "marvl-annotations" / f)
    with pytest.raises(build.ManualFilesMissing, match=r"marvl-annotations/marvl-id\.jsonl or"):
        build.check_manual_dir("marvl", str(manual))


# ----------------------------------------------------------------------------------------------------------
# MSR-VTT and MSRVTT-QA


def _msrvtt_manual(root):
    """The 2016 release: train_val + test videodatainfo files, TrainValVideo/ and TestVideo/."""
    videos = [
        {"video_id": "video0", "split": "train", "id": 0, "category": 9},
        {"video_id": "video1", "split": "train", "id": 1, "category": 3},
        {"video_id": "video6513", "split": "validate", "id": 6513, "category": 1},
    ]
    sentences = [
        {"video_id": "video0", "caption": "a man is singing", "sen_id": 2},
        {"video_id": "video0", "caption": "a person sings a song", "sen_id": 0},
        {"video_id": "video1", "caption": "a cat plays", "sen_id": 1},
        {"video_id": "video6513", "caption": "cars race on a track", "sen_id": 3},
    ]
    _write_json(root / "train_val_videodatainfo.json", {"info": {}, "videos": videos, "sentences": sentences})
    test = {
        "videos": [{"video_id": "video7010", "split": "test", "id": 7010}],
        "sentences": [{"video_id": "video7010", "caption": "a woman cooks", "sen_id": 140200}],
    }
    _write_json(root / "annotation/test_videodatainfo.json", test)
    _video(str(root / "TrainValVideo/video0.mp4"), num_frames=6)
    _video(str(root / "TrainValVideo/video1.mp4"), num_frames=3, size=(16, 16))
    _video(str(root / "TrainValVideo/video6513.mp4"), num_frames=4)
    _video(str(root / "TestVideo/video7010.mp4"), num_frames=5)


def test_msrvtt_builder(tmp_path):
    manual = tmp_path / "manual"
    _msrvtt_manual(manual)
    builder = build.prepare("msrvtt", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 2, "validation": 1, "test": 1}
    assert isinstance(builder.info.features["video"], common.EncodedVideo)
    train = _examples("msrvtt", "train", str(tmp_path / "data"))
    e = train["video0"]
    assert e["captions"].tolist() == [b"a person sings a song", b"a man is singing"]  # sen_id order
    assert e["video"] == _read(manual / "TrainValVideo/video0.mp4")  # the container bytes, as stored
    frames, mask = video.read_video(e["video"], 8, name="video0")
    assert frames.shape == (8, 24, 32, 3) and mask.tolist() == [True] * 6 + [False] * 2
    assert abs(int(frames[5].mean()) - 200) <= 8  # frame 5 is grey 200 (lossy codec)
    assert _examples("msrvtt", "validation", str(tmp_path / "data"))["video6513"]["captions"].tolist() == [
        b"cars race on a track"
    ]
    assert _examples("msrvtt", "test", str(tmp_path / "data"))["video7010"]["captions"].tolist() == [b"a woman cooks"]


def test_msrvtt_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("msrvtt", str(manual))
    assert "train_val_videodatainfo.json" in str(e.value) and "TrainValVideo/" in str(e.value)
    assert "test_videos.zip" in e.value.details
    _msrvtt_manual(manual)
    (manual / "TrainValVideo/video1.mp4").write_bytes(b"<html>404</html>")  # a failed download saved as .mp4
    with pytest.raises(ValueError, match=r"MSR-VTT: video .*TrainValVideo/video1\.mp4 is not a readable video"):
        build.prepare("msrvtt", data_dir=str(tmp_path / "v"), manual_dir=str(manual))
    _video(str(manual / "TrainValVideo/video1.mp4"))
    os.remove(manual / "TestVideo/video7010.mp4")
    with pytest.raises(FileNotFoundError, match=r"MSR-VTT: video video7010 \(\.mp4/.*\) not found in"):
        build.prepare("msrvtt", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "train_val_videodatainfo.json").write_text('{"videos": [')
    with pytest.raises(ValueError, match=r"MSR-VTT: .*train_val_videodatainfo\.json is not valid JSON"):
        build.prepare("msrvtt", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    (manual / "train_val_videodatainfo.json").write_text('{"videos": []}')
    with pytest.raises(ValueError, match=r"train_val_videodatainfo\.json is not an official .* \(no 'sentences' key"):
        build.prepare("msrvtt", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


def test_msrvtt_qa_builder(tmp_path):
    manual = tmp_path / "manual"
    qa = [
        {"answer": "sing", "category_id": 9, "question": "what is a man doing?", "video_id": 0, "id": 0},
        {"answer": "man", "category_id": 9, "question": "who is singing?", "video_id": 0, "id": 1},
        {"answer": "cat", "category_id": 3, "question": "what plays?", "video_id": 1, "id": 2},
    ]
    _write_json(manual / "train_qa.json", qa)
    _write_json(
        manual / "MSRVTT-QA/test_qa.json",
        [{"answer": "cook", "category_id": 1, "question": "what does a woman do?", "video_id": 7010, "id": 9}],
    )
    for n in (0, 1, 7010):  # all clips in one folder
        _video(str(manual / f"videos/all/video{n}.mp4"), num_frames=2 + n % 3)
    builder = build.prepare("msrvtt_qa", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "test": 1}
    train = _examples("msrvtt_qa", "train", str(tmp_path / "data"))
    e = train[1]
    assert e["question"] == b"who is singing?" and e["answers"].tolist() == [b"man"] and e["video_id"] == b"video0"
    assert e["video"] == train[0]["video"] == _read(manual / "videos/all/video0.mp4")
    assert video.read_video(train[2]["video"], 4)[1].tolist() == [True, True, True, False]  # video1: 3 frames
    test = _examples("msrvtt_qa", "test", str(tmp_path / "data"))
    assert test[9]["answers"].tolist() == [b"cook"] and test[9]["video_id"] == b"video7010"

    os.remove(manual / "videos/all/video1.mp4")
    with pytest.raises(FileNotFoundError, match=r"MSRVTT-QA: video video1 .* of question 2 \(.*train_qa\.json\)"):
        build.prepare("msrvtt_qa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "train_qa.json").write_text("[{]")
    with pytest.raises(ValueError, match=r"MSRVTT-QA: .*train_qa\.json is not valid JSON"):
        build.prepare("msrvtt_qa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


def test_mock_video_is_a_valid_clip():
    """Mock data fills an `EncodedVideo` with a decodable MPEG-4 clip, so the video configs run in mode=mock."""
    source = sources.get_source(dict(name="msrvtt_qa", split="train", mock=2))
    e = next(source.get_tfdata(ordered=True).as_numpy_iterator())
    frames, mask = video.read_video(e["video"], 6)
    assert frames.shape[0] == 6 and mask.tolist() == [True] * 4 + [False] * 2
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0


# ----------------------------------------------------------------------------------------------------------
# Shared helpers and the build CLI


def test_common_load_records_reads_json_arrays_and_json_lines(tmp_path):
    lines = tmp_path / "a.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": 2}\n')
    array = tmp_path / "a.json"
    array.write_text('[{"a": 1}, {"a": 2}]')
    assert common.load_records(str(lines), "X") == common.load_records(str(array), "X") == [{"a": 1}, {"a": 2}]
    array.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"X: .*a\.json holds int, not a JSON object"):
        common.load_records(str(array), "X")
    with pytest.raises(FileNotFoundError, match=r"X: .*missing\.json not found"):
        common.load_records(str(tmp_path / "missing.json"), "X")
    assert common.missing_files(str(tmp_path), ["a.json", "a.jsonl/", "images/"]) == ["a.jsonl/", "images/"]
    read = common.LastFileReader("X")
    assert read(str(array)) == b"[1, 2]"
    array.write_text("changed")
    assert read(str(array)) == b"[1, 2]"  # the same path in a row: read once


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nlvr2", ("train.json", "dev.json", "test1.json", "lil-lab/nlvr")),
        ("marvl", ("marvl-annotations/marvl-id.jsonl", "marvl-images/", "dataverse.scholarsportal.info")),
        ("msrvtt", ("train_val_videodatainfo.json", "test_videodatainfo.json", "TrainValVideo/")),
        ("msrvtt_qa", ("train_qa.json", "val_qa.json", "test_qa.json", "xudejing/video-question-answering")),
    ],
)
def test_help_manual_names_the_official_files(name, expected):
    instructions = build.manual_instructions(name)
    for text in expected:
        assert text in instructions, (name, text)
    assert f"python -m datasets.build {name} " in instructions


def test_build_cli_nlvr2(tmp_path):
    manual = tmp_path / "manual"
    _nlvr2_manual(manual)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    args = [sys.executable, "-m", "datasets.build", "nlvr2", "--data_dir", str(tmp_path / "d"), "--manual_dir"]
    r = subprocess.run([*args, str(manual)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Prepared nlvr2/1.0.0" in r.stdout and "(test: 1, train: 3, validation: 1)" in r.stdout
