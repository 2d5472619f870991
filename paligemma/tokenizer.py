r"""SentencePiece tokenizer for PaliGemma, plus the location/segmentation token helpers.

PaliGemma uses the Gemma SentencePiece vocabulary (256000 pieces) followed by 1024 location tokens
`<loc0000>`..`<loc1023>` (ids 256000+N) and 128 segmentation tokens `<seg000>`..`<seg127>`
(ids 257024+N), 257152 pieces in all. Id conventions: pad 0, eos 1, bos 2, unk 3; `"\n"` is a single
token (id 108 in Gemma) that separates the prefix from the suffix.

This module depends on numpy and sentencepiece only (no TensorFlow, no JAX), so it runs everywhere.

Coordinates: a box is `(y1, x1, y2, x2)` normalised to [0, 1]. A value `v` is written as the bin
`clip(round(v * 1023), 0, 1023)` and a bin `b` is read back as `b / 1023` (NOT `/ 1024`; some public
parsers use 1024, which shifts boxes by up to 0.1%).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from paligemma import paths
from paligemma.errors import UserError

__all__ = [
    "NUM_LOC_TOKENS",
    "NUM_SEG_TOKENS",
    "LOC_PIECES",
    "SEG_PIECES",
    "Tokenizer",
    "TokenizerError",
    "add_loc_seg_tokens",
    "train_tokenizer",
    "box_to_loc_tokens",
    "loc_bin_to_coordinate",
    "seg_codes_to_tokens",
    "parse_detections",
    "parse_segmentations",
]

log = logging.getLogger(__name__)

NUM_LOC_TOKENS = 1024
NUM_SEG_TOKENS = 128
LOC_PIECES: tuple[str, ...] = tuple(f"<loc{i:04d}>" for i in range(NUM_LOC_TOKENS))
SEG_PIECES: tuple[str, ...] = tuple(f"<seg{i:03d}>" for i in range(NUM_SEG_TOKENS))
_LOC_MAX = NUM_LOC_TOKENS - 1  # 1023: the bin scale used both ways.

_USER_DEFINED = sp_pb2.ModelProto.SentencePiece.USER_DEFINED

Box = tuple[float, float, float, float]


# ----------------------------------------------------------------------------------------------------------
# Model-proto editing.
# ----------------------------------------------------------------------------------------------------------


def _ensure_loc_seg(proto: sp_pb2.ModelProto) -> bool:
    """Appends the missing loc/seg pieces to `proto` in place; returns True when `proto` changed."""
    index = {p.piece: i for i, p in enumerate(proto.pieces)}
    changed = False
    for piece in LOC_PIECES + SEG_PIECES:
        i = index.get(piece)
        if i is None:
            new = proto.pieces.add()
            new.piece, new.score, new.type = piece, 0.0, _USER_DEFINED
            changed = True
        elif proto.pieces[i].type != _USER_DEFINED:
            # Present as an ordinary piece: it must be USER_DEFINED to always come out as one token.
            proto.pieces[i].type = _USER_DEFINED
            changed = True
    if changed and proto.HasField("trainer_spec"):
        proto.trainer_spec.vocab_size = len(proto.pieces)
    return changed


class TokenizerError(UserError, ValueError):
    """A file (or bytes) that is not a usable SentencePiece model. The one-line message names the file."""


_FIX = "pass a SentencePiece .model file (e.g. the PaliGemma or Gemma tokenizer.model)"


def _parse_proto(data: bytes, source: str) -> sp_pb2.ModelProto:
    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError) as e:
        raise TokenizerError(f"{source} is not a SentencePiece model (could not parse ModelProto: {e}); {_FIX}") from e
    if len(proto.pieces) == 0:
        what = "an empty file" if not data else "no pieces in the ModelProto"
        raise TokenizerError(f"{source} is not a SentencePiece model ({what}); {_FIX}")
    return proto


def add_loc_seg_tokens(model_proto_bytes: bytes) -> bytes:
    """Adds the PaliGemma `<locNNNN>` / `<segNNN>` pieces to a SentencePiece model.

    Args:
      model_proto_bytes: a serialized `sentencepiece.ModelProto` (the content of a `.model` file).

    Returns:
      A serialized ModelProto. Missing pieces among the 1024 `<loc0000>`..`<loc1023>` and then the 128
      `<seg000>`..`<seg127>` are appended, in that order, as USER_DEFINED pieces with score 0, so for a
      Gemma model (256000 pieces) `<locN>` gets id 256000+N and `<segN>` 257024+N, as in PaliGemma.
      Pieces already present keep their ids (ordinary pieces are retyped USER_DEFINED). When all 1152 pieces are
      present as USER_DEFINED the input bytes are returned unchanged.

    Raises:
      TokenizerError: (a ValueError) the bytes are not a SentencePiece ModelProto.
    """
    proto = _parse_proto(bytes(model_proto_bytes), "model_proto_bytes")
    if not _ensure_loc_seg(proto):
        return bytes(model_proto_bytes)
    return proto.SerializeToString()


# ----------------------------------------------------------------------------------------------------------
# Tokenizer.
# ----------------------------------------------------------------------------------------------------------


class Tokenizer:
    """SentencePiece tokenizer with PaliGemma's special tokens.

    `Tokenizer(model)` accepts a path to a `.model` file or the serialized ModelProto bytes. If the model lacks
    the loc/seg tokens (a plain Gemma tokenizer, or any other SentencePiece model) they are added automatically
    with `add_loc_seg_tokens` (appended after the existing pieces, so a Gemma model becomes the
    257152-piece PaliGemma vocabulary); `added_loc_seg_tokens` tells whether that happened, and
    `save` / `serialized_model_proto` return the augmented model.

    Raises:
      FileNotFoundError: `model` is a path that does not exist.
      TokenizerError: (a ValueError) the file/bytes are not a SentencePiece model, or the file cannot be read.
    """

    def __init__(self, model: str | os.PathLike | bytes):
        if isinstance(model, (bytes, bytearray, memoryview)):
            data, source = bytes(model), "the given model bytes"
        elif isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if not paths.isfile(path):
                raise FileNotFoundError(f"SentencePiece model file not found: {path!r}")
            try:
                data = paths.read_bytes(path)
            except OSError as e:
                raise TokenizerError(f"SentencePiece model file {path!r} cannot be read: {e}") from e
            source = f"file {path!r}"
        else:
            raise TypeError(f"model must be a path or bytes, got {type(model).__name__}")
        self._source = source

        proto = _parse_proto(data, source)
        self.added_loc_seg_tokens: bool = _ensure_loc_seg(proto)
        if self.added_loc_seg_tokens:
            log.info("Added <locNNNN>/<segNNN> tokens to the SentencePiece model from %s.", source)
            data = proto.SerializeToString()

        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(data)
        except RuntimeError as e:
            raise TokenizerError(f"{source} is not a valid SentencePiece model: {e}; {_FIX}") from e

        self._loc_ids = tuple(self._sp.piece_to_id(p) for p in LOC_PIECES)
        self._seg_ids = tuple(self._sp.piece_to_id(p) for p in SEG_PIECES)
        nl = self._sp.encode("\n")
        self._newline_id: int | None = nl[0] if len(nl) == 1 else None

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, source={self._source})"

    # --- Vocabulary facts. ---
    @property
    def vocab_size(self) -> int:
        """Number of pieces (257152 for PaliGemma), including the loc/seg tokens."""
        return self._sp.get_piece_size()

    def check_fits(self, model_vocab: int | None, fix: str) -> None:
        """Raises ValueError (message ends with `fix`) if this tokenizer has ids beyond a `model_vocab`-row table.

        `model_vocab` 0 or None: unknown, nothing is checked.
        """
        if model_vocab and self.vocab_size > model_vocab:
            raise ValueError(
                f"the tokenizer has {self.vocab_size} pieces but the model's vocabulary is {model_vocab}; {fix}"
            )

    @property
    def pad_id(self) -> int:
        """Id of the padding token (0 in Gemma); -1 if the model defines none."""
        return self._sp.pad_id()

    @property
    def eos_id(self) -> int:
        """Id of the end-of-sequence token (1 in Gemma)."""
        return self._sp.eos_id()

    @property
    def bos_id(self) -> int:
        """Id of the beginning-of-sequence token (2 in Gemma)."""
        return self._sp.bos_id()

    @property
    def unk_id(self) -> int:
        """Id of the unknown token (3 in Gemma)."""
        return self._sp.unk_id()

    @property
    def newline_id(self) -> int:
        r"""Id of the single token `"\n"` (108 in Gemma). ValueError if `"\n"` is not one token here."""
        if self._newline_id is None:
            raise ValueError(f'"\\n" does not encode to a single token in the model from {self._source}')
        return self._newline_id

    def id_to_piece(self, i: int) -> str:
        """The piece (string) of id `i`."""
        return self._sp.id_to_piece(self._check_id(i))

    def piece_to_id(self, piece: str) -> int:
        """The id of `piece`; `unk_id` when the piece is not in the vocabulary."""
        return self._sp.piece_to_id(piece)

    def loc_id(self, n: int) -> int:
        """Id of `<loc%04d>` for a bin `n` in 0..1023 (256000+n in PaliGemma). ValueError outside the range."""
        if not 0 <= n < NUM_LOC_TOKENS or int(n) != n:
            raise ValueError(f"loc index must be an integer in 0..{NUM_LOC_TOKENS - 1}, got {n!r}")
        return self._loc_ids[int(n)]

    def seg_id(self, n: int) -> int:
        """Id of `<seg%03d>` for a code `n` in 0..127 (257024+n in PaliGemma). ValueError outside the range."""
        if not 0 <= n < NUM_SEG_TOKENS or int(n) != n:
            raise ValueError(f"seg index must be an integer in 0..{NUM_SEG_TOKENS - 1}, got {n!r}")
        return self._seg_ids[int(n)]

    # --- Encoding / decoding. ---
    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        r"""Encodes one string to a list of ids; `<bos>` in front / `<eos>` at the end on request.

        No text normalisation is applied by Gemma-style models: whitespace and `"\n"` are kept verbatim.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        return self._sp.encode(text, add_bos=add_bos, add_eos=add_eos)

    def encode_batch(self, texts: Sequence[str], *, add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        """Encodes a sequence of strings; returns one id list per string (ragged, no padding)."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must contain str, got {type(t).__name__}")
        return self._sp.encode(texts, add_bos=add_bos, add_eos=add_eos)

    def decode(self, ids: Sequence[int] | np.ndarray, *, stop_at_eos: bool = True) -> str:
        """Decodes a 1-D sequence of ids to text.

        Args:
          ids: 1-D list/array of ints (shape `(T,)`).
          stop_at_eos: if True, everything from the first `<eos>` on is dropped.

        pad, bos and eos ids are dropped. Loc/seg tokens come out as their text, e.g. `"<loc0512>"`.
        Raises ValueError for a non-1-D input or an id outside `[0, vocab_size)`.
        """
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"decode expects integer ids, got dtype {arr.dtype}")
        out = [int(i) for i in arr]
        if stop_at_eos and self.eos_id in out:
            out = out[: out.index(self.eos_id)]
        for i in out:
            self._check_id(i)
        drop = {self.pad_id, self.bos_id, self.eos_id}
        return self._sp.decode([i for i in out if i not in drop])

    def _check_id(self, i: int) -> int:
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return int(i)

    # --- Serialisation. ---
    def serialized_model_proto(self) -> bytes:
        """The serialized ModelProto (including any loc/seg tokens added at construction)."""
        return self._sp.serialized_model_proto()

    def save(self, path: str | os.PathLike) -> None:
        """Writes the model (as `serialized_model_proto`) to `path` (local or gs://), creating parent folders."""
        path = os.fspath(path)
        parent = paths.dirname(path)
        if parent:
            paths.makedirs(parent)
        paths.write_bytes(path, self.serialized_model_proto())


# ----------------------------------------------------------------------------------------------------------
# Training a small Gemma-style tokenizer (tests, toy data sets).
# ----------------------------------------------------------------------------------------------------------

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def train_tokenizer(
    texts: Iterable[str],
    output_path: str | os.PathLike | None = None,
    *,
    vocab_size: int = 1000,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    max_sentence_length: int = 1 << 16,
) -> Tokenizer:
    r"""Trains a small tokenizer with Gemma's conventions, in-process, from an iterator of strings.

    The result follows Gemma/PaliGemma: pad 0 `<pad>`, eos 1 `<eos>`, bos 2 `<bos>`, unk 3 `<unk>`;
    `"\n"` is a single (user-defined) token; identity normalisation, whitespace kept as is, no dummy prefix;
    digits split into single characters; byte fallback for unseen characters; BPE by default. The loc/seg tokens
    are user-defined symbols during training (so text containing them does not waste merges) and are then moved
    to the end of the vocabulary, as in PaliGemma: `<locN>` = `vocab_size + N`, `<segN>` =
    `vocab_size + 1024 + N`.

    Args:
      texts: training sentences (each may contain `"\n"`). A few hundred short sentences suffice.
      output_path: where to write the `.model` file, or None to keep it in memory only.
      vocab_size: number of pieces WITHOUT the 1152 loc/seg tokens; this includes the 4 special pieces, `"\n"`
        and the 256 byte pieces, so it must exceed ~262 plus the number of distinct characters. The returned
        tokenizer has `vocab_size + 1152` pieces.
      model_type: SentencePiece model type, `"bpe"` (as Gemma) or `"unigram"`.
      character_coverage: fraction of characters covered by pieces; the rest go through byte fallback.
      max_sentence_length: longest sentence in bytes the trainer keeps (longer ones are skipped by SentencePiece).

    Returns:
      The trained `Tokenizer`.

    Raises:
      ValueError: no training text, or `vocab_size` too large/too small for this corpus (the message gives the
        allowed value).
    """
    sentences = [t for t in texts if t]
    for t in sentences:
        if not isinstance(t, str):
            raise TypeError(f"texts must contain str, got {type(t).__name__}")
    if not sentences:
        raise ValueError("train_tokenizer needs at least one non-empty training text")
    n_special = NUM_LOC_TOKENS + NUM_SEG_TOKENS
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            vocab_size=vocab_size + n_special,
            model_type=model_type,
            pad_id=0,
            eos_id=1,
            bos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            eos_piece="<eos>",
            bos_piece="<bos>",
            unk_piece="<unk>",
            user_defined_symbols=["\n", *LOC_PIECES, *SEG_PIECES],
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            byte_fallback=True,
            character_coverage=character_coverage,
            max_sentence_length=max_sentence_length,
            num_threads=1,  # deterministic, and kind to shared machines
            minloglevel=2,
        )
    except RuntimeError as e:
        msg = str(e)
        if m := _TOO_HIGH.search(msg):
            limit = int(m.group(2)) - n_special
            raise ValueError(
                f"vocab_size={vocab_size} is too large for this training corpus ({len(sentences)} texts): "
                f"pass vocab_size <= {limit}, or train on more text"
            ) from e
        if m := _TOO_LOW.search(msg):
            need = int(m.group(2)) - n_special
            raise ValueError(
                f"vocab_size={vocab_size} is too small for this corpus: it must hold the special, byte and "
                f"character pieces, pass vocab_size >= {need} (or lower character_coverage)"
            ) from e
        raise ValueError(f"SentencePiece training failed: {msg}") from e

    # Move the loc/seg pieces (ids 5..1156 after training) to the end, as in PaliGemma.
    proto = _parse_proto(buf.getvalue(), "the trained model")
    special = set(LOC_PIECES) | set(SEG_PIECES)
    kept = [p for p in proto.pieces if p.piece not in special]
    del proto.pieces[:]
    proto.pieces.extend(kept)
    _ensure_loc_seg(proto)

    tok = Tokenizer(proto.SerializeToString())
    tok._source = "train_tokenizer (in memory)"
    if output_path is not None:
        tok.save(output_path)
        tok._source = f"file {os.fspath(output_path)!r}"
    return tok


# ----------------------------------------------------------------------------------------------------------
# Location / segmentation text helpers.
# ----------------------------------------------------------------------------------------------------------


def loc_bin_to_coordinate(b: int) -> float:
    """Converts a loc bin `b` in 0..1023 to a coordinate in [0, 1] as `b / 1023` (not `/ 1024`)."""
    if not 0 <= b <= _LOC_MAX or int(b) != b:
        raise ValueError(f"loc bin must be an integer in 0..{_LOC_MAX}, got {b!r}")
    return int(b) / _LOC_MAX


def _coordinate_to_bin(v: float) -> int:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"box coordinate must be finite, got {v}")
    return int(np.clip(np.round(v * _LOC_MAX), 0, _LOC_MAX))


def box_to_loc_tokens(box: Sequence[float]) -> str:
    """Writes a box as four loc tokens.

    Args:
      box: 4 floats `(y1, x1, y2, x2)` normalised to [0, 1] (list, tuple or array of shape `(4,)`).

    Returns:
      `"<locY1><locX1><locY2><locX2>"` with each bin `clip(round(v * 1023), 0, 1023)`; values outside [0, 1]
      are clipped. Decoding with `loc_bin_to_coordinate` recovers each value within 1/2046 (unclipped).
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,):
        raise ValueError(f"box must have 4 values (y1, x1, y2, x2), got shape {np.shape(box)}")
    return "".join(LOC_PIECES[_coordinate_to_bin(v)] for v in values)


def seg_codes_to_tokens(codes: Sequence[int]) -> str:
    """Writes segmentation codebook indices (each 0..127; normally 16 of them) as `"<segNNN>..."`."""
    out = []
    for c in np.asarray(codes).reshape(-1):
        if not 0 <= c < NUM_SEG_TOKENS or int(c) != c:
            raise ValueError(f"seg code must be an integer in 0..{NUM_SEG_TOKENS - 1}, got {c!r}")
        out.append(SEG_PIECES[int(c)])
    return "".join(out)


# One object: 4 loc tokens, then any run of seg tokens, then a label up to the next "<" or ";".
_OBJECT_RE = re.compile(
    r"<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>"  # 4 loc tokens
    r"((?:\s*<seg\d+>)*)"  # optional seg tokens
    r"([^<;]*)"
)  # label
_SEG_RE = re.compile(r"<seg(\d+)>")


def _parse_objects(text: str):
    for m in _OBJECT_RE.finditer(text):
        bins = [int(g) for g in m.group(1, 2, 3, 4)]
        if any(b > _LOC_MAX for b in bins):
            continue  # e.g. "<loc1500>": not a valid token, skip the object
        box = tuple(loc_bin_to_coordinate(b) for b in bins)
        label = m.group(6).strip()
        yield box, m.group(5), label


def parse_detections(text: str) -> list[tuple[Box, str]]:
    """Parses detection output `"<loc..>x4 label ; <loc..>x4 label2 ..."`.

    Args:
      text: decoded model output.

    Returns:
      A list of `(box, label)` where `box = (y1, x1, y2, x2)` floats in [0, 1] (bins / 1023, not reordered)
      and `label` is the stripped text after the 4 loc tokens up to the next `";"` or `"<"` (possibly
      `""`). Seg tokens after the box (segmentation output) are skipped. Malformed pieces (fewer than 4 loc
      tokens, a bin above 1023, stray text) are ignored; never raises on malformed text.
    """
    return [(box, label) for box, _, label in _parse_objects(text)]


def parse_segmentations(text: str) -> list[tuple[Box, list[int] | None, str]]:
    """Parses segmentation output `"<loc..>x4 <seg..>x16 label ; ..."`.

    Args:
      text: decoded model output.

    Returns:
      A list of `(box, codes, label)`: `box` as in `parse_detections`; `codes` the 16 codebook indices
      (ints in 0..127, row-major 4x4 grid) or None when the object does not have exactly 16 valid seg tokens;
      `label` the stripped text after them. Malformed objects (fewer than 4 loc tokens) are ignored.
    """
    out = []
    for box, seg_text, label in _parse_objects(text):
        codes: list[int] | None = [int(c) for c in _SEG_RE.findall(seg_text)]
        if len(codes) != 16 or any(c >= NUM_SEG_TOKENS for c in codes):
            codes = None
        out.append((box, codes, label))
    return out
