"""Run reports: loss/metric curves and the demo's answered-images grid, from what a training workdir holds."""

import json
import os
import re

import numpy as np
from PIL import Image

from configs.transfer import easyvqa
from tools import demo_report, plots
from trainers import config as config_lib

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "eval", "eval.jsonl")


def _workdir(tmp_path):
    rows = [json.loads(line) for line in open(FIXTURE)]
    records = [{"step": s, "training_loss": 2.0 / s, "lr": 1e-3} for s in (1, 2, 3, 4)]
    records[1].update({"test/accuracy": 0.5, "test/accuracy_color": 0.4})
    records[3].update({"test/accuracy": 0.75, "test/accuracy_color": 0.8, "test/num_examples": 4})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {"evals": {"test": {"data": {"name": "jsonl", "path": FIXTURE}, "id_key": "question_id"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "evals").mkdir()
    preds = [
        {
            "prediction": r["answers"][0] if i % 2 == 0 else "no",
            "answers": r["answers"],
            "id": r["question_id"],
            "score": 1.0 if i % 2 == 0 else 0.0,
        }
        for i, r in enumerate(rows[:4])
    ]
    (tmp_path / "evals" / "test_predictions_step4.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return tmp_path


def test_curves_png(tmp_path):
    work = _workdir(tmp_path)
    records = plots.read_metrics(str(work / "metrics.jsonl"))
    assert plots.default_metrics(records) == ["test/accuracy", "test/accuracy_color"]
    out = plots.plot_curves(records, str(tmp_path / "c.png"))
    assert Image.open(out).size[0] > 500


def test_demo_report_summarises_and_draws(tmp_path, capsys):
    work = _workdir(tmp_path)
    assert demo_report.main(["--workdir", str(work), "--num_images", "4"]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy after 4 steps: 75.00% on 4 questions (color 80.0%)" in out
    grid = np.asarray(Image.open(work / "predictions.png").convert("RGB"))
    assert grid.shape[0] > 200 and grid.std() > 10  # images were drawn
    assert demo_report.main(["--workdir", str(tmp_path / "missing")]) == 2


def test_easyvqa_config_resolves():
    cfg = config_lib.resolve(easyvqa.get_config("steps=10"))
    assert cfg.total_steps == 10 and cfg.evals.test.type == "vqa"
    assert cfg.model.llm.vocab_size == easyvqa.TOKENIZER_VOCAB + 1152


def test_train_benchmark_times_the_trainers_step_and_reports_its_share_of_the_matmul_peak(capsys):
    from tools import benchmark_train

    argv = ["--model", "paligemma-tiny", "--batch_size", "8", "--text_len", "8", "--prefix_len", "3", "--steps", "2"]
    assert benchmark_train.train_benchmark(argv) == 0
    out = capsys.readouterr().out
    assert "paligemma-tiny: batch 8, text 8 (3 prompt tokens, 6 loss positions)" in out
    header, _, row = out.strip().splitlines()[-3:]
    assert "examples/s" in header and "of peak" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[0]) > 0 and float(cells[1]) > 0 and cells[4].endswith("%")


def test_decode_benchmark_reports_speed_and_peak_memory_in_bfloat16_and_int8(capsys):
    from tools import benchmark_decode

    argv = ["--model", "paligemma-tiny", "--batch_sizes", "2", "--max_decode_len", "3", "--prompt_len", "4"]
    argv += ["--repeats", "1", "--dtype", "bfloat16", "--quantize", "int8"]
    assert benchmark_decode.decode_benchmark(argv) == 0
    out = capsys.readouterr().out
    assert "paligemma-tiny (" in out and "bfloat16, int8 weights:" in out
    header, _, row = [line for line in out.splitlines() if line.startswith("|")]
    assert "tokens/s" in header and "prefill ms" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "2" and float(cells[3].replace(",", "")) > 0
    assert re.search(r"peak host memory \(RSS\): \d+\.\d\d GiB while generating", out)
