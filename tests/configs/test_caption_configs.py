"""The captioning configs of the model card (coco35l with XM3600, textcaps, scicap, screen2words, widgetcap): every
variant resolves, each carries its big_vision recipe and the card's metric, and `mode=mock` runs each end to end
(mock data from the builders' features -> training -> its evaluators) on this CPU."""

import importlib

import pytest

from trainers import config as config_lib
from trainers.train import train

CONFIGS = ("coco35l", "textcaps", "scicap", "screen2words", "widgetcap")
FAST = {"xla_backend_optimization_level": 0}

# name -> (dataset, batch, epochs, lr, wd, label smoothing, prompt, text_len, sampler, {eval name: split})
RECIPES = {
    "coco35l": (
        "coco35l", 256, None, 1e-5, 1e-6, 0.0, "caption {language}", 32, "greedy",
        {"coco35l_dev7": "validation", "coco35l_dev": "validation", "xm3600": "test"},
    ),
    "textcaps": (
        "textcaps", 256, 5, 1e-5, 1e-6, 0.0, "caption en", 32, "beam(n=3)",
        {"textcaps_val": "validation", "textcaps_test": "test"},
    ),
    "scicap": (
        "scicap", 256, 80, 3e-5, 0.0, 0.1, "caption en", 96, "greedy",
        {"scicap_val": "validation", "scicap_test": "test"},
    ),
    "screen2words": (
        "screen2words", 256, 10, 1e-5, 0.0, 0.2, "caption en", 24, "greedy",
        {"screen2words_val": "validation", "screen2words_test": "test"},
    ),
    "widgetcap": (
        "widget_caption", 64, 4, 3e-6, 3e-7, 0.1, "caption en", 32, "greedy",
        {"widgetcap_val": "validation", "widgetcap_test": "test"},
    ),
}  # fmt: skip


def _config(name, arg=None):
    return importlib.import_module(f"configs.transfer.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "res=448,final_split=true", "res=896,model=paligemma2-10b"])
def test_every_variant_resolves(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    res = int(arg.split("res=")[1].split(",")[0]) if "res=" in arg else 224
    assert cfg.model_name.endswith(f"-{res}") and cfg.model_init.endswith(f"-pt-{res}")
    assert f"resize({res}, antialias=True)" in cfg.input.pp
    for ev in cfg.evals.values():
        assert f"resize({res}, antialias=True)" in ev.pp
    dataset, *_, splits = RECIPES[name]
    if "final_split=true" in arg:  # trains on the validation data: only the test splits are scored
        assert cfg.input.data.split == "train+validation"
        assert {n: ev.data.split for n, ev in cfg.evals.items()} == {n: s for n, s in splits.items() if s == "test"}
    else:
        assert cfg.input.data.to_dict() == dict(name=dataset, split="train")
        assert {n: ev.data.split for n, ev in cfg.evals.items()} == splits


@pytest.mark.parametrize("name", CONFIGS)
def test_recipe_and_metric_follow_big_vision_and_the_card(name):
    dataset, batch, epochs, lr, wd, smoothing, prompt, text_len, sampler, _ = RECIPES[name]
    cfg = config_lib.resolve(_config(name))
    assert (cfg.input.batch_size, cfg.total_epochs, cfg.lr, cfg.wd, cfg.label_smoothing) == (
        batch, epochs, lr, wd, smoothing,
    )  # fmt: skip
    assert (cfg.optax_name, cfg.optax.b2, cfg.grad_clip_norm) == ("adam", 0.999, 1.0)
    assert (cfg.schedule.decay_type, cfg.schedule.warmup_percent) == ("cosine", 0.05)
    assert (
        f'strfmt("{prompt}", outkey="prefix")' in cfg.input.pp and f"tok_paligemma(text_len={text_len})" in cfg.input.pp
    )
    for ev in cfg.evals.values():
        scale = ev.score_scale if name != "scicap" else ev.score_scale.cider  # scicap: BLEU-4 a fraction, as the card
        assert ev.type == "caption" and scale == 100.0  # CIDEr x100 as the card prints it
        assert ev.max_decode_len == text_len and ev.sampler == sampler
        assert f"tok_paligemma_prompt(text_len={text_len})" in ev.pp
    first = next(iter(RECIPES[name][-1]))
    assert cfg.evals[first].log_percent  # the first runs during training too, the others at the end
    assert all(not ev.get("log_percent") for n, ev in cfg.evals.items() if n != first)


def test_coco35l_scores_each_language_and_xm3600_as_the_card():
    from datasets.builders.coco35l.coco35l_dataset_builder import LANGUAGES  # noqa: PLC0415

    cfg = config_lib.resolve(_config("coco35l"))
    assert cfg.total_examples == 5 * 566_435 and cfg.total_epochs is None  # big_vision's 5 "epochs" of one language
    assert '"captions", "id", "language")' in cfg.evals.coco35l_dev.pp
    for ev in cfg.evals.values():  # cider_en, cider_avg_no_en (avg-34), cider_avg (avg): one CIDEr per language
        assert (ev.group_key, ev.exclude_from_avg, ev.references_key) == ("language", "en", "captions")
    assert "where" not in cfg.evals.coco35l_dev.data  # all 35 languages
    assert cfg.evals.coco35l_dev7.data.where.language == ["ar", "bn", "en", "id", "sw", "tr", "zh"]
    assert cfg.evals.xm3600.data.name == "xm3600" and len(LANGUAGES) == 35
    assert cfg.evals.xm3600.data.where.language == list(LANGUAGES)  # the card's 35 (no Cusco Quechua)
    assert "quz" not in LANGUAGES


def test_textcaps_trains_on_lower_cased_captions_and_writes_the_server_file():
    cfg = config_lib.resolve(_config("textcaps", "final_split=true"))
    assert '|choice(inkey="captions", outkey="suffix")|lower(key="suffix")|tok_paligemma(' in cfg.input.pp
    test = cfg.evals.textcaps_test
    assert test.get("submission_file", True) and test.id_key == "image_id" and '"captions", "image_id")' in test.pp


def test_scicap_reports_cider_and_bleu4_against_its_one_caption():
    cfg = config_lib.resolve(_config("scicap"))
    assert 'copy(inkey="caption", outkey="suffix")' in cfg.input.pp  # one caption: no draw
    assert cfg.evals.scicap_test.references_key == "caption" and cfg.evals.scicap_val.log_percent == 0.3
    assert cfg.evals.scicap_test.score_scale.to_dict() == dict(cider=100.0, rouge_l=100.0)  # BLEU-4 stays a fraction


def test_widgetcap_draws_the_element_box_after_the_resize():
    cfg = config_lib.resolve(_config("widgetcap", "res=448"))
    draw = 'resize(448, antialias=True)|draw_box(box_key="bbox", color=(255, 0, 0))|value_range(-1, 1)|'
    assert draw in cfg.input.pp and all(draw in ev.pp for ev in cfg.evals.values())
    assert cfg.model.llm.dropout == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_mock_mode_trains_and_evaluates(name, tmp_path):
    result = train(_config(name, "mode=mock"), str(tmp_path), compiler_options=FAST)
    assert result["step"] == result["total_steps"] == 3
    last = result["records"][-1]
    metrics = {k for k in last if "/" in k}
    expected = {
        "coco35l": {"coco35l_dev/cider_avg", "coco35l_dev/cider_avg_no_en", "xm3600/cider_avg_no_en"},
        "textcaps": {"textcaps_val/cider"},
        "scicap": {"scicap_test/cider", "scicap_test/bleu4"},
        "screen2words": {"screen2words_test/cider"},
        "widgetcap": {"widgetcap_test/cider"},
    }[name]
    assert expected <= metrics, sorted(last)
