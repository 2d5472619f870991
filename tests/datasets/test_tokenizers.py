"""datasets.tokenizers.resolve_tokenizer: path specs, train-once-then-reuse, multi-process waiting, errors."""

import json
import os
import shutil
import threading
import time

import pytest
import sentencepiece

from datasets import tokenizers
from datasets.tokenizers import TokenizerSpecError, resolve_tokenizer
from paligemma.tokenizer import Tokenizer

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "eval", "eval.jsonl")
TRAIN = dict(
    data=dict(name="jsonl", path=FIXTURE),
    keys=("question", "answers", "captions"),
    vocab_size=300,
    extra_texts=["answer en", "caption en"],
)


def test_path_spec_with_loc_seg_tokens_is_returned_as_is(tokenizer_path):
    path = tokenizer_path
    assert resolve_tokenizer(path) == path  # no workdir needed
    assert resolve_tokenizer(dict(path=path)) == path


def test_plain_tokenizer_gets_an_augmented_copy_in_workdir(plain_tokenizer_path, tmp_path):
    plain = str(tmp_path / "gemma_like.model")  # a model without the loc/seg pieces (like the plain Gemma tokenizer)
    shutil.copyfile(plain_tokenizer_path, plain)
    n = sentencepiece.SentencePieceProcessor(model_file=plain).get_piece_size()
    with pytest.raises(TokenizerSpecError, match="No workdir"):
        resolve_tokenizer(plain)
    out = resolve_tokenizer(plain, str(tmp_path / "work"))
    assert out == str(tmp_path / "work" / "gemma_like_locseg.model")
    tok = Tokenizer(out)
    assert not tok.added_loc_seg_tokens and tok.vocab_size == n + 1152
    assert tok.loc_id(0) == n and tok.seg_id(0) == n + 1024
    assert resolve_tokenizer(plain, str(tmp_path / "work")) == out  # reused


def test_train_once_then_reuse(tmp_path, caplog):
    spec = dict(train=TRAIN, path="tokenizer.model")
    path = resolve_tokenizer(spec, str(tmp_path))
    assert path == str(tmp_path / "tokenizer.model")
    tok = Tokenizer(path)
    assert tok.vocab_size == 300 + 1152
    # Trained on the fixture's words: "picture" (in every question) is merged, not spelled out.
    assert len(tok.encode("picture")) < len("picture")
    with open(path + ".json") as f:
        assert json.load(f)["vocab_size"] == 300
    mtime = os.path.getmtime(path)
    time.sleep(0.01)
    assert resolve_tokenizer(spec, str(tmp_path)) == path
    assert os.path.getmtime(path) == mtime  # not retrained
    # Other settings: the cached file is reused, with a warning.
    with caplog.at_level("WARNING"):
        resolve_tokenizer(dict(train=dict(TRAIN, vocab_size=310), path="tokenizer.model"), str(tmp_path))
    assert "other settings" in caplog.text
    assert Tokenizer(path).vocab_size == 300 + 1152
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_max_examples_limits_the_training_texts():
    texts = tokenizers.training_texts(tokenizers._train_settings(dict(TRAIN, max_examples=2)))
    assert texts[:2] == ["answer en", "caption en"]
    assert len(texts) == 2 + 2 * (1 + 3 + 2)  # question + 3 answers + 2 captions per example


def test_other_processes_wait_for_process_0(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizers, "_process_index", lambda: 1)
    monkeypatch.setattr(tokenizers, "_WAIT_POLL_S", 0.05)
    target = tmp_path / "tokenizer.model"

    def process_0():
        time.sleep(0.3)
        tokenizer.save(str(target))  # as train_tokenizer(..., output_path) writes it

    thread = threading.Thread(target=process_0)
    thread.start()
    try:
        assert resolve_tokenizer(dict(train=TRAIN), str(tmp_path)) == str(target)  # waited, did not train
    finally:
        thread.join()
    assert Tokenizer(str(target)).vocab_size == tokenizer.vocab_size
    with pytest.raises(TokenizerSpecError, match="waited .* for process 0"):
        resolve_tokenizer(dict(train=TRAIN, path="other.model"), str(tmp_path), wait_timeout_s=0.2)


@pytest.mark.parametrize(
    "spec, workdir, match",
    [
        (None, None, "config.tokenizer is not set"),
        ("/nonexistent/tok.model", None, "Tokenizer file not found"),
        (dict(train=TRAIN, pth="x.model"), "/tmp", r"Unknown key\(s\) \['pth'\].*known keys: \['train', 'path'\]"),
        (dict(train=dict(TRAIN, vocab=3)), "/tmp", r"Unknown key\(s\) \['vocab'\] in the tokenizer spec's `train`"),
        (dict(train=dict(keys=("question",))), "/tmp", "needs `data`"),
        (dict(train=TRAIN), None, "No workdir"),
        (dict(), None, "needs `train=dict"),
        (42, None, "must be a path or a dict"),
    ],
)
def test_errors(spec, workdir, match):
    with pytest.raises(TokenizerSpecError, match=match):
        resolve_tokenizer(spec, workdir)


def test_errors_from_the_data(tmp_path):
    with pytest.raises(TokenizerSpecError, match="field 'captions/text' is not in the data; available fields"):
        resolve_tokenizer(dict(train=dict(TRAIN, keys=("captions/text",))), str(tmp_path))
    with pytest.raises(TokenizerSpecError, match="vocab_size=100000 is too large"):
        resolve_tokenizer(dict(train=dict(TRAIN, vocab_size=100000)), str(tmp_path))
    assert not os.path.exists(tmp_path / "tokenizer.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerSpecError, match="not a usable SentencePiece model"):
        resolve_tokenizer(str(bad))


def test_garbage_cached_tokenizer_in_workdir_is_one_clear_error(tmp_path, plain_tokenizer_path):
    # Issue 17: a garbage tokenizer.model cached in the workdir was returned as is, and the trainer died later with a
    # raw ValueError from the tokenizer. It is a TokenizerSpecError naming the file and saying to delete it (we do
    # not retrain over it silently: other processes may be reading the workdir).
    work = tmp_path / "work"
    work.mkdir()
    (work / "tokenizer.model").write_bytes(b"\x00garbage, not a SentencePiece model" * 10)
    (work / "tokenizer.model.json").write_text("{not json")  # unreadable settings: a warning only
    spec = dict(train=TRAIN, path="tokenizer.model")
    with pytest.raises(TokenizerSpecError, match=r"tokenizer\.model: cached tokenizer is not usable .*delete it") as e:
        resolve_tokenizer(spec, str(work))
    assert "\n" not in str(e.value)
    (work / "tokenizer.model").write_bytes(b"")  # an empty file (a write cut short)
    with pytest.raises(TokenizerSpecError, match="an empty file.*delete it"):
        resolve_tokenizer(spec, str(work))
    # The augmented copy of a plain tokenizer, cached in the workdir, is checked the same way.
    plain = tmp_path / "gemma_like.model"
    shutil.copyfile(plain_tokenizer_path, plain)
    (work / "gemma_like_locseg.model").write_bytes(b"junk")
    with pytest.raises(TokenizerSpecError, match="gemma_like_locseg.model: cached tokenizer.*delete it and rerun"):
        resolve_tokenizer(str(plain), str(work))
