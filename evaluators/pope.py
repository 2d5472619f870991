"""POPE (object hallucination) yes/no metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["parse_yes_no", "pope_metrics"]

_WORD = re.compile(r"[a-z']+")


def parse_yes_no(text: str) -> str:
    """Parses a free-text answer into `"yes"` or `"no"` (the POPE reference rule, made case-insensitive).

    Only the first sentence (text before the first `.`) is read. If it contains the word `no` or `not`,
    the answer is `"no"`, otherwise `"yes"` (POPE's rule: anything that is not a negation counts as yes).
    Variant choice: the reference script matches the space-split words `No`/`no`/`not` after deleting
    commas; here words are lowercased letter runs (so `"NO!"`, `"Not really"` also count as no) and words
    ending in `n't` (`"isn't"`) count as negations too.

    Args:
      text: the model's answer.

    Returns:
      `"yes"` or `"no"`.
    """
    first = text.strip().lower().split(".")[0]
    words = _WORD.findall(first)
    if any(w in ("no", "not") or w.endswith("n't") for w in words):
        return "no"
    return "yes"


def pope_metrics(predictions: Iterable[str], labels: Iterable[str]) -> dict:
    """POPE accuracy / precision / recall / F1 with "yes" as the positive class.

    Args:
      predictions: model answers (free text, parsed with `parse_yes_no`).
      labels: ground truths, `"yes"` or `"no"` (case-insensitive).

    Returns:
      `{"accuracy", "precision", "recall", "f1", "yes_ratio", "tp", "fp", "tn", "fn"}`; precision / recall / F1
      are 0.0 when their denominator is 0.
    """
    preds = [parse_yes_no(p) for p in predictions]
    gts = [str(label).strip().lower() for label in labels]
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} labels")
    for g in gts:
        if g not in ("yes", "no"):
            raise ValueError(f"POPE labels must be 'yes' or 'no', got {g!r}")
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, gts))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, gts))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, gts))
    fn = sum(p == "no" and g == "yes" for p, g in zip(preds, gts))
    n = len(preds)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / n if n else 0.0,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
