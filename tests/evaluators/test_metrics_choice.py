"""Exact-match VQA accuracy, multiple choice (A-OKVQA MC), MMVP answers and paired accuracy, POPE's exact parse:
hand cases, and random cases against a direct implementation of each definition."""

import random

import pytest

from evaluators.metrics import (
    exact_match_accuracy,
    mmvp_correct,
    multiple_choice_accuracy,
    option_letter,
    paired_accuracy,
    pope_metrics,
)

WORDS = ["cat", "Cat", " cat ", "dog", "DOG", "a dog", "yes", "Yes", "no", "2", "two", ""]


@pytest.mark.parametrize(
    "pred, answers, kwargs, score",
    [
        ("cat", ["cat"], {}, 1.0),
        (" Cat ", ["cat"], {}, 1.0),  # stripped, lowercased
        ("Cat", ["cat"], dict(lowercase=False), 0.0),
        ("cat", ["dog", "cat"], {}, 1.0),  # any ground truth
        ("cats", ["cat"], {}, 0.0),  # no other normalisation
        ("2", ["two"], {}, 0.0),
        ("the cat", ["cat"], {}, 0.0),
        ("cat", ["cat", "cat", "dog"], dict(min_matches=3), pytest.approx(2 / 3)),
        ("cat", ["cat"] * 4, dict(min_matches=3), 1.0),
    ],
)
def test_exact_match_accuracy(pred, answers, kwargs, score):
    assert exact_match_accuracy(pred, answers, **kwargs) == score


def test_exact_match_accuracy_random_cases():
    rng = random.Random(0)
    for _ in range(500):
        pred = rng.choice(WORDS)
        answers = [rng.choice(WORDS) for _ in range(rng.randint(1, 10))]
        lowercase, k = rng.random() < 0.5, rng.choice([1, 3])

        def norm(t, lowercase=lowercase):
            return t.strip().lower() if lowercase else t.strip()

        expected = min(1.0, sum(norm(a) == norm(pred) for a in answers) / k)
        assert exact_match_accuracy(pred, answers, lowercase=lowercase, min_matches=k) == pytest.approx(expected)
    with pytest.raises(ValueError):
        exact_match_accuracy("cat", [])


def test_multiple_choice_accuracy():
    choices = ["a red car", "a blue car", "Blue"]
    assert multiple_choice_accuracy("A Blue Car", choices, 1)
    assert multiple_choice_accuracy(" blue ", choices, 2)
    assert not multiple_choice_accuracy("a blue car.", choices, 1)  # the choice's exact text
    assert not multiple_choice_accuracy("B", choices, 1)  # A-OKVQA MC answers with the text, not a letter
    with pytest.raises(IndexError):
        multiple_choice_accuracy("a red car", choices, 3)
    rng = random.Random(1)
    for _ in range(300):
        choices = rng.sample(WORDS, 3)
        index, pred = rng.randrange(3), rng.choice(WORDS)
        assert multiple_choice_accuracy(pred, choices, index) == (
            pred.strip().lower() == choices[index].strip().lower()
        )


@pytest.mark.parametrize(
    "text, index",
    [("(a)", 0), ("B", 1), ("b.", 1), ("(c).", 2), ("b)", 1), ("(b) closed", 1), ("(B). Closed", 1), (" (a) ", 0)],
)
def test_option_letter(text, index):
    assert option_letter(text) == index


@pytest.mark.parametrize("text", ["a dog", "open", "", "ab", "(ab)", "b closed"])
def test_option_letter_none(text):
    assert option_letter(text) is None


@pytest.mark.parametrize(
    "pred, answer, choices, ok",
    [
        ("(a)", "(a)", None, True),
        ("A", "(a)", None, True),
        ("(b)", "(a)", None, False),
        ("(a) Open", "(a)", ["Open", "Closed"], True),  # letter first
        ("(b) Open", "(a)", ["Open", "Closed"], False),  # a wrong letter is wrong whatever the text
        ("Open", "(a)", ["Open", "Closed"], True),  # the option's text
        ("open.", "(a)", ["Open", "Closed"], True),
        ("closed", "(a)", ["Open", "Closed"], False),
        ("open", "(a)", None, False),  # text without the options cannot be checked
        ("open", "(c)", ["Open", "Closed"], False),  # a letter beyond the options
        ("Open", "open", None, True),  # the ground truth as text
        ("(a) open", "open", None, True),
    ],
)
def test_mmvp_correct(pred, answer, choices, ok):
    assert mmvp_correct(pred, answer, choices) is ok


def test_paired_accuracy_hand_case():
    out = paired_accuracy([True, True, True, False, False, False], [1, 1, 2, 2, 3, 3])
    assert out == {"paired_accuracy": pytest.approx(1 / 3), "accuracy": 0.5, "num_pairs": 3, "incomplete_pairs": 0}
    assert paired_accuracy([True], ["x"])["incomplete_pairs"] == 1
    assert paired_accuracy([], [])["paired_accuracy"] == 0.0
    with pytest.raises(ValueError):
        paired_accuracy([True], [])


def test_paired_accuracy_random_cases():
    """MMVP's layout: questions 2k and 2k + 1 form pair k; a pair counts when both are right."""
    rng = random.Random(2)
    for _ in range(100):
        n_pairs = rng.randint(1, 20)
        correct = [rng.random() < 0.7 for _ in range(2 * n_pairs)]
        order = list(range(2 * n_pairs))
        rng.shuffle(order)  # the order of the questions does not matter
        out = paired_accuracy([correct[i] for i in order], [i // 2 for i in order])
        expected = sum(correct[2 * k] and correct[2 * k + 1] for k in range(n_pairs)) / n_pairs
        assert out["paired_accuracy"] == pytest.approx(expected)
        assert out["accuracy"] == pytest.approx(sum(correct) / len(correct))


def test_pope_exact_parse_hand_case():
    out = pope_metrics(["yes", "Yes.", "no", "maybe", "yes"], ["yes", "yes", "no", "yes", "no"], parse="exact")
    # "Yes." is not exactly yes: a miss (FN), as "maybe" (invalid).
    assert (out["tp"], out["fp"], out["tn"], out["fn"], out["invalid"]) == (1, 1, 1, 2, 2)
    assert out["accuracy"] == pytest.approx(2 / 5) and out["recall"] == pytest.approx(1 / 3)
    assert pope_metrics(["Yes."], ["yes"])["accuracy"] == 1.0  # POPE's own rule reads it as yes
    with pytest.raises(ValueError, match="parse"):
        pope_metrics(["yes"], ["yes"], parse="loose")


def test_pope_exact_parse_random_cases():
    rng = random.Random(3)
    for _ in range(100):
        n = rng.randint(1, 30)
        preds = [rng.choice(["yes", "no", " Yes", "NO", "nope", "yes."]) for _ in range(n)]
        labels = [rng.choice(["yes", "no"]) for _ in range(n)]
        p = [x.strip().lower() for x in preds]
        tp = sum(a == "yes" and b == "yes" for a, b in zip(p, labels))
        fp = sum(a == "yes" and b == "no" for a, b in zip(p, labels))
        fn = sum(a != "yes" and b == "yes" for a, b in zip(p, labels))
        out = pope_metrics(preds, labels, parse="exact")
        assert out["accuracy"] == pytest.approx(sum(a == b for a, b in zip(p, labels)) / n)
        assert out["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert out["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert out["yes_ratio"] == pytest.approx(p.count("yes") / n)
