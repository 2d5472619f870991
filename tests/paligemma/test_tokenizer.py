"""Tests for paligemma.tokenizer: a tiny Gemma-style tokenizer trained in-process (no downloads)."""

import numpy as np
import pytest
import sentencepiece as spm

from paligemma import tokenizer as tk
from paligemma.tokenizer import (
    Tokenizer,
    add_loc_seg_tokens,
    box_to_loc_tokens,
    loc_bin_to_coordinate,
    parse_detections,
    parse_segmentations,
    seg_codes_to_tokens,
    train_tokenizer,
)

VOCAB = 400  # the shared `tokenizer` fixture's (tests/conftest.py): trained on `tokenizer_texts`, this vocab_size


@pytest.fixture(scope="module")
def tok(tokenizer) -> Tokenizer:
    return tokenizer


def test_train_small_and_special_ids(tok):
    assert tok.vocab_size == VOCAB + 1152
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    # Loc/seg at the end of the vocabulary, as in PaliGemma (256000 + N / 257024 + N).
    assert tok.loc_id(0) == VOCAB and tok.loc_id(1023) == VOCAB + 1023
    assert tok.seg_id(0) == VOCAB + 1024 and tok.seg_id(127) == VOCAB + 1151
    assert not tok.added_loc_seg_tokens  # already present after training


def test_bos_eos_and_decode_drops_control(tok):
    ids = tok.encode("the dog is red.", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "the dog is red."
    padded = np.array(ids + [tok.pad_id] * 5, dtype=np.int32)
    assert tok.decode(padded) == "the dog is red."
    # Stops at the first eos when asked; otherwise eos is just dropped.
    more = ids + tok.encode(" junk")
    assert tok.decode(more) == "the dog is red."
    assert tok.decode(more, stop_at_eos=False) == "the dog is red. junk"
    assert tok.decode([]) == ""


def test_newline_single_token_and_roundtrip(tok):
    assert tok.encode("\n") == [tok.newline_id]
    text = "answer en what is the color of the car?\nthe car is red."
    ids = tok.encode(text)
    assert ids.count(tok.newline_id) == 1
    assert tok.decode(ids) == text
    # Whitespace is not normalised away.
    for t in ["  two  spaces\n\n", "\nleading newline", "tab\there"]:
        assert tok.decode(tok.encode(t)) == t


def test_digits_split_and_byte_fallback(tok):
    ids = tok.encode("12345")
    assert len(ids) == 5
    text = "unseen chars: é 漢 🙂"
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text


def test_every_loc_and_seg_token_is_one_id(tok):
    for n in range(1024):
        piece = f"<loc{n:04d}>"
        assert tok.encode(piece) == [tok.loc_id(n)]
        assert tok.decode([tok.loc_id(n)]) == piece
    for n in range(128):
        piece = f"<seg{n:03d}>"
        assert tok.encode(piece) == [tok.seg_id(n)]
        assert tok.decode([tok.seg_id(n)]) == piece
    text = "<loc0001><loc0002><loc1000><loc1023> cat ; <loc0000><loc0000><loc0512><loc0512> dog"
    ids = tok.encode(text)
    assert ids[:4] == [tok.loc_id(1), tok.loc_id(2), tok.loc_id(1000), tok.loc_id(1023)]
    assert tok.decode(ids) == text


def test_encode_batch(tok):
    texts = ["the car", "a dog\n"]
    assert tok.encode_batch(texts, add_eos=True) == [tok.encode(t, add_eos=True) for t in texts]


def test_box_roundtrip_within_one_bin(tok):
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = np.sort(rng.uniform(0, 1, size=(2, 2)), axis=0).reshape(-1)[[0, 1, 2, 3]]
        text = box_to_loc_tokens(box) + " thing"
        [(decoded, label)] = parse_detections(tok.decode(tok.encode(text)))
        assert label == "thing"
        np.testing.assert_allclose(decoded, box, atol=1 / 1023)
    assert box_to_loc_tokens([0, 0.5, 1, 1]) == "<loc0000><loc0512><loc1023><loc1023>"
    assert box_to_loc_tokens((-0.2, 0.0, 1.7, 0.999)) == "<loc0000><loc0000><loc1023><loc1022>"
    assert loc_bin_to_coordinate(1023) == 1.0 and loc_bin_to_coordinate(512) == 512 / 1023


def test_parse_detections_multi_object():
    text = (
        "<loc0100><loc0200><loc0300><loc0400> cat ; <loc0000><loc0000><loc1023><loc1023> red car ; "
        "<loc0010><loc0020><loc0030><loc0040> dog"
    )
    out = parse_detections(text)
    assert [label for _, label in out] == ["cat", "red car", "dog"]
    assert out[0][0] == (100 / 1023, 200 / 1023, 300 / 1023, 400 / 1023)
    assert out[1][0] == (0.0, 0.0, 1.0, 1.0)


def test_parse_detections_malformed_is_ignored():
    assert parse_detections("") == []
    assert parse_detections("no boxes here") == []
    assert parse_detections("<loc0100><loc0200> cat") == []  # only 2 locs
    assert parse_detections("<loc0100><loc0200><loc0300><loc1500> cat") == []  # bin out of range
    text = "garbage <loc0100><loc0200><loc0300> half ; <loc0001><loc0002><loc0003><loc0004> ok ; <loc99> x"
    out = parse_detections(text)
    assert len(out) == 1 and out[0][1] == "ok"
    # An object without a label is kept with an empty label.
    assert parse_detections("<loc0001><loc0002><loc0003><loc0004>")[0][1] == ""


def test_parse_segmentations():
    codes = list(range(16))
    text = (
        box_to_loc_tokens((0.1, 0.2, 0.3, 0.4))
        + seg_codes_to_tokens(codes)
        + " cat ; "
        + box_to_loc_tokens((0.5, 0.5, 1.0, 1.0))
        + seg_codes_to_tokens([127] * 3)
        + " dog ; "
        + box_to_loc_tokens((0, 0, 1, 1))
        + " bare"
    )
    out = parse_segmentations(text)
    assert [(c, label) for _, c, label in out] == [(codes, "cat"), (None, "dog"), (None, "bare")]
    np.testing.assert_allclose(out[0][0], (0.1, 0.2, 0.3, 0.4), atol=1 / 1023)
    # parse_detections on the same text skips the seg tokens.
    assert [label for _, label in parse_detections(text)] == ["cat", "dog", "bare"]
    assert parse_segmentations("<seg001> nothing") == []


def test_add_loc_seg_tokens_to_model_lacking_them(plain_tokenizer_path):
    with open(plain_tokenizer_path, "rb") as f:
        plain = f.read()  # 300 pieces, no loc/seg tokens (stands in for plain Gemma)
    before = spm.SentencePieceProcessor(model_proto=plain)
    assert before.piece_to_id("<loc0005>") == before.unk_id() and len(before.encode("<loc0005>")) > 1
    added = add_loc_seg_tokens(plain)
    assert add_loc_seg_tokens(added) == added  # no-op when present
    t = Tokenizer(added)
    assert t.vocab_size == 300 + 1152
    assert t.loc_id(5) == 305 and t.seg_id(7) == 300 + 1024 + 7
    assert t.encode("<loc0005><seg007>") == [305, 1331]
    # Existing ids are unchanged.
    assert [t.id_to_piece(i) for i in range(300)] == [before.id_to_piece(i) for i in range(300)]
    # Tokenizer(...) of a model lacking them adds them automatically.
    auto = Tokenizer(plain)
    assert auto.added_loc_seg_tokens and not t.added_loc_seg_tokens
    assert auto.serialized_model_proto() == t.serialized_model_proto()


def test_save_load_roundtrip(tok, tokenizer_texts, tmp_path):
    path = tmp_path / "sub" / "tok.model"
    tok.save(path)
    loaded = Tokenizer(path)
    assert not loaded.added_loc_seg_tokens
    assert loaded.vocab_size == tok.vocab_size
    text = "detect cat\n<loc0001><loc0002><loc0003><loc0004> cat"
    assert loaded.encode(text, add_bos=True) == tok.encode(text, add_bos=True)
    assert Tokenizer(str(path)).serialized_model_proto() == tok.serialized_model_proto()
    # train_tokenizer can write the file directly.
    out = tmp_path / "direct.model"
    t2 = train_tokenizer(tokenizer_texts, str(out), vocab_size=VOCAB)
    assert out.exists() and Tokenizer(out).encode(text) == t2.encode(text)


def test_training_is_deterministic(tok, tokenizer_texts):
    assert train_tokenizer(tokenizer_texts, vocab_size=VOCAB).serialized_model_proto() == tok.serialized_model_proto()


def test_errors(tok, tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(FileNotFoundError, match="nope.model"):
        Tokenizer(missing)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"this is not a sentencepiece model at all")
    with pytest.raises(ValueError, match="bad.model"):
        Tokenizer(bad)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.model"):
        Tokenizer(empty)
    for n in (-1, 1024, 2.5):
        with pytest.raises(ValueError, match="loc index"):
            tok.loc_id(n)
    with pytest.raises(ValueError, match="seg index"):
        tok.seg_id(128)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="loc bin"):
        loc_bin_to_coordinate(1024)
    with pytest.raises(ValueError, match="4 values"):
        box_to_loc_tokens([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        box_to_loc_tokens([0.1, float("nan"), 0.3, 0.4])


def test_training_vocab_errors(tokenizer_texts):
    with pytest.raises(ValueError, match=r"too large.*vocab_size <= \d+"):
        train_tokenizer(["a tiny corpus\nwith two lines"] * 5, vocab_size=5000)
    with pytest.raises(ValueError, match=r"too small.*vocab_size >= \d+"):
        train_tokenizer(tokenizer_texts, vocab_size=100)
    with pytest.raises(ValueError, match="at least one"):
        train_tokenizer([])


def test_no_tensorflow_import():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = "import sys, paligemma.tokenizer; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={**os.environ, "PYTHONPATH": root})


def test_module_constants():
    assert len(tk.LOC_PIECES) == 1024 and tk.LOC_PIECES[7] == "<loc0007>"
    assert len(tk.SEG_PIECES) == 128 and tk.SEG_PIECES[7] == "<seg007>"


def test_non_sentencepiece_files_are_one_tokenizer_error(tmp_path):
    # Issue 17: any file that is not a SentencePiece model is a TokenizerError (a ValueError) naming the file and
    # the fix, never a raw protobuf/sentencepiece error.
    from paligemma.tokenizer import TokenizerError

    cases = {
        "random.model": np.random.default_rng(0).bytes(2000),
        "text.model": b"<html>404 not found</html>\n",
        "empty.model": b"",
        "npz.model": b"PK\x03\x04" + b"\x00" * 100,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(TokenizerError, match=rf"{name}.*is not a .*SentencePiece model.*pass a SentencePiece"):
            Tokenizer(str(path))
    folder = tmp_path / "folder.model"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="folder.model"):
        Tokenizer(str(folder))
