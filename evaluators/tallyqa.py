"""TallyQA counting accuracy (exact match after number-word normalisation), split into simple / complex."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["normalize_count", "tallyqa_accuracy", "tallyqa_aggregate"]

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS["none"] = "0"
_NUMBER_WORDS["no"] = "0"


def normalize_count(text: str) -> str:
    """Normalises a count answer.

    Lowercases, strips whitespace and trailing `.`, maps `zero`..`twenty` (and `none`/`no`) to digits, and
    canonicalises integer digit strings (`"03" -> "3"`). Other text is returned as is.
    """
    t = str(text).strip().lower().rstrip(".").strip()
    t = _NUMBER_WORDS.get(t, t)
    if t.isdigit():
        t = str(int(t))
    return t


def tallyqa_accuracy(prediction: str, answer: str | int) -> bool:
    """Exact match of `normalize_count` of both sides (`"Three" == 3`, `"3." == "3"`).

    Args:
      prediction: the model's answer text. answer: the ground-truth count (int or text).

    Returns:
      True when they match.
    """
    return normalize_count(prediction) == normalize_count(str(answer))


def tallyqa_aggregate(correct: Iterable[bool], is_simple: Iterable[bool]) -> dict:
    """Aggregates per-question TallyQA results.

    Args:
      correct: per-question correctness. is_simple: per question, True for the "simple" split (TallyQA's
        `issimple` flag), False for "complex".

    Returns:
      `{"accuracy": all, "simple": acc, "complex": acc, "num_simple": n, "num_complex": n}`
      (an empty split has accuracy 0.0).
    """
    correct = [bool(c) for c in correct]
    simple = [bool(s) for s in is_simple]
    if len(correct) != len(simple):
        raise ValueError(f"{len(correct)} results but {len(simple)} simple flags")

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    s = [c for c, f in zip(correct, simple) if f]
    c_ = [c for c, f in zip(correct, simple) if not f]
    return {
        "accuracy": mean(correct),
        "simple": mean(s),
        "complex": mean(c_),
        "num_simple": len(s),
        "num_complex": len(c_),
    }
