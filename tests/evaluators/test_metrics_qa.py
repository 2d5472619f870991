"""ChartQA relaxed accuracy, TallyQA, POPE, ScienceQA, RSVQA."""

import random

import pytest

from evaluators.metrics import (
    normalize_count,
    normalize_rsvqa_answer,
    parse_scienceqa_answer,
    parse_yes_no,
    pope_metrics,
    relaxed_accuracy,
    rsvqa_accuracy,
    rsvqa_aggregate,
    scienceqa_accuracy,
    tallyqa_accuracy,
    tallyqa_aggregate,
)


@pytest.mark.parametrize(
    "pred, target, ok",
    [
        ("12", "12", True),
        ("12.5", "12", True),  # 4.2 %
        ("12.7", "12", False),  # 5.8 %
        ("105", "100", True),  # exactly 5 % is accepted
        ("105.1", "100", False),
        ("95", "100", True),
        ("-5", "-5.1", True),  # relative to |target|
        ("45%", "0.45", True),  # trailing % -> /100
        ("0.45", "45%", True),
        ("45", "45%", False),  # 45 vs 0.45
        ("0", "0", True),  # zero target: string comparison
        ("0.0", "0", False),
        ("0.01", "0", False),
        (" Yes ", "yes", True),  # strip + lowercase for text
        ("Yes", "No", False),
        ("1,000", "1000", False),  # no comma handling (float() syntax only)
        ("nan", "nan", True),  # not a finite number -> string comparison
        ("inf", "1e308", False),
        ("12 apples", "12", False),
    ],
)
def test_relaxed_accuracy(pred, target, ok):
    assert relaxed_accuracy(pred, target) is ok


@pytest.mark.parametrize(
    "pred, answer, ok",
    [
        ("Three", 3, True),
        ("3.", "3", True),
        ("twenty", 20, True),
        ("Twenty.", "20", True),
        ("03", 3, True),
        ("none", 0, True),
        ("zero", "0", True),
        ("21", "twenty one", False),
        ("2 dogs", 2, False),
        ("4", 5, False),
        (" 7 ", "seven", True),
        ("eleven", 11, True),
    ],
)
def test_tallyqa(pred, answer, ok):
    assert tallyqa_accuracy(pred, answer) is ok


def test_tallyqa_aggregate_and_normalize():
    assert normalize_count("Fifteen") == "15"
    out = tallyqa_aggregate([True, False, True, True], [True, True, False, False])
    assert out == {"accuracy": 0.75, "simple": 0.5, "complex": 1.0, "num_simple": 2, "num_complex": 2}
    assert tallyqa_aggregate([], [])["accuracy"] == 0.0
    with pytest.raises(ValueError):
        tallyqa_aggregate([True], [])


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Yes, there is a dog.", "yes"),
        ("No, there is not.", "no"),
        ("There is no dog in the image", "no"),
        ("NO", "no"),
        ("I don't think so", "no"),
        ("Sure.", "yes"),
        ("Yes. No other dog though.", "yes"),
        ("yes", "yes"),
        ("no.", "no"),
        ("Not really", "no"),
        ("Nothing", "yes"),
    ],
)
def test_pope_parse(text, answer):
    assert parse_yes_no(text) == answer


def test_pope_metrics():
    out = pope_metrics(["yes", "Yes, it is.", "no", "No.", "yes"], ["yes", "no", "no", "yes", "YES"])
    assert (out["tp"], out["fp"], out["tn"], out["fn"]) == (2, 1, 1, 1)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["yes_ratio"] == pytest.approx(3 / 5)
    all_no = pope_metrics(["no", "no"], ["yes", "no"])
    assert all_no["precision"] == 0.0 and all_no["f1"] == 0.0 and all_no["accuracy"] == 0.5
    with pytest.raises(ValueError):
        pope_metrics(["yes"], ["maybe"])


@pytest.mark.parametrize(
    "text, kwargs, index",
    [
        ("The answer is B.", {}, 1),
        ("the answer is (c)", {}, 2),
        ("Because x. The answer is A.", {}, 0),
        ("B", {}, 1),
        ("(b)", {}, 1),
        ("B.", {}, 1),
        ("B. cat", {}, 1),
        ("(C) dog", {}, 2),
        ("The answer is E.", {"num_choices": 3}, None),
        ("D", {"choices": ["x", "y"]}, None),
        ("cat", {"choices": ["dog", "cat"]}, 1),
        ("The answer is cat.", {"choices": ["dog", "cat"]}, 1),
        ("Cat.", {"choices": ["dog", "cat"]}, 1),
        ("I think it is a bird", {"choices": ["dog", "cat"]}, None),
        ("", {}, None),
    ],
)
def test_scienceqa_parse(text, kwargs, index):
    assert parse_scienceqa_answer(text, **kwargs) == index


def test_scienceqa_accuracy():
    assert scienceqa_accuracy("The answer is B.", 1)
    assert not scienceqa_accuracy("The answer is B.", 0)
    assert not scienceqa_accuracy("no idea", 0)
    assert scienceqa_accuracy("cat", 1, choices=["dog", "cat"])


@pytest.mark.parametrize(
    "pred, answer, ok",
    [
        ("Yes", "yes", True),
        ("yes, there are", "yes", True),
        ("no.", "no", True),
        ("five", "5", True),
        ("5.0", "5", True),
        ("05", "5", True),
        ("rural", "urban", False),
        ("Urban", "urban", True),
        ("between 10m2 and 100m2", "between 10m2 and 100m2", True),
        ("0m2", "0 m2", False),
        ("6", "5", False),
    ],
)
def test_rsvqa_accuracy(pred, answer, ok):
    assert rsvqa_accuracy(pred, answer) is ok


def test_rsvqa_aggregate():
    out = rsvqa_aggregate([True, False, False, True], ["count", "count", "count", "presence"])
    assert out["per_type"] == {"count": pytest.approx(1 / 3), "presence": 1.0}
    assert out["average_accuracy"] == pytest.approx(2 / 3)
    assert out["overall_accuracy"] == 0.5
    assert normalize_rsvqa_answer("  Yes  ") == "yes"


# ----------------------------------------------------------------------------------------------------------
# Random cases against direct implementations of the definitions (the metrics of the chartqa / tallyqa / rsvqa
# evaluator types).


def test_relaxed_accuracy_random_cases():
    """Within 5% of a non-zero numeric target (a trailing % meaning /100), else a case-insensitive exact match."""
    rng = random.Random(0)

    def number(text):
        try:
            return float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            return None

    for _ in range(1000):
        target = rng.choice([f"{rng.uniform(-50, 50):.2f}", f"{rng.randint(0, 100)}%", "0", rng.choice(["Yes", "No"])])
        t = number(target)
        if t is not None and rng.random() < 0.7:
            pred = f"{t * rng.uniform(0.9, 1.1):.4f}"
        else:
            pred = rng.choice(["yes", "no", "YES", target, f" {target} "])
        p = number(pred.strip())
        if p is not None and t:
            expected = abs(p - t) / abs(t) <= 0.05
        else:
            expected = pred.strip().lower() == target.strip().lower()
        assert relaxed_accuracy(pred, target) is expected, (pred, target)


def test_tallyqa_and_rsvqa_random_cases():
    words = "zero one two three four five six seven eight nine ten".split()
    rng = random.Random(1)
    correct, simple = [], []
    for _ in range(500):
        n, m = rng.randint(0, 10), rng.randint(0, 10)
        pred = rng.choice([words[m], str(m), words[m].capitalize() + "."])
        correct.append(tallyqa_accuracy(pred, n))
        assert correct[-1] is (n == m)
        assert rsvqa_accuracy(pred, str(n)) is (n == m)
        simple.append(rng.random() < 0.5)
    out = tallyqa_aggregate(correct, simple)
    s = [c for c, f in zip(correct, simple) if f]
    c = [c for c, f in zip(correct, simple) if not f]
    assert out["simple"] == pytest.approx(sum(s) / len(s)) and out["complex"] == pytest.approx(sum(c) / len(c))
    types = [rng.choice(["comp", "presence", "rural_urban"]) for _ in correct]
    agg = rsvqa_aggregate(correct, types)
    per = {t: [x for x, y in zip(correct, types) if y == t] for t in set(types)}
    assert agg["average_accuracy"] == pytest.approx(sum(sum(v) / len(v) for v in per.values()) / len(per))
