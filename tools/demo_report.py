"""What a finished VQA run produced, for a person: `python -m tools.demo_report --workdir DIR [--eval test]`.

Prints the final accuracy (overall and per question type) and how long the run took, writes
`{workdir}/curves.png` (training loss and evaluation curves, `tools.plots`) and `{workdir}/predictions.png` (a grid
of test images with question, prediction and answer, green when right), and lists where everything is. `make demo`
calls it after training on easy-VQA.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import textwrap
from collections.abc import Sequence

import tensorflow as tf

from datasets import sources
from tools import plots


def _final_predictions(workdir: str, name: str) -> tuple[str, int | None]:
    files = glob.glob(os.path.join(workdir, "evals", f"{name}_predictions_step*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no predictions of evaluator {name!r} in {workdir}/evals (did the run finish?)")

    def step(path):
        m = re.search(r"_step(\d+)\.jsonl$", path)
        return int(m.group(1)) if m else -1

    path = max(files, key=step)
    return path, step(path)


def _examples(data_config: dict, ids: set, id_key: str = "question_id") -> dict:
    """{id: (image uint8 [H, W, 3], question)} for the given ids, read in split order from the eval data."""
    out = {}
    for ex in sources.get_source(data_config).get_tfdata(ordered=True):
        qid = int(ex[id_key].numpy())
        if qid in ids:
            image = tf.io.decode_image(ex["image"], channels=3).numpy()
            out[qid] = (image, ex["question"].numpy().decode())
            if len(out) == len(ids):
                break
    return out


def prediction_grid(records: Sequence[dict], examples: dict, out_png: str, columns: int = 4) -> str:
    """A PNG grid: each cell an image titled with its question, the prediction and the answer(s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(records) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, rec in zip(axes.flat, records):
        image, question = examples[rec["id"]]
        ax.imshow(image, interpolation="nearest")
        right = rec["score"] is not None and rec["score"] >= 1.0
        ax.set_title(
            "\n".join(textwrap.wrap(question, 32)) + f"\npredicted: {rec['prediction']!r}\n"
            f"answer: {', '.join(sorted(set(rec['answers'])))}",
            fontsize=9,
            color="darkgreen" if right else "darkred",
        )
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def report(workdir: str, name: str = "test", num_images: int = 16) -> dict:
    """Writes the two PNGs and returns the summary (final metrics, duration, artifact paths)."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    records = plots.read_metrics(os.path.join(workdir, "metrics.jsonl"))
    final = next((r for r in reversed(records) if f"{name}/accuracy" in r), None)
    if final is None:
        raise ValueError(f"metrics.jsonl of {workdir} has no {name}/accuracy: the evaluator {name!r} did not run")
    curves = plots.plot_curves(
        records,
        os.path.join(workdir, "curves.png"),
        [k for k in plots.default_metrics(records) if k.startswith(f"{name}/")],
        title=f"{os.path.basename(os.path.abspath(workdir))}: loss and {name} accuracy",
    )
    pred_path, step = _final_predictions(workdir, name)
    with open(pred_path) as f:
        preds = [json.loads(line) for _, line in zip(range(num_images), f)]
    eval_cfg = config["evals"][name]
    examples = _examples(eval_cfg["data"], {r["id"] for r in preds}, eval_cfg.get("id_key") or "question_id")
    grid = prediction_grid(preds, examples, os.path.join(workdir, "predictions.png"))
    started = os.path.getmtime(os.path.join(workdir, "config.json"))
    ended = os.path.getmtime(pred_path)
    return dict(
        step=final["step"],
        metrics={k.split("/", 1)[1]: v for k, v in final.items() if k.startswith(f"{name}/")},
        minutes=(ended - started) / 60,
        curves=curves,
        grid=grid,
        predictions=pred_path,
        metrics_file=os.path.join(workdir, "metrics.jsonl"),
        tensorboard=os.path.join(workdir, "tensorboard"),
        checkpoints=os.path.join(workdir, "checkpoints"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: writes the demo report of a workdir; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m tools.demo_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--eval", default="test", help="the VQA evaluator of the run config (default: test)")
    p.add_argument("--num_images", type=int, default=16)
    args = p.parse_args(argv)
    try:
        s = report(args.workdir, args.eval, args.num_images)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = s["metrics"]
    by_type = ", ".join(f"{k[len('accuracy_') :]} {v:.1%}" for k, v in sorted(m.items()) if k.startswith("accuracy_"))
    print(
        f"\nTest accuracy after {s['step']} steps: {m['accuracy']:.2%} on {int(m.get('num_examples', 0))} "
        f"questions ({by_type}); the run took {s['minutes']:.1f} min."
    )
    print(
        f"  metrics (JSON lines): {s['metrics_file']}\n  TensorBoard events:   {s['tensorboard']}  "
        f"(tensorboard --logdir {s['tensorboard']})\n  loss/accuracy curves: {s['curves']}\n"
        f"  answered test images: {s['grid']}\n  all test predictions: {s['predictions']}\n"
        f"  checkpoints:          {s['checkpoints']}"
    )
    print(
        f"Ask it yourself: python -m tools.predict --checkpoint {args.workdir} --image IMAGE.png "
        f'--prompt "answer en what shape is in the image?" --max_decode_len 4'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
