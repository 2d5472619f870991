"""Tokenizer specs of run configs (`config.tokenizer`) -> the path of a SentencePiece `.model` file.

    resolve_tokenizer("/models/paligemma_tokenizer.model")                 # as is (has the loc/seg tokens)
    resolve_tokenizer("/models/gemma_tokenizer.model", workdir)            # plain Gemma: augmented copy in workdir
    resolve_tokenizer(dict(train=dict(data=dict(name="easy_vqa", split="train"), keys=("question", "answer"),
                                      vocab_size=1000, max_examples=None),
                           path="tokenizer.model"), workdir)                 # trained once, cached in workdir

A path spec names an existing `.model` file. If it lacks PaliGemma's `<locNNNN>`/`<segNNN>` pieces (a plain Gemma
tokenizer), an augmented copy (`paligemma.tokenizer.add_loc_seg_tokens`, so `<locN>` = 256000+N for Gemma) is written
to `workdir/<name>_locseg.model` and that path is returned.

A dict spec trains a small tokenizer with `paligemma.tokenizer.train_tokenizer` from the text fields `keys` (a key may
be nested, "captions/text"; a field may be a string or a list of strings) of the first `max_examples` examples (None:
all) of the `data` source, plus the optional `extra_texts` (e.g. prompt words such as "answer en"). The result is
cached at `path` (relative paths are under workdir) and reused when present; the training settings are stored next
to it (`<path>.json`) and a warning is logged when a cached file was trained with other settings.

Multi-process: only process 0 (`jax.process_index()`) trains or writes; files are written atomically (temporary file +
rename), and the other processes wait for the file to appear (the workdir must be on a shared filesystem).

TensorFlow is imported only to read the training texts (inside `datasets.sources`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax

from paligemma import paths
from paligemma.errors import UserError
from paligemma.tokenizer import Tokenizer, TokenizerError, train_tokenizer
from paligemma.tree import plain

log = logging.getLogger(__name__)

__all__ = ["resolve_tokenizer", "TokenizerSpecError", "SPEC_KEYS", "TRAIN_KEYS"]

SPEC_KEYS = ("train", "path")
TRAIN_KEYS = ("data", "keys", "vocab_size", "max_examples", "extra_texts", "model_type")
_TRAIN_DEFAULTS = dict(
    keys=("question", "answer"), vocab_size=1000, max_examples=None, extra_texts=(), model_type="bpe"
)
_DEFAULT_PATH = "tokenizer.model"
_WAIT_POLL_S = 1.0


class TokenizerSpecError(UserError, ValueError):
    """A `config.tokenizer` spec that cannot be resolved (bad keys, missing file, no workdir)."""


def resolve_tokenizer(spec: Any, workdir: str | None = None, *, wait_timeout_s: float = 3600.0) -> str:
    """Returns the path of the `.model` file described by `spec` (see the module docstring).

    Args:
      spec: a path (str / os.PathLike) to a `.model` file, or a dict / ConfigDict with `train` (and `path`).
      workdir: the run's folder; needed for a plain Gemma tokenizer (augmented copy) and for a relative `path`.
      wait_timeout_s: how long processes other than 0 wait for process 0 to write the file.

    Returns:
      An absolute path to a SentencePiece model with the 1152 loc/seg tokens.

    Raises:
      TokenizerSpecError: unknown keys, missing file, missing workdir, a timeout waiting for process 0.
    """
    if spec is None:
        raise TokenizerSpecError(
            "config.tokenizer is not set: pass a path to a SentencePiece .model file, or "
            "dict(train=dict(data=..., keys=(...), vocab_size=...), path='tokenizer.model')"
        )
    if isinstance(spec, (str, os.PathLike)):
        return _resolve_path(os.fspath(spec), workdir, wait_timeout_s)
    spec = plain(_require_mapping(spec, "A tokenizer spec must be a path or a dict/ConfigDict"))
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise TokenizerSpecError(f"Unknown key(s) {unknown} in the tokenizer spec; known keys: {list(SPEC_KEYS)}")
    if spec.get("train") is None:
        if not spec.get("path"):
            raise TokenizerSpecError("A tokenizer spec dict needs `train=dict(...)` or `path='file.model'`")
        return _resolve_path(os.fspath(spec["path"]), workdir, wait_timeout_s)
    train = _train_settings(spec["train"])
    path = os.fspath(spec.get("path") or _DEFAULT_PATH)
    path = _in_workdir(path, workdir, "a trained tokenizer (train=...) with a relative `path`")
    if paths.isfile(path):
        _check_cached(path, train)
        _check_usable(path, f"it was cached by an earlier run; delete it and {path}.json, and rerun to train it again")
        return path
    if _process_index() == 0:
        _train_and_write(train, path)
    else:
        _wait_for(path, wait_timeout_s)
    return path


# ----------------------------------------------------------------------------------------------------------
# Path specs.


def _resolve_path(path: str, workdir: str | None, wait_timeout_s: float) -> str:
    path = paths.abspath(os.path.expandvars(path))
    if not paths.isfile(path):
        raise TokenizerSpecError(
            f"Tokenizer file not found: {path!r}. Pass the path of a SentencePiece .model file "
            f"(e.g. the PaliGemma/Gemma tokenizer.model), or a dict spec to train one."
        )
    try:
        tok = Tokenizer(path)
    except ValueError as e:
        raise TokenizerSpecError(f"{path!r} is not a usable SentencePiece model: {e}") from None
    if not tok.added_loc_seg_tokens:
        return path
    stem = os.path.splitext(path.rstrip("/").rsplit("/", 1)[-1] if paths.is_remote(path) else os.path.basename(path))[0]
    out = _in_workdir(
        f"{stem}_locseg.model",
        workdir,
        f"the tokenizer {path!r}, which lacks the <locNNNN>/<segNNN> tokens (an augmented copy is "
        f"written there; or pass a tokenizer that has them)",
    )
    if paths.isfile(out):
        _check_usable(out, "it is the augmented copy an earlier run cached; delete it and rerun to write it again")
        return out
    if _process_index() == 0:
        log.info("Tokenizer %s lacks the loc/seg tokens; writing an augmented copy to %s", path, out)
        data = tok.serialized_model_proto()
        _atomic_write(out, data)
    else:
        _wait_for(out, wait_timeout_s)
    return out


def _in_workdir(path: str, workdir: str | None, what: str) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path) or paths.is_remote(path):
        return path
    if not workdir:
        raise TokenizerSpecError(
            f"No workdir given for {what}: pass workdir=... (the trainer's --workdir), or use an absolute `path`."
        )
    return paths.abspath(paths.join(workdir, path))


# ----------------------------------------------------------------------------------------------------------
# Trained specs.


def _require_mapping(spec: Any, what: str) -> Any:
    """`spec` itself when it is a mapping or a ConfigDict; else TokenizerSpecError(`what`, got <type>)."""
    if not isinstance(spec, Mapping) and not hasattr(spec, "to_dict"):
        raise TokenizerSpecError(f"{what}, got {type(spec).__name__}")
    return spec


def _train_settings(train: Any) -> dict:
    train = plain(_require_mapping(train, "The tokenizer spec's `train` must be a dict/ConfigDict"))
    unknown = sorted(set(train) - set(TRAIN_KEYS))
    if unknown:
        raise TokenizerSpecError(
            f"Unknown key(s) {unknown} in the tokenizer spec's `train`; known keys: {list(TRAIN_KEYS)}"
        )
    if not train.get("data"):
        raise TokenizerSpecError(
            "The tokenizer spec's `train` needs `data` (a source config, e.g. dict(name='easy_vqa', split='train'))"
        )
    out = {**_TRAIN_DEFAULTS, **train}
    out["data"] = _require_mapping(out["data"], "The tokenizer spec's `train.data` must be a dict/ConfigDict")
    keys = out["keys"]
    out["keys"] = [keys] if isinstance(keys, str) else list(keys)
    if not out["keys"] or not all(isinstance(k, str) for k in out["keys"]):
        raise TokenizerSpecError(f"`train.keys` must be a non-empty list of field names, got {keys!r}")
    extra = out["extra_texts"]
    out["extra_texts"] = [extra] if isinstance(extra, str) else list(extra or ())
    if not isinstance(out["vocab_size"], int) or out["vocab_size"] <= 0:
        raise TokenizerSpecError(f"`train.vocab_size` must be a positive int, got {out['vocab_size']!r}")
    if out["max_examples"] is not None and (not isinstance(out["max_examples"], int) or out["max_examples"] <= 0):
        raise TokenizerSpecError(f"`train.max_examples` must be None or a positive int, got {out['max_examples']!r}")
    return out


def _meta(train: dict) -> dict:
    return json.loads(json.dumps(train, default=str))


def _check_usable(path: str, fix: str) -> None:
    """Loads the cached tokenizer `path` once; TokenizerSpecError naming it and `fix` when it is not a model.

    A damaged cache is an error rather than retrained silently: the file is in the workdir, which other processes
    may be reading, and whatever damaged it should be looked at.
    """
    try:
        Tokenizer(path)
    except (TokenizerError, OSError) as e:
        reason = str(e).split("; pass a SentencePiece", 1)[0]
        raise TokenizerSpecError(f"{path}: cached tokenizer is not usable ({reason}); {fix}.") from None


def _check_cached(path: str, train: dict) -> None:
    meta_path = path + ".json"
    if not paths.isfile(meta_path):
        log.info("Reusing the tokenizer %s (no training settings stored next to it).", path)
        return
    try:
        stored = json.loads(paths.read_text(meta_path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning(
            "Reusing the cached tokenizer %s; its training settings %s are unreadable (%s); delete both to retrain.",
            path,
            meta_path,
            e,
        )
        return
    if stored != _meta(train):
        log.warning(
            "Reusing the cached tokenizer %s, which was trained with other settings (%s) than the config "
            "asks for (%s); delete it to retrain.",
            path,
            stored,
            _meta(train),
        )


def _field(example: Mapping, key: str) -> Any:
    value: Any = example
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            if key in example:
                return example[key]
            raise TokenizerSpecError(
                f"Tokenizer training: field {key!r} is not in the data; available fields: {sorted(example)}"
            )
        value = value[part]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, bytes):
        yield value.decode("utf-8")
    elif isinstance(value, str):
        yield value
    elif hasattr(value, "tolist") or isinstance(value, (list, tuple)):
        items = value.tolist() if hasattr(value, "tolist") else value
        for v in items if isinstance(items, list) else [items]:
            yield from _strings(v)
    else:
        raise TokenizerSpecError(f"Tokenizer training: expected text fields, got a {type(value).__name__}")


def training_texts(train: dict) -> list[str]:
    """The texts a tokenizer spec trains on: the `keys` fields of the first `max_examples` examples + extra_texts."""
    # Imported here, not at the top: it imports TensorFlow, which resolving a path spec (`evaluators.run`,
    # `tools.predict`) must not.
    from datasets import sources

    source = sources.get_source(train["data"])
    ds = source.get_tfdata(ordered=True)
    keys = train["keys"]
    first = next(iter(ds.take(1)), None)
    if first is None:
        raise TokenizerSpecError(f"Tokenizer training: the data source {source.describe()} has no examples")
    for k in keys:
        _field(first, k)  # clear error before reading everything
    ds = ds.map(lambda ex: {k: _field(ex, k) for k in keys})
    if train["max_examples"] is not None:
        ds = ds.take(train["max_examples"])
    texts = list(train["extra_texts"])
    for ex in ds.as_numpy_iterator():
        for k in keys:
            texts.extend(t for t in _strings(ex[k]) if t)
    return texts


def _train_and_write(train: dict, path: str) -> None:
    t0 = time.time()
    texts = training_texts(train)
    try:
        tok = train_tokenizer(texts, None, vocab_size=train["vocab_size"], model_type=train["model_type"])
    except ValueError as e:
        raise TokenizerSpecError(f"Training the tokenizer from config.tokenizer.train failed: {e}") from e
    _atomic_write(path + ".json", json.dumps(_meta(train), indent=2).encode())
    _atomic_write(path, tok.serialized_model_proto())  # last: its presence means "done" to the other processes
    log.info(
        "Trained a tokenizer (%d pieces) on %d texts in %.1fs -> %s", tok.vocab_size, len(texts), time.time() - t0, path
    )


# ----------------------------------------------------------------------------------------------------------
# Files and processes.


def _atomic_write(path: str, data: bytes) -> None:
    paths.write_bytes(path, data)


def _wait_for(path: str, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not paths.isfile(path):
        if time.time() > deadline:
            raise TokenizerSpecError(
                f"Process {_process_index()} waited {timeout_s:.0f}s for process 0 to write "
                f"{path}; is the workdir on a filesystem shared by all processes?"
            )
        time.sleep(_WAIT_POLL_S)


def _process_index() -> int:
    return jax.process_index()
