"""Training logs: progress lines on stdout, `{workdir}/metrics.jsonl` and TensorBoard events.

Files are local or on gs:// (through `paligemma.paths`).

Only the writer of process 0 writes anything (`MetricsWriter(..., enabled=jax.process_index() == 0)`).
metrics.jsonl holds one JSON object per logged step: `{"step": 100, "training_loss": ..., "lr": ..., "grad_norm":
..., "examples_per_sec": ..., "val/perplexity": ...}` (eval metrics as `{evalname}/{metric}`).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from paligemma import paths

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON (non-JSON values as their str), atomically, locally or to gs://."""
    paths.write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def format_duration(seconds: float) -> str:
    """Seconds -> "H:MM:SS" ("?" when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def progress_line(
    step: int, total: int, metrics: Mapping[str, float], examples_per_sec: float | None, eta_seconds: float | None
) -> str:
    """`step 10/100 (10.0%) | loss 2.3456 | lr 1.00e-05 | grad_norm 1.234 | 12.3 ex/s | ETA 0:01:23`."""
    parts = [
        f"step {step}/{total} ({100.0 * step / max(total, 1):.1f}%)",
        f"loss {metrics['training_loss']:.4f}",
        f"lr {metrics['lr']:.3g}",
        f"grad_norm {metrics['grad_norm']:.4g}",
    ]
    if examples_per_sec is not None:
        parts.append(f"{examples_per_sec:.1f} ex/s")
    if eta_seconds is not None:
        parts.append(f"ETA {format_duration(eta_seconds)}")
    return " | ".join(parts)


class MetricsWriter:
    """Writes metrics.jsonl, TensorBoard scalars and progress lines (no-ops when `enabled` is False)."""

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self.path = paths.join(workdir, METRICS_FILE)
        self._tb = None
        # TensorBoard events for a gs:// workdir are written by TensorFlow to a local folder and uploaded through
        # the path layer after each flush (TensorFlow's own GCS client cannot reach an emulator).
        self._tb_remote = paths.join(workdir, TENSORBOARD_DIR) if paths.is_remote(workdir) else None
        self._tb_local = None
        if enabled and tensorboard:
            try:
                # TensorFlow is optional here and ~6 s to import: only a process that writes TensorBoard events loads
                # it (the train step's import path stays free of it).
                import tensorflow as tf

                if self._tb_remote is not None:
                    self._tb_local = tempfile.TemporaryDirectory(prefix="tensorboard_")
                self._tb = tf.summary.create_file_writer(
                    self._tb_local.name if self._tb_local else os.path.join(workdir, TENSORBOARD_DIR)
                )
            except ImportError:
                log.warning("TensorFlow is not installed: no TensorBoard events (metrics.jsonl is still written).")

    def truncate_after(self, step: int) -> None:
        """Drops records of steps > `step` (logged by a run that died before its next checkpoint)."""
        if not self.enabled or not paths.exists(self.path):
            return
        lines = paths.read_text(self.path).splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if isinstance(record, dict) and int(record.get("step", 0)) <= step:
                kept.append(line)
        if len(kept) != len(lines):
            paths.write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Appends one JSON line `{"step": step, **metrics}` and the TensorBoard scalars."""
        if not self.enabled or not metrics:
            return
        record = {"step": int(step), **{k: _number(v) for k, v in metrics.items()}}
        paths.append_text(self.path, json.dumps(record) + "\n")
        if self._tb is not None:
            self._write_tensorboard(step, record)

    def _write_tensorboard(self, step: int, record: Mapping[str, Any]) -> None:
        # tf.summary.write with the "scalars" plugin tag: TensorBoard shows these as scalars, and unlike
        # tf.summary.scalar it does not need the tensorboard package installed. (TensorFlow imported here for the
        # reason given in __init__.)
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        with self._tb.as_default():
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)):
                    tf.summary.write(
                        name, tf.constant(value, tf.float32), step=int(step), metadata=metadata.SerializeToString()
                    )
        self._tb.flush()
        self._upload_tensorboard()

    def _upload_tensorboard(self) -> None:
        """Copies the locally written event files of a gs:// workdir to `{workdir}/tensorboard/`."""
        if self._tb_local is None:
            return
        for name in sorted(os.listdir(self._tb_local.name)):
            paths.upload(os.path.join(self._tb_local.name, name), paths.join(self._tb_remote, name))

    def print(self, line: str) -> None:
        """A line on stdout (flushed, so that pipes see it at once)."""
        if self.enabled:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer (uploading its events for a gs:// workdir)."""
        if self._tb is not None:
            self._tb.close()
            self._upload_tensorboard()
            if self._tb_local is not None:
                self._tb_local.cleanup()
                self._tb_local = None


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class Throughput:
    """Examples/s and ETA from the time between log points (the first interval includes compilation)."""

    def __init__(self, start_step: int, total_steps: int, batch_size: int):
        self.total = total_steps
        self.batch_size = batch_size
        self._step = start_step
        self._time = time.monotonic()
        self._rate: float | None = None  # steps per second

    def update(self, step: int) -> tuple[float | None, float | None]:
        """(examples/s, ETA seconds) over the interval since the previous call."""
        now = time.monotonic()
        steps, seconds = step - self._step, now - self._time
        self._step, self._time = step, now
        if steps <= 0 or seconds <= 0:
            return None, None
        self._rate = steps / seconds
        return self._rate * self.batch_size, (self.total - step) / self._rate
