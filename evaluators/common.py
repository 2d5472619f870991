"""Evaluators run during training and by `python -m evaluators.run`: build them from `config.evals`.

    evaluators = build_evaluators(config.evals, model=model, tokenizer_path=tok_path, workdir=workdir,
                                  put_batch=put_batch)
    for name, ev in evaluators.items():
        if ev.should_run(step, total_steps):
            for metric, value in ev.run(params, step=step).items():
                log(f"{name}/{metric}", value)

Each entry of `config.evals` is a dict:

    dict(type="vqa",                                   # see EVALUATOR_TYPES / `known_types()`
         data=dict(name="jsonl", path="val.jsonl"),    # a datasets.sources config
         pp='decode|resize(224)|value_range(-1, 1)|strfmt("answer en {question}", outkey="prefix")'
            '|tok_paligemma_prompt(text_len=32)|keep("image", "text", "mask_ar", "mask_input", "answers", '
            '"question_id")',
         batch_size=64,                                # global: split evenly over the processes
         log_steps=1000,                               # or log_percent=0.1 (a fraction of the run); neither:
                                                       # only at the end. Always also at the final step.
         skip_first=False,                             # periodic evaluators also run at step 1 unless True
         pred_file=True,                               # predictions JSONL: True (default name), a file-name
                                                       # template with {name} and {step}, or False
         max_decode_len=16, sampler="greedy", ...)     # type-specific keys (below)

Mechanics shared by every type: the split is read with `datasets.pipeline.make_eval_iterator` (this process's block,
in order, padded batches with `_mask`); the model inputs of each batch go through `put_batch` (default:
`jnp.asarray`; the trainer passes one that builds global arrays sharded over its mesh) into a jitted function; the
rows of this process are brought back to the host (gathered with `multihost_utils.process_allgather` when the output
is a global array), padded rows are dropped, and one JSON record per example is made. The records of all processes
are gathered (`multihost_utils`, as JSON bytes; plain concatenation with one process), so every example counts
exactly once, in split order, and all processes return the same metrics. Process 0 writes, when a workdir is given,
`{workdir}/evals/{name}_predictions_step{step}.jsonl` (one record per example: prediction, ground truth, score),
`{name}_metrics_step{step}.json`, and for VQA/DocVQA the benchmark's submission JSON (`step` is "final" when None).

Steps: `should_run(step, total_steps)` counts completed training steps (1-based). It is True at `step ==
total_steps`; with `log_steps=N` (or `log_percent=f`, N = round(f * total_steps)) also when `step % N == 0` and at
step 1 (unless `skip_first`).

Modules: `evaluators.registry` (type names, EvalConfigError), `evaluators.base` (Evaluator, GenerativeEvaluator,
RunResult), `evaluators.hosts` (local_rows, gather_records), `evaluators.values` (as_text, as_text_list, as_scalar,
mean, safe_metric_name), `evaluators.tasks` and `evaluators.qa_tasks` (the types). This module builds evaluators
from `config.evals` and re-exports those names. None of them imports TensorFlow at import time (only building the
input pipeline does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from evaluators import qa_tasks, tasks  # noqa: F401  (registers the evaluator types)
from evaluators.base import COMMON_KEYS, MASK_KEY, Evaluator, GenerativeEvaluator, RunResult
from evaluators.hosts import gather_records, local_rows
from evaluators.registry import EVALUATOR_TYPES, EvalConfigError, register_evaluator
from evaluators.values import as_scalar, as_text, as_text_list, mean, safe_metric_name
from paligemma.tree import plain

__all__ = [
    "build_evaluators",
    "known_types",
    # Re-exported from their modules (evaluators.registry, .base, .hosts, .values):
    "EVALUATOR_TYPES",
    "EvalConfigError",
    "register_evaluator",
    "Evaluator",
    "GenerativeEvaluator",
    "RunResult",
    "COMMON_KEYS",
    "MASK_KEY",
    "gather_records",
    "local_rows",
    "as_text",
    "as_text_list",
    "as_scalar",
    "mean",
    "safe_metric_name",
]


def known_types() -> list[str]:
    """The evaluator type names `build_evaluators` accepts."""
    return sorted(EVALUATOR_TYPES)


def _as_dict(config: Any, what: str) -> dict:
    if not isinstance(config, Mapping) and not hasattr(config, "to_dict"):
        raise EvalConfigError(f"{what} must be a dict or ConfigDict, got {type(config).__name__}")
    return plain(config)


def build_evaluators(
    evals_config: Any,
    *,
    model: Any,
    tokenizer_path: str | None,
    workdir: str | None = None,
    put_batch: Callable[[dict], dict] | None = None,
) -> dict[str, Evaluator]:
    """Builds one `Evaluator` per entry of `evals_config` (`{name: dict(type=..., ...)}`; None or empty: none).

    Args:
      evals_config: `config.evals`, a dict / ConfigDict of eval configs (see the module docstring).
      model: the `paligemma.model.Model` to evaluate (its params are passed to `Evaluator.run`).
      tokenizer_path: the `.model` file (from `datasets.tokenizers.resolve_tokenizer`); used by the pp ops and to
        turn generated tokens into text.
      workdir: where process 0 writes predictions and metrics (None: nothing is written).
      put_batch: numpy batch dict (per process) -> dict of jax arrays (global arrays sharded over the trainer's
        mesh); default `jnp.asarray` on every leaf.

    Returns:
      `{name: Evaluator}` in config order.

    Raises:
      EvalConfigError: unknown type or key (the message lists the known ones), missing required keys, bad values.
    """
    if evals_config is None:
        return {}
    evals = _as_dict(evals_config, "config.evals")
    out = {}
    for name, cfg in evals.items():
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(name)):
            raise EvalConfigError(f"Evaluator name {name!r}: use letters, digits, '_', '-', '.' (it names files)")
        cfg = _as_dict(cfg, f"config.evals[{name!r}]")
        kind = cfg.get("type")
        if kind not in EVALUATOR_TYPES:
            raise EvalConfigError(
                f"config.evals[{name!r}]: unknown evaluator type {kind!r}; known types: {sorted(EVALUATOR_TYPES)}"
            )
        out[name] = EVALUATOR_TYPES[kind](
            name, cfg, model=model, tokenizer_path=tokenizer_path, workdir=workdir, put_batch=put_batch
        )
    return out
