"""ANLS."""

import pytest

from evaluators.metrics import anls, levenshtein


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0


def test_anls_values():
    assert anls("hello", ["hello"]) == 1.0
    assert anls(" Hello ", ["hello"]) == 1.0  # lowercase + strip
    assert anls("hallo", ["hello"]) == pytest.approx(0.8)  # NL = 1/5
    assert anls("abd", ["abc"]) == pytest.approx(2 / 3)
    assert anls("abcd", ["abxy"]) == 0.0  # NL = 0.5 is not < 0.5
    assert anls("abcd", ["abxy"], threshold=0.6) == pytest.approx(0.5)
    assert anls("abcdefgh", ["zzzzzzzz"]) == 0.0
    assert anls("hallo", ["xyz", "hello", "hallo!!!!"]) == pytest.approx(0.8)  # max over answers
    assert anls("", [""]) == 1.0
    assert anls("", ["a"]) == 0.0
    assert anls("ab", ["abc"]) == pytest.approx(2 / 3)  # max length in the denominator


def test_anls_whitespace_variant():
    assert anls("new  york", ["new york"]) == pytest.approx(1 - 1 / 9)
    assert anls("new  york", ["new york"], collapse_whitespace=True) == 1.0
    assert anls("new\tyork ", ["New York"], collapse_whitespace=True) == 1.0


def test_anls_needs_answers():
    with pytest.raises(ValueError):
        anls("a", [])
