r"""Benchmarks, by name: `python -m tools.benchmark NAME [flags]` (`python -m tools.benchmark` lists them).

    python -m tools.benchmark pipeline --res 64
    python -m tools.benchmark pipeline --res 224 --batch_size 64 --seconds 20

Adding a benchmark: either decorate a function `fn(argv: list[str]) -> int` with `@register("name", "what it
measures")` in this file, or put it in a module `tools/benchmark_<name>.py` that does the same (`from tools.benchmark
import register`); such modules are found and imported when the dispatcher runs, so no edit here is needed.

Benchmarks print a table; they are commands, not tests (timings on a shared machine are not assertions).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import tempfile
import time
from collections.abc import Callable

from easy_vqa import get_train_questions

import tools
from paligemma import host_memory
from paligemma.tokenizer import train_tokenizer

BENCHMARKS: dict[str, tuple[Callable[[list[str]], int], str]] = {}


def register(name: str, help_text: str = ""):
    """Registers `fn(argv) -> exit status` as benchmark `name`."""

    def wrap(fn):
        if name in BENCHMARKS and BENCHMARKS[name][0] is not fn:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = (fn, help_text or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def _discover():
    for info in pkgutil.iter_modules(tools.__path__):
        if info.name.startswith("benchmark_"):
            importlib.import_module(f"tools.{info.name}")


def print_table(headers: list[str], rows: list[list], out=None):
    """Prints `rows` under `headers` as an aligned plain-text table."""
    out = out if out is not None else sys.stdout  # read at call time: a test may have replaced sys.stdout
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    num = lambda c: c.replace(",", "").replace(".", "", 1).isdigit()
    line = lambda r: "| " + " | ".join(c.rjust(w) if num(c) else c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(headers), file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for r in cells:
        print(line(r), file=out)


# --------------------------------------------------------------------------------------------------------------
# pipeline: the easy-VQA training input pipeline.


def _time_iterator(make_iter, batch_size, warmup_batches, seconds, max_batches):
    it = make_iter()
    t0 = time.perf_counter()
    for _ in range(warmup_batches):
        next(it)
    t_first = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while n < max_batches and (time.perf_counter() - t0) < seconds:
        next(it)
        n += 1
    dt = time.perf_counter() - t0
    return n * batch_size / dt, 1000 * dt / max(n, 1), t_first


@register("pipeline", "examples/s of the easy-VQA training pipeline (decode, resize, value_range, prompt, tokenize)")
def pipeline_benchmark(argv: list[str]) -> int:
    """examples/s of the easy-VQA training pipeline."""
    p = argparse.ArgumentParser(prog="python -m tools.benchmark pipeline", description=pipeline_benchmark.__doc__)
    p.add_argument("--res", type=int, nargs="+", default=[224], help="image resolution(s) to resize to")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--text_len", type=int, default=32)
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per row (after warm-up)")
    p.add_argument("--warmup_batches", type=int, default=5)
    p.add_argument("--max_batches", type=int, default=10_000)
    p.add_argument("--shuffle_buffer_size", type=int, default=10_000)
    p.add_argument(
        "--data_dir",
        default=os.path.join(tempfile.gettempdir(), "paligemma_bench_tfds"),
        help="TFDS data_dir; easy_vqa is built there if missing (~15 s)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="SentencePiece model; default: a small one trained on easy-VQA text, kept in data_dir",
    )
    p.add_argument(
        "--stages", default="read,image,full,full_unchecked", help="comma list of: read, image, full, full_unchecked"
    )
    args = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow and the data pipeline only for this benchmark: the decode benchmark runs on GPU hosts without TF.
    import tensorflow as tf

    from datasets import pipeline, sources

    src = sources.get_source(dict(name="easy_vqa", split="train", data_dir=args.data_dir))  # builds if missing
    tok = args.tokenizer
    if tok is None:
        tok = os.path.join(args.data_dir, "easy_vqa_bench_tokenizer.model")
        if not os.path.exists(tok):
            questions, answers, _ = get_train_questions()
            train_tokenizer([f"answer en {q}" for q in questions] + sorted(set(answers)), tok, vocab_size=500)

    keep = '|keep("image", "text", "mask_ar", "mask_loss", "mask_input", "text_truncated")'
    text = (
        f'|strfmt("answer en {{question}}", outkey="prefix")|choice(inkey="answers", outkey="suffix")'
        f"|tok_paligemma(text_len={args.text_len})"
    )
    cpus = os.cpu_count()
    print(
        f"easy-VQA train ({src.num_examples} examples), batch {args.batch_size}, text_len {args.text_len}, "
        f"{cpus} CPU(s), tf {tf.__version__}, tokenizer {tok}"
    )
    rows, legend = [], {}
    for res in args.res:
        image = f"decode|resize({res})|value_range(-1, 1)"
        stages = {
            "read": ("records only, no preprocessing", lambda ex: {"image": ex["image"], "question": ex["question"]}),
            "image": (image, image),
            "full": (image + text + keep + "  (the training pp)", image + text + keep),
            "full_unchecked": (
                "the same with decode(checked=False)",
                image.replace("decode", "decode(checked=False)") + text + keep,
            ),
        }
        for name in args.stages.split(","):
            label, pp = stages[name]
            legend[name] = label.replace(f"resize({res})", "resize(RES)")
            make = lambda pp=pp: pipeline.make_train_iterator(
                src,
                pp,
                tokenizer=tok,
                batch_size=args.batch_size,
                shuffle_buffer_size=args.shuffle_buffer_size,
                seed=0,
                process_index=0,
                process_count=1,
            )
            ex_s, ms, first = _time_iterator(make, args.batch_size, args.warmup_batches, args.seconds, args.max_batches)
            rows.append([res, name, f"{ex_s:,.0f}", f"{ms:.1f}", f"{first:.1f}"])
            print(f"  res {res} {name}: {ex_s:,.0f} examples/s", file=sys.stderr)
    print()
    print_table(["res", "stage", "examples/s", "ms/batch", "warm-up s"], rows)
    print()
    for name, label in legend.items():
        print(f"  {name}: {label}")
    return 0


# --------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Command line: runs the named benchmarks; returns the exit code."""
    from paligemma.cli import skip_absent_tpu

    skip_absent_tpu()  # no TPU probing (and its warnings) on a host without one
    _discover()
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(__doc__.strip().split("\n\n")[0])
        print("\nbenchmarks:")
        for name, (_, text) in sorted(BENCHMARKS.items()):
            print(f"  {name:12s} {text}")
        return 0 if len(argv) >= 2 else 1
    name = argv[1]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}", file=sys.stderr)
        return 2
    return BENCHMARKS[name][0](argv[2:])


if __name__ == "__main__":
    host_memory.reexec_with_huge_pages()
    # Run the registry of the importable `tools.benchmark`, the one plugin modules register into.
    from tools import benchmark as _benchmark

    sys.exit(_benchmark.main(sys.argv))
