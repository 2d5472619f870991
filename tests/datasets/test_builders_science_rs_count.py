"""AI2D, ScienceQA, RSVQA-LR/HR, TallyQA, POPE and MMVP builders on tiny fixtures in the official formats.

The fixtures (tests/fixtures/data/<name>_manual) hold a handful of questions and 8-24 px images each; every dataset
is built offline into a temporary data_dir and read back through `datasets.sources`.
"""

import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")


def _manual(name):
    return os.path.join(FIXTURES, f"{name}_manual")


def _build(name, tmp_path, manual_dir=None):
    builder = build.prepare(name, data_dir=str(tmp_path / "data"), manual_dir=manual_dir or _manual(name))
    return {split: info.num_examples for split, info in builder.info.splits.items()}


def _examples(name, split, tmp_path, key):
    source = sources.get_source(dict(name=name, split=split, data_dir=str(tmp_path / "data")))
    exs = list(source.get_tfdata(ordered=True).as_numpy_iterator())
    out = {e[key].decode() if isinstance(e[key], bytes) else int(e[key]): e for e in exs}
    assert len(out) == len(exs) == source.num_examples
    return out


def _read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def _pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _copy(name, tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(_manual(name), manual)
    return manual


def _missing(name, manual_dir):
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir(name, str(manual_dir))
    return str(e.value).split("\n")[0], e.value.details


# ----------------------------------------------------------------------------------------------------------
# AI2D


def test_ai2d_builder_on_fixture(tmp_path):
    assert _build("ai2d", tmp_path) == {"train": 3, "test": 1}  # diagram 33 is in ai2d_test_ids.csv
    train = _examples("ai2d", "train", tmp_path, "id")
    test = _examples("ai2d", "test", tmp_path, "id")
    assert sorted(train) == ["10.png-0", "2.png-0", "2.png-1"] and list(test) == ["33.png-0"]
    e = train["2.png-0"]
    assert e["question"] == b"Which stage comes after the egg?" and e["label"] == 1 and not e["abc_label"]
    assert e["choices"].tolist() == [b"adult", b"larva", b"pupa", b"egg"] and e["answers"].tolist() == [b"larva"]
    assert e["image"] == _read(_manual("ai2d"), "ai2d", "images", "2.png") and e["image_name"] == b"2.png"
    t = test["33.png-0"]
    assert t["label"] == 1 and t["answers"].tolist() == [b"6"]  # correctAnswer given as the string "1"
    # A question about letter labels sees its diagram with the text box painted white and the letter drawn in it.
    abc = train["2.png-1"]
    assert abc["abc_label"] and abc["answers"].tolist() == [b"C"]
    original, lettered = _pixels(e["image"]), _pixels(abc["image"])
    assert lettered.shape == original.shape == (16, 24, 3)
    box = lettered[2:13, 2:13]
    assert (box == 255).all(axis=-1).mean() > 0.5 and (box.max(axis=-1) < 128).any()  # white box, dark letter
    assert (lettered[:, 14:] == original[:, 14:]).all()  # outside the box: unchanged


def test_ai2d_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("ai2d", empty)
    for name in ("ai2d_test_ids.csv", "ai2d/images/", "ai2d/questions/", "ai2d/annotations/"):
        assert name in first
    assert "ai2d-all.zip" in details
    manual = _copy("ai2d", tmp_path)
    (manual / "ai2d_test_ids.csv").write_text("id,split\n33,test\n")
    with pytest.raises(ValueError, match=r"ai2d_test_ids\.csv is not the official list of test diagram ids"):
        _build("ai2d", tmp_path, str(manual))
    (manual / "ai2d_test_ids.csv").write_text("33\n")
    (manual / "ai2d" / "questions" / "10.png.json").write_text(json.dumps({"questions": {}}))
    with pytest.raises(ValueError, match=r"10\.png\.json is not an official AI2D question file"):
        _build("ai2d", tmp_path, str(manual))
    os.remove(manual / "ai2d" / "questions" / "10.png.json")
    os.remove(manual / "ai2d" / "images" / "33.png")
    with pytest.raises(FileNotFoundError, match=r"images/33\.png of .*33\.png\.json not found"):
        _build("ai2d", tmp_path, str(manual))


# ----------------------------------------------------------------------------------------------------------
# ScienceQA


def test_scienceqa_builder_on_fixture(tmp_path):
    # Problems 2 and 12 have no image: only the IMG subset is built. Validation images sit in manual_dir/val/.
    assert _build("scienceqa", tmp_path) == {"train": 1, "validation": 1, "test": 1}
    train = _examples("scienceqa", "train", tmp_path, "id")["1"]
    assert train["question"] == b"Which color is the square?" and train["choices"].tolist() == [b"red", b"blue"]
    assert train["answer"] == 1 and train["answer_text"] == b"blue" and train["indexed_answer"] == b"B"
    assert train["indexed_choices"] == b"(A) red, (B) blue" and train["hint"] == b"A picture of a square."
    assert train["subject"] == b"natural science" and train["lecture"] == b"Maps show places."
    assert train["image"] == _read(_manual("scienceqa"), "images", "train", "1", "image.png")
    val = _examples("scienceqa", "validation", tmp_path, "id")["7"]
    assert val["hint"] == b"N/A" and tf.io.decode_png(val["image"]).shape == (16, 16, 3)
    test = _examples("scienceqa", "test", tmp_path, "id")["9"]
    assert test["indexed_choices"] == b"(A) cat, (B) dog, (C) car, (D) cow, (E) hen"
    assert (test["answer"], test["indexed_answer"], test["answer_text"]) == (2, b"C", b"car")


def test_scienceqa_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("scienceqa", empty)
    assert "problems.json" in first and "images/train/" in first and "images/test/" in first
    assert "scienceqa.github.io" in details
    manual = _copy("scienceqa", tmp_path)
    os.remove(manual / "images" / "test" / "9" / "image.png")
    with pytest.raises(FileNotFoundError, match=r"test/9/image\.png of problem 9 not found"):
        _build("scienceqa", tmp_path, str(manual))
    (manual / "problems.json").write_text("[]")
    with pytest.raises(ValueError, match=r"problems\.json is not the official ScienceQA problems\.json"):
        _build("scienceqa", tmp_path, str(manual))


# ----------------------------------------------------------------------------------------------------------
# RSVQA


def test_rsvqa_lr_builder_on_fixture(tmp_path):
    # Train: the count question and the inactive one are left out; no validation files: no validation split.
    assert _build("rsvqa_lr", tmp_path) == {"train": 2, "test": 1}
    train = _examples("rsvqa_lr", "train", tmp_path, "question_id")
    assert sorted(train) == [0, 1]
    assert train[0]["question_type"] == b"rural_urban" and train[0]["answers"].tolist() == [b"rural"]
    assert train[1]["question"] == b"Is there a road?" and train[1]["answers"].tolist() == [b"yes"]
    assert train[0]["image_id"] == train[1]["image_id"] == 0
    # The GeoTIFF is stored as PNG with the same pixels.
    tif = np.asarray(Image.open(os.path.join(_manual("rsvqa_lr"), "Images_LR", "0.tif")))
    assert train[0]["image"].startswith(b"\x89PNG") and (_pixels(train[0]["image"]) == tif).all()
    test = _examples("rsvqa_lr", "test", tmp_path, "question_id")[100]
    assert test["question_type"] == b"comp" and test["answers"].tolist() == [b"no"] and test["image_id"] == 1


def test_rsvqa_hr_builder_on_fixture(tmp_path):
    assert _build("rsvqa_hr", tmp_path) == {"train": 1, "test": 1, "test_2": 1}  # area and count left out
    train = _examples("rsvqa_hr", "train", tmp_path, "question_id")
    assert list(train) == [1] and train[1]["question_type"] == b"presence"
    assert train[1]["image"] == _read(_manual("rsvqa_hr"), "Data", "0.png")  # PNG stored as it is
    test = _examples("rsvqa_hr", "test", tmp_path, "question_id")[5]
    assert test["answers"].tolist() == [b"yes"] and _pixels(test["image"]).shape == (20, 20, 3)  # from 1.tif
    test2 = _examples("rsvqa_hr", "test_2", tmp_path, "question_id")[9]  # USGS_split_test_phili_*
    assert test2["question"] == b"Is there a building?" and test2["answers"].tolist() == [b"no"]


def test_rsvqa_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("rsvqa_lr", empty)
    assert "LR_split_train_questions.json" in first and "LR_split_test_answers.json" in first
    assert "Images_LR/" in first and "LR_split_val" not in first and "zenodo.org/records/6344334" in details
    first, _ = _missing("rsvqa_hr", empty)
    assert "USGS_split_train_answers.json" in first and "Data/" in first and "test_phili" not in first
    manual = _copy("rsvqa_hr", tmp_path)
    os.remove(manual / "USGS_split_test_phili_answers.json")  # an optional split with one of its two files
    assert _missing("rsvqa_hr", manual)[0].endswith(": USGS_split_test_phili_answers.json")
    manual = _copy("rsvqa_lr", tmp_path / "lr")
    os.remove(manual / "Images_LR" / "1.tif")
    with pytest.raises(FileNotFoundError, match=r"Images_LR/1\.tif \(or \.png\) of question 100 not found"):
        _build("rsvqa_lr", tmp_path / "lr", str(manual))
    (manual / "LR_split_test_answers.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match=r"LR_split_test_answers\.json is not an official RSVQA answers file"):
        _build("rsvqa_lr", tmp_path / "lr", str(manual))


# ----------------------------------------------------------------------------------------------------------
# TallyQA


def test_tallyqa_builder_on_fixture(tmp_path):
    assert _build("tallyqa", tmp_path) == {"train": 2, "test": 2}
    train = _examples("tallyqa", "train", tmp_path, "image_file")  # both train questions have question_id 30
    vg = train["VG_100K/1.jpg"]
    assert vg["question"] == b"How many cats are there?" and vg["answer"] == 2 and vg["answers"].tolist() == [b"2"]
    assert vg["issimple"] == -1 and vg["image_source"] == b"imported_genome" and vg["image_id"] == 1
    assert vg["image"] == _read(_manual("tallyqa"), "VG_100K", "1.jpg")
    coco = train["train2014/COCO_train2014_000000000009.jpg"]
    assert coco["answer"] == 0 and coco["question_id"] == 30
    test = _examples("tallyqa", "test", tmp_path, "question_id")
    assert (test[77]["issimple"], test[78]["issimple"]) == (1, 0)  # simple / complex
    assert test[78]["answers"].tolist() == [b"1"] and tf.io.decode_jpeg(test[78]["image"]).shape == (10, 10, 3)


def test_tallyqa_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("tallyqa", empty)
    assert "train.json or test.json" in first and "TallyQA_dataset" in details and "VG_100K_2/" in details
    manual = _copy("tallyqa", tmp_path)
    shutil.rmtree(manual / "VG_100K_2")
    with pytest.raises(FileNotFoundError, match=r"VG_100K_2/5\.jpg of question 77 .*test\.json\) not found"):
        _build("tallyqa", tmp_path, str(manual))
    (manual / "test.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match=r"test\.json is not an official TallyQA file"):
        _build("tallyqa", tmp_path, str(manual))


# ----------------------------------------------------------------------------------------------------------
# POPE and MMVP


def test_pope_builder_on_fixture(tmp_path):
    # random: manual_dir/coco_pope_random.json; adversarial: output/coco/...jsonl; popular left out.
    assert _build("pope", tmp_path) == {"random": 3, "adversarial": 1}
    random = _examples("pope", "random", tmp_path, "question_id")
    e = random[2]
    assert e["question"] == b"Is there a dining table in the image?" and e["object"] == b"dining table"
    assert (e["answer"], e["label"]) == (b"no", 0) and e["image_file"] == b"COCO_val2014_000000310196.jpg"
    assert e["image"] == _read(_manual("pope"), "val2014", "COCO_val2014_000000310196.jpg")
    assert (random[3]["answer"], random[3]["label"], random[3]["object"]) == (b"yes", 1, b"apple")  # "Yes"
    adversarial = _examples("pope", "adversarial", tmp_path, "question_id")[1]
    assert adversarial["object"] == b"person" and adversarial["answer"] == b"no"


def test_pope_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("pope", empty)
    assert "coco_pope_random.json or coco_pope_popular.json or coco_pope_adversarial.json" in first
    assert "RUCAIBox/POPE" in details
    manual = _copy("pope", tmp_path)
    shutil.rmtree(manual / "val2014")
    assert _missing("pope", manual)[0].endswith(": val2014/")
    manual = _copy("pope", tmp_path / "b")
    (manual / "coco_pope_random.json").write_text('{"question_id": 1, "image": "x.jpg", "text": "?", "label": "maybe"}')
    with pytest.raises(ValueError, match=r"coco_pope_random\.json: question 1 has label 'maybe'"):
        _build("pope", tmp_path / "b", str(manual))


def test_mmvp_builder_on_fixture(tmp_path):
    assert _build("mmvp", tmp_path) == {"test": 4}
    test = _examples("mmvp", "test", tmp_path, "id")
    assert [test[i]["pair_id"] for i in (1, 2, 3, 4)] == [0, 0, 1, 1]
    e = test[2]
    assert e["question"] == b"Are the butterfly's wings closer to being open or closed?"
    assert e["options"].tolist() == [b"Open", b"Closed"] and e["options_text"] == b"(a) Open (b) Closed"
    assert (e["answer"], e["answers"].tolist(), e["label"]) == (b"Closed", [b"Closed"], 1)
    assert test[1]["answer"] == b"Open" and test[1]["label"] == 0
    assert test[3]["question"] == b"Is the dog facing left, or right?"  # a quoted CSV cell with a comma
    assert test[3]["image"] == _read(_manual("mmvp"), "MMVP Images", "3.jpg")


def test_mmvp_missing_and_bad_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first, details = _missing("mmvp", empty)
    assert "Questions.csv" in first and "MMVP Images/" in first and "huggingface.co/datasets/MMVP/MMVP" in details
    manual = _copy("mmvp", tmp_path)
    os.remove(manual / "MMVP Images" / "4.jpg")
    with pytest.raises(FileNotFoundError, match=r"MMVP Images/4\.jpg of .*Questions\.csv line 5 not found"):
        _build("mmvp", tmp_path, str(manual))
    (manual / "Questions.csv").write_text("Index,Question,Options,Correct Answer\n1,Why?,Open or closed,(a)\n")
    with pytest.raises(ValueError, match=r"Questions\.csv line 2: expected options"):
        _build("mmvp", tmp_path, str(manual))
    (manual / "Questions.csv").write_text("Index,Question\n1,Why?\n")
    with pytest.raises(ValueError, match=r"Questions\.csv is not the official Questions\.csv \(no Options, Correct"):
        _build("mmvp", tmp_path, str(manual))
