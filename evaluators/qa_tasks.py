"""The benchmark-specific QA evaluator types: chartqa, tallyqa, pope, scienceqa, rsvqa, multiple_choice, mmvp.

Registered when `evaluators.common` is imported (it imports this module and `evaluators.tasks`), so `config.evals.x.type
= "chartqa"` works in the trainer and in `python -m evaluators.run`. Each keeps the conventions of `evaluators.tasks`:
one record per example with "prediction" (and "id" from `id_key`), a split without ground truth is predicted, not scored
(counted in `unscored`), `submission_file` where a test server exists. The metric functions live in
`evaluators.metrics`.

type             extra keys (defaults)                                metrics
chartqa          answers_key="answers" (the first is the target),    relaxed_accuracy, relaxed_accuracy_<type>,
                 answer_type_key=None, mean_over_types=False,        mean_relaxed_accuracy (with mean_over_types)
                 max_relative_change=0.05, id_key="question_id"
tallyqa          answers_key="answers" (first), simple_key=           accuracy, accuracy_simple, accuracy_complex,
                 "issimple", id_key="question_id"                     num_simple, num_complex
pope             answers_key="answers" (first: "yes"/"no"),           accuracy, precision, recall, f1, yes_ratio,
                 parse="pope" | "exact", id_key="question_id"         invalid_predictions, invalid_labels
scienceqa        choices_key="choices", answer_key="answer",          accuracy, parse_failures, invalid_answers
                 id_key="question_id"
rsvqa            answers_key="answers", question_type_key=            accuracy, accuracy_<type>, mean_accuracy
                 "question_type", normalize="rsvqa" | "exact",
                 mean_types=None, id_key="question_id"
multiple_choice  choices_key="choices", answer_key="answer",          accuracy, invalid_answers
                 id_key="question_id"
mmvp             answer_key="answer", choices_key=None,               paired_accuracy, accuracy, num_pairs,
                 pair_key="pair_id", id_key="question_id"             incomplete_pairs

Variants, checked against big_vision's PaliGemma evaluators (big_vision/evaluators/proj/paligemma/transfers/):

* chartqa: relaxed accuracy (`M.relaxed_accuracy`: a number within 5% of a non-zero numeric target, a trailing %
  meaning /100, else a case-insensitive exact match) as big_vision's chartqa evaluator with `to_lower=True`. The
  model card's "mean relaxed accuracy (test_human, test_aug)" is the mean of the two splits' relaxed accuracies:
  either two evaluators (one per split) whose `relaxed_accuracy` are averaged, or one evaluator over both with
  `answer_type_key` naming the split ("human" / "augmented") and `mean_over_types=True`.
* tallyqa: exact match after mapping number words (zero..twenty, none) to digits (`M.tallyqa_accuracy`, which also
  lowercases and drops a trailing "."), split by the `issimple` flag as big_vision's tallyqa evaluator: 1 / true is
  simple, 0 / false is complex, other values (or no field) count only in `accuracy`.
* pope: yes = positive. `parse="pope"` (default) reads free text with POPE's own rule (`M.parse_yes_no`: a negation
  word in the first sentence is "no", anything else "yes"); `parse="exact"` is big_vision's rule (the lowercased
  answer must be exactly "yes" / "no"). They agree on the one-word answers a fine-tuned model gives. The card
  reports accuracy. A label other than yes/no (mock data) is left out of the metrics and counted in `invalid_labels`.
* scienceqa: the chosen option is parsed with `M.parse_scienceqa_answer` ("The answer is B." as big_vision, which
  accepts only that form; also a lone letter, "B. text", or a choice's text); accuracy over the questions,
  `parse_failures` the fraction of unparsable answers (big_vision's `parsefail`).
* rsvqa: any ground truth equal to the answer after `M.normalize_rsvqa_answer` (`normalize="rsvqa"`: lowercase,
  "yes, ..." -> "yes", number words -> digits) or after strip + lowercase only (`normalize="exact"`, big_vision's
  rsvqa evaluator with `to_lower=True`). `accuracy` is the overall accuracy (OA), `accuracy_<type>` per question
  type and `mean_accuracy` the unweighted mean of the per-type accuracies (AA; the card's "mean accuracy") over the
  types present, or over `mean_types` (e.g. the non-numeric ("comp", "presence", "rural_urban") as big_vision's
  `acc_avg_nonum`).
* multiple_choice (A-OKVQA MC): the answer, stripped and lowercased, equals the correct choice's text
  (`M.multiple_choice_accuracy`; big_vision compares the exact text). Submission with `submission_format="aokvqa"`.
* mmvp: `M.mmvp_correct` (the option letter, or the option text; case-insensitive) and `M.paired_accuracy`: the
  questions sharing a `pair_key` value form a pair, which counts when all of them are right (MMVP: 150 pairs).

The answer index of scienceqa / multiple_choice (`answer_key`) is an int (a ClassLabel) or a text naming the option
("B", "The answer is B.", or the choice's text). A negative index or an empty text means no ground truth (a test
split: predicted, not scored); an index outside the choices, or a text naming none of them, is invalid: the
example is left out of the metrics and counted in `invalid_answers`, and a warning names the first one. Real data
never has them (check `invalid_answers` is absent); the random values of `mode=mock` runs do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from evaluators import metrics as M
from evaluators.base import GenerativeEvaluator
from evaluators.registry import EvalConfigError, register_evaluator
from evaluators.tasks import _id, _QaEvaluator, _ReferenceEvaluator, check_one_of, split_scored
from evaluators.values import as_scalar, as_text, as_text_list, mean, safe_metric_name

log = logging.getLogger(__name__)

__all__ = [
    "ChartQaEvaluator",
    "TallyQaEvaluator",
    "PopeEvaluator",
    "ScienceQaEvaluator",
    "RsvqaEvaluator",
    "MultipleChoiceEvaluator",
    "MmvpEvaluator",
    "answer_index",
    "as_flag",
]


def _per_type_metrics(
    records: list[dict], name: str, field: str, mean_name: str | None = None, mean_types: Sequence[str] | None = None
) -> dict[str, float]:
    """`name`: the mean score of the records; `<name>_<type>`: per value of `field`, over the records that have it.

    With `mean_name`, also the unweighted mean of the per-type scores (over the types in `mean_types`, when given).
    """
    groups: dict[str, list[float]] = {}
    for r in records:
        if r.get(field) is not None:
            groups.setdefault(r[field], []).append(r["score"])
    per_type = {t: mean(v) for t, v in sorted(groups.items())}
    out = {name: mean([r["score"] for r in records])}
    out.update({f"{name}_{safe_metric_name(t)}": v for t, v in per_type.items()})
    kept = [v for t, v in per_type.items() if mean_types is None or t in mean_types]
    if mean_name is not None and kept:
        out[mean_name] = mean(kept)
    return out


def as_flag(value: Any) -> bool | None:
    """A boolean-like field (TallyQA's `issimple`) as True / False, or None.

    1 / true / "true" / "yes" -> True, 0 / false / "false" / "no" -> False, anything else (other ints, texts) -> None.
    """
    value = as_scalar(value)
    if isinstance(value, str):
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(value.lower())
    if isinstance(value, (bool, int, float)):
        return {1: True, 0: False}.get(value)
    return None


def answer_index(value: Any, choices: Sequence[str]) -> tuple[int | None, bool]:
    """The correct option's index from an `answer_key` value, and whether the value is valid.

    Returns `(index, True)`; `(None, True)` when there is no ground truth (a negative int, an empty text);
    `(None, False)` when the value names no option of `choices` (an index out of range, an unknown text).
    """
    value = as_scalar(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, True
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            index = M.parse_scienceqa_answer(text, list(choices))
            return (index, True) if index is not None else (None, False)
    if isinstance(value, bool) or not isinstance(value, int):
        return None, False
    if value < 0:
        return None, True
    return (value, True) if value < len(choices) else (None, False)


class _ChoiceEvaluator(_ReferenceEvaluator):
    """Shared records of scienceqa / multiple_choice: prediction, choices, the correct index ("answer"), id, score."""

    KEYS = dict(_ReferenceEvaluator.KEYS, max_decode_len=16, choices_key="choices", answer_key="answer")
    REFERENCE_KEY = "choices_key"
    REFERENCE_FIELD = "choices"
    TYPE_KEY = None
    SUBMISSION_AOKVQA_FIELD = "answer"

    def _score(self, prediction: str, choices: list[str], index: int) -> dict:
        raise NotImplementedError

    def _records(self, batch, outputs, rows):
        out = super()._records(batch, outputs, rows)
        answers = self._field(batch, self.config["answer_key"])
        for rec, r in zip(out, rows):
            choices, pred = rec["choices"], rec["prediction"]
            index, valid = answer_index(answers[r], choices)
            rec["answer"] = index
            if "id" in rec:
                rec["id"] = rec.pop("id")  # after "answer", the records' field order of the predictions file
            if not valid:
                rec["invalid_answer"] = as_scalar(answers[r])
                if not self.__dict__.get("_warned_invalid"):
                    self._warned_invalid = True
                    log.warning(
                        "Evaluator %s: the answer %r (%s) names none of the %d choices %s; such examples are left "
                        "out of the metrics and counted in invalid_answers (expected only with mock data).",
                        self.name,
                        rec["invalid_answer"],
                        self.config["answer_key"],
                        len(choices),
                        choices,
                    )
            rec.update(self._score(pred, choices, index) if index is not None else {"score": None})
        return out

    def _split(self, records: list[dict]) -> tuple[list[dict], dict[str, int]]:
        """The scored records, and the counts of the others (`unscored`, `invalid_answers`) when non-zero."""
        return split_scored(records, ("invalid_answer", "invalid_answers"))


# ----------------------------------------------------------------------------------------------------------


@register_evaluator("chartqa")
class ChartQaEvaluator(_QaEvaluator):
    """ChartQA relaxed accuracy of the answer against the first ground truth (see the module docstring)."""

    KEYS = dict(
        _QaEvaluator.KEYS, max_decode_len=32, answer_type_key=None, mean_over_types=False, max_relative_change=0.05
    )

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        if cfg["mean_over_types"] and cfg["answer_type_key"] is None:
            raise EvalConfigError(f"{where}: mean_over_types needs answer_type_key (e.g. the split: human / augmented)")

    def _score(self, prediction, answers):
        return float(M.relaxed_accuracy(prediction, answers[0], float(self.config["max_relative_change"])))

    def _metrics(self, records):
        records, out = split_scored(records)
        if records:
            mean_name = "mean_relaxed_accuracy" if self.config["mean_over_types"] else None
            out.update(_per_type_metrics(records, "relaxed_accuracy", "answer_type", mean_name))
        return out


@register_evaluator("tallyqa")
class TallyQaEvaluator(_QaEvaluator):
    """TallyQA counting accuracy, overall and on the simple / complex questions."""

    KEYS = dict(_QaEvaluator.KEYS, max_decode_len=8, simple_key="issimple", submission_file=False)

    def _score(self, prediction, answers):
        return float(M.tallyqa_accuracy(prediction, answers[0]))

    def _records(self, batch, outputs, rows):
        out = super()._records(batch, outputs, rows)
        simple = self._optional_field(batch, "simple_key")
        for rec, r in zip(out, rows):
            rec["simple"] = None if simple is None else as_flag(simple[r])
        return out

    def _metrics(self, records):
        records, out = split_scored(records)
        if not records:
            return out
        out["accuracy"] = mean([r["score"] for r in records])
        for name, flag in (("simple", True), ("complex", False)):
            scores = [r["score"] for r in records if r["simple"] is flag]
            if scores:
                out[f"accuracy_{name}"] = mean(scores)
            out[f"num_{name}"] = len(scores)
        return out


@register_evaluator("pope")
class PopeEvaluator(_QaEvaluator):
    """POPE yes/no accuracy, precision, recall, F1 ("yes" positive) and the ratio of "yes" answers."""

    KEYS = dict(_QaEvaluator.KEYS, max_decode_len=8, parse="pope", submission_file=False)

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        check_one_of(cfg, where, "parse", {"pope": "POPE's rule", "exact": "big_vision's"})

    def _score(self, prediction, answers):
        label = answers[0].strip().lower()
        if label not in ("yes", "no"):
            return None
        return M.pope_metrics([prediction], [label], parse=self.config["parse"])["accuracy"]

    def _records(self, batch, outputs, rows):
        out = super()._records(batch, outputs, rows)
        for rec in out:
            if rec["answers"] and rec["score"] is None:
                rec["invalid_label"] = True
        return out

    def _metrics(self, records):
        records, out = split_scored(records, ("invalid_label", "invalid_labels"))
        if not records:
            return out
        res = M.pope_metrics(
            [r["prediction"] for r in records], [r["answers"][0] for r in records], parse=self.config["parse"]
        )
        out.update({k: res[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")})
        if res["invalid"]:
            out["invalid_predictions"] = res["invalid"]
        return out


@register_evaluator("scienceqa")
class ScienceQaEvaluator(_ChoiceEvaluator):
    """ScienceQA accuracy: the option parsed from the answer ("The answer is B.") is the correct one."""

    def _score(self, prediction, choices, index):
        parsed = M.parse_scienceqa_answer(prediction, choices)
        return {"parsed": parsed, "score": float(parsed == index)}

    def _metrics(self, records):
        records, out = self._split(records)
        if records:
            out["accuracy"] = mean([r["score"] for r in records])
            out["parse_failures"] = mean([float(r["parsed"] is None) for r in records])
        return out


@register_evaluator("multiple_choice")
class MultipleChoiceEvaluator(_ChoiceEvaluator):
    """Multiple choice (A-OKVQA MC): the answer, stripped and lowercased, is the correct choice's text."""

    SUBMISSION_AOKVQA_FIELD = "multiple_choice"

    def _score(self, prediction, choices, index):
        return {"score": float(M.multiple_choice_accuracy(prediction, choices, index))}

    def _metrics(self, records):
        records, out = self._split(records)
        if records:
            out["accuracy"] = mean([r["score"] for r in records])
        return out


@register_evaluator("rsvqa")
class RsvqaEvaluator(_QaEvaluator):
    """RSVQA accuracy per question type and their unweighted mean (see the module docstring)."""

    KEYS = dict(
        _QaEvaluator.KEYS,
        max_decode_len=16,
        question_type_key="question_type",
        normalize="rsvqa",
        mean_types=None,
        submission_file=False,
    )

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        check_one_of(cfg, where, "normalize", {"rsvqa": None, "exact": None})
        types = cfg["mean_types"]
        if types is not None and (isinstance(types, str) or not all(isinstance(t, str) for t in types)):
            raise EvalConfigError(f"{where}: mean_types must be a list of question types or None, got {types!r}")

    def _score(self, prediction, answers):
        if self.config["normalize"] == "exact":
            return M.exact_match_accuracy(prediction, answers)
        return float(any(M.rsvqa_accuracy(prediction, a) for a in answers))

    def _records(self, batch, outputs, rows):
        out = super()._records(batch, outputs, rows)
        types = self._field(batch, self.config["question_type_key"])
        for rec, r in zip(out, rows):
            rec["question_type"] = as_text(types[r])
        return out

    def _metrics(self, records):
        records, out = split_scored(records)
        if records:
            out.update(
                _per_type_metrics(records, "accuracy", "question_type", "mean_accuracy", self.config["mean_types"])
            )
        return out


@register_evaluator("mmvp")
class MmvpEvaluator(GenerativeEvaluator):
    """MMVP paired accuracy: both questions of a pair right (see `M.mmvp_correct` for the answer rule)."""

    KEYS = dict(
        GenerativeEvaluator.KEYS,
        max_decode_len=16,
        answer_key="answer",
        choices_key=None,
        pair_key="pair_id",
        id_key="question_id",
    )

    def _records(self, batch, outputs, rows):
        answers = self._field(batch, self.config["answer_key"])
        pairs = self._field(batch, self.config["pair_key"])
        choices_field = None if self.config["choices_key"] is None else self._field(batch, self.config["choices_key"])
        ids = self._optional_field(batch, "id_key")
        out = []
        for r, pred in zip(rows, self.texts(outputs, rows)):
            texts = as_text_list(answers[r])  # a text, or a list: its first item
            answer = texts[0] if texts else ""
            rec = {"prediction": pred, "answer": answer, "pair": _id(pairs[r])}
            choices = None
            if choices_field is not None:
                choices = rec["choices"] = as_text_list(choices_field[r])
            if ids is not None:
                rec["id"] = _id(ids[r])
            rec["score"] = float(M.mmvp_correct(pred, answer, choices)) if answer.strip() else None
            out.append(rec)
        return out

    def _metrics(self, records):
        records, out = split_scored(records)
        if not records:
            return out
        res = M.paired_accuracy([r["score"] == 1.0 for r in records], [str(r["pair"]) for r in records])
        out.update(res)
        if not out["incomplete_pairs"]:
            del out["incomplete_pairs"]
        return out
