"""Evaluator base classes: `Evaluator` and `GenerativeEvaluator`, and `RunResult` (what a run produced).

`Evaluator` holds what every type shares: config keys, the schedule, the input iterator, the run loop and the files
it writes; `GenerativeEvaluator` decodes text with `paligemma.decode.generate`. The evaluator types
(`evaluators.tasks`) subclass them; `evaluators.common.build_evaluators` builds them from `config.evals` (see that
module for the config keys and the mechanics shared by every type).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evaluators.hosts import gather_records, local_rows
from evaluators.registry import EvalConfigError
from paligemma import decode, paths
from paligemma.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = ["Evaluator", "GenerativeEvaluator", "RunResult", "COMMON_KEYS", "MASK_KEY", "ProgressFn"]

MASK_KEY = "_mask"
COMMON_KEYS: dict[str, Any] = dict(
    type=None, data=None, pp=None, batch_size=None, log_steps=None, log_percent=None, skip_first=False, pred_file=True
)
_REQUIRED = ("type", "data", "pp", "batch_size")

ProgressFn = Callable[[str, int, int, int], None]  # (evaluator name, batches done, batches total, examples done)


@dataclasses.dataclass
class RunResult:
    """What the last `Evaluator.run` produced: metrics, all records (split order) and the files written."""

    metrics: dict[str, float]
    records: list[dict]
    files: dict[str, str]
    seconds: float


class Evaluator:
    """Base class of the evaluator types.

    Subclasses set `KEYS` (their config keys and defaults), `MODEL_KEYS` (batch fields the model reads; also
    `OPTIONAL_MODEL_KEYS`, passed when the eval pp keeps them: "frame_mask" `[B, F]` with images `[B, F, H, W, 3]`)
    and implement `_predict` (jitted model call -> per-row numpy outputs), `_records` (one JSON dict per real example)
    and `_metrics` (records of the whole split -> metrics).
    """

    TYPE = ""
    KEYS: dict[str, Any] = {}
    MODEL_KEYS: tuple[str, ...] = ("image", "text", "mask_ar", "mask_input")
    OPTIONAL_MODEL_KEYS: tuple[str, ...] = ("frame_mask",)  # several frames per example, some of them padding
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
            # Imported here, not at the top: the input pipeline imports TensorFlow, which building evaluators and
            # `evaluators.run` / `tools.predict` must not (tests/evaluators: test_core_does_not_import_tensorflow).
            from datasets import pipeline

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
        """The batch field named by config option `option` (e.g. "id_key"), or None.

        None when the option is None, or when the field is absent and the option was left at its default (a warning
        is logged once).
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
        inputs = {k: np.asarray(batch[k]) for k in self.MODEL_KEYS + self.OPTIONAL_MODEL_KEYS if k in batch}
        if "frame_mask" in inputs:
            image, frame_mask = inputs["image"], inputs["frame_mask"]
            if image.ndim != 5 or frame_mask.shape != image.shape[:2]:
                raise ValueError(
                    f"Evaluator {self.name!r}: frame_mask {frame_mask.shape} must be [B, F] for the batch's image "
                    f"[B, F, H, W, 3], got image {image.shape}; the pp string's frames op writes both"
                )
        return inputs

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
        return paths.join(self.workdir, "evals", filename)

    def _submission(self, records: list[dict]) -> Any:
        """The benchmark's submission JSON content, or None (override)."""
        return None

    def _write(self, records: list[dict], metrics: dict[str, float], step: int | None) -> dict[str, str]:
        files = {}
        path = self._path(self.config["pred_file"], "{name}_predictions_step{step}.jsonl", step)
        if path:
            paths.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            files["predictions"] = path
        submission = self._submission(records)
        path = self._path(self.config.get("submission_file", False), "{name}_submission_step{step}.json", step)
        if path and submission is not None:
            paths.write_text(path, json.dumps(submission, ensure_ascii=False))
            files["submission"] = path
        path = self._path(True, "{name}_metrics_step{step}.json", step)
        if path:
            paths.write_text(
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
        try:
            decode.parse_sampler(cfg["sampler"])
        except ValueError as e:
            raise EvalConfigError(f"{where}: bad sampler {cfg['sampler']!r}: {e}") from e

    def _rng(self, step: int | None, batch_index: int) -> jax.Array:
        key = jax.random.key(int(self.config["seed"]))
        return jax.random.fold_in(jax.random.fold_in(key, step or 0), batch_index)

    def _predict(self, params: Any, inputs: dict, *, step: int | None, batch_index: int) -> dict[str, Any]:
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
        rows = list(rows)
        if not rows:
            return []
        texts = decode.decode_texts(self.tokenizer, outputs["tokens"][rows], outputs["lengths"][rows])
        return [t.strip() for t in texts]
