"""The science, remote-sensing and counting configs (ai2d, scienceqa, rsvqa_lr, rsvqa_hr, tallyqa) and the POPE /
MMVP evaluators of the VQAv2 transfer: every variant resolves with big_vision's recipe and the model card's metric
and split, and `mode=mock` runs each end to end on this CPU."""

import importlib
import os

import pytest

from datasets import build
from trainers import config as config_lib
from trainers.train import train

CONFIGS = ("ai2d", "scienceqa", "rsvqa_lr", "rsvqa_hr", "tallyqa")
FAST = {"xla_backend_optimization_level": 0}
# name -> (epochs, batch, lr, wd, label smoothing, text_len, training split, with final_split)
RECIPES = {
    "ai2d": (10, 256, 1e-5, 1e-6, 0.0, 128, "train[:-1024]", "train"),
    "scienceqa": (20, 128, 1e-5, 0.0, 0.0, 512, "train", "train+validation"),
    "rsvqa_lr": (3, 256, 3e-6, 0.0, 0.2, 32, "train", "train+validation"),
    "rsvqa_hr": (1, 256, 1e-5, 0.0, 0.0, 32, "train", "train+validation"),
    "tallyqa": (2, 256, 1e-5, 0.0, 0.0, 32, "train", "train"),
}
PROMPTS = {
    "ai2d": 'strfmt("answer en {question} choose from: {choices}", outkey="prefix")',
    "scienceqa": 'strfmt("Question: {question}\\nContext: {hint}\\nOptions: {indexed_choices}\\nAnswer:"',
    "rsvqa_lr": 'strfmt("answer en {question}", outkey="prefix")',
    "rsvqa_hr": 'strfmt("answer en {question}", outkey="prefix")',
    "tallyqa": 'strfmt("answer en {question}", outkey="prefix")',
}


def _config(name, arg=None):
    return importlib.import_module(f"configs.transfer.{name}").get_config(arg)


def _evals(name, arg=""):
    return config_lib.resolve(_config(name, arg)).evals


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "res=448,final_split=true", "res=896,model=paligemma2-10b"])
def test_every_variant_resolves_with_the_recipe(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    epochs, batch, lr, wd, smoothing, text_len, split, final = RECIPES[name]
    res = int(arg.split("res=")[1].split(",")[0]) if "res=" in arg else 224
    if name == "tallyqa":  # big_vision's sweep_best: lr and weight decay per resolution
        lr, wd = {224: (1e-5, 0.0), 448: (1e-5, 1e-6), 896: (7e-6, 7e-7)}[res]
    assert cfg.model_init.endswith(f"-pt-{res}")
    assert (cfg.total_epochs, cfg.input.batch_size, cfg.lr, cfg.wd) == (epochs, batch, lr, wd)
    assert cfg.optax_name == "adam" and cfg.get("label_smoothing", 0.0) == smoothing
    assert cfg.input.data.split == (final if "final_split" in arg else split)
    assert tuple(cfg.get("freeze", ())) == (("^img/",) if name == "scienceqa" else ())
    for pp in [cfg.input.pp] + [e.pp for e in cfg.evals.values()]:
        assert f"decode|resize({res}, antialias=True)|value_range(-1, 1)" in pp and PROMPTS[name] in pp
        assert f"text_len={text_len})" in pp
    assert all(e.sampler == "greedy" and e.data.name == name for e in cfg.evals.values())


def test_ai2d_scores_exact_cased_answers_on_test_and_a_held_out_minival():
    evals = _evals("ai2d")
    assert (evals.ai2d_minival.data.split, evals.ai2d_test.data.split) == ("train[-1024:]", "test")
    for e in evals.values():
        assert (e.type, e.normalize, e.answers_key, e.id_key) == ("vqa", "exact_cased", "answers", "id")
    assert evals.ai2d_minival.log_percent == 0.25 and evals.ai2d_test.get("log_percent") is None
    assert set(_evals("ai2d", "final_split=true")) == {"ai2d_test"}  # the minival is trained on


def test_scienceqa_targets_the_answer_sentence_and_parses_the_option():
    cfg = _config("scienceqa")
    assert '|strfmt("The answer is {indexed_answer}.", outkey="target")|copy(inkey="target", outkey="suffix")' in (
        cfg.input.pp
    )
    evals = _evals("scienceqa")
    assert (evals.scienceqa_val.data.split, evals.scienceqa_test.data.split) == ("validation", "test")
    for e in evals.values():
        assert (e.type, e.choices_key, e.answer_key, e.id_key) == ("scienceqa", "choices", "answer", "id")
        assert '"choices", "answer")' in e.pp
    assert set(_evals("scienceqa", "final_split=true")) == {"scienceqa_test"}


def test_rsvqa_reports_the_mean_over_the_non_numeric_question_types():
    lr, hr = _evals("rsvqa_lr"), _evals("rsvqa_hr")
    assert {k: e.data.split for k, e in lr.items()} == {"rsvqa_lr_val": "validation", "rsvqa_lr_test": "test"}
    assert {k: e.data.split for k, e in hr.items()} == {
        "rsvqa_hr_val": "validation",
        "rsvqa_hr_test": "test",
        "rsvqa_hr_test2": "test_2",
    }
    for e in [*lr.values(), *hr.values()]:
        assert (e.type, e.normalize, e.question_type_key, e.answers_key) == (
            "rsvqa",
            "exact",
            "question_type",
            "answers",
        )
        assert '"question_type")' in e.pp and e.get("mean_types") is None  # the dataset holds only non-numeric ones
    for name in ("rsvqa_lr", "rsvqa_hr"):  # trained on the lower-cased answer, as big_vision
        assert 'choice(inkey="answers", outkey="suffix")|lower(key="suffix")' in _config(name).input.pp
    assert lr.rsvqa_lr_val.log_percent == 0.25
    assert all(e.get("log_percent") is None for e in hr.values())  # large splits: at the end only
    assert set(_evals("rsvqa_hr", "final_split=true")) == {"rsvqa_hr_test", "rsvqa_hr_test2"}


def test_tallyqa_splits_accuracy_into_simple_and_complex_on_test():
    (test,) = _evals("tallyqa").values()
    assert (test.type, test.data.split, test.simple_key, test.answers_key) == ("tallyqa", "test", "issimple", "answers")
    assert '"question_id", "issimple")' in test.pp and test.log_percent == 0.25


@pytest.mark.parametrize("arg", ["", "final_split=true"])
def test_vqav2_scores_pope_and_mmvp_at_the_end(arg):
    evals = _evals("vqav2", arg)
    for setting in ("random", "popular", "adversarial"):
        pope = evals[f"pope_{setting}"]
        assert (pope.type, pope.data.name, pope.data.split) == ("pope", "pope", setting)
        assert (pope.answers_key, pope.parse, pope.get("log_percent")) == ("answer", "exact", None)
        assert 'strfmt("answer en {question}", outkey="prefix")' in pope.pp and '"answer", "question_id")' in pope.pp
    mmvp = evals.mmvp
    assert (mmvp.type, mmvp.data.name, mmvp.data.split, mmvp.get("log_percent")) == ("mmvp", "mmvp", "test", None)
    assert (mmvp.answer_key, mmvp.choices_key, mmvp.pair_key, mmvp.id_key) == ("answer", "options", "pair_id", "id")
    assert '"answer", "options", "pair_id", "id")' in mmvp.pp


# name -> the metrics of its evaluators that the mock run must report (the model card's numbers)
MOCK_METRICS = {
    "ai2d": {"ai2d_test/accuracy"},
    "scienceqa": {"scienceqa_test/parse_failures"},  # random answers name no valid option: no accuracy
    "rsvqa_lr": {"rsvqa_lr_test/mean_accuracy"},
    "rsvqa_hr": {"rsvqa_hr_test/mean_accuracy", "rsvqa_hr_test2/mean_accuracy"},
    "tallyqa": {"tallyqa_test/accuracy"},  # random issimple values: simple / complex only by chance
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_mock_mode_trains_and_evaluates(name, tmp_path):
    result = train(_config(name, "mode=mock"), str(tmp_path), compiler_options=FAST)
    assert result["step"] == result["total_steps"] == 3
    metrics = {k for k in result["records"][-1] if "/" in k}
    assert MOCK_METRICS[name] <= metrics, sorted(metrics)


@pytest.mark.slow
def test_vqav2_mock_run_scores_pope_and_mmvp_on_their_built_datasets(tmp_path):
    # The builders' real features (yes/no labels, option texts, pair ids) through the evaluators' pp and metrics:
    # the mock model trains 3 steps, then answers the fixture questions of the built `pope` and `mmvp` datasets.
    data_dir = str(tmp_path / "data")
    fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "data")
    for name in ("pope", "mmvp"):
        build.prepare(name, data_dir=data_dir, manual_dir=os.path.join(fixtures, f"{name}_manual"))
    cfg = _config("vqav2", "mode=mock")
    for name in list(cfg.evals):
        if name in ("pope_random", "mmvp"):
            data = dict(cfg.evals[name].data.to_dict(), data_dir=data_dir)
            del data["mock"]
            del cfg.evals[name]["data"]  # a ConfigDict field keeps its keys: replace it whole
            cfg.evals[name].data = data
        else:
            del cfg.evals[name]
    last = train(cfg, str(tmp_path / "run"), compiler_options=FAST)["records"][-1]
    assert {"pope_random/accuracy", "pope_random/f1", "mmvp/paired_accuracy"} <= set(last), sorted(last)
    assert "pope_random/invalid_labels" not in last and last["mmvp/num_pairs"] == 2
