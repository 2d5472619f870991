"""OK-VQA, A-OKVQA, GQA, xGQA and VizWiz VQA builders on tiny official-format fixtures (fixtures/data/*_manual)."""

import json
import os
import shutil

import pytest
import tensorflow as tf

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")
OKVQA = os.path.join(FIXTURES, "okvqa_manual")
AOKVQA = os.path.join(FIXTURES, "aokvqa_manual")
GQA = os.path.join(FIXTURES, "gqa_manual")
XGQA = os.path.join(FIXTURES, "xgqa_manual")
VIZWIZ = os.path.join(FIXTURES, "vizwiz_vqa_manual")
XGQA_LANGUAGES = ("bn", "de", "en", "id", "ko", "pt", "ru", "zh")


def _examples(name, split, data_dir, key):
    source = sources.get_source(dict(name=name, split=split, data_dir=data_dir))
    exs = {_key(e[key]): e for e in source.get_tfdata(ordered=True).as_numpy_iterator()}
    assert len(exs) == source.num_examples
    return exs


def _key(value):
    return value.decode() if isinstance(value, bytes) else int(value)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _texts(values):
    return [v.decode() for v in values.tolist()]


def _first_line(excinfo):
    return str(excinfo.value).split("\n")[0]


def test_okvqa_builder_on_fixture(tmp_path):
    build.prepare("okvqa", data_dir=str(tmp_path), manual_dir=OKVQA)
    train = _examples("okvqa", "train", str(tmp_path), "question_id")
    val = _examples("okvqa", "validation", str(tmp_path), "question_id")
    assert (sorted(train), sorted(val)) == ([250, 251, 300], [420, 421])
    e = train[250]  # annotations are matched by question id, not by position
    assert e["question"] == b"What sport can you use this for?" and e["image_id"] == 25
    assert _texts(e["answers"]) == ["race"] * 5 + ["motocross"] * 3 + ["ride"] * 2  # the stemmed answers
    assert e["answer_type"] == b"other" and e["question_type"] == b"four"
    assert _texts(train[251]["answer_confidences"]) == ["yes"] * 9 + ["no"]
    assert e["image"] == _read(os.path.join(OKVQA, "train2014", "COCO_train2014_000000000025.jpg"))  # as stored
    assert tf.io.decode_jpeg(train[300]["image"]).shape == (12, 12, 3)
    v = val[421]
    assert v["question"] == b"Where is this fruit grown?" and _texts(v["answers"]).count("tropic") == 6
    assert tf.io.decode_jpeg(v["image"]).shape == (20, 16, 3)
    assert "multiple_choice_answer" not in e  # VQAv2 has it, OK-VQA's files do not


def test_okvqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("okvqa", str(manual))
    first = _first_line(e)
    for name in ("OpenEnded_mscoco_val2014_questions.json", "mscoco_train2014_annotations.json", "val2014/"):
        assert name in first
    assert "okvqa.allenai.org" in e.value.details
    shutil.rmtree(manual)
    shutil.copytree(OKVQA, manual)
    os.remove(manual / "val2014" / "COCO_val2014_000000000042.jpg")
    with pytest.raises(FileNotFoundError, match=r"OK-VQA: image .*COCO_val2014_000000000042\.jpg of question 420"):
        build.prepare("okvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "mscoco_val2014_annotations.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match=r"mscoco_val2014_annotations\.json is not an official OK-VQA annotation"):
        build.prepare("okvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


def test_aokvqa_builder_on_fixture(tmp_path):
    build.prepare("aokvqa", data_dir=str(tmp_path), manual_dir=AOKVQA)
    train = _examples("aokvqa", "train", str(tmp_path), "question_id")
    val = _examples("aokvqa", "validation", str(tmp_path), "question_id")
    test = _examples("aokvqa", "test", str(tmp_path), "question_id")
    assert sorted(train) == ["22MexNkBPpdZGX6sxbxVBH", "2Rp7yKXhYAn4UEwGRafnNr"] and len(val) == len(test) == 1
    e = train["22MexNkBPpdZGX6sxbxVBH"]
    assert e["question"] == b"What is the man by the bags awaiting?" and e["image_id"] == 71
    assert _texts(e["choices"]) == ["skateboarder", "train", "delivery", "cab"] and e["correct_choice_idx"] == 3
    assert e["correct_choice"] == b"cab"
    assert _texts(e["direct_answers"]) == ["ride"] * 2 + ["cab"] * 5 + ["taxi"] * 3
    assert len(e["rationales"]) == 3 and not e["difficult_direct_answer"]
    assert train["2Rp7yKXhYAn4UEwGRafnNr"]["difficult_direct_answer"]
    assert e["image"] == _read(os.path.join(AOKVQA, "train2017", "000000000071.jpg"))  # stored as-is
    v = val["22jbM6gDxdaMaunuzgrsBB"]
    assert _texts(v["choices"])[v["correct_choice_idx"]] == "cigarette"
    assert tf.io.decode_jpeg(v["image"]).shape == (12, 16, 3)
    t = test["225yV3MTsFaeSPW6ndqRUX"]  # the test split hides its answers: no label, no direct answers
    assert t["correct_choice_idx"] == -1 and len(t["direct_answers"]) == 0 and len(t["rationales"]) == 0
    assert t["correct_choice"] == b""
    assert _texts(t["choices"]) == ["fashion", "warmth", "rain", "costume"]
    assert tf.io.decode_jpeg(t["image"]).shape == (18, 14, 3)


def test_aokvqa_one_split_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("aokvqa", str(manual))
    assert "aokvqa_v1p0_train.json or aokvqa_v1p0_val.json or aokvqa_v1p0_test.json" in _first_line(e)
    assert "aokvqa_v1p0.tar.gz" in e.value.details
    shutil.copy(os.path.join(AOKVQA, "aokvqa_v1p0_val.json"), manual)
    with pytest.raises(build.ManualFilesMissing, match="val2017/"):
        build.check_manual_dir("aokvqa", str(manual))
    shutil.copytree(os.path.join(AOKVQA, "val2017"), manual / "val2017")
    builder = build.prepare("aokvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"validation": 1}
    records = json.loads((manual / "aokvqa_v1p0_val.json").read_text())
    records[0]["choices"] = records[0]["choices"][:3]
    (manual / "aokvqa_v1p0_val.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"aokvqa_v1p0_val\.json: question 22jbM6gDxdaMaunuzgrsBB: 'choices' is not"):
        build.prepare("aokvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    (manual / "aokvqa_v1p0_val.json").write_text(json.dumps({"questions": records}))
    with pytest.raises(ValueError, match=r"aokvqa_v1p0_val\.json is not an official A-OKVQA file"):
        build.prepare("aokvqa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


def test_gqa_builder_on_fixture(tmp_path):
    build.prepare("gqa", data_dir=str(tmp_path), manual_dir=GQA)
    train = _examples("gqa", "train_balanced", str(tmp_path), "question_id")
    val = _examples("gqa", "val_balanced", str(tmp_path), "question_id")
    testdev = _examples("gqa", "testdev_balanced", str(tmp_path), "question_id")
    assert sorted(train) == ["02930152", "07333408", "15736264"] and sorted(val) == ["05451384"]
    assert sorted(testdev) == ["201640614", "20968379"]  # ids are kept as the file's texts (leading zeros)
    e = train["07333408"]
    assert e["question"] == b"What is on the white wall?" and e["answer"] == b"pipe"
    assert e["full_answer"] == b"The pipe is on the wall." and e["image_id"] == b"2354786"
    assert (e["structural_type"], e["semantic_type"], e["detailed_type"]) == (b"verify", b"rel", b"existRelS")
    assert e["image"] == _read(os.path.join(GQA, "images", "2354786.jpg"))  # stored as-is
    t = testdev["20968379"]
    assert t["answer"] == b"left" and t["image_id"] == b"n161313"
    assert tf.io.decode_jpeg(t["image"]).shape == (14, 14, 3)


def test_gqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("gqa", str(manual))
    first = _first_line(e)
    assert "train_balanced_questions.json or val_balanced_questions.json or testdev" in first and "images/" in first
    assert "questions1.2.zip" in e.value.details
    (manual / "questions1.2").mkdir()  # the zip's folder is accepted
    shutil.copy(os.path.join(GQA, "testdev_balanced_questions.json"), manual / "questions1.2")
    (manual / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"GQA: image .*n161313\.jpg of question 20968379 not found"):
        build.prepare("gqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "questions1.2" / "testdev_balanced_questions.json").write_text(json.dumps([{"question": "?"}]))
    with pytest.raises(ValueError, match=r"testdev_balanced_questions\.json is not an official GQA question file"):
        build.prepare("gqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


def test_xgqa_builder_on_fixture(tmp_path):
    build.prepare("xgqa", data_dir=str(tmp_path), manual_dir=XGQA)
    splits = {lang: _examples("xgqa", f"test_zs_{lang}", str(tmp_path), "question_id") for lang in XGQA_LANGUAGES}
    assert {lang: len(exs) for lang, exs in splits.items()} == {lang: 2 if lang == "de" else 1 for lang in splits}
    for lang, exs in splits.items():
        e = exs["20968379"]  # the same GQA question in every language, answered in English
        assert e["language"] == lang.encode() and e["answer"] == b"left" and e["image_id"] == b"n161313"
    assert splits["de"]["20968379"]["question"].decode() == "Ist das Tablett rechts oder links?"
    assert splits["zh"]["20968379"]["question"].decode() == "托盘在右边还是左边？"
    assert splits["de"]["201640614"]["answer"] == b"soup"
    assert splits["en"]["20968379"]["image"] == _read(os.path.join(XGQA, "images", "n161313.jpg"))
    # The languages combine into one split for the mean accuracy over languages.
    both = sources.get_source(dict(name="xgqa", split="test_zs_bn+test_zs_de", data_dir=str(tmp_path)))
    assert sorted(e["language"] for e in both.get_tfdata(ordered=True).as_numpy_iterator()) == [b"bn", b"de", b"de"]


def test_xgqa_some_languages_and_missing_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("xgqa", str(manual))
    assert "testdev_balanced_questions_<lang>.json" in _first_line(e) and "e-bug/iglue" in e.value.details
    (manual / "zero_shot").mkdir()
    for lang in ("ko", "pt"):
        name = f"testdev_balanced_questions_{lang}.json"
        shutil.copy(os.path.join(XGQA, "annotations", "zero_shot", name), manual / "zero_shot")
    with pytest.raises(build.ManualFilesMissing, match="images/"):
        build.check_manual_dir("xgqa", str(manual))
    shutil.copytree(os.path.join(XGQA, "images"), manual / "images")
    builder = build.prepare("xgqa", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"test_zs_ko": 1, "test_zs_pt": 1}


def test_vizwiz_vqa_builder_on_fixture(tmp_path):
    build.prepare("vizwiz_vqa", data_dir=str(tmp_path), manual_dir=VIZWIZ)
    train = _examples("vizwiz_vqa", "train", str(tmp_path), "file_name")
    val = _examples("vizwiz_vqa", "validation", str(tmp_path), "file_name")
    test = _examples("vizwiz_vqa", "test", str(tmp_path), "file_name")
    assert sorted(train) == ["VizWiz_train_00000000.jpg", "VizWiz_train_00000001.jpg"]
    e = train["VizWiz_train_00000000.jpg"]
    assert e["question"] == b"What's the name of this product?"
    assert _texts(e["answers"]) == ["basil leaves"] * 7 + ["basil"] * 2  # the empty answer is left out
    assert _texts(e["answer_confidences"]) == ["yes"] * 7 + ["maybe"] * 2
    assert e["answer_type"] == b"other" and e["answerable"] == 1
    u = train["VizWiz_train_00000001.jpg"]  # a question the photo cannot answer
    assert _texts(u["answers"]).count("unanswerable") == 8 and u["answer_type"] == b"unanswerable"
    assert u["answerable"] == 0
    assert e["image"] == _read(os.path.join(VIZWIZ, "train", "VizWiz_train_00000000.jpg"))  # stored as-is
    v = val["VizWiz_val_00000000.jpg"]
    assert v["answer_type"] == b"yes/no" and tf.io.decode_jpeg(v["image"]).shape == (12, 20, 3)
    t = test["VizWiz_test_00000000.jpg"]
    assert t["question"] == b"What is this?" and len(t["answers"]) == 0 and t["answerable"] == -1
    assert t["answer_type"] == b""


def test_vizwiz_vqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("vizwiz_vqa", str(manual))
    assert "Annotations/train.json or Annotations/val.json or Annotations/test.json" in _first_line(e)
    assert "vizwiz.org" in e.value.details
    (manual / "annotations").mkdir()  # the lower-case folder name is accepted
    shutil.copy(os.path.join(VIZWIZ, "Annotations", "val.json"), manual / "annotations")
    with pytest.raises(build.ManualFilesMissing, match="val/"):
        build.check_manual_dir("vizwiz_vqa", str(manual))
    (manual / "val").mkdir()
    with pytest.raises(FileNotFoundError, match=r"VizWiz VQA: image .*VizWiz_val_00000000\.jpg not found"):
        build.prepare("vizwiz_vqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "annotations" / "val.json").write_text('[{"question": "What is this?"}]')
    with pytest.raises(ValueError, match=r"val\.json: an entry has no 'image' field"):
        build.prepare("vizwiz_vqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
