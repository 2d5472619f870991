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


def pope_metrics(predictions: Iterable[str], labels: Iterable[str], *, parse: str = "pope") -> dict:
    """POPE accuracy / precision / recall / F1 with "yes" as the positive class.

    Args:
      predictions: model answers (free text).
      labels: ground truths, `"yes"` or `"no"` (case-insensitive).
      parse: how an answer becomes yes/no: `"pope"` = `parse_yes_no` (POPE's rule: every answer is yes or no);
        `"exact"` = the stripped, lowercased answer must be exactly "yes" or "no" (big_vision's POPE evaluator),
        anything else is wrong whatever the label (counted in `invalid`; it is a missed "yes" for recall).

    Returns:
      `{"accuracy", "precision", "recall", "f1", "yes_ratio", "tp", "fp", "tn", "fn", "invalid"}`; precision /
      recall / F1 are 0.0 when their denominator is 0; `yes_ratio` is the fraction of "yes" answers.
    """
    if parse not in ("pope", "exact"):
        raise ValueError(f"parse must be 'pope' or 'exact', got {parse!r}")
    if parse == "pope":
        preds = [parse_yes_no(p) for p in predictions]
    else:
        preds = [str(p).strip().lower() for p in predictions]
    gts = [str(label).strip().lower() for label in labels]
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} labels")
    for g in gts:
        if g not in ("yes", "no"):
            raise ValueError(f"POPE labels must be 'yes' or 'no', got {g!r}")
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, gts))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, gts))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, gts))
    fn = sum(p != "yes" and g == "yes" for p, g in zip(preds, gts))
    invalid = sum(p not in ("yes", "no") for p in preds)
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
        "invalid": invalid,
    }
