r"""Prints fully preprocessed examples of a config's input pipeline, to check a config before training.

    python -m datasets.inspect --config configs/transfer/vqav2.py:res=224 --n 3
    python -m datasets.inspect --config my_config.py --eval val --n 2        # an entry of config.evals
    python -m datasets.inspect --config my_config.py --split validation --ordered

Config keys read (an ml_collections config file with `get_config(arg)`; `FILE:arg` passes `arg`; overrides such as
`--config.input.batch_size=8` work as usual):
  config.input.data                 the data source: a `datasets.sources.get_source` dict (TFDS, JSONL or mixture)
  config.input.pp                   pp string (`datasets.pp`); for a mixture it may be None with a `pp` per part
  config.input.tokenizer            SentencePiece model path for the pp ops and for decoding the tokens
                                    (falls back to config.tokenizer, then config.model.tokenizer); a
                                    `datasets.tokenizers` training spec is trained into a temporary folder
  config.input.batch_size           shown only (examples are read N at a time)
  config.input.shuffle_buffer_size  used, capped by --shuffle_buffer (inspecting should be quick)
  config.seed                       the data seed (default 0)
  config.evals.NAME.{data, pp, tokenizer}   with --eval NAME (`data` may also be a TFDS split name string,
                                    meaning config.input.data with that split)
Flags: --split overrides data.split, --data_dir overrides data.data_dir (not for mixtures).

For every example: the image (shape, dtype, value range), the token table (id, piece, mask_ar, mask_loss,
mask_input per position, padding summarised), the decoded prefix (mask_ar 0) and suffix (mask_ar 1), whether the text
was truncated (`[TRUNCATED ...]` after the example's header), and every other field; at the end, how many of the
examples shown were truncated.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import ml_collections
import numpy as np
import tensorflow as tf
from absl import app, flags

from datasets import pipeline, sources, tokenizers
from datasets.base import DataError
from paligemma import cli
from paligemma.errors import UserError
from paligemma.tokenizer import Tokenizer
from paligemma.tree import plain

FLAGS = flags.FLAGS


def _define_flags():
    cli.define_config_flag("config", "Config file (with get_config(arg)); FILE:ARG passes ARG.")
    flags.DEFINE_string("split", None, "Use this split instead of the config's.")
    flags.DEFINE_string("data_dir", None, "Use this TFDS data_dir instead of the config's.")
    flags.DEFINE_integer("n", 3, "Number of examples to print.")
    flags.DEFINE_string("eval", None, "Inspect the entry NAME of config.evals instead of the training input.")
    flags.DEFINE_bool("ordered", False, "First examples in split order (no shuffling) instead of the training stream.")
    flags.DEFINE_integer("shuffle_buffer", 1000, "Largest shuffle buffer to use when showing the training stream.")


def _get(cfg, path, default=None):
    cur = cfg
    for key in path.split("."):
        if cur is None:
            return default
        if isinstance(cur, dict):
            cur = cur.get(key)
        else:
            cur = getattr(cur, key, None) if (not hasattr(cur, "keys") or key in cur.keys()) else None
    return default if cur is None else cur


class InspectError(UserError, KeyError, ValueError):
    """A config or flag combination this program cannot show (printed as one line; a KeyError, as it used to be)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def resolve_input(config, *, eval_name=None, split=None, data_dir=None):
    """(data config dict, pp, tokenizer path, description) for the training input or an eval entry."""
    tokenizer = _get(config, "input.tokenizer") or _get(config, "tokenizer") or _get(config, "model.tokenizer")
    input_data = plain(_get(config, "input.data"))
    tokenizer = plain(tokenizer)
    if isinstance(tokenizer, dict) and isinstance(tokenizer.get("train"), dict):
        if tokenizer["train"].get("data") == "input.data":  # trained on the run's input.data (trainers.config)
            tokenizer["train"]["data"] = input_data
    if eval_name:
        evals = _get(config, "evals")
        if evals is None or eval_name not in evals:
            names = sorted(evals.keys()) if evals is not None else []
            raise InspectError(f"No eval {eval_name!r} in config.evals (has: {names})")
        ev = evals[eval_name]
        data = plain(_get(ev, "data"))
        if isinstance(data, str):  # a split name of the training data
            data = dict(input_data, split=data)
        pp = _get(ev, "pp")
        tokenizer = _get(ev, "tokenizer") or tokenizer
        what = f"config.evals.{eval_name}"
    else:
        data, pp, what = input_data, _get(config, "input.pp"), "config.input"
    if not data:
        raise InspectError(f"{what}.data is missing")
    data = dict(data)
    if split or data_dir:
        if "mixture" in data:
            raise InspectError("--split / --data_dir do not apply to a mixture")
        if split:
            data["split"] = split
        if data_dir:
            data["data_dir"] = data_dir
    return data, pp, tokenizer, what


def _load_tokenizer(path):
    if not path:
        return None
    try:
        return Tokenizer(path)
    except Exception as e:
        print(f"(cannot load tokenizer {path}: {e}; showing token ids only)")
        return None


def _piece(tok, i):
    if tok is None:
        return ""
    try:
        return repr(tok.id_to_piece(int(i)))[1:-1]
    except Exception:
        return "?"


def _decode(tok, ids):
    if tok is None:
        return " ".join(str(int(i)) for i in ids)
    return tok.decode([int(i) for i in ids], stop_at_eos=False)


def _fmt_value(v) -> str:
    v = np.asarray(v)
    if v.dtype == object or v.dtype.kind in "SU":
        items = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in v.reshape(-1)]
        if v.ndim == 0:
            return repr(items[0])
        return f"[{', '.join(repr(x) for x in items[:10])}{', ...' if len(items) > 10 else ''}] (shape {v.shape})"
    if v.size <= 16:
        return f"{v.tolist()} ({v.dtype})"
    return f"shape {v.shape} {v.dtype}, range [{v.min():.4g}, {v.max():.4g}]"


def format_example(ex: dict, tok=None) -> str:
    """Human-readable view of one preprocessed example (numpy values)."""
    lines = []
    ex = dict(ex)
    image = ex.pop("image", None)
    if image is not None:
        image = np.asarray(image)
        if image.dtype == object:
            lines.append(f"image: encoded, {len(image.item())} bytes (not decoded: add `decode` to the pp)")
        else:
            lines.append(
                f"image: shape {image.shape} {image.dtype}, range [{image.min():.3f}, {image.max():.3f}], "
                f"mean {image.mean():.3f}"
            )
    text = ex.pop("text", None)
    masks = {k: ex.pop(k, None) for k in ("mask_ar", "mask_loss", "mask_input")}
    truncated = ex.pop("text_truncated", None)
    if text is not None:
        text = np.asarray(text)
        n = len(text)
        valid = np.asarray(masks["mask_input"]) if masks["mask_input"] is not None else (text != 0).astype(np.int32)
        ar = np.asarray(masks["mask_ar"]) if masks["mask_ar"] is not None else np.zeros(n, np.int32)
        loss = np.asarray(masks["mask_loss"]) if masks["mask_loss"] is not None else np.zeros(n, np.int32)
        cut = ""
        if truncated is not None:
            t = int(np.asarray(truncated))
            cut = (
                ", not truncated"
                if not t
                else f", TRUNCATED ({'prefix' if t & 1 else ''}{' and ' if t == 3 else ''}"
                f"{'suffix' if t & 2 else ''} cut; text_truncated={t})"
            )
        lines.append(f"text: {n} positions, {int(valid.sum())} valid{cut}")
        lines.append("   pos      id  piece                    ar loss input")
        last_valid = int(np.nonzero(valid)[0].max()) if valid.any() else -1
        for i in range(n):
            if i > last_valid:
                rest = n - i
                lines.append(
                    f"   {i:3d}..{n - 1:<3d} {rest} padding position(s): ids {sorted(set(text[i:].tolist()))}, "
                    f"ar {sorted(set(ar[i:].tolist()))}, loss {sorted(set(loss[i:].tolist()))}, "
                    f"input {sorted(set(valid[i:].tolist()))}"
                )
                break
            lines.append(
                f"   {i:3d} {int(text[i]):7d}  {_piece(tok, text[i])[:22]:22s}  {int(ar[i]):2d} {int(loss[i]):4d} "
                f"{int(valid[i]):5d}"
            )
        bos = tok.bos_id if tok is not None else 2
        eos = tok.eos_id if tok is not None else 1
        prefix = [t for t, a, v in zip(text, ar, valid) if v and not a and t != bos]
        suffix = [t for t, a, v in zip(text, ar, valid) if v and a and t != eos]
        lines.append(f"prefix (ar 0): {_decode(tok, prefix)!r}")
        lines.append(
            f"suffix (ar 1): {_decode(tok, suffix)!r}"
            + ("  [ends with <eos>]" if any(t == eos for t, v in zip(text, valid) if v) else "  [no <eos>]")
        )
    else:
        for k, v in masks.items():
            if v is not None:
                ex[k] = v
        if truncated is not None:
            ex["text_truncated"] = truncated
    for k in sorted(ex):
        lines.append(f"{k}: {_fmt_value(ex[k])}")
    return "\n".join(lines)


def truncation_summary(cut_flags, count: int) -> str:
    """The closing line of `inspect_config`: how many of the `count` examples shown had their text cut."""
    if cut_flags is None:
        return (
            f"truncation: not reported (the pp emits no `{pipeline.TRUNCATION_KEY}`; tok_paligemma does, and keep() "
            "always keeps it)"
        )
    n = int(np.count_nonzero(np.asarray(cut_flags)[:count]))
    if not n:
        return f"truncation: none of the {count} example(s) shown was cut to fit text_len"
    return (
        f"truncation: TRUNCATED {n} of the {count} example(s) shown (text cut to fit text_len; raise text_len in the "
        "pp string or shorten the prompts)"
    )


def inspect_config(
    config, *, n=3, eval_name=None, split=None, data_dir=None, ordered=False, shuffle_buffer=1000, out=sys.stdout
):
    """Builds the pipeline described by `config` and prints n examples to `out`."""
    data, pp, tokenizer, what = resolve_input(config, eval_name=eval_name, split=split, data_dir=data_dir)
    if tokenizer is not None and not isinstance(tokenizer, str):  # a spec that trains one (datasets.tokenizers)
        spec = plain(tokenizer)
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
        cache = os.path.join(tempfile.gettempdir(), "paligemma_inspect_tokenizers", digest)  # one folder per spec
        tokenizer = tokenizers.resolve_tokenizer(tokenizer, workdir=cache)
    try:
        source = sources.get_source(data)
    except DataError:
        raise
    except Exception as e:  # any failure to open the data is a problem of the config or the data (as in the trainer)
        raise DataError(f"{what}.data {data!r}: {e}") from e
    print(f"{what}: {source.describe()}", file=out)
    print(f"pp: {pp!r}", file=out)
    print(f"tokenizer: {tokenizer}", file=out)
    if not eval_name:
        print(f"batch_size (config.input.batch_size): {_get(config, 'input.batch_size')}", file=out)
    tok = _load_tokenizer(tokenizer)
    if eval_name or ordered:
        ds = pipeline.make_eval_dataset(source, pp, process_index=0, process_count=1, tokenizer=tokenizer).batch(n)
        stream = "in split order"
    else:
        buffer = min(int(_get(config, "input.shuffle_buffer_size", 1000)), shuffle_buffer)
        ds = pipeline.make_train_dataset(
            source,
            pp,
            batch_size=n,
            shuffle_buffer_size=buffer,
            seed=int(_get(config, "seed", 0)),
            process_index=0,
            process_count=1,
            tokenizer=tokenizer,
            prefetch=0,
        )
        stream = f"training stream, shuffle buffer {buffer}"
    batch = next(ds.as_numpy_iterator())
    count = len(next(iter(tf.nest.flatten(batch))))
    print(f"{count} example(s), {stream}:", file=out)
    cut_flags = batch.get(pipeline.TRUNCATION_KEY) if isinstance(batch, dict) else None
    for i in range(count):
        ex = tf.nest.map_structure(lambda v, i=i: v[i], batch)
        cut = cut_flags is not None and int(np.asarray(cut_flags[i])) != 0
        print(f"\n=== example {i} ==={'  [TRUNCATED: text cut to fit text_len]' if cut else ''}", file=out)
        print(format_example(ex, tok), file=out)
    print(f"\n{truncation_summary(cut_flags, count)}", file=out)
    return batch


# The keys this program reads, besides those the config file sets (`--config.KEY=VALUE` may set these too).
SCHEMA = dict(
    seed=None,
    tokenizer=None,
    model=None,
    input=dict(data=None, pp=None, tokenizer=None, batch_size=None, shuffle_buffer_size=None),
    evals={},
)
OPEN_KEYS = ("model", "evals", "input.data")


def main(argv):
    """`python -m datasets.inspect`: prints the examples of `--config` (see the module docstring).

    Returns the exit status: 0, or 2 after an expected failure (bad config or override, data or tokenizer problem,
    missing file), printed as one line (`paligemma.cli.run_main`).
    """
    return cli.run_main(_main, argv)


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flag = cli.config_flag("config")
    if flag.spec is None:
        raise app.UsageError("--config is required")
    config = ml_collections.ConfigDict(flag.load(schema=SCHEMA, open_keys=OPEN_KEYS), type_safe=False)
    inspect_config(
        config,
        n=FLAGS.n,
        eval_name=FLAGS.eval,
        split=FLAGS.split,
        data_dir=FLAGS.data_dir,
        ordered=FLAGS.ordered,
        shuffle_buffer=FLAGS.shuffle_buffer,
    )


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
