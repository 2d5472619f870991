"""RSVQA (remote-sensing VQA, LR / HR) accuracy per question type."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

__all__ = ["normalize_rsvqa_answer", "rsvqa_accuracy", "rsvqa_aggregate"]

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS["none"] = "0"
_YES_NO = re.compile(r"^(yes|no)\b")


def normalize_rsvqa_answer(text: str) -> str:
    """Normalises an RSVQA answer.

    Lowercase, collapse whitespace, strip a trailing `.`; a leading `yes`/`no` word becomes exactly
    `"yes"`/`"no"` (`"Yes, there is" -> "yes"`); number words up to twenty become digits and integer strings
    are canonicalised (`"07" -> "7"`, `"7.0" -> "7"`). Other answers (`"rural"`, `"urban"`, area buckets
    such as `"between 10m2 and 100m2"`) are kept as text.
    """
    t = " ".join(str(text).strip().lower().split()).rstrip(".").strip()
    m = _YES_NO.match(t)
    if m:
        return m.group(1)
    t = _NUMBER_WORDS.get(t, t)
    try:
        f = float(t)
        if f.is_integer() and re.fullmatch(r"[+-]?\d+(\.0*)?", t):
            return str(int(f))
    except ValueError:
        pass
    return t


def rsvqa_accuracy(prediction: str, answer: str) -> bool:
    """Exact match after `normalize_rsvqa_answer` on both sides.

    The same rule for yes/no, counts, presence, comparison, rural/urban and area questions.
    """
    return normalize_rsvqa_answer(prediction) == normalize_rsvqa_answer(answer)


def rsvqa_aggregate(correct: Iterable[bool], question_types: Iterable[str]) -> dict:
    """Aggregates RSVQA results.

    Args:
      correct: per-question correctness. question_types: per-question type (`"count"`, `"presence"`,
        `"comparison"`, `"rural_urban"`, `"area"`...).

    Returns:
      ``{"per_type": {type: accuracy}, "average_accuracy": mean of the per-type accuracies (AA),
      "overall_accuracy": accuracy over all questions (OA), "count": n}``.
    """
    correct = [bool(c) for c in correct]
    types = list(question_types)
    if len(correct) != len(types):
        raise ValueError(f"{len(correct)} results but {len(types)} question types")
    groups: dict[str, list[bool]] = defaultdict(list)
    for c, t in zip(correct, types):
        groups[t].append(c)
    per_type = {t: sum(v) / len(v) for t, v in groups.items()}
    return {
        "per_type": per_type,
        "average_accuracy": sum(per_type.values()) / len(per_type) if per_type else 0.0,
        "overall_accuracy": sum(correct) / len(correct) if correct else 0.0,
        "count": len(correct),
    }
