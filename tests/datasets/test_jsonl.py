"""JSONL source: happy path, each bad-row error with its line number, skip-and-count mode, config validation."""

import base64
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import sources

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "data", "jsonl_small", "train.jsonl")


def _png(value=0, size=4) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write(tmp_path, lines, images=("a.png",)):
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in images:
        (tmp_path / "img" / name).write_bytes(_png(7))
    path = tmp_path / "data.jsonl"
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in lines))
    return str(path)


def test_fixture_happy_path():
    src = sources.get_source(dict(name="jsonl", path=FIXTURE))
    assert src.num_examples == 7 and src.num_skipped == 0
    assert src.kinds == {"question": "str", "answers": "list:str", "id": "int"}
    exs = list(src.get_tfdata(ordered=True).as_numpy_iterator())
    assert [e["id"] for e in exs] == list(range(7))
    assert exs[0]["question"] == b"what color is the image?"
    assert exs[6]["answers"].tolist() == [b"gray", b"grey"]
    for e in exs:  # image: the encoded file, decodable; the inline row as well
        img = tf.io.decode_png(e["image"]).numpy()
        assert img.shape == (8, 8, 3)
    assert tf.io.decode_png(exs[0]["image"]).numpy()[0, 0].tolist() == [255, 0, 0]
    assert tf.io.decode_png(exs[6]["image"]).numpy()[0, 0].tolist() == [128, 128, 128]


def test_types_defaults_and_image_root(tmp_path):
    rows = [
        {"image": "img/a.png", "caption": "x", "score": 1, "tags": ["p", "q"], "meta": {"k": 1}},
        {"image": "img/a.png", "score": 2.5, "tags": []},  # missing caption/meta -> defaults; int+float -> float
        {"image_bytes": base64.b64encode(_png(3)).decode(), "caption": "z", "tags": ["r"], "meta": None},
    ]
    path = _write(tmp_path, rows + [""])  # a trailing blank line is ignored
    src = sources.JsonlSource(path)
    assert src.kinds == {"caption": "str", "score": "float", "tags": "list:str", "meta": "json"}
    exs = list(src.get_tfdata(ordered=True).as_numpy_iterator())
    assert [e["caption"] for e in exs] == [b"x", b"", b"z"]
    assert [float(e["score"]) for e in exs] == [1.0, 2.5, 0.0]
    assert [e["tags"].tolist() for e in exs] == [[b"p", b"q"], [], [b"r"]]
    assert json.loads(exs[0]["meta"]) == {"k": 1} and exs[1]["meta"] == b""
    # image_root: paths relative to another folder.
    other = tmp_path / "elsewhere.jsonl"
    other.write_text(json.dumps({"image": "a.png"}) + "\n")
    src = sources.get_source(dict(name="jsonl", path=str(other), image_root=str(tmp_path / "img")))
    assert src.num_examples == 1


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"image": "img/a.png", "q": "ok"', "malformed JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        ({"image": "img/missing.png"}, "image file not found"),
        ({"image": "../../etc/passwd"}, "points outside the dataset folder"),
        ({"image": "/etc/passwd"}, "points outside the dataset folder"),
        ({"image": "img/../../x.png"}, "points outside the dataset folder"),
        ({"q": "no image"}, "has no `image`"),
        ({"image_bytes": "***not base64***"}, "not valid base64"),
        ({"image": "img/a.png", "q": ["a list"]}, "field 'q' is a list of strings here but a string on line 1"),
    ],
)
def test_bad_row_error_names_file_and_line(tmp_path, bad, reason):
    path = _write(tmp_path, [{"image": "img/a.png", "q": "fine"}, {"image": "img/a.png", "q": "fine too"}, bad])
    with pytest.raises(sources.DataError) as e:
        sources.get_source(dict(name="jsonl", path=path))
    msg = str(e.value)
    assert f"{path}:3:" in msg, msg
    assert reason in msg, msg


def test_skip_bad_rows_counts(tmp_path, caplog):
    lines = [
        {"image": "img/a.png", "id": 0},
        "{broken",
        {"image": "img/nope.png", "id": 2},
        {"image": "../../etc/passwd", "id": 3},
        {"image": "img/a.png", "id": 4},
        {"image": "/etc/passwd", "id": 5},
        {"image": "img/a.png", "id": "six"},  # type conflict with line 1
        {"image": "img/a.png", "id": 7},
    ]
    path = _write(tmp_path, lines)
    with caplog.at_level("WARNING"):
        src = sources.get_source(dict(name="jsonl", path=path, skip_bad_rows=True))
    assert src.num_examples == 3
    assert src.num_skipped == 5
    assert [n for n, _ in src.skipped] == [2, 3, 4, 6, 7]
    assert "skipped 5 bad row(s) of 8" in caplog.text
    assert "5 bad rows skipped" in src.describe()
    ids = [int(e["id"]) for e in src.get_tfdata(ordered=True).as_numpy_iterator()]
    assert ids == [0, 4, 7]


def test_config_errors(tmp_path):
    with pytest.raises(sources.DataError, match="JSONL file not found"):
        sources.get_source(dict(name="jsonl", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ValueError, match="Unknown keys"):
        sources.get_source(dict(name="jsonl", path=FIXTURE, imageroot="x"))
    with pytest.raises(ValueError, match="needs `name`"):
        sources.get_source(dict(split="train"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(sources.DataError, match="no usable rows"):
        sources.get_source(dict(name="jsonl", path=str(empty)))


@pytest.mark.parametrize("process_count", [2, 3])
def test_jsonl_shards_cover_once(process_count):
    src = sources.get_source(dict(name="jsonl", path=FIXTURE))
    seen = []
    for i in range(process_count):
        ids = [
            int(e["id"])
            for e in src.get_tfdata(
                process_index=i, process_count=process_count, ordered=False, seed=3
            ).as_numpy_iterator()
        ]
        assert len(ids) == src.shard_num_examples(i, process_count)
        seen += ids
    assert sorted(seen) == list(range(7))


def test_seeded_order_is_deterministic():
    src = sources.get_source(dict(name="jsonl", path=FIXTURE))
    order = lambda s: [int(e["id"]) for e in src.get_tfdata(ordered=False, seed=s).as_numpy_iterator()]
    assert order(5) == order(5)
    assert sorted(order(5)) == list(range(7))
    assert any(order(5) != order(s) for s in (6, 7, 8))


# ---------------------------------------------------------------------------------------------------------------
# Issue 17: a corrupt image deep in the data is one DataError naming the JSONL file, the line and the image.


def _deep_rows(tmp_path, n=40):
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in range(n):
        (tmp_path / "img" / f"{i}.png").write_bytes(_png(i))
    return [{"image": f"img/{i}.png", "question": "q", "answer": "a"} for i in range(n)]


def _iterate(path):
    from datasets import pipeline

    src = sources.get_source(dict(name="jsonl", path=path))
    for _ in pipeline.make_eval_iterator(src, "decode|resize(8)", batch_size=8):
        pass


def test_corrupt_image_deep_in_the_data_names_file_line_and_image(tmp_path):
    # Before: accepted at creation; iterating died with TensorFlow's InvalidArgumentError naming neither.
    rows = _deep_rows(tmp_path)
    (tmp_path / "img" / "33.png").write_bytes(b"<html>this is not an image</html>")
    path = _write(tmp_path, rows, images=())
    with pytest.raises(sources.DataError, match=r"data\.jsonl:34: image file .*33\.png is not an image") as e:
        sources.get_source(dict(name="jsonl", path=path))
    assert "\n" not in str(e.value) and "skip_bad_rows" in str(e.value)
    src = sources.get_source(dict(name="jsonl", path=path, skip_bad_rows=True))
    assert src.num_examples == 39 and src.skipped[0][0] == 34
    (tmp_path / "img" / "33.png").write_bytes(b"")
    with pytest.raises(sources.DataError, match=r"data\.jsonl:34: image file .*33\.png is empty"):
        sources.get_source(dict(name="jsonl", path=path))
    bad_inline = [{"image_bytes": base64.b64encode(b"GIF? no, text").decode(), "question": "q"}]
    path = _write(tmp_path, rows[:3] + bad_inline, images=())
    with pytest.raises(sources.DataError, match=r"data\.jsonl:4: `image_bytes` is not an image"):
        sources.get_source(dict(name="jsonl", path=path))


def test_image_damaged_after_the_source_was_made(tmp_path):
    # The check at read time (remote images, files changed since): a DataError naming the line, not a TF traceback.
    from datasets import pipeline

    path = _write(tmp_path, _deep_rows(tmp_path), images=())
    src = sources.get_source(dict(name="jsonl", path=path))
    (tmp_path / "img" / "21.png").write_bytes(b"garbage")
    it = pipeline.make_eval_iterator(src, "decode|resize(8)", batch_size=8)
    with pytest.raises(sources.DataError, match=r"data\.jsonl:22: image .*21\.png is not an image file") as e:
        list(it)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value) and "function_node" not in str(e.value)


def test_truncated_image_is_one_data_error(tmp_path):
    # A valid header, truncated data: found only by the decoder; the error names the JSONL file and the problem.
    rows = _deep_rows(tmp_path)
    (tmp_path / "img" / "33.png").write_bytes(_png(33)[:40])
    path = _write(tmp_path, rows, images=())
    with pytest.raises(sources.DataError, match=r"data\.jsonl.*cannot decode 'image'.*Invalid PNG") as e:
        _iterate(path)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value) and "function_node" not in str(e.value)
