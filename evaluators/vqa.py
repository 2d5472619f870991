r"""VQA accuracy as the official VQAv2 evaluation script computes it (own implementation).

Behaviour reproduced, quirks included:

* Every answer (prediction and ground truths) has `"\n"` and `"\t"` replaced by a space and is stripped.
* `vqa_accuracy` normalises (punctuation, lowercase, number words, articles, contractions) ONLY when the
  ground-truth answers are not all identical (after the strip). So `"Yes"` against ten `"yes"` scores 0, and
  `"yes."` against ten `"yes"` scores 0 too, exactly as in the official script.
* Punctuation: for each mark of ``; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !` (not `'`, `:` or `.``): if the
  (un-normalised) text contains the mark followed by or preceded by a space, or contains digit-comma-digit
  anywhere, every occurrence of the mark is deleted; otherwise every occurrence is replaced by a space. Then
  periods not followed by a digit are deleted; the official script passes `re.UNICODE` (= 32) as the `count`
  argument of `re.sub`, so at most 32 periods are deleted: reproduced.
* Then lowercase, split on whitespace, map `none`/`zero`..`ten` to `0`..`10` (the official map includes
  `none -> 0`), drop `a`/`an`/`the`, then map apostrophe-less contractions to their canonical form
  (`dont -> don't`...). Entries of the official table with an uppercase key (`Im`, `Ive`...) can never fire
  because the text is lowercased first, so they are left out (no behaviour change).
* Score: mean over the leave-one-out subsets (each ground truth left out once, by position) of
  `min(1, #matches in the remaining answers / 3)`. With 10 answers and `m` matches: 0, 0.3, 0.6, 0.9, 1.0 for
  `m = 0, 1, 2, 3, >=4`.

`vqa_accuracy_always_normalize` is the TextVQA / VizWiz variant: same normalisation and score, but always
applied (so `"Yes"` vs ten `"yes"` scores 1).

Scores are fractions in [0, 1] (the official script prints 100x, rounded to 2 decimals).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = [
    "normalize_vqa_answer",
    "vqa_accuracy",
    "vqa_accuracy_always_normalize",
    "vqa_aggregate",
    "exact_match_accuracy",
]

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit (the official pattern's "(?!<=\d)" is a no-op lookahead).
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_COUNT = int(re.UNICODE)  # 32: the official script's accidental `count` argument.

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset({"a", "an", "the"})


def _build_contractions() -> dict[str, str]:
    """Canonical form -> the written variants that the official script maps to it."""
    table = {
        "ain't": ["aint"],
        "aren't": ["arent"],
        "can't": ["cant"],
        "could've": ["couldve"],
        "couldn't": ["couldnt"],
        "couldn't've": ["couldn'tve", "couldnt've"],
        "didn't": ["didnt"],
        "doesn't": ["doesnt"],
        "don't": ["dont"],
        "hadn't": ["hadnt"],
        "hadn't've": ["hadnt've", "hadn'tve"],
        "hasn't": ["hasnt"],
        "haven't": ["havent"],
        "he'd": ["hed"],
        "he'd've": ["hed've", "he'dve"],
        "he's": ["hes"],
        "how'd": ["howd"],
        "how'll": ["howll"],
        "how's": ["hows"],
        "isn't": ["isnt"],
        "it'd": ["itd"],
        "it'd've": ["itd've", "it'dve"],
        "it'll": ["itll"],
        "let's": ["let's"],
        "ma'am": ["maam"],
        "mightn't": ["mightnt"],
        "mightn't've": ["mightnt've", "mightn'tve"],
        "might've": ["mightve"],
        "mustn't": ["mustnt"],
        "must've": ["mustve"],
        "needn't": ["neednt"],
        "not've": ["notve"],
        "o'clock": ["oclock"],
        "oughtn't": ["oughtnt"],
        "'ow's'at": ["ow's'at", "'ows'at", "'ow'sat"],
        "shan't": ["shant"],
        "she'd've": ["shed've", "she'dve"],
        "she's": ["she's"],
        "should've": ["shouldve"],
        "shouldn't": ["shouldnt"],
        "shouldn't've": ["shouldnt've", "shouldn'tve"],
        # The official table maps this one backwards (apostrophe form -> apostrophe-less form).
        "somebodyd": ["somebody'd"],
        "somebody'd've": ["somebodyd've", "somebody'dve"],
        "somebody'll": ["somebodyll"],
        "somebody's": ["somebodys"],
        "someone'd": ["someoned"],
        "someone'd've": ["someoned've", "someone'dve"],
        "someone'll": ["someonell"],
        "someone's": ["someones"],
        "something'd": ["somethingd"],
        "something'd've": ["somethingd've", "something'dve"],
        "something'll": ["somethingll"],
        "that's": ["thats"],
        "there'd": ["thered"],
        "there'd've": ["thered've", "there'dve"],
        "there're": ["therere"],
        "there's": ["theres"],
        "they'd": ["theyd"],
        "they'd've": ["theyd've", "they'dve"],
        "they'll": ["theyll"],
        "they're": ["theyre"],
        "they've": ["theyve"],
        "'twas": ["twas"],
        "wasn't": ["wasnt"],
        "we'd've": ["wed've", "we'dve"],
        "we've": ["weve"],
        "weren't": ["werent"],
        "what'll": ["whatll"],
        "what're": ["whatre"],
        "what's": ["whats"],
        "what've": ["whatve"],
        "when's": ["whens"],
        "where'd": ["whered"],
        "where's": ["wheres"],
        "where've": ["whereve"],
        "who'd": ["whod"],
        "who'd've": ["whod've", "who'dve"],
        "who'll": ["wholl"],
        "who's": ["whos"],
        "who've": ["whove"],
        "why'll": ["whyll"],
        "why're": ["whyre"],
        "why's": ["whys"],
        "won't": ["wont"],
        "would've": ["wouldve"],
        "wouldn't": ["wouldnt"],
        "wouldn't've": ["wouldnt've", "wouldn'tve"],
        "y'all": ["yall"],
        "y'all'll": ["yall'll", "y'allll"],
        "y'all'd've": ["yall'd've", "y'alld've", "y'all'dve"],
        "you'd": ["youd"],
        "you'd've": ["youd've", "you'dve"],
        "you'll": ["youll"],
        "you're": ["youre"],
        "you've": ["youve"],
    }
    return {variant: canonical for canonical, variants in table.items() for variant in variants}


_CONTRACTIONS = _build_contractions()


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCT:
        # The test looks at the ORIGINAL text, the replacement acts on the running output.
        if delete_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_COUNT)


def _process_digit_article(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(answer: str) -> str:
    """The official VQA answer normalisation (strip, punctuation, lowercase, digits, articles, contractions).

    Args:
      answer: raw answer text.

    Returns:
      The normalised answer, e.g. `"Two dogs!" -> "2 dogs"`, `"the dont" -> "don't"`.
    """
    return _process_digit_article(_process_punctuation(_clean(answer)))


def _leave_one_out(prediction: str, answers: Sequence[str]) -> float:
    n = len(answers)
    if n == 1:  # The official loop would compare against an empty set (always 0); use exact match instead.
        return float(prediction == answers[0])
    matches = [a == prediction for a in answers]
    total = sum(matches)
    accs = [min(1.0, float(total - int(m)) / 3) for m in matches]
    return float(sum(accs)) / len(accs)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one prediction, as the official script computes it.

    Args:
      prediction: the model's answer (raw text).
      answers: the ground-truth answers (normally 10, raw text, duplicates kept).

    Returns:
      Float in [0, 1]: mean over the `len(answers)` leave-one-out subsets of `min(1, matches / 3)`.
      Normalisation is applied only when the stripped ground truths are not all identical (official quirk).
      With a single ground truth the official formula is degenerate (always 0); this returns exact match
      (after the same conditional normalisation, i.e. none) instead. Empty `answers` raises ValueError.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    pred = _clean(prediction)
    gts = [_clean(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [_process_digit_article(_process_punctuation(a)) for a in gts]
        pred = _process_digit_article(_process_punctuation(pred))
    return _leave_one_out(pred, gts)


def vqa_accuracy_always_normalize(prediction: str, answers: Sequence[str]) -> float:
    """TextVQA / VizWiz accuracy: like `vqa_accuracy` but prediction and answers are ALWAYS normalised.

    Args:
      prediction: the model's answer.
      answers: the ground-truth answers (normally 10).

    Returns:
      Float in [0, 1], the leave-one-out `min(1, matches / 3)` average after normalising everything
      (so `"Yes"` vs ten `"yes"` scores 1.0 here, 0.0 in `vqa_accuracy`).
    """
    if not answers:
        raise ValueError("vqa_accuracy_always_normalize needs at least one ground-truth answer")
    return _leave_one_out(normalize_vqa_answer(prediction), [normalize_vqa_answer(a) for a in answers])


def exact_match_accuracy(
    prediction: str, answers: Sequence[str], *, lowercase: bool = True, min_matches: int = 1
) -> float:
    """Plain exact-match accuracy: `min(1, matches / min_matches)`.

    `matches` counts the ground truths equal to the prediction after stripping surrounding whitespace (and
    lowercasing both sides with `lowercase`); no other normalisation, no leave-one-out. This is big_vision's simple
    VQA evaluator (GQA, xGQA, OCR-VQA, AI2D, A-OKVQA, OK-VQA transfers, with its `to_lower` option): with one ground
    truth it is 1.0 or 0.0; `min_matches=1` = "equals any ground truth" (its `acc_any`), `min_matches=3` = its `acc`
    for several ground truths, which is also the A-OKVQA direct-answer rule (10 answers, 3 matches for full credit).

    Args:
      prediction: the model's answer. answers: the ground truths (at least one).
      lowercase: compare case-insensitively. min_matches: matches needed for a score of 1.

    Returns:
      The score in [0, 1].
    """
    if not answers:
        raise ValueError("exact_match_accuracy needs at least one ground-truth answer")
    if min_matches < 1:
        raise ValueError(f"min_matches must be >= 1, got {min_matches}")

    def norm(text: str) -> str:
        text = text.strip()
        return text.lower() if lowercase else text

    pred = norm(prediction)
    return min(1.0, sum(norm(a) == pred for a in answers) / min_matches)


def vqa_aggregate(scores: Iterable[float], answer_types: Iterable[str] | None = None) -> dict:
    """Aggregates per-question VQA scores.

    Args:
      scores: per-question accuracies in [0, 1] (from `vqa_accuracy`).
      answer_types: optional per-question answer type (VQAv2: `"yes/no"`, `"number"`, `"other"`), same
        length as `scores`.

    Returns:
      `{"overall": mean, "count": n, "per_answer_type": {type: mean}}` (fractions in [0, 1], unrounded;
      `per_answer_type` is `{}` without types; `overall` is 0.0 for no questions).
    """
    scores = [float(s) for s in scores]
    out = {"overall": sum(scores) / len(scores) if scores else 0.0, "count": len(scores), "per_answer_type": {}}
    if answer_types is not None:
        types = list(answer_types)
        if len(types) != len(scores):
            raise ValueError(f"got {len(scores)} scores but {len(types)} answer types")
        groups: dict[str, list[float]] = defaultdict(list)
        for s, t in zip(scores, types):
            groups[t].append(s)
        out["per_answer_type"] = {t: sum(v) / len(v) for t, v in groups.items()}
    return out
