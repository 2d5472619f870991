"""Captioning metrics as the COCO caption toolkit (pycocoevalcap) computes them: CIDEr-D, BLEU-1..4, ROUGE-L.

Own implementation (pure Python/numpy, no Java). Inputs are parallel lists: `predictions[i]` is the single
generated caption of image `i` and `references[i]` its list of reference captions. With `tokenize=True`
every caption goes through `evaluators.ptb_tokenizer.ptb_tokenize` first (the toolkit's PTB tokenisation +
punctuation removal); with `tokenize=False` the strings are used as given (already tokenised, split on
whitespace; ROUGE-L splits on single spaces exactly as the toolkit does).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from evaluators.ptb_tokenizer import ptb_tokenize

__all__ = ["cider", "bleu", "bleu4", "rouge_l"]


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(predictions, str):
        raise TypeError("predictions must be a list of strings, one per image")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of strings")


def _prepare(predictions, references, tokenize):
    _check(predictions, references)
    if tokenize:
        predictions = [ptb_tokenize(p) for p in predictions]
        references = [[ptb_tokenize(r) for r in refs] for refs in references]
    return list(predictions), [list(r) for r in references]


def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


# ---------------------------------------------------------------------------------------------------------------
# CIDEr-D
# ---------------------------------------------------------------------------------------------------------------


def cider(
    predictions: list[str], references: list[list[str]], tokenize: bool = True, *, n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """CIDEr-D exactly as `pycocoevalcap.cider.Cider().compute_score`.

    Definition (the toolkit's `cider_scorer.py`): n-grams of orders 1..4 with counts. Document frequency
    `df(g)` = number of images whose reference set contains `g` (references of the evaluated set only).
    A caption's vector for order k has entries `tf(g) * (ln N - ln max(1, df(g)))` with `N` = number of
    images. Per reference and order: `sum_g min(v_hyp[g], v_ref[g]) * v_ref[g] / (|v_hyp| * |v_ref|)`
    (the norms are skipped when either is 0) times the length penalty `exp(-(l_hyp - l_ref)^2 / (2 sigma^2))`.
    Image score = 10 * mean over orders of the mean over references; corpus score = mean over images.

    Toolkit quirk reproduced: the "length" in the penalty is the number of BIGRAMS of a caption (the toolkit
    adds `term_freq` when `len(ngram) - 1 == 1`), i.e. `max(0, words - 1)`: a 1-word and an empty caption
    both have length 0.

    Args:
      predictions: one generated caption per image.
      references: per image, its reference captions (at least one).
      tokenize: apply the PTB-compatible tokenizer first (otherwise split the given strings on whitespace).
      n: maximum n-gram order (4). sigma: the length-penalty width (6).

    Returns:
      `(corpus_score, per_image_scores)`; raw values (about 1.4 for a good COCO model; papers print x100).
      One image only gives 0.0 (`ln N = 0`).
    """
    predictions, references = _prepare(predictions, references, tokenize)
    num_images = len(predictions)
    if num_images == 0:
        return 0.0, []
    hyp_counts = [_ngram_counts(p.split(), n) for p in predictions]
    ref_counts = [[_ngram_counts(r.split(), n) for r in refs] for refs in references]

    df: Counter = Counter()
    for refs in ref_counts:
        df.update(set(g for r in refs for g in r))
    log_n = math.log(float(num_images))

    def to_vec(counts: Counter):
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * (log_n - math.log(max(1.0, float(df.get(gram, 0)))))
            vec[k][gram] = w
            norm[k] += w * w
            if k == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    denom_sigma = 2.0 * sigma**2
    scores = []
    for hyp, refs in zip(hyp_counts, ref_counts):
        vec_h, norm_h, len_h = to_vec(hyp)
        total = [0.0] * n
        for ref in refs:
            vec_r, norm_r, len_r = to_vec(ref)
            delta = float(len_h - len_r)
            penalty = math.exp(-(delta**2) / denom_sigma)
            for k in range(n):
                ref_k = vec_r[k]
                val = 0.0
                for gram, w_h in vec_h[k].items():
                    w_r = ref_k.get(gram, 0.0)
                    val += min(w_h, w_r) * w_r
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                total[k] += val * penalty
        scores.append(sum(total) / n / len(refs) * 10.0)
    return float(sum(scores) / len(scores)), scores


# ---------------------------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------------------------

_SMALL = 1e-9
_TINY = 1e-15


def bleu(
    predictions: list[str], references: list[list[str]], tokenize: bool = True, *, n: int = 4
) -> tuple[list[float], list[list[float]]]:
    """BLEU-1..n as `pycocoevalcap.bleu.Bleu(4).compute_score` (option `"closest"`).

    Corpus BLEU: clipped n-gram matches (clipped by the max count over the image's references) and guesses summed
    over images; effective reference length per image = the reference length closest to the hypothesis length
    (ties -> the shorter); geometric mean of the precisions with the toolkit's smoothing
    `(correct + 1e-15) / (guess + 1e-9)`; brevity penalty `exp(1 - r/c)` when `c < r` (with the same
    smoothing on the ratio). Per-image scores use the same formula on one image.

    Args:
      predictions: one caption per image. references: per image its reference captions.
      tokenize: PTB-tokenize first. n: maximum order.

    Returns:
      `(corpus_scores, per_image_scores)`: `corpus_scores[k]` is BLEU-(k+1); `per_image_scores[k][i]` is
      BLEU-(k+1) of image `i` (same layout as the toolkit).
    """
    predictions, references = _prepare(predictions, references, tokenize)
    total_correct = [0] * n
    total_guess = [0] * n
    total_test = 0
    total_ref = 0
    per_image: list[list[float]] = [[] for _ in range(n)]
    for hyp, refs in zip(predictions, references):
        hyp_words = hyp.split()
        test_len = len(hyp_words)
        max_ref: dict = {}
        ref_lens = []
        for r in refs:
            words = r.split()
            ref_lens.append(len(words))
            for gram, c in _ngram_counts(words, n).items():
                if c > max_ref.get(gram, 0):
                    max_ref[gram] = c
        ref_len = min((abs(n - test_len), n) for n in ref_lens)[1]
        correct = [0] * n
        for gram, c in _ngram_counts(hyp_words, n).items():
            correct[len(gram) - 1] += min(max_ref.get(gram, 0), c)
        guess = [max(0, test_len - k) for k in range(n)]
        total_test += test_len
        total_ref += ref_len
        score = 1.0
        for k in range(n):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
            score *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
            per_image[k].append(score ** (1.0 / (k + 1)))
        ratio = (test_len + _TINY) / (ref_len + _SMALL)
        if ratio < 1:
            for k in range(n):
                per_image[k][-1] *= math.exp(1 - 1 / ratio)

    corpus = []
    score = 1.0
    for k in range(n):
        score *= float(total_correct[k] + _TINY) / (total_guess[k] + _SMALL)
        corpus.append(score ** (1.0 / (k + 1)))
    ratio = (total_test + _TINY) / (total_ref + _SMALL)
    if ratio < 1:
        corpus = [c * math.exp(1 - 1 / ratio) for c in corpus]
    return corpus, per_image


def bleu4(predictions: list[str], references: list[list[str]], tokenize: bool = True) -> tuple[float, list[float]]:
    """Corpus BLEU-4 as the COCO toolkit reports it (see `bleu`).

    Returns:
      `(corpus_bleu4, per_image_bleu4)`.
    """
    corpus, per_image = bleu(predictions, references, tokenize, n=4)
    return corpus[3], per_image[3]


# ---------------------------------------------------------------------------------------------------------------
# ROUGE-L
# ---------------------------------------------------------------------------------------------------------------


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(
    predictions: list[str], references: list[list[str]], tokenize: bool = True, *, beta: float = 1.2
) -> tuple[float, list[float]]:
    """ROUGE-L as `pycocoevalcap.rouge.Rouge().compute_score`.

    Per image: LCS (over tokens, split on single spaces as the toolkit does) with each reference; precision and
    recall maxed SEPARATELY over references; `F = (1 + beta^2) P R / (R + beta^2 P)` (0 if either is 0), beta 1.2.
    Corpus score = mean over images.

    Returns:
      `(corpus_score, per_image_scores)`.
    """
    predictions, references = _prepare(predictions, references, tokenize)
    scores = []
    for hyp, refs in zip(predictions, references):
        cand = hyp.split(" ")
        precs, recs = [], []
        for r in refs:
            ref = r.split(" ")
            lcs = _lcs(ref, cand)
            precs.append(lcs / float(len(cand)))
            recs.append(lcs / float(len(ref)))
        p, r = max(precs), max(recs)
        scores.append(((1 + beta**2) * p * r) / float(r + beta**2 * p) if p != 0 and r != 0 else 0.0)
    return (float(sum(scores) / len(scores)) if scores else 0.0), scores
