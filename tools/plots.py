"""Plots of a training run: `python -m tools.plots WORKDIR [--out curves.png]` (local or gs:// paths).

Reads `{workdir}/metrics.jsonl` (one JSON object per log step, written by `trainers.train`) and draws the training
loss (log scale) and every evaluator metric named in `--metrics` (default: each `{evaluator}/accuracy`-like metric
found: accuracy, cider, anls, miou, perplexity) against the step, into one PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence

from paligemma import paths

MAIN_METRICS = ("accuracy", "cider", "anls", "miou", "perplexity")


def read_metrics(path: str) -> list[dict]:
    """The records of a metrics.jsonl file, local or gs:// (a missing file raises FileNotFoundError naming it)."""
    if not paths.isfile(path):
        raise FileNotFoundError(f"no metrics file at {path} (is this a training workdir?)")
    return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]


def _series(records: Iterable[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def default_metrics(records: Sequence[dict]) -> list[str]:
    """Evaluator metrics worth a curve: `{name}/{m}` for m in MAIN_METRICS and the per-type accuracies."""
    keys = sorted({k for r in records for k in r if "/" in k})
    return [k for k in keys if k.split("/", 1)[1] in MAIN_METRICS or k.split("/", 1)[1].startswith("accuracy_")]


def plot_curves(
    records: Sequence[dict], out_png: str, metrics: Sequence[str] | None = None, title: str | None = None
) -> str:
    """Writes a PNG with the training loss (left) and the evaluator metrics (right) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(metrics) if metrics is not None else default_metrics(records)
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(12 if metrics else 6, 4.5), squeeze=False)
    ax = axes[0][0]
    steps, loss = _series(records, "training_loss")
    ax.plot(steps, loss, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    if metrics:
        ax = axes[0][1]
        for key in metrics:
            s, v = _series(records, key)
            ax.plot(s, v, marker="o", label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("evaluation")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    paths.makedirs(paths.dirname(paths.abspath(out_png)))
    paths.atomic_write(out_png, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return out_png


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: draws the plots of a workdir; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m tools.plots", description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", help="a training workdir (holds metrics.jsonl)")
    p.add_argument("--out", default=None, help="PNG path (default: WORKDIR/curves.png)")
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: the main ones)")
    args = p.parse_args(argv)
    try:
        records = read_metrics(paths.join(args.workdir, "metrics.jsonl"))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = plot_curves(
        records,
        args.out or paths.join(args.workdir, "curves.png"),
        args.metrics.split(",") if args.metrics else None,
        title=os.path.basename(args.workdir.rstrip("/")),
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
