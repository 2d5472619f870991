"""The general-VQA configs (okvqa, aokvqa_mc, aokvqa_da, gqa, vizwiz_vqa): every variant resolves with big_vision's
recipe and the model card's metric and split, and `mode=mock` runs each end to end on this CPU."""

import importlib

import pytest

from trainers import config as config_lib
from trainers.train import train

CONFIGS = ("okvqa", "aokvqa_mc", "aokvqa_da", "gqa", "vizwiz_vqa")
FAST = {"xla_backend_optimization_level": 0}
# name -> (epochs, batch, lr, text_len, training split, with final_split): big_vision's recipes, the card's splits
RECIPES = {
    "okvqa": (10, 128, 5e-6, 32, "train[:90%]", "train"),
    "aokvqa_mc": (15, 128, 5e-6, 128, "train", "train+validation"),
    "aokvqa_da": (10, 128, 5e-6, 32, "train", "train+validation"),
    "gqa": (1, 256, 1e-5, 32, "train_balanced", "train_balanced+val_balanced"),
    "vizwiz_vqa": (10, 256, 1e-5, 48, "train", "train+validation"),
}


def _config(name, arg=None):
    return importlib.import_module(f"configs.transfer.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "res=448,final_split=true", "res=896,model=paligemma2-10b"])
def test_every_variant_resolves_with_the_recipe(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    epochs, batch, lr, text_len, split, final = RECIPES[name]
    res = int(arg.split("res=")[1].split(",")[0]) if "res=" in arg else 224
    assert cfg.model_init.endswith(f"-pt-{res}")
    assert (cfg.total_epochs, cfg.input.batch_size, cfg.lr, cfg.wd) == (epochs, batch, lr, 0.0)
    assert cfg.optax_name == "adam" and cfg.get("label_smoothing", 0.0) == 0.0
    assert cfg.input.data.split == (final if "final_split" in arg else split)
    for pp in [cfg.input.pp] + [e.pp for e in cfg.evals.values()]:
        assert f"decode|resize({res}, antialias=True)|value_range(-1, 1)" in pp and 'strfmt("answer en {question}' in pp
        assert f"text_len={text_len})" in pp
    assert all(e.sampler == "greedy" for e in cfg.evals.values())


def _evals(name, arg=""):
    return config_lib.resolve(_config(name, arg)).evals


def test_okvqa_reports_vqa_accuracy_on_validation_with_or_without_final_split():
    for arg in ("", "final_split=true"):
        val = _evals("okvqa", arg).okvqa_val
        assert (val.type, val.normalize, val.data.split) == ("vqa", "vqav2", "validation")
        assert val.get("answers_key", "answers") == "answers"  # the 10 answers (the evaluator's default key)
    assert _evals("okvqa").okvqa_minival.data.split == "train[90%:]"  # the held-out tenth of train
    assert "okvqa_minival" not in _evals("okvqa", "final_split=true")


def test_aokvqa_writes_the_leaderboard_files_of_both_tasks():
    mc, da = _evals("aokvqa_mc", "final_split=true"), _evals("aokvqa_da", "final_split=true")
    assert set(mc) == {"aokvqa_mc_test"} and set(da) == {"aokvqa_da_test"}  # validation is trained on
    for test in (mc.aokvqa_mc_test, da.aokvqa_da_test):
        assert test.data.split == "test" and test.submission_format == "aokvqa" and test.id_key == "question_id"
    assert (mc.aokvqa_mc_test.type, mc.aokvqa_mc_test.choices_key) == ("multiple_choice", "choices")
    assert mc.aokvqa_mc_test.answer_key == "correct_choice_idx"
    assert 'choose from: {choices}", outkey="prefix")|copy(inkey="correct_choice"' in _config("aokvqa_mc").input.pp
    val = _evals("aokvqa_da").aokvqa_da_val  # min(1, matches / 3) over the 10 direct answers, no leave-one-out
    assert (val.type, val.normalize, val.min_matches, val.answers_key) == ("vqa", "exact", 3, "direct_answers")


def test_gqa_freezes_the_image_encoder_above_224_and_evaluates_testdev_and_xgqa():
    assert tuple(config_lib.resolve(_config("gqa")).get("freeze", ())) == ()
    assert tuple(config_lib.resolve(_config("gqa", "res=448")).freeze) == ("^img/",)
    evals = _evals("gqa")
    assert evals.gqa_val.data.split == "val_balanced" and evals.gqa_testdev.data.split == "testdev_balanced"
    assert set(_evals("gqa", "final_split=true")) == {"gqa_testdev", "xgqa"}
    for e in evals.values():
        assert (e.type, e.normalize, e.answers_key) == ("vqa", "exact", "answer")
    xgqa = evals.xgqa
    assert xgqa.data.name == "xgqa" and xgqa.answer_type_key == "language" and xgqa.mean_over_types
    langs = ("bn", "de", "en", "id", "ko", "pt", "ru", "zh")
    assert xgqa.data.split == "+".join(f"test_zs_{lang}" for lang in langs)
    assert '"language")' in xgqa.pp


def test_vizwiz_always_normalises_and_submits_by_image_file_name():
    evals = _evals("vizwiz_vqa")
    assert evals.vizwiz_val.data.split == "validation" and evals.vizwiz_test.data.split == "test"
    for e in evals.values():
        assert (e.type, e.normalize, e.id_key, e.submission_id_name) == ("vqa", "always", "file_name", "image")
    assert set(_evals("vizwiz_vqa", "final_split=true")) == {"vizwiz_test"}


# name -> a metric of its last evaluator that the mock run must report
MOCK_METRICS = {
    "okvqa": "okvqa_val/accuracy",
    "aokvqa_mc": "aokvqa_mc_val/accuracy",
    "aokvqa_da": "aokvqa_da_val/accuracy",
    "gqa": "xgqa/mean_accuracy",
    "vizwiz_vqa": "vizwiz_val/accuracy",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_mock_mode_trains_and_evaluates(name, tmp_path):
    result = train(_config(name, "mode=mock"), str(tmp_path), compiler_options=FAST)
    assert result["step"] == result["total_steps"] == 3
    metrics = {k for k in result["records"][-1] if "/" in k}
    assert MOCK_METRICS[name] in metrics, sorted(metrics)
