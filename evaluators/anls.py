"""ANLS (Average Normalized Levenshtein Similarity), the DocVQA / InfographicVQA / ST-VQA metric."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["levenshtein", "anls"]


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert / delete / substitute, unit costs) between two strings, over characters."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _normalize(text: str, collapse_whitespace: bool) -> str:
    text = text.strip().lower()
    if collapse_whitespace:
        text = " ".join(text.split())
    return text


def anls(
    prediction: str, answers: Sequence[str], threshold: float = 0.5, *, collapse_whitespace: bool = False
) -> float:
    """ANLS score of one prediction against its ground-truth answers.

    Variant: both strings are lowercased and stripped (`str.strip().lower()`); with
    `collapse_whitespace=True` runs of inner whitespace are also collapsed to one space (the official DocVQA
    evaluation server variant). `NL = levenshtein(p, a) / max(len(p), len(a))` (0 when both are empty);
    per answer the similarity is `1 - NL` if `NL < threshold` else 0 (so `NL == threshold` scores 0).

    Args:
      prediction: the model's answer.
      answers: the ground-truth answers (at least one).
      threshold: the NL cut-off (0.5 in the papers).
      collapse_whitespace: also collapse inner whitespace (server variant).

    Returns:
      Float in [0, 1]: the max over answers of the similarity. Average it over questions for the dataset ANLS.
    """
    if not answers:
        raise ValueError("anls needs at least one ground-truth answer")
    pred = _normalize(prediction, collapse_whitespace)
    best = 0.0
    for answer in answers:
        gt = _normalize(answer, collapse_whitespace)
        length = max(len(pred), len(gt))
        nl = levenshtein(pred, gt) / length if length else 0.0
        score = 1.0 - nl if nl < threshold else 0.0
        best = max(best, score)
    return best
