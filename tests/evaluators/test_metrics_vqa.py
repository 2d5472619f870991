"""VQA accuracy (VQAv2 official-script behaviour), TextVQA variant, aggregation."""

import pytest

from evaluators.metrics import normalize_vqa_answer, vqa_accuracy, vqa_accuracy_always_normalize, vqa_aggregate


def _reference_leave_one_out(pred, answers):
    """Independent spelled-out form of the official loop (answers compared by position)."""
    accs = []
    for left_out in range(len(answers)):
        others = [a for i, a in enumerate(answers) if i != left_out]
        accs.append(min(1.0, sum(a == pred for a in others) / 3.0))
    return sum(accs) / len(accs)


@pytest.mark.parametrize(
    "m, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (9, 1.0), (10, 1.0)]
)
def test_leave_one_out_values(m, expected):
    answers = ["cat"] * m + ["dog"] * (10 - m)
    got = vqa_accuracy("cat", answers)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(_reference_leave_one_out("cat", answers), abs=1e-15)


def test_leave_one_out_exact_fractions():
    # m = 1: nine subsets contain the match (1/3 each), one does not -> 9 * (1/3) / 10.
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(9 * (1 / 3) / 10, abs=1e-15)
    # m = 2: 2 subsets with 1 match, 8 with 2 matches.
    assert vqa_accuracy("cat", ["cat"] * 2 + ["dog"] * 8) == pytest.approx((2 / 3 + 8 * 2 / 3) / 10, abs=1e-15)
    # m = 3: 3 subsets with 2 matches, 7 with 3 (capped at 1).
    assert vqa_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx((3 * 2 / 3 + 7) / 10, abs=1e-15)


def test_quirk_no_normalisation_when_answers_agree():
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_accuracy("the dog", ["dog"] * 10) == 0.0
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    # Whitespace/newline stripping always happens.
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("yes", ["yes\t"] * 10) == 1.0


def test_normalisation_when_answers_disagree():
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_accuracy("two dogs!", ["2 dogs"] * 5 + ["dog"] * 5) == 1.0
    assert vqa_accuracy("1,000", ["1000"] * 3 + ["one thousand"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("dont", ["don't"] * 4 + ["no"] * 6) == 1.0
    assert vqa_accuracy("A dog.", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("Two dogs!", "2 dogs"),
        ("two dogs !", "2 dogs"),  # "!" touches a space -> deleted
        ("black/white", "black white"),  # no space next to "/" -> replaced by a space
        ("black / white", "black white"),  # "/" touches a space -> deleted, then whitespace split
        ("left-hand side, right", "left hand side right"),  # "," touches a space (deleted); "-" -> space
        ("1,000", "1000"),  # digit-comma-digit -> every mark deleted
        ("1,000-2", "10002"),  # ... including "-"
        ("3.5", "3.5"),  # period followed by a digit stays
        ("The cat.", "cat"),
        ("a man", "man"),
        ("an apple", "apple"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero..ten are mapped
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("Im", "im"),  # uppercase keys of the official table never fire
        ("somebody'd", "somebodyd"),  # the official table maps this one backwards
        ("twas", "'twas"),
        ("it's", "it's"),  # apostrophes are not punctuation here
        ("what:", "what:"),  # ":" is not in the list
        ("yes\tno\n", "yes no"),
        ("(red)", "red"),
        ("red (dark)", "red dark"),  # " (" touches a space -> "(" deleted; ")" does not -> space
    ],
)
def test_normalize_vqa_answer(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


def test_period_removal_is_capped_at_32():
    # The official script passes re.UNICODE (32) as re.sub's count.
    assert normalize_vqa_answer("." * 40) == "." * 8
    assert normalize_vqa_answer("." * 32) == ""


def test_always_normalize_variant():
    assert vqa_accuracy_always_normalize("Yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy_always_normalize("the dog.", ["dog"] * 10) == 1.0
    assert vqa_accuracy_always_normalize("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy_always_normalize("Two", ["2"] * 2 + ["3"] * 8) == pytest.approx(0.6)


def test_single_answer_and_errors():
    assert vqa_accuracy("yes", ["yes"]) == 1.0
    assert vqa_accuracy("no", ["yes"]) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])


def test_aggregate():
    out = vqa_aggregate([1.0, 0.0, 0.5], ["yes/no", "number", "yes/no"])
    assert out["overall"] == pytest.approx(0.5)
    assert out["count"] == 3
    assert out["per_answer_type"] == {"yes/no": pytest.approx(0.75), "number": 0.0}
    assert vqa_aggregate([])["overall"] == 0.0
    with pytest.raises(ValueError):
        vqa_aggregate([1.0], ["a", "b"])
