"""ActivityNet Captions, ActivityNet-QA, VATEX and MSVD-QA builders on tiny fixtures in the official formats.

Each test writes its manual_dir: the official JSON/text files (a few entries) and tiny videos made with PyAV (8 fps,
frame k a flat grey of value 10 k, so a clip's frames tell which part of its video they come from).
"""

import io
import json
import logging
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FPS = 8


def _video(path, frames=24, size=(24, 32), codec="mpeg4"):
    """A tiny video: `frames` frames at 8 fps, frame k a flat grey of value 10 k."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), 10 * k, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def _frames(data):
    """(frame count, mean grey value of each frame) of a video's bytes."""
    with av.open(io.BytesIO(data)) as container:
        means = [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]
    return len(means), means


def _json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _examples(name, split, data_dir, key):
    source = sources.get_source(dict(name=name, split=split, data_dir=data_dir))
    exs = {
        e[key].decode() if isinstance(e[key], bytes) else int(e[key]): e
        for e in source.get_tfdata(ordered=True).as_numpy_iterator()
    }
    assert len(exs) == source.num_examples
    return exs


def _build_logged(name, write_manual, tmp_path, caplog):
    """Writes a manual_dir with `write_manual`, builds `name` (warnings logged): (manual_dir, {split: examples})."""
    manual = tmp_path / "manual"
    write_manual(manual)
    with caplog.at_level(logging.WARNING):
        builder = build.prepare(name, data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    return manual, {k: v.num_examples for k, v in builder.info.splits.items()}


# ---------------------------------------------------------------------------------------------------------------
# ActivityNet Captions


def _activitynet_captions(manual):
    _json(
        manual / "train.json",
        {
            "v_aaa": {
                "duration": 3.0,
                "timestamps": [[1.0, 2.0], [0.0, 0.9]],
                "sentences": [" A man walks in. ", "He waves."],
            },
            "v_gone": {"duration": 5.0, "timestamps": [[0.0, 1.0]], "sentences": ["Deleted from YouTube."]},
        },
    )
    _json(manual / "val_2.json", {"v_bbb": {"duration": 2.0, "timestamps": [[1.5, 9.0]], "sentences": ["End."]}})
    _video(manual / "videos" / "v_aaa.mp4")
    _video(manual / "videos" / "v_bbb.mkv", frames=16, codec="libx264")


def test_activitynet_captions_one_example_per_segment_cut_from_its_video(tmp_path, caplog):
    manual, splits = _build_logged("activitynet_captions", _activitynet_captions, tmp_path, caplog)
    assert splits == {"train": 2, "test": 1}  # no val_1.json
    assert "1 videos of the train split are not in" in caplog.text and "v_gone" in caplog.text
    train = _examples("activitynet_captions", "train", str(tmp_path / "data"), "id")
    assert sorted(train) == ["v_aaa[0.00-0.90]", "v_aaa[1.00-2.00]"]
    e = train["v_aaa[1.00-2.00]"]
    assert e["captions"].tolist() == [b"A man walks in."] and e["video_id"] == b"v_aaa"
    assert (e["segment_start"], e["segment_end"], e["duration"]) == (1.0, 2.0, 3.0)
    n, means = _frames(e["video"])  # frames 8..16 of the video (1.0 s to 2.0 s at 8 fps)
    assert n == 9 and abs(means[0] - 80) < 12 and abs(means[-1] - 160) < 12
    assert _frames(train["v_aaa[0.00-0.90]"]["video"])[0] == 8  # frames 0..7
    test = _examples("activitynet_captions", "test", str(tmp_path / "data"), "id")
    n, means = _frames(test["v_bbb[1.50-9.00]"]["video"])  # past the end of the file: the frames there are
    assert n == 4 and abs(means[-1] - 150) < 12


def test_activitynet_captions_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("activitynet_captions", str(manual))
    assert "train.json or val_1.json or val_2.json" in str(e.value).split("\n")[0]
    assert "densevid" in e.value.details and "videos/v_<id>.mp4" in e.value.details
    _activitynet_captions(manual)
    (manual / "val_1.json").write_text('{"v_aaa": {"timestamps": [[0, 1]]')  # truncated download
    with pytest.raises(ValueError, match=r"val_1\.json is not valid JSON"):
        build.prepare("activitynet_captions", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    _json(manual / "val_1.json", {"v_aaa": {"duration": 3.0, "timestamps": [[0, 1]]}})
    with pytest.raises(ValueError, match=r"val_1\.json: an entry has no 'sentences' field"):
        build.prepare("activitynet_captions", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    os.remove(manual / "val_1.json")
    (manual / "videos" / "v_aaa.mp4").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"v_aaa\.mp4 \(segment v_aaa\[1\.00-2\.00\]\) is not a readable video"):
        build.prepare("activitynet_captions", data_dir=str(tmp_path / "c"), manual_dir=str(manual))
    for name in os.listdir(manual / "videos"):
        os.remove(manual / "videos" / name)
    with pytest.raises(FileNotFoundError, match=r"none of the videos of the (train|test) split is in .*videos"):
        build.prepare("activitynet_captions", data_dir=str(tmp_path / "d"), manual_dir=str(manual))


# ---------------------------------------------------------------------------------------------------------------
# ActivityNet-QA


def _activitynet_qa(manual):
    questions = [
        {"video_name": "aaa", "question": "what is he doing", "question_id": "v_aaa_0"},
        {"video_name": "aaa", "question": "is it indoors", "question_id": "v_aaa_1"},
        {"video_name": "ccc", "question": "what color is the ball", "question_id": "v_ccc_0"},
        {"video_name": "gone", "question": "where is it", "question_id": "v_gone_0"},
    ]
    answers = [
        {"answer": "walking", "type": 0, "question_id": "v_aaa_0"},
        {"answer": "yes", "type": 3, "question_id": "v_aaa_1"},
        {"answer": "red", "type": 4, "question_id": "v_ccc_0"},
        {"answer": "park", "type": 6, "question_id": "v_gone_0"},
    ]
    _json(manual / "train_q.json", questions)
    _json(manual / "train_a.json", answers)
    _json(manual / "test_q.json", questions[:1])
    _json(manual / "test_a.json", answers[:1])
    _video(manual / "videos" / "v_aaa.mp4")  # ActivityNet's own name
    _video(manual / "videos" / "ccc.mkv", frames=8, codec="libx264")  # the YouTube id alone


def test_activitynet_qa_one_example_per_question(tmp_path, caplog):
    manual, splits = _build_logged("activitynet_qa", _activitynet_qa, tmp_path, caplog)
    assert splits == {"train": 3, "test": 1}
    assert "gone" in caplog.text and "their 1 of 4 examples are left out" in caplog.text
    train = _examples("activitynet_qa", "train", str(tmp_path / "data"), "id")
    assert sorted(train) == ["v_aaa_0", "v_aaa_1", "v_ccc_0"]
    e = train["v_aaa_1"]
    assert e["question"] == b"is it indoors" and e["answers"].tolist() == [b"yes"] and e["video_id"] == b"aaa"
    assert [train[k]["question_type"] for k in sorted(train)] == [b"motion", b"yes_no", b"color"]
    assert e["video"] == _read(manual / "videos" / "v_aaa.mp4")  # stored as-is
    assert train["v_ccc_0"]["video"] == _read(manual / "videos" / "ccc.mkv")


def test_activitynet_qa_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    _activitynet_qa(manual)
    os.remove(manual / "test_a.json")
    with pytest.raises(build.ManualFilesMissing, match=r"not found in --manual_dir .*: test_a\.json$") as e:
        build.check_manual_dir("activitynet_qa", str(manual))
    assert "MILVLG/activitynet-qa" in e.value.details
    _json(manual / "test_a.json", [{"answer": "walking", "question_id": "v_aaa_0"}])
    with pytest.raises(ValueError, match=r"test_a\.json: an entry has no 'type' field"):
        build.prepare("activitynet_qa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    _json(manual / "test_a.json", [])
    with pytest.raises(ValueError, match=r"question v_aaa_0 of .*test_q\.json has no answer in .*test_a\.json"):
        build.prepare("activitynet_qa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    _json(manual / "test_q.json", {"questions": []})
    with pytest.raises(ValueError, match=r"test_q\.json is not an official ActivityNet-QA question file"):
        build.prepare("activitynet_qa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


# ---------------------------------------------------------------------------------------------------------------
# VATEX


def _vatex(manual):
    caps = [f"a person plays the drums {k}" for k in range(10)]
    _json(
        manual / "vatex_training_v1.0.json",
        [
            {"videoID": "Ab_000010_000020", "enCap": caps, "chCap": ["一个人"] * 10},
            {"videoID": "Cd-e_000003_000013", "enCap": caps[::-1], "chCap": []},
            {"videoID": "Gone_000000_000010", "enCap": caps, "chCap": []},
        ],
    )
    _json(manual / "vatex_public_test_english_v1.1.json", [{"videoID": "Ab_000010_000020", "enCap": caps[:2]}])
    _video(manual / "videos" / "Ab_000010_000020.mp4")
    _video(manual / "videos" / "Cd-e_000003_000013.webm", frames=6, codec="libvpx")


def test_vatex_one_example_per_clip(tmp_path, caplog):
    manual, splits = _build_logged("vatex", _vatex, tmp_path, caplog)
    assert splits == {"train": 2, "test": 1}
    assert "Gone_000000_000010" in caplog.text
    train = _examples("vatex", "train", str(tmp_path / "data"), "id")
    e = train["Cd-e_000003_000013"]
    assert e["captions"].tolist() == [f"a person plays the drums {k}".encode() for k in range(9, -1, -1)]
    assert e["video"] == _read(manual / "videos" / "Cd-e_000003_000013.webm") and _frames(e["video"])[0] == 6
    test = _examples("vatex", "test", str(tmp_path / "data"), "id")
    assert test["Ab_000010_000020"]["captions"].tolist() == [
        b"a person plays the drums 0",
        b"a person plays the drums 1",
    ]


def test_vatex_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("vatex", str(manual))
    assert "vatex_training_v1.0.json or" in str(e.value) and "eric-xw.github.io" in e.value.details
    _vatex(manual)
    (manual / "vatex_training_v1.0.json").write_text("")
    with pytest.raises(ValueError, match=r"vatex_training_v1\.0\.json is not valid JSON"):
        build.prepare("vatex", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    _json(manual / "vatex_training_v1.0.json", [{"videoID": "Ab_000010_000020", "chCap": []}])
    with pytest.raises(ValueError, match=r"vatex_training_v1\.0\.json: an entry has no 'enCap' field"):
        build.prepare("vatex", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    os.remove(manual / "vatex_training_v1.0.json")
    (manual / "videos" / "Ab_000010_000020.mp4").write_bytes(_read(manual / "videos" / "Ab_000010_000020.mp4")[:40])
    with pytest.raises(ValueError, match=r"Ab_000010_000020\.mp4 \(clip Ab_000010_000020 .*\) is not a readable video"):
        build.prepare("vatex", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


# ---------------------------------------------------------------------------------------------------------------
# MSVD-QA


def _msvd_qa(manual):
    (manual / "youtube_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (manual / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15 vid1\n\n-7KMZQEsJW4_205_208 vid2\nzzz_1_2 vid3\n")
    _json(
        manual / "train_qa.json",
        [
            {"answer": "cat", "id": 0, "question": "what is playing?", "video_id": 1},
            {"answer": "piano", "id": 1, "question": "what does the cat play?", "video_id": 1},
            {"answer": "man", "id": 2, "question": "who is cooking?", "video_id": 2},
        ],
    )
    _json(manual / "test_qa.json", [{"answer": "two", "id": 30933, "question": "how many?", "video_id": 2}])
    _video(manual / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi")
    _video(manual / "YouTubeClips" / "-7KMZQEsJW4_205_208.avi", frames=10)


def test_msvd_qa_one_example_per_question(tmp_path):
    manual = tmp_path / "manual"
    _msvd_qa(manual)
    builder = build.prepare("msvd_qa", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "test": 1}
    train = _examples("msvd_qa", "train", str(tmp_path / "data"), "id")
    assert sorted(train) == [0, 1, 2]
    e = train[1]
    assert e["question"] == b"what does the cat play?" and e["answers"].tolist() == [b"piano"]
    assert e["video_id"] == b"-4wsuPCjDBc_5_15" and e["video"] == _read(
        manual / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi"
    )
    test = _examples("msvd_qa", "test", str(tmp_path / "data"), "id")
    assert test[30933]["video_id"] == b"-7KMZQEsJW4_205_208" and _frames(test[30933]["video"])[0] == 10


def test_msvd_qa_missing_and_corrupt_files(tmp_path):
    manual = tmp_path / "manual"
    _msvd_qa(manual)
    os.remove(manual / "youtube_mapping.txt")
    with pytest.raises(build.ManualFilesMissing, match="youtube_mapping.txt") as e:
        build.check_manual_dir("msvd_qa", str(manual))
    assert "YouTubeClips.tar" in e.value.details
    (manual / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15,1\n")
    with pytest.raises(ValueError, match=r"youtube_mapping\.txt line 1 is not \"<clip> vid<N>\""):
        build.prepare("msvd_qa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15 vid1\n")
    with pytest.raises(ValueError, match=r"video_id 2 of .*_qa\.json is not in .*youtube_mapping\.txt"):
        build.prepare("msvd_qa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    (manual / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15 vid1\n-7KMZQEsJW4_205_208 vid2\n")
    os.remove(manual / "YouTubeClips" / "-7KMZQEsJW4_205_208.avi")
    with pytest.raises(FileNotFoundError, match=r"-7KMZQEsJW4_205_208\.avi \(clip .* of question 2\) not found"):
        build.prepare("msvd_qa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


def test_build_cli_help_manual_and_build(tmp_path):
    """`python -m datasets.build msvd_qa --help_manual` names the files; the same command builds the fixture."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "datasets.build", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = run("msvd_qa", "--help_manual")
    assert r.returncode == 0 and "train_qa.json" in r.stdout and "youtube_mapping.txt" in r.stdout
    manual = tmp_path / "manual"
    _msvd_qa(manual)
    r = run("msvd_qa", "--data_dir", str(tmp_path / "data"), "--manual_dir", str(manual))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Prepared msvd_qa/1.0.0" in r.stdout and "(test: 1, train: 3)" in r.stdout
    for name in ("activitynet_captions", "activitynet_qa", "vatex"):
        assert "--manual_dir" in build.manual_instructions(name)
