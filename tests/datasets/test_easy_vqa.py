"""easy-VQA built offline as TFDS (exact counts), and the TFDS source/pipelines on it (sharding, resume, pp).

The dataset is built once for this module (about 10-15 s on 2 cores), with 4 files per split so that the
multi-file reading path (seeded file order + interleave) is exercised.
"""

import numpy as np
import pytest
import tensorflow as tf

from datasets import build, pipeline, sources


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    build.prepare("easy_vqa", data_dir=str(d), num_shards=4)
    return str(d)


def test_counts_and_features(data_dir):
    train = sources.get_source(dict(name="easy_vqa", split="train", data_dir=data_dir))
    test = sources.get_source(dict(name="easy_vqa", split="test", data_dir=data_dir))
    assert train.num_examples == 38_575
    assert test.num_examples == 9_673
    assert len(train.builder.info.splits["train"].file_instructions) == 4
    exs = list(test.get_tfdata(ordered=True).take(200).as_numpy_iterator())
    ex = exs[0]
    assert set(ex) == {"image", "question", "answer", "answers", "question_id", "image_id", "question_type"}
    img = tf.io.decode_png(ex["image"]).numpy()  # images stay encoded until the pp `decode`
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert ex["answers"].tolist() == [ex["answer"]]
    assert {e["question_type"] for e in exs} == {b"yes/no", b"color", b"shape"}
    answers = np.concatenate(
        list(test.get_tfdata(ordered=True).map(lambda e: e["answer"]).batch(2000).as_numpy_iterator())
    )
    assert len(answers) == 9_673 and len(set(answers.tolist())) == 13


def test_where_selects_question_types(data_dir):
    """The demo config re-weights question types with filtered parts of one split."""
    shape = sources.get_source(
        dict(name="easy_vqa", split="test", data_dir=data_dir, where=dict(question_type="shape"))
    )
    answers = [e["answer"] for e in shape.get_tfdata(ordered=True).as_numpy_iterator()]
    assert len(answers) == shape.num_examples and set(answers) == {b"circle", b"rectangle", b"triangle"}
    other = sources.get_source(
        dict(name="easy_vqa", split="test", data_dir=data_dir, where=dict(question_type=["color", "yes/no"]))
    )
    assert shape.num_examples + other.num_examples == 9_673


@pytest.mark.parametrize("process_count", [2, 3])
def test_eval_covers_every_question_once(data_dir, process_count):
    src = sources.get_source(dict(name="easy_vqa", split="test", data_dir=data_dir))
    seen, nb = [], set()
    for i in range(process_count):
        it = pipeline.make_eval_iterator(
            src, lambda ex: {"qid": ex["question_id"]}, batch_size=1000, process_index=i, process_count=process_count
        )
        nb.add(it.num_batches)
        for b in it:
            seen += b["qid"][b["_mask"] == 1].tolist()
    assert len(nb) == 1
    assert len(seen) == 9_673 and sorted(seen) == list(range(9_673))


def test_train_shards_disjoint(data_dir):
    src = sources.get_source(dict(name="easy_vqa", split="test", data_dir=data_dir))
    blocks = []
    for i in range(3):
        ds = src.get_tfdata(process_index=i, process_count=3, ordered=False, seed=11)
        ids = np.concatenate(list(ds.map(lambda e: e["question_id"]).batch(1000).as_numpy_iterator())).tolist()
        assert len(ids) == len(set(ids)) == src.shard_num_examples(i, 3)
        blocks.append(set(ids))
    assert not (blocks[0] & blocks[1]) and not (blocks[1] & blocks[2]) and not (blocks[0] & blocks[2])
    assert len(set().union(*blocks)) == 9_673


def test_tfds_resume(data_dir):
    src = sources.get_source(dict(name="easy_vqa", split="test", data_dir=data_dir))
    kw = dict(batch_size=500, shuffle_buffer_size=1000, seed=3, process_index=1, process_count=2)
    pp = lambda ex: {"qid": ex["question_id"]}
    full = pipeline.make_train_iterator(src, pp, **kw)
    ref = np.concatenate([next(full)["qid"] for _ in range(14)])  # > 1 epoch of the 4836-example block
    n = src.shard_num_examples(1, 2)
    assert sorted(ref[:n].tolist()) == sorted(set(ref[:n].tolist()))
    resumed = pipeline.make_train_iterator(src, pp, start_example=4500, **kw)
    got = np.concatenate([next(resumed)["qid"] for _ in range(5)])
    np.testing.assert_array_equal(got, ref[4500:7000])


def test_pp_string_pipeline(data_dir, easyvqa_tokenizer_path):
    pytest.importorskip("datasets.pp")
    tok = easyvqa_tokenizer_path  # trained on easy-VQA's questions and answers
    pp = (
        'decode|resize(32)|value_range(-1, 1)|strfmt("answer en {question}", outkey="prefix")'
        '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len=24)'
        '|keep("image", "text", "mask_ar", "mask_loss", "mask_input", "text_truncated")'
    )
    src = sources.get_source(dict(name="easy_vqa", split="train", data_dir=data_dir))
    it = pipeline.make_train_iterator(
        src, pp, tokenizer=tok, batch_size=8, shuffle_buffer_size=100, seed=0, process_index=0, process_count=1
    )
    b = next(it)
    assert set(b) == {"image", "text", "mask_ar", "mask_loss", "mask_input"}
    assert b["image"].shape == (8, 32, 32, 3) and b["image"].dtype == np.float32
    assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0
    assert b["text"].shape == (8, 24) and b["text"].dtype == np.int32
    assert it.stats == dict(examples=8, truncated=0)


def test_unprepared_datasets_say_what_to_do(tmp_path):
    with pytest.raises(sources.DataError, match=r"python -m datasets.build vqa --data_dir"):
        sources.get_source(dict(name="vqa", split="train", data_dir=str(tmp_path)))
    with pytest.raises(sources.DataError, match=r"tfds build coco_captions"):
        sources.get_source(dict(name="coco_captions", split="val", data_dir=str(tmp_path)))
    with pytest.raises(sources.DataError, match="not prepared"):
        sources.get_source(dict(name="easy_vqa", split="train", data_dir=str(tmp_path), prepare=False))
