"""Truncated prompts are counted and reported: pp `keep`, the pipeline, `TrainData`, the trainer's log, inspect.

The original failure: a 600-word question with the shipped easy-VQA pp (`text_len=20`, `keep(...)` without
`text_truncated`) trained silently -- the flag was dropped by `keep`, so nothing counted it.
"""

import io
import json
import logging
import types

import numpy as np
from PIL import Image

from configs.transfer import easyvqa
from datasets import inspect, pipeline, sources
from trainers import logging_utils
from trainers import step as step_lib
from trainers.data import TrainData
from trainers.loop import _Logger

LONG = " ".join(["what"] * 600) + "?"


def _jsonl(tmp_path, n=8, long_every=4):
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    rows = [
        {"image": "x.png", "question": LONG if i % long_every == 0 else "what color?", "answer": "red", "id": i}
        for i in range(n)
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dict(name="jsonl", path=str(path))


def _setup(tmp_path, tokenizer_path, batch_size=4):
    cfg = types.SimpleNamespace(
        input=types.SimpleNamespace(pp=easyvqa.TRAIN_PP, batch_size=batch_size, shuffle_buffer_size=0, prefetch=1),
        seed=0,
        log_training_steps=1,
        loss_positions=None,
    )
    source = sources.get_source(_jsonl(tmp_path))
    return types.SimpleNamespace(cfg=cfg, source=source, data_shards=1, tokenizer_path=tokenizer_path, total_steps=4)


def test_shipped_pp_keeps_the_flag_and_the_pipeline_counts_it(tmp_path, tokenizer_path):
    assert "text_truncated" not in easyvqa.TRAIN_PP  # the shipped keep(...) does not list it: keep keeps it anyway
    it = pipeline.make_train_iterator(
        sources.get_source(_jsonl(tmp_path)),
        easyvqa.TRAIN_PP,
        tokenizer=tokenizer_path,
        batch_size=8,
        shuffle_buffer_size=0,
        process_index=0,
        process_count=1,
    )
    batch = next(it)
    assert it.stats == dict(examples=8, truncated=2)  # was truncated=0: the flag never reached the pipeline
    assert set(batch) == set(step_lib.REQUIRED_KEYS)  # removed before the train step
    step_lib.check_batch(batch)


def test_train_data_reports_truncation_per_step(tmp_path, tokenizer_path, caplog):
    data = TrainData(_setup(tmp_path, tokenizer_path), position=0)
    with caplog.at_level(logging.WARNING, logger="trainers.train"):
        first = data.first_batch()
        assert "text_truncated" not in first
        for _ in range(3):  # read ahead, as the device prefetcher does: counts stay per step
            next(data)
        assert data.truncation(1) == dict(truncated_examples=1, truncated_fraction=0.25)
        assert data.truncation(2) == dict(truncated_examples=2, truncated_fraction=0.25)
        assert data.truncation(3, step=3) == dict(truncated_examples=3, truncated_fraction=0.25)
        assert data.truncation(4) == dict(truncated_examples=4, truncated_fraction=0.25)
    warnings = [r.getMessage() for r in caplog.records if r.name == "trainers.train"]
    # The first time, then again once the step number has doubled (steps 1, 2, 4), each line with the count.
    assert warnings[0].startswith("Text truncated in 1 of 4 training examples (25.00%) by step 1: raise text_len")
    assert len(warnings) == 3 and "4 of 16" in warnings[-1]


def test_logger_writes_truncation_to_metrics_jsonl(tmp_path, tokenizer_path):
    setup = _setup(tmp_path, tokenizer_path)
    data = TrainData(setup, position=0)
    data.first_batch()
    next(data)
    writer = logging_utils.MetricsWriter(str(tmp_path / "work"), enabled=True)
    logger = _Logger(setup, writer, 0, str(tmp_path / "ckpt"), None)
    logger.data = data
    metrics = dict(finite=1.0, training_loss=1.0, grad_norm=1.0, lr=0.1)
    for step in (1, 2):
        logger.emit(step, logger.check(step, metrics))
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["truncated_examples"], r["truncated_fraction"]) for r in lines] == [
        (1, 1, 0.25),
        (2, 2, 0.25),
    ]


def test_no_flag_means_no_count_and_one_warning(tmp_path, tokenizer_path, caplog):
    setup = _setup(tmp_path, tokenizer_path)
    setup.cfg.input.pp = easyvqa.TRAIN_PP + '|drop("text_truncated")'
    with caplog.at_level(logging.WARNING, logger="trainers.train"):
        data = TrainData(setup, position=0)
    assert "are not counted" in caplog.text
    data.first_batch()
    assert data.truncation(1) == {}


def test_inspect_marks_truncated_examples_and_counts_them(tmp_path, tokenizer_path):
    config = dict(
        input=dict(data=_jsonl(tmp_path, n=4, long_every=2), pp=easyvqa.TRAIN_PP, tokenizer=tokenizer_path),
        seed=0,
    )
    out = io.StringIO()
    inspect.inspect_config(config, n=4, ordered=True, out=out)
    text = out.getvalue()
    assert text.count("[TRUNCATED: text cut to fit text_len]") == 2  # examples 0 and 2
    assert "=== example 0 ===  [TRUNCATED" in text and "=== example 1 ===\n" in text
    assert "truncation: TRUNCATED 2 of the 4 example(s) shown" in text
