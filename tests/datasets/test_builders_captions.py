"""COCO-35L, XM3600, TextCaps, SciCap, Screen2words and Widget Captioning builders on tiny fixtures in the official
formats (tests/fixtures/data/<name>_manual: a few synthetic 8x8..20x16 images each): each is built offline into a
temporary data_dir and read back through `datasets.sources`.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")


def _manual(name):
    return os.path.join(FIXTURES, f"{name}_manual")


def _examples(name, split, data_dir, key="id"):
    source = sources.get_source(dict(name=name, split=split, data_dir=data_dir))
    exs = list(source.get_tfdata(ordered=True).as_numpy_iterator())
    assert len(exs) == source.num_examples
    out = {}
    for e in exs:
        k = e[key]
        out[k.decode() if isinstance(k, bytes) else int(k)] = e
    assert len(out) == len(exs)  # the key is unique
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _texts(values):
    return [v.decode() for v in values]


def _copy(name, tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(_manual(name), manual)
    return manual


# ----------------------------------------------------------------------------------------------------------
# COCO-35L


def test_coco35l_builder_on_fixture(tmp_path):
    # coco_mt_train.jsonl as unpacked, coco_mt_dev.jsonl.bz2 as downloaded: both read.
    build.prepare("coco35l", data_dir=str(tmp_path), manual_dir=_manual("coco35l"))
    train = _examples("coco35l", "train", str(tmp_path))
    dev = _examples("coco35l", "validation", str(tmp_path))
    assert sorted(train) == sorted(f"{i}_{lang}" for i in (9, 42) for lang in ("en", "de", "fr", "zh"))
    assert sorted(dev) == ["74_de", "74_en", "74_ja"]
    # English: the source captions (once each, from the pairs of one target language), in file order.
    assert _texts(train["9_en"]["captions"]) == ["a red block", "a red picture"]
    assert _texts(train["9_zh"]["captions"]) == ["一个 红色 方块", "一 张 红色 图片"]  # tokenized as in the file
    assert _texts(train["42_fr"]["captions"]) == ["un bloc vert"]
    e = train["42_de"]
    assert e["language"] == b"de" and e["image/id"] == 42 and _texts(e["captions"]) == ["ein gruener block"]
    assert e["image"] == _read(os.path.join(_manual("coco35l"), "val2014", "COCO_val2014_000000000042.jpg"))
    assert train["9_fr"]["image"] == train["9_en"]["image"]  # the same picture for each of its languages
    assert tf.io.decode_jpeg(train["9_de"]["image"]).shape == (12, 16, 3)
    assert _texts(dev["74_ja"]["captions"]) == ["青い 正方形"] and _texts(dev["74_en"]["captions"]) == ["a blue square"]


def test_coco35l_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("coco35l", str(manual))
    first = str(e.value).split("\n")[0]
    assert "coco_mt_train.jsonl or coco_mt_dev.jsonl" in first and "train2014/" in first and "val2014/" in first
    assert "crossmodal-3600" in e.value.details
    manual = _copy("coco35l", tmp_path / "a")
    os.remove(manual / "val2014" / "COCO_val2014_000000000042.jpg")
    with pytest.raises(FileNotFoundError, match=r"COCO_val2014_000000000042\.jpg .*COCO id 42 in .*coco_mt_train"):
        build.prepare("coco35l", data_dir=str(tmp_path / "a" / "data"), manual_dir=str(manual))
    manual = _copy("coco35l", tmp_path / "b")
    with open(manual / "coco_mt_train.jsonl", "a", encoding="utf-8") as f:
        f.write('{"image_id": "9_5", "trg_lang": "de", "caption_tokenized": "a red block"}\n')  # no translation
    with pytest.raises(ValueError, match=r"coco_mt_train\.jsonl line 10: an entry has no 'translation_tokenized'"):
        build.prepare("coco35l", data_dir=str(tmp_path / "b" / "data"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# XM3600


def test_xm3600_builder_on_fixture(tmp_path):
    build.prepare("xm3600", data_dir=str(tmp_path), manual_dir=_manual("xm3600"))
    test = _examples("xm3600", "test", str(tmp_path))
    keys = ("000411001ff7dd4f", "00a3c1bd5d3f6a8e")
    assert sorted(test) == sorted(f"{k}_{lang}" for k in keys for lang in ("en", "zh", "quz"))
    e = test["000411001ff7dd4f_en"]
    assert e["image/id"] == b"000411001ff7dd4f" and e["language"] == b"en"
    assert _texts(e["captions"]) == ["a yellow sign .", "yellow paint on a wall ."]  # the tokenized captions
    assert _texts(e["captions/original"]) == ["A yellow sign.", "Yellow paint on a wall."]
    assert _texts(test["00a3c1bd5d3f6a8e_zh"]["captions"]) == ["蓝天 。", "蓝色 的 天空 。"]
    assert test["00a3c1bd5d3f6a8e_quz"]["image"] == _read(os.path.join(_manual("xm3600"), "images", f"{keys[1]}.jpg"))


def test_xm3600_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing, match=r"captions\.jsonl, images/"):
        build.check_manual_dir("xm3600", str(manual))
    manual = _copy("xm3600", tmp_path / "a")
    os.remove(manual / "images" / "00a3c1bd5d3f6a8e.jpg")
    with pytest.raises(FileNotFoundError, match=r"image .*00a3c1bd5d3f6a8e\.jpg \(in .*captions\.jsonl\) not found"):
        build.prepare("xm3600", data_dir=str(tmp_path / "a" / "data"), manual_dir=str(manual))
    (manual / "captions.jsonl").write_text('{"image/key": "000411001ff7dd4f", "en": {"caption": [\n')
    with pytest.raises(ValueError, match=r"captions\.jsonl line 1 is not a JSON object"):
        build.prepare("xm3600", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# TextCaps


def test_textcaps_builder_on_fixture(tmp_path):
    build.prepare("textcaps", data_dir=str(tmp_path), manual_dir=_manual("textcaps"))
    train = _examples("textcaps", "train", str(tmp_path), key="image_id")
    val = _examples("textcaps", "validation", str(tmp_path), key="image_id")
    test = _examples("textcaps", "test", str(tmp_path), key="image_id")
    assert (sorted(train), sorted(val), sorted(test)) == (
        ["011e7e629fb9ae7b", "0a0c3b1a9d2e4f5b"],
        ["1b2c3d4e5f607182"],
        ["f00d1e2a3b4c5d6e"],
    )
    # The file's caption entries are grouped by image, in file order.
    assert _texts(train["011e7e629fb9ae7b"]["captions"]) == [
        "A black sign that says STOP.",
        "A dark poster reading stop.",
        "Stop is written on black.",
    ]
    assert _texts(val["1b2c3d4e5f607182"]["captions"]) == ["A brown box labelled 42.", "The number 42 on a box."]
    assert test["f00d1e2a3b4c5d6e"]["captions"].tolist() == []  # scored by the server
    image = _read(os.path.join(_manual("textcaps"), "train_images", "1b2c3d4e5f607182.jpg"))
    assert val["1b2c3d4e5f607182"]["image"] == image  # validation images are in train_images/
    assert tf.io.decode_jpeg(test["f00d1e2a3b4c5d6e"]["image"]).shape == (8, 16, 3)


def test_textcaps_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing, match="TextCaps_0.1_train.json or TextCaps_0.1_val.json"):
        build.check_manual_dir("textcaps", str(manual))
    shutil.copy(os.path.join(_manual("textcaps"), "TextCaps_0.1_test.json"), manual)
    with pytest.raises(build.ManualFilesMissing, match="test_images/"):
        build.check_manual_dir("textcaps", str(manual))
    manual = _copy("textcaps", tmp_path / "a")
    (manual / "TextCaps_0.1_val.json").write_text(json.dumps([{"image_id": "x"}]))
    with pytest.raises(ValueError, match=r"TextCaps_0\.1_val\.json is not an official TextCaps file"):
        build.prepare("textcaps", data_dir=str(tmp_path / "a" / "data"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# SciCap


def test_scicap_builder_on_fixture(tmp_path):
    # The fixture is the unzipped scicap_data/ folder inside manual_dir, its validation folders named Val/.
    build.prepare("scicap", data_dir=str(tmp_path), manual_dir=_manual("scicap"))
    train = _examples("scicap", "train", str(tmp_path), key="image_id")
    val = _examples("scicap", "validation", str(tmp_path), key="image_id")
    test = _examples("scicap", "test", str(tmp_path), key="image_id")
    assert sorted(train) == ["1001.0025v1-Figure5-1", "1105.2234v2-Figure1-1"]
    assert sorted(val) == ["1203.4455v1-Figure3-1"] and sorted(test) == ["1907.00001v1-Figure2-1"]
    e = train["1001.0025v1-Figure5-1"]
    assert e["caption"] == b"accuracy vs. epochs for the three models ."
    assert e["caption/original"] == b"Figure 5: Accuracy vs. epochs for the three models."
    assert val["1203.4455v1-Figure3-1"]["caption"] == b"run time ( s ) over n ."
    figure = os.path.join(
        _manual("scicap"), "scicap_data", "SciCap-No-Subfig-Img", "test", "1907.00001v1-Figure2-1.png"
    )
    assert test["1907.00001v1-Figure2-1"]["image"] == _read(figure)  # stored as-is
    assert tf.io.decode_png(e["image"]).shape == (14, 20, 3)


def test_scicap_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing, match="First-Sentence/No-Subfig"):
        build.check_manual_dir("scicap", str(manual))
    manual = _copy("scicap", tmp_path / "a")
    shutil.rmtree(manual / "scicap_data" / "SciCap-No-Subfig-Img" / "Val")
    with pytest.raises(build.ManualFilesMissing, match="SciCap-No-Subfig-Img/val/"):
        build.check_manual_dir("scicap", str(manual))
    manual = _copy("scicap", tmp_path / "b")
    caption = manual / "scicap_data" / "SciCap-Caption-All" / "train" / "1105.2234v2-Figure1-1.json"
    caption.write_text(json.dumps({"0-originally-extracted": "Fig. 1. Loss curves."}))
    with pytest.raises(ValueError, match=r"1105\.2234v2-Figure1-1\.json: an entry has no '1-lowercase-and-token"):
        build.prepare("scicap", data_dir=str(tmp_path / "b" / "data"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# Screen2words


def test_screen2words_builder_on_fixture(tmp_path):
    build.prepare("screen2words", data_dir=str(tmp_path), manual_dir=_manual("screen2words"))
    train = _examples("screen2words", "train", str(tmp_path), key="screen_id")
    val = _examples("screen2words", "validation", str(tmp_path), key="screen_id")
    test = _examples("screen2words", "test", str(tmp_path), key="screen_id")
    assert (sorted(train), sorted(val), sorted(test)) == ([101, 2345], [67], [8])
    assert _texts(train[101]["captions"]) == [
        "settings menu",
        "list of settings options",
        "page showing settings, with toggles",  # a quoted CSV field with a comma
    ]
    assert _texts(test[8]["captions"]) == ["music player screen", "page playing a song"]
    assert train[2345]["image"] == _read(os.path.join(_manual("screen2words"), "combined", "2345.jpg"))
    assert tf.io.decode_jpeg(val[67]["image"]).shape == (16, 9, 3)


def test_screen2words_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("screen2words", str(manual))
    first = str(e.value).split("\n")[0]
    assert "screen_summaries.csv" in first and "combined/" in first and "split/train_screens.txt or" in first
    manual = _copy("screen2words", tmp_path / "a")
    (manual / "split" / "dev_screens.txt").write_text("67\nscreen 68\n")
    with pytest.raises(ValueError, match=r"dev_screens\.txt line 2 is not a screen id"):
        build.prepare("screen2words", data_dir=str(tmp_path / "a" / "data"), manual_dir=str(manual))
    (manual / "split" / "dev_screens.txt").write_text("67\n")
    (manual / "screen_summaries.csv").write_text("screen,text\n67,a map view\n")
    with pytest.raises(ValueError, match=r"screen_summaries\.csv is not the official CSV file \(no screenId, summary"):
        build.prepare("screen2words", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# Widget Captioning


def test_widget_caption_builder_on_fixture(tmp_path):
    build.prepare("widget_caption", data_dir=str(tmp_path), manual_dir=_manual("widget_caption"))
    train = _examples("widget_caption", "train", str(tmp_path))
    val = _examples("widget_caption", "validation", str(tmp_path))
    test = _examples("widget_caption", "test", str(tmp_path))
    assert (sorted(train), sorted(val), sorted(test)) == (["10046_0.0", "10046_0.1.0"], ["26_0.0"], ["98_0.0"])
    e = train["10046_0.0"]
    assert e["screen_id"] == 10046 and e["node_id"] == b"0.0"
    assert _texts(e["captions"]) == ["play video", "start playing"]
    # Bounds on the 1440 x 2560 canvas -> the 9 x 16 screenshot, [ymin, xmin, ymax, xmax] in [0, 1].
    np.testing.assert_allclose(e["bbox"], [0.5, 0.5, 1.0, 1.0], atol=1e-6)
    # A nested element (the root's 2nd child's 1st child) reaching past the canvas: clipped to the image.
    np.testing.assert_allclose(train["10046_0.1.0"]["bbox"], [0.9375, 0.0, 1.0, 5 / 9], atol=1e-6)
    np.testing.assert_allclose(val["26_0.0"]["bbox"], [0.0, 0.0, 0.25, 0.5], atol=1e-6)
    assert _texts(test["98_0.0"]["captions"]) == ["share", "share this page", "send to a friend"]
    assert e["image"] == _read(os.path.join(_manual("widget_caption"), "combined", "10046.jpg"))


def test_widget_caption_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("widget_caption", str(manual))
    first = str(e.value).split("\n")[0]
    assert "widget_captions.csv" in first and "combined/" in first and "split/train.txt or split/dev.txt" in first
    assert "widget-caption" in e.value.details
    manual = _copy("widget_caption", tmp_path / "a")
    (manual / "combined" / "26.json").write_text(json.dumps({"activity": {"root": {"bounds": [0, 0, 1, 1]}}}))
    with pytest.raises(ValueError, match=r"26\.json has no element '0\.0' with bounds"):
        build.prepare("widget_caption", data_dir=str(tmp_path / "a" / "data"), manual_dir=str(manual))
    os.remove(manual / "combined" / "26.jpg")
    with pytest.raises(FileNotFoundError, match=r"screenshot .*26\.jpg"):
        build.prepare("widget_caption", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


def test_draw_box_outlines_the_widget_box():
    # widgetcap's pp draws the element's box after the resize, one pixel wide in red, before value_range.
    from datasets import pp  # noqa: PLC0415

    fn = pp.get_preprocess_fn("resize(8)|draw_box()")
    out = fn({"image": tf.fill([16, 9, 3], tf.constant(7, tf.uint8)), "bbox": tf.constant([0.5, 0.0, 1.0, 0.5])})
    image = out["image"].numpy()
    assert out["image"].dtype == tf.uint8 and image.shape == (8, 8, 3)
    outline = np.zeros((8, 8), bool)
    outline[3, 0:4] = outline[7, 0:4] = outline[3:8, 0] = outline[3:8, 3] = True
    np.testing.assert_array_equal(image[outline], np.tile([255, 0, 0], (outline.sum(), 1)))
    np.testing.assert_array_equal(image[~outline], np.full(((~outline).sum(), 3), 7))
