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

This module and `evaluators.tasks` do not import TensorFlow at import time (only building the input pipeline does).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "build_evaluators",
    "Evaluator",
    "EvalConfigError",
    "register_evaluator",
    "known_types",
    "gather_records",
    "local_rows",
    "as_text",
    "as_text_list",
    "as_scalar",
    "COMMON_KEYS",
    "MASK_KEY",
]

MASK_KEY = "_mask"
COMMON_KEYS: dict[str, Any] = dict(
    type=None, data=None, pp=None, batch_size=None, log_steps=None, log_percent=None, skip_first=False, pred_file=True
)
_REQUIRED = ("type", "data", "pp", "batch_size")

ProgressFn = Callable[[str, int, int, int], None]  # (evaluator name, batches done, batches total, examples done)

EVALUATOR_TYPES: dict[str, type[Evaluator]] = {}


class EvalConfigError(ValueError):
    """A bad `config.evals` entry (unknown type or key, missing or invalid value)."""


def register_evaluator(name: str) -> Callable[[type], type]:
    """Class decorator: makes an `Evaluator` subclass available as `type=name` in eval configs."""

    def wrap(cls):
        cls.TYPE = name
        EVALUATOR_TYPES[name] = cls
        return cls

    return wrap


def known_types() -> list[str]:
    """The evaluator type names `build_evaluators` accepts."""
    _load_types()
    return sorted(EVALUATOR_TYPES)


def _load_types() -> None:
    from evaluators import tasks  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (registers types)


def _as_dict(config: Any, what: str) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise EvalConfigError(f"{what} must be a dict or ConfigDict, got {type(config).__name__}")


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
    _load_types()
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


# ----------------------------------------------------------------------------------------------------------
# Host-side field helpers (batches come from tf.data as numpy: strings are bytes / object arrays).


def as_text(value: Any) -> str:
    """A scalar string field (bytes, str, 0-d array) as str."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"expected a scalar string field, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def as_text_list(value: Any) -> list[str]:
    """A list-of-strings field (e.g. answers) as `list[str]`.

    Accepts a `[N]` array of bytes, a scalar string (one item; or a JSON list, as JSONL stores nested values), or a
    list. Empty strings are dropped: they are the padding of variable-length lists.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, str)):
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed if str(v)]
        return [text] if text else []
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    return [t for t in (as_text(v) for v in items) if t]


def as_scalar(value: Any) -> Any:
    """A scalar id-like field as a JSON-friendly Python value (int, float or str)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value


def local_rows(x: Any, n_local: int) -> np.ndarray:
    """The rows of output `x` (leading axis = global batch) that belong to this process, as numpy `[n_local, ...]`.

    A global array that is not fully addressable is gathered with `multihost_utils.process_allgather`; process i's
    rows are then `[i * n_local, (i + 1) * n_local)`, the layout `put_batch` builds with
    `jax.make_array_from_process_local_data`.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

        full = np.asarray(multihost_utils.process_allgather(x, tiled=True))
        count, index = jax.process_count(), jax.process_index()
        if full.shape[0] != n_local * count:
            raise ValueError(
                f"an evaluator output has {full.shape[0]} rows; expected {n_local} per process x "
                f"{count} processes (does put_batch concatenate the per-process batches?)"
            )
        return full[index * n_local : (index + 1) * n_local]
    arr = np.asarray(x)
    if arr.shape[0] != n_local:
        raise ValueError(f"an evaluator output has {arr.shape[0]} rows; expected this process's {n_local}")
    return arr


def gather_records(records: Any) -> list[Any]:
    """All processes' JSON-serialisable values, in process order (one process: `[records]`).

    Values travel as UTF-8 JSON bytes through `multihost_utils.process_allgather` (lengths first, then the padded
    bytes). Every process must call this the same number of times.
    """
    if jax.process_count() == 1:
        return [records]
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    blob = np.frombuffer(json.dumps(records).encode("utf-8"), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([blob.size], np.int64))).reshape(-1)
    padded = np.zeros([int(sizes.max())], np.uint8)
    padded[: blob.size] = blob
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[: int(n)]).decode("utf-8")) for row, n in zip(rows, sizes)]


# ----------------------------------------------------------------------------------------------------------
# Evaluator base class.


def _atomic_write_text(path: str, text: str) -> None:
    from paligemma import paths  # pylint: disable=g-import-not-at-top

    paths.write_text(path, text)  # local or gs://


@dataclasses.dataclass
class RunResult:
    """What the last `Evaluator.run` produced: metrics, all records (split order) and the files written."""

    metrics: dict[str, float]
    records: list[dict]
    files: dict[str, str]
    seconds: float


class Evaluator:
    """Base class. Subclasses set `KEYS` (their config keys and defaults), `MODEL_KEYS` (batch fields the model
    reads) and implement `_predict` (jitted model call -> per-row numpy outputs), `_records` (one JSON dict per real
    example) and `_metrics` (records of the whole split -> metrics).
    """

    TYPE = ""
    KEYS: dict[str, Any] = {}
    MODEL_KEYS: tuple[str, ...] = ("image", "text", "mask_ar", "mask_input")
    HOST_KEYS: tuple[str, ...] = ()  # config keys naming batch fields the evaluator reads on the host

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        model: Any,
        tokenizer_path: str | None,
        workdir: str | None = None,
        put_batch: Callable[[dict], dict] | None = None,
    ):
        self.name = name
        self.model = model
        self.tokenizer_path = tokenizer_path
        self.workdir = workdir
        self.put_batch = put_batch or (lambda b: jax.tree.map(jnp.asarray, b))
        self.config = self._parse_config(dict(config))
        self._iterator = None
        self._tokenizer = None
        self.last: RunResult | None = None

    # --- Configuration. ---

    def _parse_config(self, cfg: dict) -> dict:
        known = {**COMMON_KEYS, **self.KEYS}
        self._explicit = set(cfg)
        unknown = sorted(set(cfg) - set(known))
        where = f"config.evals[{self.name!r}] (type {self.TYPE!r})"
        if unknown:
            raise EvalConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        missing = [k for k in _REQUIRED if cfg.get(k) is None]
        if missing:
            raise EvalConfigError(f"{where}: missing required key(s) {missing}")
        out = {**known, **cfg}
        bs = out["batch_size"]
        if isinstance(bs, bool) or not isinstance(bs, int) or bs <= 0:
            raise EvalConfigError(f"{where}: batch_size must be a positive int, got {bs!r}")
        if out["log_steps"] is not None and out["log_percent"] is not None:
            raise EvalConfigError(f"{where}: give log_steps or log_percent, not both")
        if out["log_steps"] is not None and (not isinstance(out["log_steps"], int) or out["log_steps"] <= 0):
            raise EvalConfigError(f"{where}: log_steps must be a positive int, got {out['log_steps']!r}")
        if out["log_percent"] is not None and not 0 < float(out["log_percent"]) <= 1:
            raise EvalConfigError(
                f"{where}: log_percent is a fraction of the run in (0, 1] (0.1 = every 10%), got {out['log_percent']!r}"
            )
        if not isinstance(out["pp"], str):
            raise EvalConfigError(f"{where}: pp must be a pp string, got {type(out['pp']).__name__}")
        self._check_config(out, where)
        return out

    def _check_config(self, cfg: dict, where: str) -> None:
        """Type-specific validation (override)."""

    # --- Scheduling. ---

    def should_run(self, step: int, total_steps: int) -> bool:
        """Whether to evaluate after training step `step` (1-based) of `total_steps` (see the module docstring)."""
        if step == total_steps:
            return True
        period = self.config["log_steps"]
        if period is None and self.config["log_percent"] is not None:
            period = max(1, int(round(float(self.config["log_percent"]) * total_steps)))
        if period is None or step <= 0:
            return False
        if step == 1 and not self.config["skip_first"]:
            return True
        return step % period == 0

    # --- Data and tokenizer. ---

    @property
    def tokenizer(self):
        """The `paligemma.tokenizer.Tokenizer` of `tokenizer_path` (loaded once)."""
        if self._tokenizer is None:
            if not self.tokenizer_path:
                raise EvalConfigError(f"Evaluator {self.name!r} needs a tokenizer; pass tokenizer_path")
            from paligemma.tokenizer import Tokenizer  # pylint: disable=g-import-not-at-top

            self._tokenizer = Tokenizer(self.tokenizer_path)
        return self._tokenizer

    def per_process_batch_size(self) -> int:
        """The global `batch_size` divided by the number of processes."""
        bs, count = self.config["batch_size"], jax.process_count()
        if bs % count:
            raise EvalConfigError(
                f"config.evals[{self.name!r}]: batch_size {bs} is not divisible by the {count} processes"
            )
        return bs // count

    def iterator(self):
        """The (re-iterable) eval iterator of this process, built on first use (imports TensorFlow)."""
        if self._iterator is None:
            from datasets import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)

            self._iterator = pipeline.make_eval_iterator(
                self.config["data"],
                self.config["pp"],
                batch_size=self.per_process_batch_size(),
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                tokenizer=self.tokenizer_path,
            )
        return self._iterator

    def _field(self, batch: Mapping[str, Any], key: str) -> Any:
        if key not in batch:
            raise KeyError(
                f"Evaluator {self.name!r}: the batch has no field {key!r} (available: {sorted(batch)}); "
                f"keep it in the pp string (keep(..., {key!r})) or set the evaluator's *_key option"
            )
        return batch[key]

    def _optional_field(self, batch: Mapping[str, Any], option: str) -> Any:
        """The batch field named by config option `option` (e.g. "id_key"), or None when the option is None, or
        when the field is absent and the option was left at its default (a warning is logged once).
        """
        key = self.config.get(option)
        if key is None:
            return None
        if key in batch:
            return batch[key]
        if option in self._explicit:
            self._field(batch, key)  # raises with the available fields
        warned = self.__dict__.setdefault("_warned", set())
        if option not in warned:
            warned.add(option)
            log.warning(
                "Evaluator %s: no field %r in the batch (%s=%r by default); going without it. Set %s=None "
                "to silence this, or keep the field in the pp string.",
                self.name,
                key,
                option,
                key,
                option,
            )
        return None

    def _model_inputs(self, batch: Mapping[str, Any]) -> dict:
        missing = [k for k in self.MODEL_KEYS if k not in batch]
        if missing:
            raise KeyError(
                f"Evaluator {self.name!r} ({self.TYPE}): the batch lacks model input(s) {missing} "
                f"(available: {sorted(batch)}); the pp string must produce them (and keep them)"
            )
        return {k: np.asarray(batch[k]) for k in self.MODEL_KEYS}

    # --- Running. ---

    def run(self, params: Any, *, step: int | None = None, progress: ProgressFn | None = None) -> dict[str, float]:
        """Evaluates `params` on the whole split; returns `{metric: float}` (identical on every process).

        All processes must call it (the model runs on global arrays). `progress(name, batches_done, batches_total,
        examples_done)` is called after each batch. Process 0 writes the files when a workdir is set.
        """
        t0 = time.time()
        it = self.iterator()
        total = len(it)
        n_local = self.per_process_batch_size()
        records: list[dict] = []
        self._start_run(params)
        pending = None  # (index, batch, device outputs): host work on batch i overlaps the device's batch i + 1
        for index, batch in enumerate(it):
            mask = np.asarray(batch[MASK_KEY])
            if mask.shape != (n_local,):
                raise ValueError(f"Evaluator {self.name!r}: _mask has shape {mask.shape}, expected ({n_local},)")
            outputs = self._predict(params, self.put_batch(self._model_inputs(batch)), step=step, batch_index=index)
            if pending is not None:
                records.extend(self._finish_batch(*pending, n_local, total, records, progress))
            pending = (index, batch, outputs)
        if pending is not None:
            records.extend(self._finish_batch(*pending, n_local, total, records, progress))
        stats = it.stats
        per_process = gather_records(dict(records=records, truncated=int(stats.get("truncated", 0))))
        all_records = [r for p in per_process for r in p["records"]]
        truncated = sum(p["truncated"] for p in per_process)
        if truncated:
            log.warning(
                "Evaluator %s: the text was truncated in %d of %d examples (raise text_len in its pp string).",
                self.name,
                truncated,
                len(all_records),
            )
        metrics = {k: float(v) for k, v in self._metrics(all_records).items()}
        metrics["num_examples"] = float(len(all_records))
        files = self._write(all_records, metrics, step) if jax.process_index() == 0 else {}
        seconds = time.time() - t0
        self.last = RunResult(metrics=metrics, records=all_records, files=files, seconds=seconds)
        log.info("Evaluator %s: %d examples in %.1fs: %s", self.name, len(all_records), seconds, metrics)
        return metrics

    def _finish_batch(
        self,
        index: int,
        batch: Mapping[str, Any],
        outputs: Mapping[str, Any],
        n_local: int,
        total: int,
        done: list,
        progress: ProgressFn | None,
    ) -> list[dict]:
        """Records of the real (`_mask` = 1) rows of one batch, after its outputs came back to the host."""
        host = {k: local_rows(v, n_local) for k, v in outputs.items()}
        new = self._records(batch, host, np.nonzero(np.asarray(batch[MASK_KEY]).astype(bool))[0])
        if progress is not None:
            progress(self.name, index + 1, total, len(done) + len(new))
        return new

    def _start_run(self, params: Any) -> None:
        """Hook before the first batch of a run (e.g. load auxiliary models)."""

    def _predict(self, params: Any, inputs: dict, *, step: int | None, batch_index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _records(self, batch: Mapping[str, Any], outputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> list[dict]:
        raise NotImplementedError

    def _metrics(self, records: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    # --- Files. ---

    def _path(self, template: Any, default: str, step: int | None) -> str | None:
        if not self.workdir or template is False or template is None:
            return None
        template = default if template is True else str(template)
        filename = template.format(name=self.name, step="final" if step is None else step)
        from paligemma import paths  # pylint: disable=g-import-not-at-top

        return paths.join(self.workdir, "evals", filename)

    def _submission(self, records: list[dict]) -> Any:
        """The benchmark's submission JSON content, or None (override)."""
        return None

    def _write(self, records: list[dict], metrics: dict[str, float], step: int | None) -> dict[str, str]:
        files = {}
        path = self._path(self.config["pred_file"], "{name}_predictions_step{step}.jsonl", step)
        if path:
            _atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            files["predictions"] = path
        submission = self._submission(records)
        path = self._path(self.config.get("submission_file", False), "{name}_submission_step{step}.json", step)
        if path and submission is not None:
            _atomic_write_text(path, json.dumps(submission, ensure_ascii=False))
            files["submission"] = path
        path = self._path(True, "{name}_metrics_step{step}.json", step)
        if path:
            _atomic_write_text(
                path, json.dumps(dict(evaluator=self.name, type=self.TYPE, step=step, metrics=metrics), indent=2)
            )
            files["metrics"] = path
        return files


class GenerativeEvaluator(Evaluator):
    """Base of the evaluators that decode text with `paligemma.decode.generate`."""

    KEYS = dict(max_decode_len=32, sampler="greedy", seed=0)

    def _check_config(self, cfg: dict, where: str) -> None:
        mdl = cfg["max_decode_len"]
        if isinstance(mdl, bool) or not isinstance(mdl, int) or mdl < 1:
            raise EvalConfigError(f"{where}: max_decode_len must be an int >= 1, got {mdl!r}")
        from paligemma import decode  # pylint: disable=g-import-not-at-top

        try:
            decode.parse_sampler(cfg["sampler"])
        except ValueError as e:
            raise EvalConfigError(f"{where}: bad sampler {cfg['sampler']!r}: {e}") from e

    def _rng(self, step: int | None, batch_index: int) -> jax.Array:
        key = jax.random.key(int(self.config["seed"]))
        return jax.random.fold_in(jax.random.fold_in(key, step or 0), batch_index)

    def _predict(self, params: Any, inputs: dict, *, step: int | None, batch_index: int) -> dict[str, Any]:
        from paligemma import decode  # pylint: disable=g-import-not-at-top

        out = decode.generate(
            self.model,
            params,
            inputs,
            max_decode_len=self.config["max_decode_len"],
            eos_id=self.tokenizer.eos_id,
            sampler=self.config["sampler"],
            rng=self._rng(step, batch_index),
            pad_id=max(self.tokenizer.pad_id, 0),
        )
        return {"tokens": out["tokens"], "lengths": out["lengths"]}

    def texts(self, outputs: Mapping[str, np.ndarray], rows: Iterable[int]) -> list[str]:
        """Decoded generated texts (stripped) of `rows`."""
        from paligemma import decode  # pylint: disable=g-import-not-at-top

        rows = list(rows)
        if not rows:
            return []
        texts = decode.decode_texts(self.tokenizer, outputs["tokens"][rows], outputs["lengths"][rows])
        return [t.strip() for t in texts]


def mean(values: Sequence[float]) -> float:
    """Mean of a possibly empty sequence (0.0 when empty)."""
    return float(sum(values) / len(values)) if len(values) else 0.0


def safe_metric_name(text: str) -> str:
    """A metric-name-friendly version of `text` ("yes/no" -> "yes_no")."""
    return re.sub(r"[^A-Za-z0-9_.@]+", "_", text).strip("_") or "none"
