"""The text-rich VQA configs (textvqa, stvqa, infovqa, ocrvqa, chartqa): every variant resolves with big_vision's
recipe for its resolution, evaluates the card's metric on the card's split (writing the test server's submission
file where the card's number comes from a server), and `mode=mock` runs each end to end on this CPU."""

import importlib
import json
import os

import pytest

from trainers import config as config_lib
from trainers.train import train

CONFIGS = ("textvqa", "stvqa", "infovqa", "ocrvqa", "chartqa")
FAST = {"xla_backend_optimization_level": 0}

# name -> res -> (epochs, batch, lr, wd, label smoothing): big_vision's sweep_best and get_config defaults
RECIPES = {
    "textvqa": {224: (5, 256, 3e-6, 0.0, 0.0), 448: (10, 256, 3e-6, 3e-7, 0.0), 896: (10, 256, 3e-6, 0.0, 0.0)},
    "stvqa": {224: (3, 256, 1e-5, 1e-6, 0.1), 448: (3, 128, 1e-5, 1e-6, 0.1), 896: (3, 32, 3e-6, 3e-7, 0.1)},
    "infovqa": {224: (3, 256, 1e-5, 1e-6, 0.4), 448: (3, 128, 1e-5, 1e-6, 0.4), 896: (3, 32, 3e-6, 3e-7, 0.4)},
    "ocrvqa": {224: (3, 128, 3e-6, 0.0, 0.0), 448: (3, 128, 3e-6, 0.0, 0.0), 896: (3, 128, 1e-5, 0.0, 0.0)},
    "chartqa": {224: (30, 256, 1e-5, 1e-6, 0.2), 448: (30, 256, 1e-5, 1e-6, 0.2), 896: (30, 256, 1e-5, 1e-6, 0.2)},
}
DEFAULT_RES = {"textvqa": 224, "stvqa": 896, "infovqa": 896, "ocrvqa": 224, "chartqa": 448}
# name -> (evaluator type, prompt prefix, text_len, the card's metric; a test-server split is scored in mock runs only)
TASKS = {
    "textvqa": ("vqa", "answer en {question}", 32, "textvqa_test/accuracy"),
    "stvqa": ("anls", "answer en {question}", 48, "stvqa_test/anls"),
    "infovqa": ("anls", "answer en {question}", 48, "infovqa_test/anls"),
    "ocrvqa": ("vqa", "answer en {question}", 32, "ocrvqa_test/accuracy"),
    "chartqa": ("chartqa", "{question}", 48, "chartqa_test/mean_relaxed_accuracy"),
}
# The test server's submission file: the id's name in its entries (None: no server, the card scores the test split)
SUBMISSION_ID = {
    "textvqa": "question_id",
    "stvqa": "question_id",
    "infovqa": "questionId",
    "ocrvqa": None,
    "chartqa": None,
}


def _config(name, arg=None):
    return importlib.import_module(f"configs.transfer.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "res=224", "res=448,final_split=true", "res=896,model=paligemma2-10b"])
def test_variants_resolve_with_the_original_recipe(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    res = int(arg.split("res=")[1].split(",")[0]) if "res=" in arg else DEFAULT_RES[name]
    assert cfg.model_name.endswith(f"-{res}") and cfg.model_init.endswith(f"-pt-{res}")
    got = (cfg.total_epochs, cfg.input.batch_size, cfg.lr, cfg.wd, cfg.label_smoothing)
    assert got == RECIPES[name][res]  # (epochs, batch, lr, wd, label smoothing)
    kind, prompt, text_len, _ = TASKS[name]
    final = "final_split" in arg
    assert f'strfmt("{prompt}", outkey="prefix")' in cfg.input.pp and f"text_len={text_len})" in cfg.input.pp
    assert f"resize({res}, antialias=True)" in cfg.input.pp
    for ev in cfg.evals.values():
        assert ev.type == kind and ev.max_decode_len == text_len and ev.sampler == "greedy"
        assert ev.id_key == "question_id" and '"question_id"' in ev.pp and f"resize({res}," in ev.pp
    test = cfg.evals[f"{name}_test"]
    assert test.data.split == "test" and test.get("log_percent") is None  # once, at the end
    assert (f"{name}_val" in cfg.evals) == (not final)  # final_split trains on validation
    expected_train = {
        "ocrvqa": "train+validation" if final else "train+validation[20000:]",
    }.get(name, "train+validation" if final else "train")
    assert cfg.input.data.split == expected_train


def test_each_config_reports_the_cards_metric_on_the_cards_split():
    textvqa = _config("textvqa").evals
    assert textvqa.textvqa_val.normalize == "always" and textvqa.textvqa_val.log_percent == 1 / 8
    assert textvqa.textvqa_test.get("submission_id_name") is None  # vqa's default: [{"question_id", "answer"}]
    st = _config("stvqa")
    assert st.evals.stvqa_test.submission_id_name == "question_id"  # ST-VQA's server
    assert '|lower(key="suffix")|' in st.input.pp  # the task ignores case: train on lower-cased answers
    info = _config("infovqa")
    assert info.evals.infovqa_test.get("submission_id_name") is None  # anls's default "questionId" (the server's)
    assert '|lower(key="suffix")|' in info.input.pp
    ocr = _config("ocrvqa").evals
    assert ocr.ocrvqa_test.normalize == "exact" and ocr.ocrvqa_val.data.split == "validation[:20000]"
    chart = _config("chartqa")
    test = chart.evals.chartqa_test
    assert test.answer_type_key == "source" and test.mean_over_types and '"source"' in test.pp
    assert chart.model.llm.dropout == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_mock_mode_trains_and_evaluates(name, tmp_path):
    result = train(_config(name, "mode=mock"), str(tmp_path), compiler_options=FAST)
    assert result["step"] == result["total_steps"] == 3
    last = result["records"][-1]
    assert TASKS[name][3] in last, sorted(last)
    if SUBMISSION_ID[name]:
        files = sorted(f for f in os.listdir(tmp_path / "evals") if f.startswith(f"{name}_test_submission"))
        with open(tmp_path / "evals" / files[-1]) as f:
            entries = json.load(f)
        assert len(entries) == 8 and set(entries[0]) == {SUBMISSION_ID[name], "answer"}
