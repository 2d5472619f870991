"""Several images / video frames per example: datasets.video (sampling, PyAV decoding, stacking) and the pp ops
frames_from_images / frames_from_video, plus the image ops on frames `[F, H, W, 3]`. The videos are made here."""

import io
import os
import runpy

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import images, pp, video
from datasets.pp import ops_video

V = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "video.py"))
N = 40  # frames of the test clip
TOL = 4.0  # codec error on a frame's mean colour (measured: < 3); neighbouring frames differ by 6


@pytest.fixture(scope="module")
def clip():
    """(the frames written [40, 48, 64, 3], the MPEG-4 Part 2 video in MP4)."""
    frames = V["make_frames"](N)
    return frames, V["encode_video"](frames, "mpeg4", "mp4")


def run_ds(pp_string, data):
    ds = tf.data.Dataset.from_tensors(data).map(pp.get_preprocess_fn(pp_string))
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


def _png(a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _nearest_written(decoded, written):
    """For each decoded frame, the index of the written frame with the nearest mean colour, and that distance."""
    d = np.abs(V["frame_means"](decoded)[:, None] - V["frame_means"](written)[None]).max(-1)
    return d.argmin(1), d.min(1)


# ------------------------------------------------------------------------------------------------ sampling


def test_sample_indices_hand_checked():
    idx, mask = video.sample_indices(40, 4)  # centres of [0, 10), [10, 20), ...
    assert idx.tolist() == [5, 15, 25, 35] and mask.tolist() == [True] * 4
    assert idx.dtype == np.int32 and mask.dtype == bool
    assert video.sample_indices(10, 4)[0].tolist() == [1, 3, 6, 8]  # floor(1.25), floor(3.75), floor(6.25), ...
    assert video.sample_indices(16, 16)[0].tolist() == list(range(16))
    assert video.sample_indices(100, 1)[0].tolist() == [50]
    assert video.sample_indices(17, 16)[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]
    # Fewer frames than asked: every frame once, in order, then the last one repeated as padding (mask 0).
    idx, mask = video.sample_indices(3, 5)
    assert idx.tolist() == [0, 1, 2, 2, 2] and mask.tolist() == [True, True, True, False, False]
    # Deterministic and uniform: equal calls agree; steps are n/F rounded down or up.
    a, b = video.sample_indices(1000, 16), video.sample_indices(1000, 16)
    np.testing.assert_array_equal(a[0], b[0])
    assert set(np.diff(video.sample_indices(1000, 16)[0]).tolist()) <= {62, 63}
    with pytest.raises(ValueError, match="no frames"):
        video.sample_indices(0, 4)
    with pytest.raises(ValueError, match="num_frames"):
        video.sample_indices(5, 0)


def test_sample_indices_graph_code_matches_numpy():
    for n in range(1, 41):
        for f in (1, 2, 3, 5, 8, 16, 17):
            idx, mask = ops_video.sample_indices(tf.constant(n), f)
            ref = video.sample_indices(n, f)
            np.testing.assert_array_equal(idx.numpy(), ref[0])
            np.testing.assert_array_equal(mask.numpy(), ref[1])


# ------------------------------------------------------------------------------------------------ read_video


def test_read_video_frames_are_the_frames_written(clip, tmp_path):
    written, data = clip
    idx, _ = video.sample_indices(N, 16)
    for source in (data, tmp_path / "clip.mp4"):
        if not isinstance(source, bytes):
            source.write_bytes(data)
        frames, mask = video.read_video(source, 16)
        assert frames.shape == (16, 48, 64, 3) and frames.dtype == np.uint8 and mask.all()
        near, dist = _nearest_written(frames, written)
        np.testing.assert_array_equal(near, idx)
        assert dist.max() < TOL, dist


def test_read_video_containers_without_a_frame_count(clip, monkeypatch):
    # WebM states no frame count (estimated from the duration); a raw MPEG-4 stream states none at all: decoded twice.
    written = clip[0]
    passes = []
    real = video._decode_pass
    monkeypatch.setattr(video, "_decode_pass", lambda *a, **k: passes.append(1) or real(*a, **k))
    for codec, fmt, expected_passes in (("libvpx", "webm", 1), ("mpeg4", "m4v", 2), ("libx264", "mp4", 1)):
        passes.clear()
        frames, mask = video.read_video(V["encode_video"](written, codec, fmt), 8)
        near, dist = _nearest_written(frames, written)
        np.testing.assert_array_equal(near, video.sample_indices(N, 8)[0])
        assert dist.max() < TOL and mask.all()
        assert len(passes) == expected_passes, (codec, fmt, passes)


def test_read_video_short_clip_is_padded(clip):
    written = clip[0][:5]
    frames, mask = video.read_video(V["encode_video"](written), 8)
    assert frames.shape == (8, 48, 64, 3)
    assert mask.tolist() == [True] * 5 + [False] * 3
    near, dist = _nearest_written(frames[:5], written)
    assert near.tolist() == [0, 1, 2, 3, 4] and dist.max() < TOL
    assert not frames[5:].any()  # padding frames are zeros


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda mp4: b"this is not a video at all" * 20, "not a readable video"),
        (lambda mp4: mp4[: len(mp4) // 2], "not a readable video"),  # the MP4 index (moov) is at the end: lost
        (lambda mp4: b"", "empty file"),
        (lambda mp4: V["encode_audio"](), "no video stream in the file (streams: audio)"),
        (lambda mp4: b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "cannot decode the video"),
    ],
)
def test_read_video_bad_file_is_one_clear_error(clip, make, problem):
    with pytest.raises(ValueError) as e:
        video.read_video(make(clip[1]), 4, name="clips/bad.mp4")
    msg = str(e.value)
    assert isinstance(e.value, video.VideoError) and msg.startswith("clips/bad.mp4: ") and problem in msg, msg
    assert "\n" not in msg and "Errno" not in msg


def test_read_video_missing_file_and_bad_arguments(tmp_path, clip):
    with pytest.raises(ValueError, match=r"nope\.mp4: video file not found"):
        video.read_video(tmp_path / "nope.mp4", 4)
    with pytest.raises(ValueError, match="num_frames"):
        video.read_video(clip[1], 0)


def test_stack_frames_resizes_as_the_pp_resize():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((30, 40, 3), (17, 17, 3), (16, 24, 3))]
    out = video.stack_frames(frames, (16, 24))
    assert out.shape == (3, 16, 24, 3) and out.dtype == np.uint8
    for k, f in enumerate(frames):
        np.testing.assert_array_equal(
            out[k], pp.get_preprocess_fn("resize((16, 24))")({"image": tf.constant(f)})["image"].numpy()
        )
    np.testing.assert_array_equal(out[2], frames[2])  # already at the size: unchanged
    assert video.stack_frames(frames, 8).shape == (3, 8, 8, 3)
    with pytest.raises(ValueError, match="no frames"):
        video.stack_frames([], 8)


# ------------------------------------------------------------------------------------------------ pp ops


def test_frames_from_images_samples_decodes_and_resizes():
    rng = np.random.default_rng(1)
    pics = [rng.integers(0, 256, (20 + 3 * k, 30 - 2 * k, 3), dtype=np.uint8) for k in range(5)]
    encoded = tf.constant([_png(p) for p in pics])
    # Each frame: the pixels of the ops `decode|resize(16)` on that image (tools.predict's resize agrees within 1).
    single = pp.get_preprocess_fn("decode|resize(16)")
    expected = [single({"image": tf.constant(_png(p))})["image"].numpy() for p in pics]
    for p, e in zip(pics, expected):
        assert np.abs(images.resize(images.decode(_png(p)), (16, 16)).astype(int) - e).max() <= 1
    out = run_ds("frames_from_images(num_frames=3, size=16)", {"images": encoded, "id": 7})
    assert out["image"].shape == (3, 16, 16, 3) and out["image"].dtype == np.uint8
    assert out["frame_mask"].tolist() == [1, 1, 1] and out["frame_mask"].dtype == np.int32
    for k, i in enumerate(video.sample_indices(5, 3)[0]):  # images 0, 2, 4
        np.testing.assert_array_equal(out["image"][k], expected[i])
    # Fewer images than frames: all of them in order, then zero frames with mask 0.
    out = run_ds('frames_from_images(num_frames=7, size=(16, 16))|keep("image", "frame_mask")', {"images": encoded})
    assert out["frame_mask"].tolist() == [1, 1, 1, 1, 1, 0, 0] and set(out) == {"image", "frame_mask"}
    np.testing.assert_array_equal(out["image"][:5], np.stack(expected))
    assert not out["image"][5:].any()
    # Then the image ops on frames: value_range keeps the shape.
    out = run_ds("frames_from_images(num_frames=2, size=8)|value_range(-1, 1)", {"images": encoded})
    assert out["image"].shape == (2, 8, 8, 3) and out["image"].dtype == np.float32 and out["image"].min() >= -1


def test_frames_from_images_bad_image_names_example_and_file():
    good = _png(np.zeros((8, 8, 3), np.uint8))
    data = {
        "images": tf.constant([good, good[:30], good]),
        "images/filenames": tf.constant(["a.png", "frames/b.png", "c.png"]),
        "question_id": 12,
    }
    with pytest.raises(tf.errors.OpError) as e:
        run_ds("frames_from_images(num_frames=3, size=8)", data)
    assert "cannot decode 'images' of example question_id=12, image 1 of 3 (frames/b.png)" in str(e.value)
    with pytest.raises(tf.errors.OpError, match="holds no image"):
        run_ds("frames_from_images(num_frames=3, size=8)", {"images": tf.zeros([0], tf.string)})


def test_frames_from_video_op(clip):
    written, data = clip
    out = run_ds("frames_from_video(num_frames=6, size=32)", {"video": data, "id": "clip-1"})
    assert out["image"].shape == (6, 32, 32, 3) and out["image"].dtype == np.uint8
    assert out["frame_mask"].tolist() == [1] * 6 and out["frame_mask"].dtype == np.int32
    frames, _ = video.read_video(data, 6)
    # The frames tools.predict reads, resized as the op `resize(32)` (numpy's resize agrees with it within 1 level).
    resize = pp.get_preprocess_fn("resize(32)")
    np.testing.assert_array_equal(out["image"], resize({"image": tf.constant(frames)})["image"].numpy())
    assert np.abs(out["image"].astype(int) - video.stack_frames(frames, 32)).max() <= 1
    short = V["encode_video"](written[:4])
    out = run_ds("frames_from_video(num_frames=6, size=(24, 32))|value_range(0, 1)", {"video": short})
    assert out["image"].shape == (6, 24, 32, 3) and out["frame_mask"].tolist() == [1, 1, 1, 1, 0, 0]
    assert not out["image"][4:].any()
    bad = {"video": data[:300], "id": "clip-2", "video/filename": "/data/clips/2.mp4"}
    with pytest.raises(tf.errors.OpError) as e:
        run_ds("frames_from_video(num_frames=6, size=32)", bad)
    assert "frames_from_video: 'video' of example id=clip-2 (/data/clips/2.mp4): not a readable video" in str(e.value)


def test_image_ops_on_frames_treat_every_frame_alike():
    frames = np.random.default_rng(2).integers(0, 256, (3, 12, 18, 3), dtype=np.uint8)
    seed = tf.constant([3, 4], tf.int64)
    for op in (
        "resize((8, 10))",
        "resize_small(6)",
        "central_crop((8, 10))",
        "random_crop((7, 9))",
        "flip_lr(1.0)",
        "pad_to_square(5)",
        "value_range(-1, 1)",
    ):
        out = run_ds(op, {"image": frames, "rng": seed})["image"]
        for k in range(3):
            one = run_ds(op, {"image": frames[k], "rng": seed})["image"]
            np.testing.assert_array_equal(out[k], one, err_msg=op)
        static = pp.get_preprocess_fn(op)({"image": tf.constant(frames), "rng": seed})["image"]
        assert static.shape.rank == 4 and static.shape[0] == 3, (op, static.shape)
