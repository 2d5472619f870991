"""Image, text and key ops of datasets.pp on small tensors (eager and inside tf.data)."""

import numpy as np
import pytest
import tensorflow as tf

from datasets import pp


def run(pp_string, data, **kw):
    return pp.get_preprocess_fn(pp_string, **kw)(data)


def run_ds(pp_string, data, **kw):
    ds = tf.data.Dataset.from_tensors(data).map(pp.get_preprocess_fn(pp_string, **kw))
    return next(iter(ds))


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ decode


def test_decode_png_jpeg_gray():
    img = rgb(10, 14)
    out = run_ds("decode", {"image": tf.io.encode_png(img)})
    assert out["image"].dtype == tf.uint8 and out["image"].shape == (10, 14, 3)
    np.testing.assert_array_equal(out["image"].numpy(), img)
    smooth = np.broadcast_to(np.linspace(0, 255, 14, dtype=np.uint8)[None, :, None], (10, 14, 3)).copy()
    out = run_ds("decode(checked=False)", {"image": tf.io.encode_jpeg(smooth, quality=100)})
    assert out["image"].shape == (10, 14, 3)
    assert np.abs(out["image"].numpy().astype(int) - smooth).mean() < 4
    gray = img[..., :1]
    out = run("decode", {"image": tf.io.encode_png(gray)})
    assert out["image"].shape == (10, 14, 3)
    np.testing.assert_array_equal(out["image"].numpy()[..., 2], gray[..., 0])
    # Already decoded images pass through.
    out = run("decode", {"image": tf.constant(img)})
    np.testing.assert_array_equal(out["image"].numpy(), img)


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize(
    "id_key, id_value, shown",
    [
        ("question_id", 1234567, "question_id=1234567"),
        ("image/id", "COCO_val_000042.jpg", "image/id=COCO_val_000042.jpg"),
    ],
)
def test_corrupt_image_names_example(checked, id_key, id_value, shown):
    data = {"image": tf.constant(b"this is not an image at all"), id_key: tf.constant(id_value)}
    with pytest.raises(tf.errors.OpError) as e:
        run_ds(f"decode(checked={checked})", data)
    assert shown in str(e.value)


def test_truncated_jpeg_names_example():
    jpg = tf.io.encode_jpeg(rgb(32, 32)).numpy()
    data = {"image": tf.constant(jpg[: len(jpg) // 2]), "id": tf.constant("ex-7")}
    with pytest.raises(tf.errors.OpError) as e:
        run_ds("decode", data)
    msg = str(e.value)
    assert "cannot decode 'image' of example id=ex-7" in msg and f"{len(jpg) // 2} bytes" in msg


# ------------------------------------------------------------------------------------------------ geometry


def test_resize_int_tuple_dtype_and_masks():
    img = rgb(6, 8)
    mask = np.zeros((2, 6, 8), np.uint8)
    mask[0, :3] = 1
    mask[1, :, 4:] = 7
    data = {
        "image": tf.constant(img),
        "objects/mask": tf.constant(mask),
        "objects/bbox": tf.constant([[0.1, 0.2, 0.3, 0.4]]),
    }
    out = run_ds("resize(12)", data)
    assert out["image"].dtype == tf.uint8 and out["image"].shape == (12, 12, 3)
    m = out["objects/mask"].numpy()
    assert m.shape == (2, 12, 12) and set(np.unique(m)) <= {0, 1, 7}  # nearest: values kept
    np.testing.assert_array_equal(m[0, :6], 1) and np.testing.assert_array_equal(m[0, 6:], 0)
    np.testing.assert_array_equal(m[1, :, 6:], 7)
    np.testing.assert_allclose(out["objects/bbox"].numpy(), [[0.1, 0.2, 0.3, 0.4]])
    out = run("resize((3, 5), method='nearest')", {"image": tf.constant(img)})
    assert out["image"].shape == (3, 5, 3)
    # Integer results are rounded, not truncated: a constant image stays constant.
    out = run("resize((7, 9))", {"image": tf.fill([6, 8, 3], tf.constant(200, tf.uint8))})
    assert set(np.unique(out["image"].numpy())) == {200}
    out = run("resize(4)", {"image": tf.constant(img, tf.float32)})
    assert out["image"].dtype == tf.float32


def test_resize_small():
    out = run("resize_small(4)", {"image": tf.constant(rgb(8, 12)), "objects/mask": tf.zeros([8, 12], tf.uint8)})
    assert out["image"].shape == (4, 6, 3) and out["objects/mask"].shape == (4, 6)
    out = run_ds("resize_small(5)", {"image": tf.constant(rgb(30, 10))})
    assert tuple(out["image"].shape) == (15, 5, 3)


def test_central_crop_boxes_masks():
    img = rgb(10, 20)
    mask = np.arange(200, dtype=np.int32).reshape(10, 20, 1)
    boxes = np.array([[0.2, 0.25, 0.8, 0.75], [0.0, 0.0, 0.1, 0.1]], np.float32)
    out = run_ds(
        "central_crop((6, 10))",
        {"image": tf.constant(img), "objects/mask": tf.constant(mask), "objects/bbox": tf.constant(boxes)},
    )
    np.testing.assert_array_equal(out["image"].numpy(), img[2:8, 5:15])
    np.testing.assert_array_equal(out["objects/mask"].numpy(), mask[2:8, 5:15])
    # y: (0.2*10 - 2)/6 = 0, (0.8*10 - 2)/6 = 1; x: (0.25*20 - 5)/10 = 0, (0.75*20 - 5)/10 = 1.
    # The second box is outside the crop: clipped to a degenerate box (kept, aligned with labels).
    np.testing.assert_allclose(out["objects/bbox"].numpy(), [[0, 0, 1, 1], [0, 0, 0, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="smaller than the crop"):  # static shape: at trace time
        run_ds("central_crop(30)", {"image": tf.constant(img)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):  # dynamic: at run time
        run_ds("decode|central_crop(30)", {"image": tf.io.encode_png(img)})


def test_random_crop_seeded_and_consistent():
    img = np.arange(16 * 16 * 3, dtype=np.int32).reshape(16, 16, 3) % 251
    img = img.astype(np.uint8)
    data = {
        "image": tf.constant(img),
        "objects/mask": tf.constant(img[..., 0]),
        "objects/bbox": tf.constant([[0.25, 0.25, 0.75, 0.75]]),
    }
    fn = pp.get_preprocess_fn("random_crop(8)")
    outs = {}
    for s in range(12):
        d = dict(data, rng=tf.constant([s, 7], tf.int64))
        a, b = fn(d), fn(d)
        np.testing.assert_array_equal(a["image"], b["image"])  # same seed -> same crop
        crop = a["image"].numpy()
        oy, ox = np.argwhere((img == crop[0, 0]).all(-1))[0]
        np.testing.assert_array_equal(crop, img[oy : oy + 8, ox : ox + 8])
        np.testing.assert_array_equal(a["objects/mask"].numpy(), img[oy : oy + 8, ox : ox + 8, 0])
        want = np.clip((np.array([4, 4, 12, 12]) - [oy, ox, oy, ox]) / 8, 0, 1)
        np.testing.assert_allclose(a["objects/bbox"].numpy()[0], want, atol=1e-6)
        outs[(oy, ox)] = True
    assert len(outs) > 3  # different seeds, different crops
    assert run("random_crop((4, 6))", {"image": tf.constant(img)})["image"].shape == (4, 6, 3)


def test_flip_lr():
    img = rgb(4, 6)
    data = {
        "image": tf.constant(img),
        "objects/bbox": tf.constant([[0.1, 0.2, 0.5, 0.3]]),
        "objects/mask": tf.constant(img[None, ..., 0]),
    }
    out = run_ds("flip_lr(prob=1.0)", data)
    np.testing.assert_array_equal(out["image"].numpy(), img[:, ::-1])
    np.testing.assert_array_equal(out["objects/mask"].numpy()[0], img[:, ::-1, 0])
    np.testing.assert_allclose(out["objects/bbox"].numpy(), [[0.1, 0.7, 0.5, 0.8]], atol=1e-6)
    out = run("flip_lr(0.0)", data)
    np.testing.assert_array_equal(out["image"].numpy(), img)
    np.testing.assert_allclose(out["objects/bbox"].numpy(), [[0.1, 0.2, 0.5, 0.3]])
    # Random with a seed: deterministic per seed, both outcomes occur, boxes follow the image.
    fn = pp.get_preprocess_fn("flip_lr")
    flips = []
    for s in range(16):
        o = fn(dict(data, rng=tf.constant([s, 0])))
        flipped = bool((o["image"].numpy() == img[:, ::-1]).all())
        assert flipped == bool(fn(dict(data, rng=tf.constant([s, 0])))["image"].numpy()[0, 0, 0] == img[0, -1, 0])
        assert np.isclose(o["objects/bbox"].numpy()[0, 1], 0.7 if flipped else 0.2)
        flips.append(flipped)
    assert 0 < sum(flips) < 16


def test_pad_to_square():
    img = rgb(4, 8)
    out = run_ds(
        "pad_to_square",
        {
            "image": tf.constant(img),
            "objects/bbox": tf.constant([[0.0, 0.0, 1.0, 1.0]]),
            "objects/mask": tf.ones([4, 8], tf.uint8),
        },
    )
    im = out["image"].numpy()
    assert im.shape == (8, 8, 3)
    np.testing.assert_array_equal(im[2:6], img)
    assert (im[:2] == 0).all() and (im[6:] == 0).all()
    np.testing.assert_allclose(out["objects/bbox"].numpy(), [[0.25, 0, 0.75, 1]])
    assert out["objects/mask"].numpy().sum() == 32 and out["objects/mask"].numpy()[2:6].all()
    out = run("pad_to_square(value=9, align='topleft')", {"image": tf.constant(img[:3, :2])})
    im = out["image"].numpy()
    assert im.shape == (3, 3, 3) and (im[:, 2] == 9).all()


def test_value_range():
    x = tf.constant([[[0, 255, 51]]], tf.uint8)
    np.testing.assert_allclose(run("value_range(-1, 1)", {"image": x})["image"].numpy(), [[[-1, 1, -0.6]]], atol=1e-6)
    out = run("value_range(0, 1, in_min=-1, in_max=1, clip_values=True)", {"image": tf.constant([-3.0, 0.0])})
    np.testing.assert_allclose(out["image"].numpy(), [0, 0.5])
    assert out["image"].dtype == tf.float32


# ------------------------------------------------------------------------------------------------ text / keys


def test_strfmt_lower():
    data = {"question": tf.constant("What IS this?"), "n": tf.constant(3), "objects/label": tf.constant(["a", "b"])}
    out = run_ds('strfmt("answer en {question} {n}x {{lit}} {objects/label}", outkey="prefix")|lower("prefix")', data)
    assert out["prefix"].numpy().decode() == "answer en what is this? 3x {lit} a, b"
    out = run('lower(key="question", outkey="q")', {"question": tf.constant("ÀB")})
    assert out["q"].numpy().decode() == "àb"
    with pytest.raises(ValueError, match="format specs"):
        pp.get_preprocess_fn('strfmt("{question:10}")')


def test_choice_seeded_covers_all():
    answers = tf.constant(["a", "b", "c"])
    fn = pp.get_preprocess_fn('choice(inkey="answers", outkey="suffix")')
    got = set()
    for s in range(30):
        d = {"answers": answers, "rng": tf.constant([s, 1], tf.int64)}
        a, b = fn(d)["suffix"].numpy(), fn(d)["suffix"].numpy()
        assert a == b
        got.add(a)
    assert got == {b"a", b"b", b"c"}
    # datasets.pipeline's per-example `_seed` is used when there is no `rng`.
    d = {"answers": answers, "_seed": tf.constant([4, 2], tf.int64)}
    assert fn(d)["suffix"].numpy() == fn(dict(d, rng=d["_seed"]))["suffix"].numpy()
    assert (
        len({fn({"answers": answers, "_seed": tf.constant([0, k], tf.int64)})["suffix"].numpy() for k in range(20)})
        == 3
    )
    # Without a seed: tf.random, any answer; in tf.data too. Default outkey = inkey.
    out = run_ds("choice", {"answers": answers})
    assert out["answers"].numpy() in {b"a", b"b", b"c"} and out["answers"].shape == ()
    # Works on any leading dimension (one box out of N).
    out = run("choice(key='b')", {"b": tf.constant([[1, 2], [1, 2]])})
    np.testing.assert_array_equal(out["b"], [1, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty in example"):
        run_ds("choice", {"answers": tf.constant([], tf.string), "id": tf.constant(3)})


def test_choice_cycle_by_epoch():
    fn = pp.get_preprocess_fn('choice_cycle(inkey="answers", outkey="suffix")')
    answers = tf.constant(["a", "b", "c"])
    got = [fn({"answers": answers, "epoch": tf.constant(e, tf.int64)})["suffix"].numpy() for e in range(7)]
    assert got == [b"a", b"b", b"c", b"a", b"b", b"c", b"a"]
    fn = pp.get_preprocess_fn('choice_cycle(inkey="answers", outkey="suffix", offset_key="question_id")')
    d = {"answers": answers, "question_id": tf.constant(17)}
    seq = [fn(dict(d, epoch=tf.constant(e)))["suffix"].numpy() for e in range(3)]
    assert sorted(seq) == [b"a", b"b", b"c"]
    assert seq == [fn(dict(d, epoch=tf.constant(e)))["suffix"].numpy() for e in range(3)]  # resumable
    with pytest.raises(KeyError, match="counter key 'epoch'"):
        run("choice_cycle", {"answers": answers})


def test_copy_keep_drop_rename():
    data = {"a": tf.constant(1), "b": tf.constant(2), "c/d": tf.constant(3)}
    out = run_ds('copy("a", "z")|drop("b")|rename("c/d", "cd")|rename(z="y")', data)
    assert sorted(out) == ["a", "cd", "y"] and int(out["y"]) == 1 and int(out["cd"]) == 3
    out = run('keep("a", "c/d")', data)
    assert sorted(out) == ["a", "c/d"]
    with pytest.raises(KeyError, match=r"keys \['x'\] not in the example"):
        run('keep("a", "x")', data)
    assert sorted(run('keep("a", "x", missing_ok=True)', data)) == ["a"]
    assert sorted(data) == ["a", "b", "c/d"]  # input dict untouched
