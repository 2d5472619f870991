"""Host-side field values as JSON-ready Python values, and the small aggregations the evaluator types share.

Batches come from tf.data as numpy: strings are bytes or object arrays, lists of strings are padded with "".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_text", "as_text_list", "as_scalar", "mean", "safe_metric_name"]


def as_text(value: Any) -> str:
    """A scalar string field (bytes, str, 0-d array) as str."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"expected a scalar string field, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def as_text_list(value: Any) -> list[str]:
    """A list-of-strings field (e.g. answers) as `list[str]`.

    Accepts a `[N]` array of bytes, a scalar string (one item; or a JSON list, as JSONL stores nested values), a
    number (one item, its `str`), or a list. Empty strings are dropped: they are the padding of variable-length lists.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]  # a numeric answer (a TallyQA count stored as an int)
    if isinstance(value, (bytes, str)):
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed if str(v)]
        return [text] if text else []
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    return [t for t in (as_text(v) for v in items) if t]


def as_scalar(value: Any) -> Any:
    """A scalar id-like field as a JSON-friendly Python value (int, float or str)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value


def mean(values: Sequence[float]) -> float:
    """Mean of a possibly empty sequence (0.0 when empty)."""
    return float(sum(values) / len(values)) if len(values) else 0.0


def safe_metric_name(text: str) -> str:
    """A metric-name-friendly version of `text` ("yes/no" -> "yes_no")."""
    return re.sub(r"[^A-Za-z0-9_.@]+", "_", text).strip("_") or "none"
