"""Pipelines on JSONL sources: resume, shard disjointness, eval padding/_mask, truncation counts, mixtures."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import pipeline, sources


def _make_jsonl(tmp_path, n, first_id=0, name="d.jsonl"):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    path = tmp_path / name
    path.write_text(
        "".join(json.dumps({"image": "x.png", "id": first_id + i, "text": f"t{i}"}) + "\n" for i in range(n))
    )
    return sources.get_source(dict(name="jsonl", path=str(path)))


def pp_ids(ex):
    """Keeps the id, decodes the image, and draws a per-example random number from `_seed` (stateless)."""
    img = tf.io.decode_png(ex["image"], channels=3)
    return {
        "id": ex["id"],
        "pix": tf.reduce_sum(tf.cast(img, tf.int32)),
        "r": tf.random.stateless_uniform([], seed=ex["_seed"]),
    }


def pp_light(ex):
    return {"id": ex["id"]}


def _flat(batches, key="id"):
    return np.concatenate([b[key] for b in batches]).tolist()


@pytest.mark.parametrize("start", [0, 4, 28, 31, 50])
def test_resume_gives_the_same_batches(tmp_path, start):
    src = _make_jsonl(tmp_path, 23)  # 23 examples, batch 4: batches cross epoch boundaries
    kw = dict(batch_size=4, shuffle_buffer_size=8, seed=7, process_index=0, process_count=1)
    full = pipeline.make_train_iterator(src, pp_ids, **kw)
    ref = [next(full) for _ in range(30)]
    assert full.position == 120
    resumed = pipeline.make_train_iterator(src, pp_ids, start_example=start, **kw)
    got = [next(resumed) for _ in range(10)]
    ids, rs = _flat(ref), _flat(ref, "r")
    assert _flat(got) == ids[start : start + 40]
    np.testing.assert_array_equal(_flat(got, "r"), rs[start : start + 40])  # random draws replay too
    assert "_seed" not in got[0]
    assert resumed.position == start + 40
    if start % 4 == 0:  # batch-aligned: identical batches
        for a, b in zip(got, ref[start // 4 :]):
            np.testing.assert_array_equal(a["id"], b["id"])


def test_every_epoch_is_a_permutation_and_epochs_differ(tmp_path):
    src = _make_jsonl(tmp_path, 20)
    it = pipeline.make_train_iterator(
        src, pp_light, batch_size=5, shuffle_buffer_size=6, seed=1, process_index=0, process_count=1
    )
    ids = _flat([next(it) for _ in range(12)])
    epochs = [ids[i : i + 20] for i in range(0, 60, 20)]
    for e in epochs:
        assert sorted(e) == list(range(20))
    assert epochs[0] != epochs[1] != epochs[2]
    # Same seed, same stream; another seed, another stream.
    again = pipeline.make_train_iterator(
        src, pp_light, batch_size=5, shuffle_buffer_size=6, seed=1, process_index=0, process_count=1
    )
    assert _flat([next(again) for _ in range(4)]) == ids[:20]
    other = pipeline.make_train_iterator(
        src, pp_light, batch_size=5, shuffle_buffer_size=6, seed=2, process_index=0, process_count=1
    )
    assert _flat([next(other) for _ in range(4)]) != ids[:20]


@pytest.mark.parametrize("process_count", [2, 3])
def test_train_shards_are_disjoint_and_cover(tmp_path, process_count):
    src = _make_jsonl(tmp_path, 31)
    seen = []
    for i in range(process_count):
        n = src.shard_num_examples(i, process_count)
        it = pipeline.make_train_iterator(
            src, pp_light, batch_size=1, shuffle_buffer_size=4, seed=0, process_index=i, process_count=process_count
        )
        epoch = _flat([next(it) for _ in range(n)])
        assert len(set(epoch)) == n  # one epoch of this process: its block, each example once
        seen.append(set(epoch))
    assert sum(len(s) for s in seen) == 31
    assert set().union(*seen) == set(range(31))


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_covers_every_example_once_with_padding(tmp_path, process_count):
    src = _make_jsonl(tmp_path, 7)
    valid, batches_per_process = [], []
    for i in range(process_count):
        it = pipeline.make_eval_iterator(src, pp_ids, batch_size=3, process_index=i, process_count=process_count)
        batches = list(it)
        batches_per_process.append(len(batches))
        assert len(batches) == it.num_batches
        for b in batches:
            assert b["_mask"].dtype == np.int32 and b["id"].shape == (3,) and b["_mask"].shape == (3,)
            m = b["_mask"].astype(bool)
            valid += b["id"][m].tolist()
            assert (b["id"][~m] == 0).all() and (b["pix"][~m] == 0).all()  # padding is zeros
        assert it.stats["examples"] == src.shard_num_examples(i, process_count)
    assert len(set(batches_per_process)) == 1  # every process runs the same number of batches
    assert valid == list(range(7))  # processes in order = split order, each example exactly once


def test_eval_padding_details(tmp_path):
    src = _make_jsonl(tmp_path, 7)
    batches = list(pipeline.make_eval_iterator(src, pp_ids, batch_size=3, process_index=0, process_count=1))
    assert [b["_mask"].tolist() for b in batches] == [[1, 1, 1], [1, 1, 1], [1, 0, 0]]
    assert batches[2]["id"].tolist() == [6, 0, 0]
    # 2 processes: blocks of 3 and 4 -> both run 2 batches; process 0's second batch is all padding.
    p0 = list(pipeline.make_eval_iterator(src, pp_ids, batch_size=3, process_index=0, process_count=2))
    assert [b["_mask"].tolist() for b in p0] == [[1, 1, 1], [0, 0, 0]]
    assert set(p0[1]) == {"id", "pix", "r", "_mask"}
    # String fields are padded with b"".
    it = pipeline.make_eval_iterator(
        src, lambda ex: {"text": ex["text"]}, batch_size=4, process_index=0, process_count=1
    )
    last = list(it)[-1]
    assert last["text"].tolist() == [b"t4", b"t5", b"t6", b""]


def test_truncation_counter(tmp_path):
    src = _make_jsonl(tmp_path, 10)

    def pp_trunc(ex):
        return {"id": ex["id"], "text_truncated": tf.cast(ex["id"] % 3 == 0, tf.int32) * 2}

    it = pipeline.make_eval_iterator(src, pp_trunc, batch_size=4, process_index=0, process_count=1)
    batches = list(it)
    assert "text_truncated" not in batches[0]
    assert it.stats == dict(examples=10, truncated=4)  # ids 0, 3, 6, 9 (padding not counted)
    tr = pipeline.make_train_iterator(
        src, pp_trunc, batch_size=5, shuffle_buffer_size=0, seed=0, process_index=0, process_count=1
    )
    for _ in range(4):
        next(tr)
    assert tr.stats == dict(examples=20, truncated=8)


def test_mixture_weights_and_resume(tmp_path):
    a = _make_jsonl(tmp_path, 10, first_id=0, name="a.jsonl")
    b = _make_jsonl(tmp_path, 10, first_id=100, name="b.jsonl")
    mix = sources.MixtureSource([(a, 3.0), (b, 1.0)], seed=0)
    kw = dict(batch_size=100, shuffle_buffer_size=4, seed=5, process_index=0, process_count=1)
    it = pipeline.make_train_iterator(mix, pp_light, **kw)
    ids = np.array(_flat([next(it) for _ in range(40)]))
    frac_a = float((ids < 100).mean())
    assert abs(frac_a - 0.75) < 0.03, frac_a
    # Resume in the middle of a mixture stream (inside a 1024-block and past it).
    for start in (700, 2100):
        resumed = pipeline.make_train_iterator(mix, pp_light, start_example=start, **kw)
        assert _flat([next(resumed) for _ in range(5)]) == ids[start : start + 500].tolist()
    # The source-level mixture (tf.data sample_from_datasets) respects the weights too.
    ds = mix.get_tfdata(ordered=False, seed=1).take(4000)
    got = np.array([int(e["id"]) for e in ds.as_numpy_iterator()])
    assert abs(float((got < 100).mean()) - 0.75) < 0.03
    # Ordered: every example of every part once.
    assert sorted(int(e["id"]) for e in mix.get_tfdata(ordered=True).as_numpy_iterator()) == list(range(10)) + list(
        range(100, 110)
    )


def test_mixture_from_config_with_per_part_pp(tmp_path):
    a = _make_jsonl(tmp_path, 5, name="a.jsonl")
    cfg = dict(mixture=[(dict(name="jsonl", path=a.path), 1.0), (dict(name="jsonl", path=a.path), 0.0)])
    mix = sources.get_source(cfg)
    assert isinstance(mix, sources.MixtureSource) and mix.weights == [1.0, 0.0]
    it = pipeline.make_train_iterator(
        mix, [pp_light, pp_light], batch_size=5, shuffle_buffer_size=0, seed=0, process_index=0, process_count=1
    )
    assert sorted(next(it)["id"].tolist()) == list(range(5))
    with pytest.raises(ValueError, match="different fields"):
        pipeline.make_train_iterator(
            sources.MixtureSource([(a, 1), (a, 1)]),
            [pp_light, lambda ex: {"x": ex["id"]}],
            batch_size=2,
            process_index=0,
            process_count=1,
        )


def test_choice_cycle_uses_each_answer_once_per_cycle_and_replays_on_resume(tmp_path):
    path = tmp_path / "a.jsonl"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    path.write_text(
        "".join(
            json.dumps({"image": "x.png", "id": i, "answers": [f"a{i}", f"b{i}", f"c{i}"]}) + "\n" for i in range(5)
        )
    )
    src = sources.get_source(dict(name="jsonl", path=str(path)))
    pp = 'choice_cycle(inkey="answers", outkey="answer")|keep("id", "answer")'
    kw = dict(batch_size=5, shuffle_buffer_size=4, seed=3, process_index=0, process_count=1)
    it = pipeline.make_train_iterator(src, pp, **kw)
    batches = [next(it) for _ in range(3)]  # 3 epochs of 5 examples
    assert set(batches[0]) == {"id", "answer"}  # the counter does not leak into batches
    seen = {}
    for b in batches:
        for i, a in zip(b["id"].tolist(), b["answer"].tolist()):
            seen.setdefault(i, []).append(a.decode())
    assert seen == {i: [f"a{i}", f"b{i}", f"c{i}"] for i in range(5)}
    resumed = pipeline.make_train_iterator(src, pp, start_example=5, **kw)
    np.testing.assert_array_equal(next(resumed)["answer"], batches[1]["answer"])


def test_eval_batches_pad_lists_of_different_lengths(tmp_path):
    path = tmp_path / "v.jsonl"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    rows = [{"image": "x.png", "id": i, "answers": [f"a{j}" for j in range(i + 1)]} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = sources.get_source(dict(name="jsonl", path=str(path)))
    (batch,) = list(
        pipeline.make_eval_iterator(src, 'keep("id", "answers")', batch_size=4, process_index=0, process_count=1)
    )
    assert batch["answers"].tolist() == [[b"a0", b"", b""], [b"a0", b"a1", b""], [b"a0", b"a1", b"a2"], [b"", b"", b""]]
    assert batch["_mask"].tolist() == [1, 1, 1, 0]


def test_where_keeps_matching_examples_in_training_eval_and_resume(tmp_path):
    base = _make_jsonl(tmp_path, 30)
    even = [f"t{i}" for i in range(0, 30, 2)]
    src = sources.get_source(dict(name="jsonl", path=base.path, where=dict(text=even)))
    assert src.num_examples == 15 and "where" in src.describe()
    assert [int(e["id"]) for e in src.get_tfdata(ordered=True).as_numpy_iterator()] == list(range(0, 30, 2))
    kw = dict(batch_size=5, shuffle_buffer_size=4, seed=2, process_index=0, process_count=1)
    it = pipeline.make_train_iterator(src, pp_light, **kw)
    ids = _flat([next(it) for _ in range(9)])  # three epochs of the 15 matches
    for e in range(3):
        assert sorted(ids[15 * e : 15 * (e + 1)]) == list(range(0, 30, 2))
    resumed = pipeline.make_train_iterator(src, pp_light, start_example=20, **kw)
    assert _flat([next(resumed) for _ in range(3)]) == ids[20:35]
    # Processes split the matches between them, each exactly once.
    seen = []
    for p in range(2):
        for b in pipeline.make_eval_iterator(src, pp_light, batch_size=4, process_index=p, process_count=2):
            seen += b["id"][b["_mask"].astype(bool)].tolist()
    assert sorted(seen) == list(range(0, 30, 2))
    # Several conditions must all hold; an int field matches an int value.
    both = sources.get_source(dict(name="jsonl", path=base.path, where=dict(text=even, id=[0, 1, 2, 3])))
    assert [int(e["id"]) for e in both.get_tfdata(ordered=True).as_numpy_iterator()] == [0, 2]


def test_where_errors_name_the_problem(tmp_path):
    base = _make_jsonl(tmp_path, 4)
    with pytest.raises(sources.DataError, match="No example .* matches"):
        sources.get_source(dict(name="jsonl", path=base.path, where=dict(text="nope")))
    with pytest.raises(sources.DataError, match="'colour' not in the example"):
        sources.get_source(dict(name="jsonl", path=base.path, where=dict(colour="red")))
    with pytest.raises(sources.DataError, match="'id' holds int64 values; '3' cannot match"):
        sources.get_source(dict(name="jsonl", path=base.path, where=dict(id="3")))
    with pytest.raises(ValueError, match="at least one"):
        sources.get_source(dict(name="jsonl", path=base.path, where={}))
