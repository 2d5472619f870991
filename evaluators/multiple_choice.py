"""Multiple-choice answers: A-OKVQA MC accuracy and MMVP (paired accuracy)."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence

__all__ = ["multiple_choice_accuracy", "option_letter", "mmvp_correct", "paired_accuracy"]

# "(a)", "a", "a.", "a)", "(a)." ... alone, or "(a) text" / "(a). text": an option letter in parentheses at the start.
_LONE_LETTER = re.compile(r"^\(?([a-z])\)?\.?$")
_PAREN_LETTER = re.compile(r"^\(([a-z])\)[.:]?\s")


def _clean(text: str) -> str:
    return " ".join(str(text).strip().lower().split())


def multiple_choice_accuracy(prediction: str, choices: Sequence[str], answer_index: int) -> bool:
    """True when the prediction is the correct choice's text: both stripped and lowercased, exact otherwise.

    This is big_vision's A-OKVQA MC evaluation (its plain VQA evaluator against the correct choice text; made
    case-insensitive here) and the A-OKVQA script's MC rule (the predicted choice equals the correct one).

    Args:
      prediction: the model's answer. choices: the option texts. answer_index: the correct option (0-based).

    Raises:
      IndexError: when `answer_index` is not an index of `choices`.
    """
    if not 0 <= answer_index < len(choices):
        raise IndexError(f"answer index {answer_index} is not in [0, {len(choices)})")
    return prediction.strip().lower() == choices[answer_index].strip().lower()


def option_letter(text: str) -> int | None:
    """The option index (a -> 0) a text names, or None: `"(b)"`, `"B"`, `"b."`, `"(b) closed"` name option 1.

    A bare letter followed by words (`"a dog"`) names no option (it reads as text); only a parenthesised letter may
    lead a longer answer.
    """
    t = _clean(text)
    m = _LONE_LETTER.match(t) or _PAREN_LETTER.match(t)
    return ord(m.group(1)) - ord("a") if m else None


def _option_text(text: str) -> str:
    """The answer text without a leading "(x)" option letter and a trailing period, lowercased."""
    t = _clean(text)
    m = _PAREN_LETTER.match(t)
    if m:
        t = t[m.end() :]
    return t.rstrip(".").strip()


def mmvp_correct(prediction: str, answer: str, choices: Sequence[str] | None = None) -> bool:
    """Whether an MMVP answer is right (rule-based; MMVP's own scripts ask GPT-4 to judge, see below).

    MMVP's ground truth is an option letter ("(a)") and the prompt lists the options ("(a) Open (b) Closed").
    Rule, case-insensitive, whitespace collapsed:
      1. when both the answer and the prediction name an option letter (`option_letter`), the letters must match;
      2. otherwise the prediction's text (a leading "(x)" and a trailing "." dropped) must equal the correct
         option's text: `choices[letter]` when the answer is a letter and `choices` is given, else the answer's
         own text.
    MMVP's release grades free-form answers with GPT-4 ("is the response correct given the answer"); a model
    fine-tuned to answer with the option letter or text is graded alike by this rule, without a network call.

    Args:
      prediction: the model's answer. answer: the ground truth (a letter "(a)" or the option text).
      choices: the option texts, in letter order (optional).
    """
    pred_letter, answer_letter = option_letter(prediction), option_letter(answer)
    if pred_letter is not None and answer_letter is not None:
        return pred_letter == answer_letter
    if answer_letter is not None:
        if not choices or answer_letter >= len(choices):
            return False
        target = choices[answer_letter]
    else:
        target = answer
    return _option_text(prediction) == _option_text(target)


def paired_accuracy(correct: Iterable[bool], pair_ids: Iterable[Hashable]) -> dict:
    """MMVP paired accuracy: a pair (the questions sharing a pair id) counts when all its questions are right.

    Args:
      correct: per-question correctness. pair_ids: per-question pair id (MMVP: questions 2k-1 and 2k form a pair).

    Returns:
      `{"paired_accuracy": mean over pairs, "accuracy": mean over questions, "num_pairs": n,
      "incomplete_pairs": pairs without exactly 2 questions}` (0.0 accuracies when empty).
    """
    correct = [bool(c) for c in correct]
    ids = list(pair_ids)
    if len(correct) != len(ids):
        raise ValueError(f"{len(correct)} results but {len(ids)} pair ids")
    pairs: dict[Hashable, list[bool]] = {}
    for c, p in zip(correct, ids):
        pairs.setdefault(p, []).append(c)
    return {
        "paired_accuracy": sum(all(v) for v in pairs.values()) / len(pairs) if pairs else 0.0,
        "accuracy": sum(correct) / len(correct) if correct else 0.0,
        "num_pairs": len(pairs),
        "incomplete_pairs": sum(len(v) != 2 for v in pairs.values()),
    }
