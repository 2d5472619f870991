"""TextVQA, ST-VQA, InfographicVQA, OCR-VQA and ChartQA builders on tiny official-format fixtures
(tests/fixtures/data/{textvqa,stvqa,infovqa,ocrvqa,chartqa}_manual)."""

import json
import os
import shutil

import pytest
import tensorflow as tf

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")
TEXTVQA = os.path.join(FIXTURES, "textvqa_manual")


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


def _shape(image):
    return tuple(tf.io.decode_image(image).shape)


def _missing(name, manual_dir):
    """The first line of the error `python -m datasets.build` prints for missing manual files."""
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir(name, str(manual_dir))
    return str(e.value).split("\n")[0], e.value.details


# ----------------------------------------------------------------------------------------------------------
# TextVQA


def test_textvqa_builder_on_fixture(tmp_path):
    build.prepare("textvqa", data_dir=str(tmp_path), manual_dir=TEXTVQA)
    train = _examples("textvqa", "train", str(tmp_path), "question_id")
    val = _examples("textvqa", "validation", str(tmp_path), "question_id")
    test = _examples("textvqa", "test", str(tmp_path), "question_id")
    assert (sorted(train), sorted(val), sorted(test)) == ([0, 1, 2], [34602], [39602])
    e = train[0]
    assert e["question"] == b"what is the brand of phone?" and e["image_id"] == b"0054c91397f2fe05"
    assert e["answers"].tolist() == [b"nokia"] * 8 + [b"toshiba", b"nokia "]  # all 10, as in the file
    # rotation.csv: Rotation 0 -> the picture as stored; Rotation 90 -> turned upright (height and width swap).
    assert e["image"] == _read(os.path.join(TEXTVQA, "train_images", "0054c91397f2fe05.jpg"))
    assert _shape(e["image"]) == (12, 16, 3)
    assert _shape(train[2]["image"]) == (12, 8, 3)  # stored 8 high x 12 wide
    v = val[34602]  # validation questions' pictures are in train_images/
    assert v["answers"].tolist()[-1] == b"stop sign" and v["image"] == _read(
        os.path.join(TEXTVQA, "train_images", "00685bc495504d61.jpg")
    )
    t = test[39602]
    assert t["answers"].tolist() == [] and t["question"] == b"what year is shown?" and _shape(t["image"]) == (16, 8, 3)


def test_textvqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    first, details = _missing("textvqa", manual)
    assert "TextVQA_0.5.1_train.json or TextVQA_0.5.1_val.json or TextVQA_0.5.1_test.json" in first
    assert "dl.fbaipublicfiles.com/textvqa" in details
    shutil.copy(os.path.join(TEXTVQA, "TextVQA_0.5.1_test.json"), manual)
    first, _ = _missing("textvqa", manual)
    assert first.endswith("test_images/")
    # Only the test split, without rotation.csv: built alone, the picture as stored.
    shutil.copytree(os.path.join(TEXTVQA, "test_images"), manual / "test_images")
    builder = build.prepare("textvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"test": 1}
    os.remove(manual / "test_images" / "000c6a5f5c27c7f4.jpg")
    with pytest.raises(FileNotFoundError, match=r"000c6a5f5c27c7f4\.jpg of question 39602"):
        build.prepare("textvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    (manual / "TextVQA_0.5.1_test.json").write_text(json.dumps([{"question_id": 1}]))
    with pytest.raises(ValueError, match=r"TextVQA_0\.5\.1_test\.json is not an official TextVQA 0\.5\.1 question"):
        build.prepare("textvqa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))
    (manual / "TextVQA_0.5.1_test.json").write_text(json.dumps({"data": [{"question_id": 1, "question": "q?"}]}))
    with pytest.raises(ValueError, match=r"TextVQA_0\.5\.1_test\.json: an entry has no 'image_id' field"):
        build.prepare("textvqa", data_dir=str(tmp_path / "d"), manual_dir=str(manual))
    shutil.copy(os.path.join(TEXTVQA, "TextVQA_0.5.1_test.json"), manual)
    (manual / "test_images" / "rotation.csv").write_text("ImageID,Angle\n000c6a5f5c27c7f4,90\n")
    with pytest.raises(ValueError, match=r"test_images/rotation\.csv is not an OpenImages image list"):
        build.prepare("textvqa", data_dir=str(tmp_path / "e"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# ST-VQA


STVQA = os.path.join(FIXTURES, "stvqa_manual")


def test_stvqa_builder_on_fixture(tmp_path):
    build.prepare("stvqa", data_dir=str(tmp_path), manual_dir=STVQA)
    train = _examples("stvqa", "train", str(tmp_path), "question_id")
    val = _examples("stvqa", "validation", str(tmp_path), "question_id")
    test = _examples("stvqa", "test", str(tmp_path), "question_id")
    # validation: the train questions on pictures with crc32(file_path) % 10 == 0 (v7w_15, COCO ..._000000000009).
    assert (sorted(train), sorted(val), sorted(test)) == ([0, 1, 3], [2, 4], [30000])
    e = train[0]
    assert e["question"] == b"What brand is the bus?" and e["answers"].tolist() == [b"Volvo", b"volvo"]
    assert e["file_path"] == b"coco-text/COCO_train2014_000000135143.jpg"
    assert e["image"] == _read(os.path.join(STVQA, "train_images", "coco-text", "COCO_train2014_000000135143.jpg"))
    assert _shape(train[3]["image"]) == (10, 16, 3) and val[2]["answers"].tolist() == [b"STOP"]
    t = test[30000]
    assert t["answers"].tolist() == [] and _shape(t["image"]) == (10, 14, 3)


def test_stvqa_coco_pictures_and_errors(tmp_path):
    from PIL import Image

    manual = tmp_path / "manual"
    shutil.copytree(STVQA, manual)
    # With train2014/, COCO-Text pictures come from COCO (full size), the others from the release.
    (manual / "train2014").mkdir()
    Image.new("RGB", (24, 16), (1, 2, 3)).save(manual / "train2014" / "COCO_train2014_000000135143.jpg")
    with pytest.raises(FileNotFoundError, match=r"train2014/COCO_train2014_000000000009\.jpg of question 4"):
        build.prepare("stvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    Image.new("RGB", (20, 20), (1, 2, 3)).save(manual / "train2014" / "COCO_train2014_000000000009.jpg")
    build.prepare("stvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    train = _examples("stvqa", "train", str(tmp_path / "b"), "question_id")
    assert _shape(train[1]["image"]) == (16, 24, 3) and _shape(train[3]["image"]) == (10, 16, 3)

    os.remove(manual / "train_task_3.json")
    os.remove(manual / "test_task_3.json")
    first, details = _missing("stvqa", manual)
    assert "train_task_3.json or test_task_3.json" in first and "rrc.cvc.uab.es/?ch=11" in details
    (manual / "test_task_3.json").write_text('{"data": [')
    shutil.rmtree(manual / "test_task3_images")
    assert _missing("stvqa", manual)[0].endswith("test_task3_images/")
    (manual / "test_task3_images").mkdir()
    with pytest.raises(ValueError, match=r"test_task_3\.json is not valid JSON"):
        build.prepare("stvqa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# InfographicVQA


INFOVQA = os.path.join(FIXTURES, "infovqa_manual")


def test_infovqa_builder_on_fixture(tmp_path):
    build.prepare("infovqa", data_dir=str(tmp_path), manual_dir=INFOVQA)
    train = _examples("infovqa", "train", str(tmp_path), "question_id")
    val = _examples("infovqa", "validation", str(tmp_path), "question_id")
    test = _examples("infovqa", "test", str(tmp_path), "question_id")
    assert (sorted(train), sorted(val), sorted(test)) == ([65718, 65719, 65720], [98313], [11])
    e = train[65719]
    assert e["question"] == b"Which country is shown first?" and e["answers"].tolist() == [b"Canada", b"canada"]
    assert e["image_local_name"] == b"37313.jpeg"
    assert e["image"] == _read(os.path.join(INFOVQA, "infographicsvqa_images", "37313.jpeg"))  # stored as-is
    assert _shape(train[65720]["image"]) == (24, 10, 3)  # a PNG infographic
    # Validation: a multi-item answer first as in the file, then its other 5 orders.
    answers = [a.decode() for a in val[98313]["answers"]]
    assert answers[0] == "Rome, Milan, Naples" and len(answers) == 6 and "Naples, Milan, Rome" in answers
    assert test[11]["answers"].tolist() == [] and _shape(test[11]["image"]) == (12, 8, 3)


def test_infovqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    first, details = _missing("infovqa", manual)
    assert "infographicsVQA_train_v1.0.json or infographicsVQA_val_v1.0.json or" in first
    assert "rrc.cvc.uab.es/?ch=17" in details
    shutil.copy(os.path.join(INFOVQA, "infographicsVQA_test_v1.0.json"), manual)
    assert _missing("infovqa", manual)[0].endswith("infographicsvqa_images/")
    (manual / "images").mkdir()  # the other accepted folder name, without the picture
    with pytest.raises(FileNotFoundError, match=r"70311\.jpeg of question 11"):
        build.prepare("infovqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "infographicsVQA_test_v1.0.json").write_text(json.dumps({"data": {"questionId": 11}}))
    with pytest.raises(ValueError, match=r'test_v1\.0\.json is not an official InfographicVQA question file .*"data"'):
        build.prepare("infovqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# OCR-VQA


OCRVQA = os.path.join(FIXTURES, "ocrvqa_manual")


def test_ocrvqa_builder_on_fixture(tmp_path, caplog):
    build.prepare("ocrvqa", data_dir=str(tmp_path), manual_dir=OCRVQA)
    train = _examples("ocrvqa", "train", str(tmp_path), "question_id")
    val = _examples("ocrvqa", "validation", str(tmp_path), "question_id")
    test = _examples("ocrvqa", "test", str(tmp_path), "question_id")
    assert sorted(train) == ["0001055178_0", "0001055178_1", "0001055178_2", "B00ADR8QJO_0", "B00ADR8QJO_1"]
    assert (sorted(val), sorted(test)) == (["0061138630_0"], ["0439023521_0", "0439023521_1"])
    e = train["0001055178_2"]
    assert e["question"] == b"Is this a comedy book?" and e["answers"].tolist() == [b"No"]
    assert e["image_id"] == b"0001055178" and e["image"] == _read(os.path.join(OCRVQA, "images", "0001055178.jpg"))
    assert train["B00ADR8QJO_0"]["answers"].tolist() == [b"Cookbooks, Food & Wine"]
    assert _shape(train["B00ADR8QJO_1"]["image"]) == (14, 10, 3)  # a PNG cover (the URL's extension)
    assert _shape(test["0439023521_1"]["image"]) == (16, 12, 3)
    # The test cover 0000000001 was never downloaded: its question is left out, and said so.
    assert "1 covers of the test split are not in" in caplog.text and "(0000000001); their 1 of 3" in caplog.text


def test_ocrvqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    first, details = _missing("ocrvqa", manual)
    assert "dataset.json, images/" in first and "ocr-vqa.github.io" in details
    (manual / "images").mkdir()
    shutil.copy(os.path.join(OCRVQA, "dataset.json"), manual)
    with pytest.raises(FileNotFoundError, match=r"none of the covers of the train split is in .*images"):
        build.prepare("ocrvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "dataset.json").write_text(json.dumps({"0001055178": {"questions": ["Who?"], "answers": ["Me"]}}))
    with pytest.raises(ValueError, match=r"dataset\.json: an entry has no 'split' field"):
        build.prepare("ocrvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))
    (manual / "dataset.json").write_text(json.dumps({"0001055178": {"questions": ["Who?"], "answers": [], "split": 1}}))
    with pytest.raises(ValueError, match=r"cover 0001055178 does not have one answer per question"):
        build.prepare("ocrvqa", data_dir=str(tmp_path / "c"), manual_dir=str(manual))


# ----------------------------------------------------------------------------------------------------------
# ChartQA


CHARTQA = os.path.join(FIXTURES, "chartqa_manual")


def test_chartqa_builder_on_fixture(tmp_path):
    build.prepare("chartqa", data_dir=str(tmp_path), manual_dir=CHARTQA)
    train = _examples("chartqa", "train", str(tmp_path), "question_id")
    val = _examples("chartqa", "validation", str(tmp_path), "question_id")
    test = _examples("chartqa", "test", str(tmp_path), "question_id")
    assert sorted(train) == ["augmented_0", "human_0", "human_1"]
    assert (sorted(val), sorted(test)) == (["augmented_0", "human_0"], ["augmented_0", "augmented_1", "human_0"])
    e = train["human_1"]
    assert e["question"] == b"Which year had the highest value?" and e["answers"].tolist() == [b"2019"]
    assert e["source"] == b"human" and e["imgname"] == b"two_col_100022.png"
    assert e["image"] == _read(os.path.join(CHARTQA, "train", "png", "two_col_100022.png"))  # stored as-is
    a = train["augmented_0"]
    assert a["source"] == b"augmented" and a["answers"].tolist() == [b"45.3"] and a["image"] == e["image"]
    assert val["augmented_0"]["answers"].tolist() == [b"12%"]
    assert [test[k]["source"] for k in sorted(test)] == [b"augmented", b"augmented", b"human"]
    assert _shape(test["augmented_0"]["image"]) == (16, 8, 3)


def test_chartqa_missing_and_bad_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    first, details = _missing("chartqa", manual)
    assert "train/ or val/ or test/" in first and "vis-nlp/ChartQA" in details
    shutil.copytree(os.path.join(CHARTQA, "test"), manual / "test")
    os.remove(manual / "test" / "test_augmented.json")
    assert _missing("chartqa", manual)[0].endswith("test/test_augmented.json")
    (manual / "test" / "test_augmented.json").write_text(json.dumps([{"imgname": "two_col_103562.png", "q": "?"}]))
    with pytest.raises(ValueError, match=r"test_augmented\.json: an entry has no 'query' field"):
        build.prepare("chartqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    os.remove(manual / "test" / "png" / "multi_col_20396.png")
    shutil.copy(os.path.join(CHARTQA, "test", "test_augmented.json"), manual / "test")
    with pytest.raises(FileNotFoundError, match=r"chart .*multi_col_20396\.png of entry 0 of .*test_augmented\.json"):
        build.prepare("chartqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


@pytest.mark.parametrize(
    "name, files",
    [
        ("textvqa", ["TextVQA_0.5.1_train.json", "train_images/", "test_images/", "textvqa.org"]),
        ("stvqa", ["train_task_3.json", "test_task_3.json", "test_task3_images/", "train2014/"]),
        ("infovqa", ["infographicsVQA_train_v1.0.json", "infographicsVQA_val_v1.0_withQT.json", "images"]),
        ("ocrvqa", ["dataset.json", "loadDataset.py", "images/", "ocr-vqa.github.io"]),
        ("chartqa", ["train/train_human.json", "val/val_augmented.json", "test/png/", "vis-nlp/ChartQA"]),
    ],
)
def test_help_manual_names_the_official_files(name, files):
    text = build.manual_instructions(name)  # what `python -m datasets.build NAME --help_manual` prints
    assert all(f in text for f in files) and f"python -m datasets.build {name} " in text
