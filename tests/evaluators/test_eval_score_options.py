"""Metric options of the evaluator types: `vqa`'s `mean_over_types` (MaRVL's mean over languages) and `caption`'s
`score_scale` (CIDEr x100, as model cards report it)."""

import types

import pytest

from evaluators import metrics as M
from evaluators import tasks
from evaluators.registry import EVALUATOR_TYPES


def _metrics(cls, records, **config):
    """`cls._metrics(records)` for a config holding the type's defaults and `config` (no model needed)."""
    full = dict(cls.KEYS, **config)
    return cls._metrics(
        types.SimpleNamespace(config=full, scored=cls.scored if hasattr(cls, "scored") else None), records
    )


def _qa(prediction, answer, language):
    score = M.vqa_accuracy_always_normalize(prediction, [answer])
    return {"prediction": prediction, "answers": [answer], "answer_type": language, "score": score}


def test_vqa_mean_over_types_is_the_unweighted_mean_of_the_per_type_accuracies():
    records = [_qa("true", "true", "id"), _qa("false", "true", "id"), _qa("True", "true", "id")]
    records += [_qa("false", "false", "zh")]
    out = _metrics(tasks.VqaEvaluator, records, mean_over_types=True)
    assert out["accuracy_id"] == pytest.approx(2 / 3) and out["accuracy_zh"] == 1.0
    assert out["mean_accuracy"] == pytest.approx((2 / 3 + 1) / 2)  # languages weigh alike
    assert out["accuracy"] == pytest.approx(3 / 4)  # pooled over the statements
    assert "mean_accuracy" not in _metrics(tasks.VqaEvaluator, records)  # off by default
    assert EVALUATOR_TYPES["vqa"].KEYS["mean_over_types"] is False


def test_caption_score_scale_multiplies_the_reported_scores():
    records = [
        {"prediction": "a man is singing a song", "references": ["a man sings a song", "a person is singing"]},
        {"prediction": "a cat plays", "references": ["a cat is playing", "a kitten plays with a toy"]},
    ]
    plain = _metrics(tasks.CaptionEvaluator, records)
    scaled = _metrics(tasks.CaptionEvaluator, records, score_scale=100.0)
    assert plain["cider"] > 0
    for key in ("cider", "bleu4", "rouge_l"):
        assert scaled[key] == pytest.approx(100 * plain[key])
    preds, refs = [r["prediction"] for r in records], [r["references"] for r in records]
    assert plain["cider"] == pytest.approx(M.cider(preds, refs)[0])  # x1 by default: existing configs unchanged


def test_caption_score_scale_per_metric_keeps_bleu4_a_fraction_as_the_card_prints_scicap():
    records = [
        {"prediction": "a man is singing a song", "references": ["a man sings a song", "a person is singing"]},
        {"prediction": "a cat plays", "references": ["a cat is playing", "a kitten plays with a toy"]},
    ]
    plain = _metrics(tasks.CaptionEvaluator, records)
    mixed = _metrics(tasks.CaptionEvaluator, records, score_scale=dict(cider=100.0, rouge_l=100.0))
    assert mixed["cider"] == pytest.approx(100 * plain["cider"]) and mixed["rouge_l"] == pytest.approx(
        100 * plain["rouge_l"]
    )
    assert mixed["bleu4"] == pytest.approx(plain["bleu4"]) and 0 < mixed["bleu4"] < 1
