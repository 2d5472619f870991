"""DocVQA and NoCaps builders on tiny raw-format fixtures (tests/fixtures/data/{docvqa,nocaps}_manual)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")
DOCVQA = os.path.join(FIXTURES, "docvqa_manual")
NOCAPS = os.path.join(FIXTURES, "nocaps_manual")


def _examples(name, split, data_dir, key):
    source = sources.get_source(dict(name=name, split=split, data_dir=data_dir))
    exs = {int(e[key]): e for e in source.get_tfdata(ordered=True).as_numpy_iterator()}
    assert len(exs) == source.num_examples
    return exs


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_docvqa_builder_on_fixture(tmp_path):
    # train/val JSONs sit in their split folders (the official layout), test_v1.0.json directly in manual_dir.
    build.prepare("docvqa", data_dir=str(tmp_path), manual_dir=DOCVQA)
    train = _examples("docvqa", "train", str(tmp_path), "question_id")
    val = _examples("docvqa", "validation", str(tmp_path), "question_id")
    test = _examples("docvqa", "test", str(tmp_path), "question_id")
    assert (sorted(train), sorted(val), sorted(test)) == ([337, 338, 4025], [24580, 49153], [57344])
    e = train[338]
    assert e["question"] == b"what is the contact person name mentioned in letter?" and e["doc_id"] == 279
    assert e["answers"].tolist() == [b"P. Carter", b"p. carter"] and e["question_types"].tolist() == [b"form"]
    assert train[337]["question_types"].tolist() == [b"handwritten", b"form"]
    assert e["image"] == _read(os.path.join(DOCVQA, "train", "documents", "ffbf0023_4.png"))  # stored as-is
    assert tf.io.decode_png(e["image"]).shape == (28, 20, 1)  # a grayscale page
    assert tf.io.decode_png(train[4025]["image"]).shape == (18, 24, 3)
    v = val[49153]
    assert v["question"].decode() == "What is the \u2018actual\u2019 value per 1000, during the year 1975?"
    assert v["answers"].tolist() == [b"0.28"] and v["doc_id"] == 14465
    assert val[24580]["question_types"].tolist() == []  # no "question_types" in the file
    t = test[57344]
    assert t["answers"].tolist() == [] and t["question_types"].tolist() == [] and t["doc_id"] == 4890
    assert tf.io.decode_png(t["image"]).shape == (18, 18, 1)


def test_docvqa_missing_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.prepare("docvqa", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    first = str(e.value).split("\n")[0]
    assert "not found in --manual_dir" in first
    for name in ("train/train_v1.0.json", "train/documents/", "val/val_v1.0.json", "val/documents/"):
        assert name in first
    assert "test" not in first.split(": ")[-1]  # optional split, not provided
    assert "rrc.cvc.uab.es" in e.value.details  # the download instructions, printed below the error line
    # Only the validation JSON present (top-level layout): the rest is still named; test present without its images.
    shutil.copy(os.path.join(DOCVQA, "val", "val_v1.0.json"), manual / "val_v1.0_withQT.json")
    shutil.copy(os.path.join(DOCVQA, "test_v1.0.json"), manual / "test_v1.0.json")
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("docvqa", str(manual))
    first = str(e.value).split("\n")[0]
    assert "val/val_v1.0.json" not in first and "val/documents/" in first and "test/documents/" in first
    assert not os.path.exists(tmp_path / "data" / "docvqa")  # nothing half-built


def test_docvqa_bad_files(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DOCVQA, manual)
    os.remove(manual / "test" / "documents" / "rnbx0223_193.png")
    with pytest.raises(FileNotFoundError, match=r"rnbx0223_193\.png of question 57344"):
        build.prepare("docvqa", data_dir=str(tmp_path / "a"), manual_dir=str(manual))
    (manual / "test_v1.0.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match=r"test_v1\.0\.json is not an official DocVQA question file"):
        build.prepare("docvqa", data_dir=str(tmp_path / "b"), manual_dir=str(manual))


def test_nocaps_builder_on_fixture(tmp_path):
    build.prepare("nocaps", data_dir=str(tmp_path), manual_dir=NOCAPS)
    val = _examples("nocaps", "validation", str(tmp_path), "image_id")
    test = _examples("nocaps", "test", str(tmp_path), "image_id")
    assert (sorted(val), sorted(test)) == ([0, 1], [4500])
    e = val[1]
    assert e["file_name"] == b"00223d3fbe85e3e5.jpg" and e["domain"] == b"out-domain"
    assert e["captions"].tolist() == [f"A white disc on green {k}.".encode() for k in range(10)]  # annotation-id order
    assert val[0]["domain"] == b"in-domain" and len(val[0]["captions"]) == 10
    assert val[0]["captions"][0] == b"A white circle on a red square 0."
    assert e["image"] == _read(os.path.join(NOCAPS, "validation", "00223d3fbe85e3e5.jpg"))  # stored as-is
    assert tf.io.decode_jpeg(val[0]["image"]).shape == (16, 24, 3)
    t = test[4500]
    assert t["captions"].tolist() == [] and t["domain"] == b"near-domain" and t["file_name"] == b"0003d84e0165d630.jpg"
    assert tf.io.decode_jpeg(t["image"]).shape == (24, 16, 3)


def test_nocaps_one_split_and_missing_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(build.ManualFilesMissing) as e:
        build.check_manual_dir("nocaps", str(manual))
    first = str(e.value).split("\n")[0]
    assert "nocaps_val_4500_captions.json or nocaps_test_image_info.json" in first and "nocaps.org" in e.value.details
    shutil.copy(os.path.join(NOCAPS, "nocaps_val_4500_captions.json"), manual)
    with pytest.raises(build.ManualFilesMissing, match="validation/"):
        build.check_manual_dir("nocaps", str(manual))
    # The official bucket's folder name `val/` is accepted; with no test file only the validation split is built.
    shutil.copytree(os.path.join(NOCAPS, "validation"), manual / "val")
    builder = build.prepare("nocaps", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"validation": 2}


def test_build_cli_nocaps(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    r = subprocess.run(
        [sys.executable, "-m", "datasets.build", "nocaps", "--data_dir", str(tmp_path), "--manual_dir", NOCAPS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Prepared nocaps/1.0.0" in r.stdout and "(test: 1, validation: 2)" in r.stdout
