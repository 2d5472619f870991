"""Mock TFDS data: any builder's features, valid values, the same decoding path as prepared data."""

import numpy as np
import pytest
import tensorflow as tf

from datasets import pipeline, sources


@pytest.mark.parametrize("name", ["vqa", "coco_captions", "ref_coco", "refcoco"])
def test_mock_examples_follow_the_features_and_decode(name):
    src = sources.get_source(dict(name=name, split="train", mock=5))
    assert src.num_examples == 5 and src.shard_num_examples(1, 2) == 3
    examples = list(src.get_tfdata(ordered=True))
    assert len(examples) == 5
    ex = examples[0]
    assert ex["image"].dtype == tf.string  # encoded, as TfdsSource yields prepared data
    img = tf.io.decode_image(ex["image"]).numpy()
    assert img.ndim == 3 and img.shape[-1] == 3
    again = list(sources.get_source(dict(name=name, split="train", mock=5)).get_tfdata(ordered=True))
    assert again[0]["image"].numpy() == ex["image"].numpy()  # deterministic


def test_mock_vqa_through_a_pp_string():
    src = sources.get_source(dict(name="vqa", split="validation", mock=6))
    pp = 'decode|resize(16)|value_range(-1, 1)|strfmt("answer en {question}", outkey="q")|keep("image", "q", "answers")'
    batches = list(pipeline.make_eval_iterator(src, pp, batch_size=4, process_index=0, process_count=1))
    assert [int(b["_mask"].sum()) for b in batches] == [4, 2]
    assert batches[0]["image"].shape == (4, 16, 16, 3) and np.abs(batches[0]["image"]).max() <= 1.0
    assert batches[0]["answers"].shape == (4, 3) and batches[0]["q"][0].startswith(b"answer en ")
