r"""The README's dry-run table.

Runs `--dry_run` for config x model x resolution combinations and/or reads their JSON reports, and prints one
markdown row per run (per chip: params / optimizer state / activations+temporaries / total,
% of usable HBM; the evaluators' largest program; estimated step time, examples/s and MFU).

    python -m tools.dry_run_table --out /tmp/plans --run vqav2,paligemma-3b,224 --run docvqa,paligemma-3b,896,v5e-32
    python -m tools.dry_run_table /tmp/plans            # the table of every *.json there (no compiling)

A `--run` entry is `config,model,res[,slice]` (config: a name under configs/transfer/); the slice defaults to the
one `configs/common.py` plans for that model size and resolution (`RELEASED_SLICES`). Runs go one at a time (each
3B compile takes minutes on a small CPU host); each writes `{out}/{config}_{model}_{res}_{slice}.json` and a `.log`.
Every number comes from the dry run's report (`trainers/dry_run.py`); nothing is estimated here.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

GIB = 2**30
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(config: str, model: str, res: int, slice_name: str | None, out: str) -> str:
    """Runs the dry run of one combination (a subprocess) and returns the JSON path.

    The JSON is written even when the config does not fit; it is missing when the run failed otherwise (see the
    `.log` next to it).
    """
    sys.path.insert(0, REPO)
    from configs import common
    from trainers import dry_run

    slice_name = slice_name or common.released_slice(model, res)[0]
    topology = dry_run.topology_name(slice_name)
    stem = os.path.join(out, f"{config}_{model}_{res}_{topology.replace(':', '-')}")
    cmd = [
        sys.executable,
        "-m",
        "trainers.train",
        f"--config=configs/transfer/{config}.py:model={model},res={res}",
        f"--workdir={stem}_workdir",
        f"--dry_run={topology}",
        f"--dry_run_json={stem}.json",
    ]
    with open(f"{stem}.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    return f"{stem}.json"


def _gib(x: float) -> str:
    return f"{x / GIB:.2f}"


HEADER = (
    "| config | model | res | slice (mesh) | batch (accum) | params | opt state | act+temp | total (% HBM) | fits "
    "| evals: largest total (% HBM) | est. step | examples/s | MFU |"
)


def row(report: Mapping[str, Any]) -> str:
    """One markdown row of a dry-run JSON report (per-chip GiB)."""
    programs = report["programs"]
    step = programs[0]
    usable = report["chip"]["usable"]
    evals = programs[1:]
    worst = max(evals, key=lambda p: p["total"]) if evals else None
    config = os.path.basename(report["config"].split(":")[0]).removesuffix(".py") or "?"
    mesh = ", ".join(f"{k}={v}" for k, v in report["mesh"].items())
    seconds = step["step_seconds"]
    cells = [
        config,
        report["model"].rsplit("-", 1)[0],
        report["res"].split("x")[0],
        f"{report['topology']} = {report['chips']} chips ({mesh})",
        f"{report['batch_size']} ({report['accum_steps']})",
        _gib(step["args"].get("params", 0)),
        _gib(step["args"].get("opt_state", 0)),
        _gib(step["temp"]),
        f"{_gib(step['total'])} ({100 * step['total'] / usable:.0f}%)",
        "yes" if report["fits"] else "**no**",
        f"{_gib(worst['total'])} ({100 * worst['total'] / usable:.0f}%, {worst['name']})" if worst else "-",
        f"{seconds:.2f} s" if seconds else "-",
        f"{report['batch_size'] / seconds:.0f}" if seconds else "-",
        f"{100 * step['mfu']:.0f}%" if step["mfu"] else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def table(paths: Sequence[str]) -> str:
    """The markdown table of the JSON reports `paths` (files, or folders of `*.json`).

    Rows are sorted by config, model size and resolution.
    """
    files = []
    for path in paths:
        files += sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
    reports = [json.load(open(f)) for f in files if os.path.exists(f)]
    size = lambda r: float(r["params"])  # noqa: E731
    reports.sort(key=lambda r: (os.path.basename(r["config"].split(":")[0]), size(r), int(r["res"].split("x")[0])))
    return "\n".join([HEADER, "|" + "---|" * HEADER.count(" | ") + "---|", *map(row, reports)])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: runs or reads the dry runs and prints the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", help="JSON reports or folders of them")
    parser.add_argument("--run", action="append", default=[], help="config,model,res[,slice] to dry-run first")
    parser.add_argument("--out", default="dry_runs", help="folder for the --run reports")
    args = parser.parse_args(argv)
    paths = list(args.reports)
    if args.run:
        os.makedirs(args.out, exist_ok=True)
        for entry in args.run:
            parts = entry.split(",")
            if len(parts) not in (3, 4):
                parser.error(f"--run {entry!r}: expected config,model,res[,slice]")
            paths.append(run_one(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else None, args.out))
    if not paths:
        parser.error("give JSON reports / folders, or --run entries")
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
