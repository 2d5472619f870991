"""VQAv2 and RefCOCO builders on tiny raw-format fixtures; the build and inspect CLIs."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from datasets import build, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")


def _run(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_vqa_builder_on_fixture(tmp_path):
    build.prepare("vqa", data_dir=str(tmp_path), manual_dir=os.path.join(FIXTURES, "vqa_manual"))
    counts = {
        s: sources.get_source(dict(name="vqa", split=s, data_dir=str(tmp_path))).num_examples
        for s in ("train", "validation", "test_dev")
    }
    assert counts == {"train": 3, "validation": 2, "test_dev": 1}
    train = sources.get_source(dict(name="vqa", split="train", data_dir=str(tmp_path)))
    exs = {int(e["question_id"]): e for e in train.get_tfdata(ordered=True).as_numpy_iterator()}
    assert sorted(exs) == [9000, 9001, 9002]
    e = exs[9002]
    assert e["question"] == b"How many squares are there?" and e["image_id"] == 9
    assert len(e["answers"]) == 10 and e["answers"].tolist().count(b"2") == 3
    assert len(e["answer_confidences"]) == 10
    assert e["multiple_choice_answer"] == b"1" and e["answer_type"] == b"number"
    assert e["question_type"] == b"how many"
    assert tf.io.decode_jpeg(e["image"]).shape == (16, 24, 3)
    test = sources.get_source(dict(name="vqa", split="test_dev", data_dir=str(tmp_path)))
    t = next(test.get_tfdata(ordered=True).as_numpy_iterator())
    assert t["question_id"] == 1000 and len(t["answers"]) == 0 and t["answer_type"] == b""


def test_refcoco_builder_on_fixture(tmp_path):
    build.prepare("refcoco/refcoco_unc", data_dir=str(tmp_path), manual_dir=os.path.join(FIXTURES, "refcoco_manual"))
    train = sources.get_source(dict(name="refcoco/refcoco_unc", split="train", data_dir=str(tmp_path)))
    val = sources.get_source(dict(name="refcoco/refcoco_unc", split="validation", data_dir=str(tmp_path)))
    assert (train.num_examples, val.num_examples) == (2, 1)  # one example per expression
    exs = list(train.get_tfdata(ordered=True).as_numpy_iterator())
    assert sorted(e["refexp"] for e in exs) == [b"White box in the middle", b"middle box"]
    e = exs[0]
    np.testing.assert_allclose(e["bbox"], [4 / 16, 5 / 20, 8 / 16, 13 / 20], atol=1e-6)  # ymin xmin ymax xmax
    mask = tf.io.decode_png(e["mask"]).numpy()
    assert mask.shape == (16, 20, 1) and int((mask > 127).sum()) == 32
    assert (e["height"], e["width"], e["label"]) == (16, 20, 1)
    assert tf.io.decode_jpeg(e["image"]).shape == (16, 20, 3)


def test_build_cli_without_manual_files(tmp_path):
    r = _run("datasets.build", "vqa", "--data_dir", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "pass --manual_dir" in r.stderr
    assert "v2_OpenEnded_mscoco_train2014_questions.json" in r.stderr and "visualqa.org" in r.stderr
    assert "train2014.zip" in r.stderr
    empty = tmp_path / "manual"
    empty.mkdir()
    (empty / "v2_mscoco_train2014_annotations.json").write_text("{}")
    r = _run("datasets.build", "vqa", "--data_dir", str(tmp_path), "--manual_dir", str(empty))
    assert r.returncode == 2
    assert "not found in --manual_dir" in r.stderr
    assert "v2_OpenEnded_mscoco_train2014_questions.json" in r.stderr.split("\n")[0]
    assert "v2_mscoco_train2014_annotations.json" not in r.stderr.split("\n")[0]
    r = _run("datasets.build", "refcoco/refcoco_unc", "--data_dir", str(tmp_path), "--manual_dir", str(empty))
    assert r.returncode == 2 and "refcoco.json" in r.stderr and "coco_train2014/" in r.stderr
    r = _run("datasets.build", "imagenet2012", "--data_dir", str(tmp_path))
    assert r.returncode == 2 and "tfds build" in r.stderr
    assert not os.path.exists(tmp_path / "vqa")  # nothing half-built


def test_inspect_cli(tokenizer_path):
    pytest.importorskip("datasets.pp")
    tok = tokenizer_path
    config = os.path.join(FIXTURES, "inspect_config.py")
    r = _run("datasets.inspect", f"--config={config}:{tok}", "--n=2")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "jsonl_small/train.jsonl (7 examples)" in out
    assert out.count("=== example") == 2
    assert "image: shape (16, 16, 3) float32, range [-1.000, 1.000]" in out
    assert "prefix (ar 0): 'answer en what color is the image?\\n'" in out
    assert "[ends with <eos>]" in out and "not truncated" in out
    assert "   pos      id  piece" in out and "<bos>" in out
    # The same in-process (faster): an eval entry of the config, in split order.
    import importlib.util
    import io

    from datasets import inspect as inspect_lib

    spec = importlib.util.spec_from_file_location("inspect_config", config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    buf = io.StringIO()
    batch = inspect_lib.inspect_config(module.get_config(tok), n=3, eval_name="val", out=buf)
    out = buf.getvalue()
    assert "config.evals.val" in out and "in split order" in out
    assert "id: 0 (int64)" in out and "id: 2 (int64)" in out
    assert batch["text"].shape == (3, 32) and batch["mask_ar"].sum() == 0
    with pytest.raises(KeyError, match="No eval 'nope'"):
        inspect_lib.inspect_config(module.get_config(tok), eval_name="nope", out=buf)


def test_benchmark_dispatcher(capsys):
    from tools import benchmark

    assert benchmark.main(["benchmark"]) == 1  # no name: lists the benchmarks
    assert "pipeline" in capsys.readouterr().out
    assert benchmark.main(["benchmark", "nope"]) == 2

    @benchmark.register("_test_noop", "does nothing")
    def noop(argv):
        return 0 if argv == ["--x"] else 3

    try:
        assert benchmark.main(["benchmark", "_test_noop", "--x"]) == 0
    finally:
        benchmark.BENCHMARKS.pop("_test_noop")


def test_refcoco_refs_pickles_are_read_as_plain_data_only():
    import os as _os
    import pickle

    from datasets.builders.refcoco import refcoco_dataset_builder as refcoco

    assert refcoco._load_plain_pickle(pickle.dumps([{"ref_id": 1, "sentences": [{"raw": "x"}]}], protocol=2)) == [
        {"ref_id": 1, "sentences": [{"raw": "x"}]}
    ]
    with pytest.raises(pickle.UnpicklingError, match="only plain data"):
        refcoco._load_plain_pickle(pickle.dumps(_os.getcwd))


def test_refcocox_combined_joins_the_three_train_splits_without_any_held_out_image(tmp_path):
    """The card's RefCOCO training data: refcoco + refcoco+ + refcocog train, minus every val/test image of any."""
    manual = tmp_path / "manual"
    shutil.copytree(os.path.join(FIXTURES, "refcoco_manual"), manual)
    data = json.loads((manual / "refcoco.json").read_text())
    (held_out_train, held_out_val) = data["ref"]  # refcoco unc, image 77: train and val
    image = data["coco_anns"]["77"]
    data["coco_anns"]["78"] = {
        "info": dict(image["info"], id=78, file_name="COCO_train2014_000000000078.jpg"),
        "anns": [dict(a, id=a["id"] + 100, image_id=78) for a in image["anns"]],
    }
    images = manual / "coco_train2014"
    shutil.copy(images / image["info"]["file_name"], images / "COCO_train2014_000000000078.jpg")

    def ref(dataset, partition, split, image_id, ref_id, sentences):
        ann = dict(held_out_train["ann"], id=held_out_train["ann"]["id"] + 100, image_id=image_id)
        return dict(
            held_out_train,
            dataset=dataset,
            dataset_partition=partition,
            split=split,
            image_id=image_id,
            ref_id=ref_id,
            ann_id=ann["id"],
            ann=ann,
            sentences=[dict(sent_id=i, raw=text) for i, text in sentences],
        )

    data["ref"] += [
        ref("refcoco+", "unc", "train", 78, 1, [(10, "left box")]),  # same sentence id as refcoco's: keys differ
        ref("refcocog", "umd", "train", 78, 7, [(70, "the white box on the left"), (71, "a box")]),
        ref("refcocog", "umd", "train", 77, 8, [(80, "box on an image held out by refcoco val")]),
        ref("refcoco", "google", "train", 78, 9, [(90, "not one of the three")]),
    ]
    (manual / "refcoco.json").write_text(json.dumps(data))
    build.prepare("refcoco/refcocox_combined", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    train = sources.get_source(dict(name="refcoco/refcocox_combined", split="train", data_dir=str(tmp_path / "data")))
    texts = sorted(e["refexp"].decode() for e in train.get_tfdata(ordered=True).as_numpy_iterator())
    assert texts == ["a box", "left box", "the white box on the left"]
    assert held_out_val["split"] == "val"
