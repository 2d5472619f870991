"""ChartQA relaxed accuracy (the metric of the ChartQA paper / Pix2Struct evaluation)."""

from __future__ import annotations

import math

__all__ = ["relaxed_accuracy", "parse_number"]


def parse_number(text: str) -> float | None:
    """Parses a plain number, a trailing `%` meaning /100 (`"45%" -> 0.45`).

    Args:
      text: already stripped text.

    Returns:
      The float, or None when the text is not a finite number in Python `float()` syntax (so `"1,000"`,
      `"$5"`, `"nan"`, `"inf"` are not numbers; they fall back to the string comparison).
    """
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def relaxed_accuracy(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA relaxed accuracy of one prediction.

    Choice stated: both strings are stripped (`str.strip()`). If both parse as numbers (`parse_number`:
    trailing `%` -> /100) and the target is non-zero, the answer is correct when
    `|pred - target| / |target| <= max_relative_change` (5%, inclusive). Otherwise (non-numeric either side,
    or a zero target) it is an exact match after lowercasing: `pred.lower() == target.lower()`.

    Args:
      prediction: the model's answer. target: the ground truth (ChartQA has one).
      max_relative_change: the tolerance, 0.05.

    Returns:
      True when correct.
    """
    pred = prediction.strip()
    tgt = target.strip()
    pred_f = parse_number(pred)
    tgt_f = parse_number(tgt)
    if pred_f is not None and tgt_f:
        return abs(pred_f - tgt_f) / abs(tgt_f) <= max_relative_change
    return pred.lower() == tgt.lower()
