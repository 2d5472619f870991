"""CIDEr-D, BLEU, ROUGE-L against pycocoevalcap (the reference), and the Python PTB tokenizer against the
toolkit's Java PTBTokenizer (recorded fixture; live check when java is available)."""

import json
import math
import os
import random
import shutil
import subprocess

import numpy as np
import pytest

from evaluators.metrics import bleu, bleu4, cider, ptb_tokenize, rouge_l

pycoco_cider = pytest.importorskip("pycocoevalcap.cider.cider")
pycoco_bleu = pytest.importorskip("pycocoevalcap.bleu.bleu")
pycoco_rouge = pytest.importorskip("pycocoevalcap.rouge.rouge")

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "metrics", "ptb_java.json")


def _random_corpus(seed, num_images, vocab_size, max_len, max_refs, min_len=0):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(vocab_size)]
    preds = [" ".join(rng.choice(vocab) for _ in range(rng.randint(min_len, max_len))) for _ in range(num_images)]
    refs = [
        [
            " ".join(rng.choice(vocab) for _ in range(rng.randint(1, max_len + 2)))
            for _ in range(rng.randint(1, max_refs))
        ]
        for _ in range(num_images)
    ]
    return preds, refs


def _as_dicts(preds, refs):
    return {i: list(r) for i, r in enumerate(refs)}, {i: [p] for i, p in enumerate(preds)}


# ------------------------------------------------------------------------------------------------ CIDEr-D


def test_cider_reference_checks():
    assert cider(["a b c"], [["a b c"]], tokenize=False)[0] == 0.0  # one image: ln(1) = 0
    assert cider(["a b c", "d e f"], [["a b c"], ["d e f"]], tokenize=False)[0] == pytest.approx(7.5, abs=1e-12)
    assert cider(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]], tokenize=False)[0] == pytest.approx(
        10.0, abs=1e-12
    )


def test_cider_hand_case():
    # N = 2. Image 0: unigrams+bigram identical (orders 3, 4 empty) -> 10 * (1 + 1 + 0 + 0) / 4 = 5.
    # Image 1: "c" vs "d": no overlap -> 0. Corpus 2.5.
    score, per_image = cider(["a b", "c"], [["a b"], ["d"]], tokenize=False)
    assert per_image == pytest.approx([5.0, 0.0], abs=1e-12)
    assert score == pytest.approx(2.5, abs=1e-12)


def test_cider_length_penalty_counts_bigrams():
    # 3 images so that idf weights are not all equal; compare with the toolkit, including the 1-word quirk.
    preds = ["a", "a b c", ""]
    refs = [["a b"], ["a b c d e f g h"], ["x"]]
    ref_score, ref_scores = pycoco_cider.Cider().compute_score(*_as_dicts(preds, refs))
    score, scores = cider(preds, refs, tokenize=False)
    assert score == pytest.approx(ref_score, abs=1e-12)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-12)


@pytest.mark.parametrize(
    "seed, num_images, vocab, max_len, max_refs",
    [
        (0, 40, 12, 10, 5),  # small vocab: many shared n-grams, high df
        (1, 25, 60, 14, 7),
        (2, 3, 5, 6, 3),
        (3, 60, 30, 18, 5),
        (4, 10, 4, 4, 10),
    ],
)
def test_cider_matches_pycocoevalcap(seed, num_images, vocab, max_len, max_refs):
    preds, refs = _random_corpus(seed, num_images, vocab, max_len, max_refs)
    ref_score, ref_scores = pycoco_cider.Cider().compute_score(*_as_dicts(preds, refs))
    score, scores = cider(preds, refs, tokenize=False)
    assert abs(score - ref_score) < 1e-9
    assert np.max(np.abs(np.asarray(scores) - ref_scores)) < 1e-9


def test_cider_identical_captions_and_repeated_words():
    preds = ["a a a b", "the the cat", "dog dog dog dog dog"]
    refs = [["a a b", "a b"], ["the cat", "a cat", "the the cat"], ["dog", "cat dog"]]
    ref_score, ref_scores = pycoco_cider.Cider().compute_score(*_as_dicts(preds, refs))
    score, scores = cider(preds, refs, tokenize=False)
    assert abs(score - ref_score) < 1e-9
    np.testing.assert_allclose(scores, ref_scores, atol=1e-9)


def test_cider_tokenize_flag():
    preds = ["A dog, running on the beach.", "Two cats (sleeping)!"]
    refs = [["a dog runs on the beach", "The dog's running."], ["two cats are sleeping", "cats sleep"]]
    tok_p = [ptb_tokenize(p) for p in preds]
    tok_r = [[ptb_tokenize(r) for r in rs] for rs in refs]
    assert tok_p == ["a dog running on the beach", "two cats -lrb- sleeping -rrb-"]
    ref_score, _ = pycoco_cider.Cider().compute_score(*_as_dicts(tok_p, tok_r))
    assert cider(preds, refs)[0] == pytest.approx(ref_score, abs=1e-12)
    assert cider(preds, refs, tokenize=False)[0] != pytest.approx(ref_score)


def test_cider_input_errors():
    with pytest.raises(ValueError):
        cider(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        cider(["a"], [[]])
    with pytest.raises(TypeError):
        cider("a b", [["a b"]])


# ------------------------------------------------------------------------------------------------ BLEU


def test_bleu_hand_cases():
    score, _ = bleu4(["a b c d"], [["a b c d"]], tokenize=False)
    assert score == pytest.approx(1.0, abs=1e-8)
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, same length -> (0.2) ** 0.25.
    score, per_image = bleu4(["a b c d e"], [["a b c d f"]], tokenize=False)
    assert score == pytest.approx(0.2**0.25, abs=1e-8)
    assert per_image[0] == pytest.approx(0.2**0.25, abs=1e-8)
    # Brevity penalty: hyp 2 words, closest ref 4 words -> exp(1 - 4/2); BLEU-1 = 1 * BP.
    corpus, _ = bleu(["a b"], [["a b c d"]], tokenize=False)
    assert corpus[0] == pytest.approx(math.exp(1 - 2), abs=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_matches_pycocoevalcap(seed):
    preds, refs = _random_corpus(seed, 30, 15, 12, 5, min_len=1)
    ref_scores, ref_lists = pycoco_bleu.Bleu(4).compute_score(*_as_dicts(preds, refs), verbose=0)
    scores, lists = bleu(preds, refs, tokenize=False)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lists), np.asarray(ref_lists), rtol=0, atol=1e-12)
    assert bleu4(preds, refs, tokenize=False)[0] == scores[3]


# ------------------------------------------------------------------------------------------------ ROUGE-L


def test_rouge_hand_case():
    # LCS("a b c d", "a c d e f") = 3; P = 3/4, R = 3/5; F = (1 + b^2) P R / (R + b^2 P), b = 1.2.
    p, r, b2 = 0.75, 0.6, 1.44
    score, _ = rouge_l(["a b c d"], [["a c d e f"]], tokenize=False)
    assert score == pytest.approx((1 + b2) * p * r / (r + b2 * p), abs=1e-12)
    assert rouge_l(["x y"], [["a b"]], tokenize=False)[0] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_matches_pycocoevalcap(seed):
    preds, refs = _random_corpus(seed, 30, 10, 12, 5)  # includes empty predictions
    ref_score, ref_scores = pycoco_rouge.Rouge().compute_score(*_as_dicts(preds, refs))
    score, scores = rouge_l(preds, refs, tokenize=False)
    assert abs(score - ref_score) < 1e-12
    np.testing.assert_allclose(scores, ref_scores, atol=1e-12)


# ------------------------------------------------------------------------------------------------ PTB tokenizer


@pytest.mark.parametrize(
    "raw, tokens",
    [
        ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
        ("Don't do it, it's the dog's bone; they're here!", "do n't do it it 's the dog 's bone they 're here"),
        ("I'm sure he'd've gone.", "i 'm sure he 'd 've gone"),
        ("can't won't cannot gonna", "ca n't wo n't can not gon na"),
        (
            "The (big) [red] {blue} \"quoted\" 'single' text...",
            "the -lrb- big -rrb- -lsb- red -rsb- -lcb- blue -rcb- quoted single text",
        ),
        ("well-known 2-year-old, 3.5 and 1,000 at 5:30 p.m.", "well-known 2-year-old 3.5 and 1,000 at 5:30 p.m."),
        ("Mr. Smith -- dogs' toys - here", "mr. smith dogs toys here"),
        ("What?! No!!! ok.. fine....", "what ?! no !!! ok fine"),
        ("50% off $5 & more", "50 % off $ 5 & more"),
        ("rock'n'roll at o'clock", "rock 'n' roll at o'clock"),
        ("\u201cHi\u201d \u2014 the end\u2026", "hi the end"),
        ("two\nlines", "two lines"),
    ],
)
def test_ptb_tokenize_hand_cases(raw, tokens):
    assert ptb_tokenize(raw) == tokens


def test_ptb_tokenize_matches_java_fixture():
    with open(FIXTURE) as f:
        data = json.load(f)
    pairs = data["pairs"]
    assert len(pairs) > 500
    bad = [(raw, want, ptb_tokenize(raw)) for raw, want in pairs if ptb_tokenize(raw) != want]
    assert not bad, bad[:5]


JAR = None
try:
    import pycocoevalcap.tokenizer.ptbtokenizer as _ptb_module

    JAR = os.path.join(os.path.dirname(_ptb_module.__file__), "stanford-corenlp-3.4.1.jar")
except ImportError:  # pragma: no cover
    pass


@pytest.mark.skipif(
    shutil.which("java") is None or JAR is None or not os.path.exists(JAR),
    reason="java / the toolkit's CoreNLP jar not available",
)
def test_ptb_tokenize_matches_java_live(tmp_path):
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    lines = [
        "A dog's toy, isn't it?",
        'Two (2) cats "sleeping" on a well-worn sofa...',
        "It's 5:30 p.m. -- they've gone; we'll see!",
        "THE MAN'S HAT IS RED.",
        "a 10-foot pole & a #2 pencil",
    ]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines))
    out = subprocess.run(
        ["java", "-cp", JAR, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split("\n")
    for raw, java in zip(lines, out):
        want = " ".join(w for w in java.rstrip().split(" ") if w not in PUNCTUATIONS)
        assert ptb_tokenize(raw) == want
