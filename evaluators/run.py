r"""Runs a config's evaluators on a checkpoint: `python -m evaluators.run`.

    python -m evaluators.run --config configs/transfer/vqav2.py --checkpoint ckpt/paligemma-3b-pt-224.npz \
        --workdir /tmp/eval_vqav2 --evals vqa_val --config.evals.vqa_val.batch_size=16
    python -m evaluators.run --config configs/transfer/vqav2.py --workdir /tmp/train_run   # trainer's latest params
    python -m evaluators.run --workdir /tmp/train_run --step 200   # that step, with the run's saved config
    python -m evaluators.run --workdir /tmp/train_run --quantize int8   # weight-only int8 (or int4) weights

The config (ml_collections, `path.py[:args]`, `--config.key=value` overrides) provides `config.model_name` /
`config.model` (the model config; without either it is read from the checkpoint), `config.tokenizer` (see
`datasets.tokenizers.resolve_tokenizer`) and `config.evals` (see `evaluators.common`). `--checkpoint` is a
big_vision `.npz`, a PyTorch-hub folder, a folder written by `paligemma.checkpoints.save`, or a training workdir (the
trainer's latest readable params, or `--step N`'s; `paligemma.checkpoints.training.load_any`); without it the params
come from `--workdir` as a training workdir. Without `--config`, a training workdir's saved run config
(`config.json`) is used. Every usage problem (missing paths, config, evaluators, step) is reported at once, before
anything is loaded.

Prints a progress line per evaluator (batches done/total, examples/s, ETA) and a table of metrics; writes
`{workdir}/eval_metrics.json` and each evaluator's predictions under `{workdir}/evals/`. With several devices the
batch is split over them (data parallel, params replicated) when every evaluator's batch size divides evenly.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags, logging

from datasets.tokenizers import resolve_tokenizer
from evaluators.common import build_evaluators
from paligemma import cli, host_memory, paths, quantization, sharding
from paligemma import model as model_lib
from paligemma.checkpoints import CheckpointError, training
from paligemma.errors import UserError
from paligemma.tokenizer import Tokenizer
from paligemma.tree import plain


def _define_flags():  # only when run as a program: importing this module defines no absl flags
    cli.define_config_flag("config", "Run config: path.py[:args].")
    flags.DEFINE_string("checkpoint", None, "Checkpoint: .npz, HF folder, own folder, or training workdir.")
    flags.DEFINE_string(
        "workdir",
        None,
        "Where predictions and eval_metrics.json go (default: the training workdir, or ./eval_<checkpoint name>).",
    )
    flags.DEFINE_string("evals", None, "Comma-separated evaluator names of config.evals (default: all).")
    flags.DEFINE_string("dtype", None, "Cast the params while loading: float32, bfloat16 or float16.")
    flags.DEFINE_integer(
        "step",
        None,
        "A training workdir's checkpoint step to evaluate (default: the latest readable); for a checkpoint file or "
        "folder, the step label of the output files.",
    )
    flags.DEFINE_string("quantize", None, "Weight-only quantized inference: int8 or int4 (paligemma.quantization).")
    flags.DEFINE_integer(
        "quantize_tile", None, "With --quantize: one scale per block of N weights (default: one per channel)."
    )


class RunError(UserError, ValueError):
    """A usage problem: what is missing and what to pass."""


# ----------------------------------------------------------------------------------------------------------
# Config and checkpoint.


def _get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(key, default)
    return config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)


def run_dir(path: str) -> str:
    """The training workdir of the step folder `path` (`{workdir}/checkpoints/{step}`), else `path` itself."""
    folder = training.step_folder(path)
    return folder[0] if folder is not None else path


def config_from_training_workdir(path: str | None) -> Any:
    """The run config a training workdir (or the workdir of a step folder) keeps in config.json, or None."""
    data = training.read_run_config(run_dir(path) if path else path)
    return None if data is None else ml_collections.ConfigDict(data)


def load_params(
    checkpoint: str | None, workdir: str | None, config: Any, dtype: str | None, step: int | None = None
) -> tuple[dict, Any, int | None, str]:
    """Returns `(model_config, params, step, source)`; see the module docstring for what `checkpoint` may be.

    The model config is the run config's (`config.model_name` / `config.model`), else the checkpoint's. `step`: a
    training workdir's step (default: the latest readable one); ignored for a checkpoint file or folder.
    """
    path = checkpoint or workdir
    if not path:
        raise RunError(
            "No checkpoint: pass --checkpoint PATH (.npz, HF folder, paligemma.checkpoints.save folder, or "
            "a training workdir), or --workdir of a training run."
        )
    if not paths.exists(path):
        raise RunError(
            f"--checkpoint {path!r} does not exist; pass an existing .npz file, checkpoint folder or training workdir."
        )
    try:
        model_cfg = training.model_config_from(config)
    except ValueError as e:
        raise RunError(str(e)) from None
    if training.is_checkpoint_path(path):
        step = None  # a label of the outputs only
    try:
        return training.load_any(path, model_config=model_cfg, dtype=dtype, step=step)
    except CheckpointError as e:
        if training.is_checkpoint_path(path):
            raise
        raise RunError(str(e)) from None  # a training workdir: what to pass instead


def check_inputs(
    config: Any,
    *,
    checkpoint: str | None,
    workdir: str | None,
    evals: list[str] | None,
    step: int | None,
    quantize: str | None = None,
    quantize_tile: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`(config, evals_cfg)`: the run config (a training workdir's saved one without `config`) and the evaluators.

    Raises:
      RunError: every problem found (missing checkpoint or workdir, no config, no or unknown evaluators, a step the
        training workdir does not have, bad --quantize / --quantize_tile), one `- ` line each, before anything is
        loaded.
    """
    problems = quantization.flag_problems(quantize, quantize_tile)
    path = checkpoint or workdir
    if not path:
        problems.append(
            "No checkpoint: pass --checkpoint PATH (.npz, HF folder, paligemma.checkpoints.save folder, or a "
            "training workdir), or --workdir of a training run."
        )
    elif checkpoint and not paths.exists(checkpoint):
        problems.append(
            f"--checkpoint {checkpoint!r} does not exist; pass an existing .npz file, checkpoint folder or training "
            "workdir."
        )
    elif not checkpoint and not paths.isdir(workdir):
        what = "is a file" if paths.exists(workdir) else "does not exist (no such folder)"
        problems.append(
            f"--workdir {workdir!r} {what}; pass the workdir of a training run, or --checkpoint PATH (then --workdir "
            "is where the outputs go)."
        )
    elif step is not None and paths.isdir(path) and not training.is_checkpoint_path(path):
        steps = training.checkpoint_steps(run_dir(path))
        if steps and step not in steps:
            problems.append(f"--step {step}: {path} has no checkpoint of that step; available steps: {steps}.")
    if config is None and path and paths.exists(path):
        config = config_from_training_workdir(path)
        if config is not None:
            logging.info("Using the run config saved in the training workdir %s.", path)
    evals_cfg: dict[str, Any] = {}
    if config is None:
        problems.append(
            "No config: pass --config path/to/config.py[:args] (it needs config.tokenizer and config.evals), or a "
            "training workdir that holds the run's config.json."
        )
    else:
        evals_cfg = plain(_get(config, "evals")) or {}
        if not evals_cfg:
            problems.append(
                "config.evals is empty: nothing to evaluate. Add dict(name=dict(type=..., data=..., pp=..., "
                "batch_size=...)) entries."
            )
        elif evals:
            unknown = [e for e in evals if e not in evals_cfg]
            if unknown:
                problems.append(f"--evals {unknown} not in config.evals; available: {sorted(evals_cfg)}")
            evals_cfg = {k: evals_cfg[k] for k in evals if k in evals_cfg}
    if problems:
        raise RunError(problems[0] if len(problems) == 1 else "\n".join(f"- {p}" for p in problems))
    return config, evals_cfg


# ----------------------------------------------------------------------------------------------------------
# Placement.


def make_placement(batch_sizes: list[int]):
    """`(put_params, put_batch, context)`: where the params and each batch go.

    Data parallel over all local devices when every batch size divides evenly over them, else everything on the
    default device. `context()` is the mesh context to evaluate in (the model then keeps its activations batch-split,
    as in training).
    """
    devices = jax.local_devices()
    n = len(devices)
    if n > 1 and batch_sizes and all(b % n == 0 for b in batch_sizes):
        mesh = sharding.make_mesh((("data", -1),), devices)
        replicated, split = sharding.replicated(mesh), sharding.batch_sharding(mesh)
        logging.info("Evaluating data parallel over %d devices.", n)
        return (
            lambda p: jax.device_put(p, replicated),
            lambda b: jax.tree.map(lambda x: jax.device_put(x, split), b),
            lambda: jax.sharding.use_abstract_mesh(mesh.abstract_mesh),
        )
    if n > 1:
        logging.info("Batch sizes %s do not divide over %d devices: evaluating on one device.", batch_sizes, n)
    return (lambda p: jax.device_put(p, devices[0]), lambda b: jax.tree.map(jnp.asarray, b), contextlib.nullcontext)


# ----------------------------------------------------------------------------------------------------------
# Output.


class Progress:
    """Prints `name: batch i/n, x ex/s, ETA m:ss` (in place on a terminal, at most every 5 s otherwise).

    Rates are measured from the first reported batch on, so compilation does not distort the ETA.
    """

    def __init__(self, stream=sys.stderr, every_s: float = 5.0):
        self.stream, self.every_s = stream, every_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._start: dict[str, tuple[float, int, int]] = {}
        self._last = 0.0

    def line(self, name: str, done: int, total: int, examples: int, now: float | None = None) -> str:
        """The progress text after `done` of `total` batches (`examples` real examples so far)."""
        now = time.time() if now is None else now
        t0, d0, e0 = self._start.setdefault(name, (now, done, examples))
        dt = now - t0
        rate = f"{(examples - e0) / dt:.1f}" if dt > 0 and examples > e0 else "?"
        if done > d0 and dt > 0:
            eta = int(round((total - done) * dt / (done - d0)))
            eta_text = f"{eta // 60}:{eta % 60:02d}"
        else:
            eta_text = "?"
        return f"{name}: batch {done}/{total}, {rate} ex/s, ETA {eta_text}"

    def __call__(self, name: str, done: int, total: int, examples: int) -> None:
        """Reports that `done` of `total` batches (`examples` real examples) of evaluator `name` are finished."""
        now = time.time()
        text = self.line(name, done, total, examples, now)
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
        elif done == total or now - self._last >= self.every_s:
            self.stream.write(text + "\n")
            self._last = now
        self.stream.flush()


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table `evaluator | metric | value`."""
    rows = [(name, k, f"{v:.6g}") for name, m in metrics.items() for k, v in m.items()]
    headers = ("evaluator", "metric", "value")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(headers), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows])


# ----------------------------------------------------------------------------------------------------------
# Main.


def evaluate(
    config: Any,
    *,
    checkpoint: str | None,
    workdir: str | None,
    evals: list[str] | None = None,
    dtype: str | None = None,
    step: int | None = None,
    progress=None,
    quantize: str | None = None,
    quantize_tile: int | None = None,
) -> dict:
    """Loads the params, builds and runs the evaluators; returns the content of `eval_metrics.json`.

    `quantize` ("int8" / "int4", optionally with a block size `quantize_tile`) evaluates the weight-only quantized
    model (`paligemma.quantization.quantize`).

    Raises:
      RunError: every usage problem at once (one `- ` line each), found before anything is loaded.
    """
    config, evals_cfg = check_inputs(
        config,
        checkpoint=checkpoint,
        workdir=workdir,
        evals=evals,
        step=step,
        quantize=quantize,
        quantize_tile=quantize_tile,
    )
    if workdir is None and checkpoint:
        if paths.isdir(checkpoint) and not training.is_checkpoint_path(checkpoint):
            workdir = run_dir(checkpoint)  # a training workdir (that of a step folder)
        else:
            base = os.path.splitext(os.path.basename(os.path.normpath(checkpoint.split("://")[-1])))[0]
            workdir = os.path.join(os.getcwd(), f"eval_{base}")
    model_cfg, params, ckpt_step, source = load_params(checkpoint, workdir, config, dtype, step)
    step = step if step is not None else ckpt_step
    tokenizer_path = resolve_tokenizer(_get(config, "tokenizer"), workdir)
    tok = Tokenizer(tokenizer_path)
    try:
        tok.check_fits(model_cfg["llm"].get("vocab_size"), "use the tokenizer the checkpoint was trained with.")
    except ValueError as e:
        raise RunError(str(e)) from None
    model = model_lib.Model(**model_cfg)
    if quantize:
        try:
            model, params = quantization.quantize(model, params, quantize, quantize_tile)
        except ValueError as e:
            raise RunError(f"--quantize {quantize}: {e}") from None
        logging.info("Weights quantized to %s: %d bytes.", quantize, quantization.weight_bytes(params))
    batch_sizes = [int(_get(c, "batch_size") or 0) // jax.process_count() for c in evals_cfg.values()]
    put_params, put_batch, mesh_context = make_placement(batch_sizes)
    params = put_params(params)
    evaluators = build_evaluators(
        evals_cfg, model=model, tokenizer_path=tokenizer_path, workdir=workdir, put_batch=put_batch
    )
    result = dict(checkpoint=source, step=step, workdir=workdir, metrics={}, files={}, seconds={})
    if quantize:
        result["quantize"] = dict(qtype=quantize, tile_size=quantize_tile)
    for name, ev in evaluators.items():
        with mesh_context():
            result["metrics"][name] = ev.run(params, step=step, progress=progress)
        result["files"][name] = ev.last.files if ev.last else {}
        result["seconds"][name] = round(ev.last.seconds, 3) if ev.last else None
    if jax.process_index() == 0:
        paths.makedirs(workdir)
        paths.write_text(paths.join(workdir, "eval_metrics.json"), json.dumps(result, indent=2))
    return result


# The keys this program reads, besides those the config file sets (`--config.KEY=VALUE` may set these too).
SCHEMA = dict(model_name=None, model=None, tokenizer=None, evals={})
OPEN_KEYS = ("model", "evals")


def load_config(flag: cli.ConfigFlag, checkpoint: str | None, workdir: str | None) -> Any:
    """The `--config` file (or, without one, the training workdir's saved config) with the flag's overrides."""
    base = None
    if flag.spec is None and flag.overrides:
        base = config_from_training_workdir(checkpoint or workdir)
        if base is None:
            raise RunError(
                f"--config.{flag.overrides[0][0]} given without --config FILE and no training workdir's config.json "
                "to apply it to; pass --config path/to/config.py."
            )
    config = flag.load(base, schema=SCHEMA, open_keys=OPEN_KEYS)
    return None if config is None else ml_collections.ConfigDict(config, type_safe=False)


def main(argv: list[str]) -> int:
    """Runs the evaluators the flags name; returns the exit status (2 after a usage problem, printed as `error:`)."""
    return cli.run_main(_main, argv)


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise RunError(f"unexpected arguments: {argv[1:]} (overrides are --config.KEY=VALUE).")
    f = flags.FLAGS
    evals = [e.strip() for e in f.evals.split(",") if e.strip()] if f.evals else None
    config = load_config(cli.config_flag("config"), f.checkpoint, f.workdir)
    try:
        result = evaluate(
            config,
            checkpoint=f.checkpoint,
            workdir=f.workdir,
            evals=evals,
            dtype=f.dtype,
            step=f.step,
            progress=Progress(),
            quantize=f.quantize,
            quantize_tile=f.quantize_tile,
        )
    except KeyError as e:  # a key missing from a config or checkpoint file
        raise RunError(f"missing key {e.args[0] if e.args else e}") from e
    print(format_table(result["metrics"]))
    print(f"Wrote {paths.join(result['workdir'], 'eval_metrics.json')}")
    return 0


if __name__ == "__main__":
    host_memory.reexec_with_huge_pages()
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
