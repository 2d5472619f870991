"""ScienceQA (multiple choice) answer parsing and accuracy."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = ["parse_scienceqa_answer", "scienceqa_accuracy"]

_ANSWER_IS = re.compile(r"the answer is\s*:?\s*\(?([A-Z])\)?(?=[\s.,:;)!]|$)", re.IGNORECASE)
_LONE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.:)]?$")
_LEADING_LETTER = re.compile(r"^\(?([A-Z])[.:)]\s")
_ANSWER_IS_TEXT = re.compile(r"the answer is\s*:?\s*(.+?)\.?\s*$", re.IGNORECASE | re.DOTALL)


def _clean(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".").split())


def parse_scienceqa_answer(
    text: str, choices: Sequence[str] | None = None, num_choices: int | None = None
) -> int | None:
    """Parses the chosen option (0-based) from a model answer.

    Tried in order (first hit wins):
      1. `"... the answer is X."` / `"The answer is (X)"` with X a single letter (case-insensitive only in
         the phrase; the letter must be followed by punctuation, space or the end);
      2. the whole answer is one letter: `"B"`, `"(b)"`, `"B."`;
      3. the answer starts with an upper-case option letter: `"B. cat"`, `"(B) cat"`;
      4. with `choices`: the answer (or the text after `"the answer is"`) equals one choice after
         lowercasing, stripping and dropping a trailing `.`.
    Letters map A->0, B->1, ...; a letter beyond the number of choices (`num_choices` or `len(choices)`)
    gives None.

    Args:
      text: the model's output. choices: the option texts (optional). num_choices: the number of options when
        `choices` is not given.

    Returns:
      The 0-based option index, or None when nothing could be parsed.
    """
    n = len(choices) if choices is not None else num_choices
    t = text.strip()

    def from_letter(letter: str) -> int | None:
        idx = string.ascii_uppercase.index(letter.upper())
        return idx if n is None or idx < n else None

    for pattern in (_ANSWER_IS, _LONE_LETTER, _LEADING_LETTER):
        m = pattern.search(t) if pattern is _ANSWER_IS else pattern.match(t)
        if m:
            return from_letter(m.group(1))
    if choices:
        cleaned = [_clean(c) for c in choices]
        candidates = [_clean(t)]
        m = _ANSWER_IS_TEXT.search(t)
        if m:
            candidates.append(_clean(m.group(1)))
        for cand in candidates:
            if cand in cleaned:
                return cleaned.index(cand)
    return None


def scienceqa_accuracy(
    prediction: str, answer_index: int, choices: Sequence[str] | None = None, num_choices: int | None = None
) -> bool:
    """True when `parse_scienceqa_answer` of `prediction` equals `answer_index` (0-based).

    An unparsable prediction counts as wrong.
    """
    return parse_scienceqa_answer(prediction, choices, num_choices) == int(answer_index)
