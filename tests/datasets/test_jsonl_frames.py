"""JSONL rows with `images: [paths]` or `video: path`: the source's fields, bad rows, and batches through
datasets.pipeline with frames_from_images / frames_from_video and the PaliGemma text layout."""

import io
import json
import os
import runpy

import numpy as np
import pytest
from PIL import Image

from datasets import pipeline, sources, video

V = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "video.py"))


def _png(value, size=(10, 12)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A dataset folder: frames/{0..5}.png (of different sizes, values 0, 40, ..., 200) and clips/{long,short}.mp4."""
    root = tmp_path_factory.mktemp("frames_data")
    (root / "frames").mkdir()
    for i in range(6):
        (root / "frames" / f"{i}.png").write_bytes(_png(40 * i, (10 + i, 12)))
    (root / "clips").mkdir()
    frames = V["make_frames"](30)
    (root / "clips" / "long.mp4").write_bytes(V["encode_video"](frames))
    (root / "clips" / "short.mp4").write_bytes(V["encode_video"](frames[:3]))
    return root


def test_images_rows_end_to_end(folder, tokenizer_path):
    rows = [
        {"images": [f"frames/{i}.png" for i in range(5)], "prefix": "caption en", "suffix": "a red car", "id": 0},
        {"images": ["frames/5.png", "frames/1.png"], "prefix": "caption en", "suffix": "a blue dog", "id": 1},
    ]
    path = _write(folder, rows, "images.jsonl")
    src = sources.get_source(dict(name="jsonl", path=path))
    assert src.media == "images" and src.kinds == {"prefix": "str", "suffix": "str", "id": "int"}
    exs = list(src.get_tfdata(ordered=True).as_numpy_iterator())
    assert len(exs[0]["images"]) == 5 and exs[0]["images"][2] == _png(80, (12, 12))
    assert exs[1]["images/filenames"].tolist() == [str(folder / "frames" / n).encode() for n in ("5.png", "1.png")]
    pp_str = (
        "frames_from_images(num_frames=3, size=8)|value_range(-1, 1)|tok_paligemma(text_len=16)"
        '|keep("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input", "id")'
    )
    batch = next(iter(pipeline.make_eval_iterator(src, pp_str, batch_size=2, tokenizer=tokenizer_path)))
    assert batch["image"].shape == (2, 3, 8, 8, 3) and batch["image"].dtype == np.float32
    assert batch["frame_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    # Example 0: images 0, 2, 4 of 5 (values 0, 80, 160); example 1: images 5, 1 (200, 40), then a zero frame.
    values = np.round((batch["image"][..., 0].mean(axis=(2, 3)) + 1) * 127.5).tolist()
    assert values == [[0, 80, 160], [200, 40, 0]]  # the padding frame: zeros (-1 after value_range)
    assert batch["text"].shape == (2, 16)
    train = next(pipeline.make_train_iterator(src, pp_str, batch_size=2, tokenizer=tokenizer_path))
    assert train["image"].shape == (2, 3, 8, 8, 3) and train["frame_mask"].shape == (2, 3)


def test_video_rows_end_to_end(folder, tokenizer_path):
    rows = [
        {"video": "clips/long.mp4", "prefix": "caption en", "suffix": "a red car", "id": 0},
        {"video": "clips/short.mp4", "prefix": "caption en", "suffix": "a blue dog", "id": 1},
    ]
    path = _write(folder, rows, "video.jsonl")
    src = sources.get_source(dict(name="jsonl", path=path))
    assert src.media == "video"
    ex = next(src.get_tfdata(ordered=True).as_numpy_iterator())
    assert ex["video"] == (folder / "clips" / "long.mp4").read_bytes()
    assert ex["video/filename"] == str(folder / "clips" / "long.mp4").encode()
    pp_str = (
        "frames_from_video(num_frames=4, size=16)|tok_paligemma(text_len=16)"
        '|keep("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input")'
    )
    batch = next(iter(pipeline.make_eval_iterator(src, pp_str, batch_size=2, tokenizer=tokenizer_path)))
    assert batch["image"].shape == (2, 4, 16, 16, 3) and batch["image"].dtype == np.uint8
    assert batch["frame_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    expected, _ = video.read_video(folder / "clips" / "long.mp4", 4)
    assert np.abs(batch["image"][0].astype(int) - video.stack_frames(expected, 16)).max() <= 1
    assert not batch["image"][1, 3].any()


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"images": ["frames/0.png", "frames/missing.png"]}, "image file not found: {root}/frames/missing.png"),
        ({"images": []}, "`images` must be a non-empty list of paths"),
        ({"images": ["../outside.png"]}, "image path '../outside.png' points outside the dataset folder"),
        ({"images": ["frames/0.png", "clips/long.mp4"]}, "image file {root}/clips/long.mp4 is not an image"),
        ({"video": "clips/missing.mp4"}, "video file not found: {root}/clips/missing.mp4"),
        ({"video": "clips/empty.mp4"}, "video file {root}/clips/empty.mp4 is empty"),
        ({"image": "frames/0.png"}, "has `image` but line 1 has `images`"),
        ({"images": ["frames/0.png"], "video": "clips/long.mp4"}, "has both `images` and `video`"),
    ],
)
def test_bad_rows_name_the_file_and_line(folder, bad, reason):
    (folder / "clips" / "empty.mp4").write_bytes(b"")
    good = {"images": ["frames/0.png"], "id": 0}
    if "video" in bad and "images" not in bad:
        good = {"video": "clips/long.mp4", "id": 0}
    path = _write(folder, [good, good, bad], "bad.jsonl")
    with pytest.raises(sources.DataError) as e:
        sources.get_source(dict(name="jsonl", path=path))
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: ") and reason.format(root=folder) in msg, msg
    src = sources.get_source(dict(name="jsonl", path=path, skip_bad_rows=True))
    assert src.num_examples == 2 and src.num_skipped == 1 and src.skipped[0][0] == 3


def test_corrupt_video_is_one_data_error_naming_the_file(folder, tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "ok.mp4").write_bytes((folder / "clips" / "short.mp4").read_bytes())
    (tmp_path / "clips" / "bad.mp4").write_bytes(b"not a video, just text" * 10)
    path = _write(tmp_path, [{"video": "clips/ok.mp4", "id": 0}, {"video": "clips/bad.mp4", "id": 1}])
    src = sources.get_source(dict(name="jsonl", path=path))
    with pytest.raises(sources.DataError) as e:
        list(pipeline.make_eval_iterator(src, 'frames_from_video(num_frames=2, size=8)|keep("image")', batch_size=2))
    msg = str(e.value)
    assert f"'video' of example id=1 ({tmp_path}/clips/bad.mp4): not a readable video" in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
