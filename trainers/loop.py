"""The training loop: `train(config, workdir)` runs (or resumes) a run, one jitted step per batch.

Logs progress and metrics, runs the due evaluators, checkpoints, stops on NaN/Inf, a failed save, SIGTERM or SIGINT,
exports at the end (see `trainers.train` for what a run does, and its exit codes). Resumes from the newest checkpoint
that restores (damaged newer ones are set aside) and trims metrics.jsonl to the step it starts from.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax.core import FrozenDict

from paligemma import checkpoints, paths, quantization, sharding, tree
from paligemma import lora as lora_lib
from paligemma import model as model_lib
from paligemma.checkpoints import training
from paligemma.tree import plain
from trainers import config as config_lib
from trainers import logging_utils, prefetch
from trainers import step as step_lib
from trainers.data import TrainData, device_batches, resume_position
from trainers.distributed import any_process, to_host
from trainers.errors import (
    EXIT_CODE_OF_SIGNAL,
    EXIT_PREEMPTED,
    CheckpointFailed,
    TrainingDiverged,
    one_line,
)
from trainers.export import export_params
from trainers.setup import Setup
from trainers.state import State

log = logging.getLogger("trainers.train")  # every trainer module logs under the program's name


class _StopFlag:
    """Set by SIGTERM or SIGINT (Ctrl-C); installed only when running in the main thread.

    The loop then finishes its step, saves a checkpoint, waits until it is committed and stops. A second SIGINT
    aborts at once (KeyboardInterrupt; the previous committed checkpoint stays the latest).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self.time: float | None = None  # time.monotonic() of the first signal
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    @property
    def name(self) -> str:
        return "SIGINT (Ctrl-C)" if self.signum == signal.SIGINT else signal.Signals(self.signum or 15).name

    def _handle(self, signum, frame):
        del frame
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without saving
        if self.requested:
            return
        self.requested, self.signum, self.time = True, signum, time.monotonic()
        log.warning(
            "%s received: finishing the current step, then saving a checkpoint%s.",
            self.name,
            " (Ctrl-C again to abort without saving)" if signum == signal.SIGINT else "",
        )

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(plain(cfg), default=str))


class _Logger:
    """Checks each step's metrics (NaN/Inf stops the run) and logs them every log_training_steps."""

    def __init__(
        self,
        setup: Setup,
        writer: logging_utils.MetricsWriter,
        start: int,
        ckpt_dir: str,
        batches: prefetch.DevicePrefetcher | None,
        data: TrainData | None = None,
        last_good: Callable[[], int | None] = lambda: None,
    ):
        self.setup, self.writer, self.ckpt_dir, self.batches = setup, writer, ckpt_dir, batches
        self.total = setup.total_steps
        self.throughput = logging_utils.Throughput(start, self.total, setup.cfg.input.batch_size)
        self.start, self.data = start, data  # data: the run's TrainData (truncation counts)
        self.last_good = last_good  # the newest committed checkpoint's step (None: none)
        self.records: list[dict[str, Any]] = []
        self.host_syncs = 0  # cross-host exchanges of the step loop (preemption checks)
        self._wait = (time.perf_counter(), 0.0)  # (time, batches.wait_seconds) at the previous log point

    def check(self, step: int, metrics: Any) -> dict[str, float]:
        """Fetches the step's metrics; raises TrainingDiverged; returns the record to log (empty: none due)."""
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        state_finite = values.pop("state_finite", 1.0) == 1.0
        if values.pop("finite") != 1.0:
            what = "" if state_finite else " and non-finite updated parameters/optimizer state"
            raise TrainingDiverged(
                f"training loss {values['training_loss']}, gradient norm {values['grad_norm']}{what} at step {step}; "
                f"stopping without saving it. The last good checkpoint is step {self.last_good() or 'none'} in "
                f"{self.ckpt_dir}. Check the data of that step, lower config.lr or set config.grad_clip_norm."
            )
        if step % self.setup.cfg.log_training_steps and step != self.total:
            return {}
        examples_per_sec, eta = self.throughput.update(step)
        self.writer.print(logging_utils.progress_line(step, self.total, values, examples_per_sec, eta))
        if examples_per_sec is not None:
            values["examples_per_sec"] = examples_per_sec
        if self.batches is not None:  # the share of the interval the step loop spent waiting for input
            now, waited = time.perf_counter(), self.batches.wait_seconds
            values["input_wait_fraction"] = (waited - self._wait[1]) / max(now - self._wait[0], 1e-9)
            self._wait = (now, waited)
        if self.data is not None:  # texts cut to fit text_len in this run's batches up to `step` (this process)
            values.update(self.data.truncation(step - self.start, step))
        return values

    def evaluate(self, step: int, params: Any, names: Sequence[str], record: dict[str, float]) -> None:
        """Runs the evaluators `names`; adds `{name}/{metric}` to `record`."""
        for name in names:
            with jax.sharding.use_abstract_mesh(self.setup.mesh.abstract_mesh):  # batch-split activations
                metrics = self.setup.evaluators[name].run(params, step=step)
            record.update({f"{name}/{k}": v for k, v in metrics.items()})
            self.writer.print(
                f"step {step}/{self.total} | eval {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )

    def emit(self, step: int, record: dict[str, float]) -> None:
        if record:
            self.writer.write(step, record)
            self.records.append({"step": step, **record})


def _checked(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` with a failed checkpoint save as CheckpointFailed: one line, the error and the last good step."""
    try:
        return fn(*args)
    except training.CheckpointSaveError as e:
        raise CheckpointFailed(f"{one_line(e)} Free space or fix the storage, then rerun to resume.") from e


def _committed(ckpt: training.Checkpointer) -> int | None:
    """The newest committed checkpoint's step, once a pending save has ended (a failed one does not count)."""
    try:
        return ckpt.wait()
    except training.CheckpointSaveError:
        return ckpt.committed


def _describe_inputs(setup: Setup, data: TrainData) -> list[str]:
    """The run's first lines: its data source and pp, its tokenizer and the model's vocabulary."""
    lines = [f"Data: {data.describe}; pp: {setup.cfg.input.pp}"]
    if setup.tokenizer_path is not None:
        vocab = setup.shapes["llm"]["embedder"]["input_embedding"].shape[0]
        why = " (the tokenizer's size: trained from scratch, config.model.llm.vocab_size unset)"
        lines.append(
            f"Tokenizer: {setup.tokenizer_path}; model vocabulary {vocab:,}{why if setup.vocab_from_tokenizer else ''}"
        )
    return lines


def _trainable_line(state: State, opt_state: Any) -> str:
    """What trains and what it costs: trainable parameters and optimizer state, in entries and bytes."""
    trainable = [state.flat_shapes[n] for n in state.trainable]
    frozen = [s for n, s in state.flat_shapes.items() if n not in state.trainable]
    n_train = sum(int(s.size) for s in trainable)
    train_bytes, opt_bytes, frozen_bytes = map(quantization.weight_bytes, (trainable, opt_state, frozen))
    what = f"LoRA rank {state.lora.rank} adapters" if state.lora else "parameters"
    return (
        f"Trainable: {n_train:,} {what} ({_size(train_bytes)}), optimizer state {_size(opt_bytes)}; frozen: "
        f"{len(state.flat_shapes) - len(state.trainable)} arrays ({_size(frozen_bytes)})."
    )


def _size(num_bytes: float) -> str:
    """Bytes as a short human figure: "512 B", "3.2 KiB", "1.5 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:,.0f} {unit}" if unit == "B" else f"{num_bytes:,.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def _record_lora_base(setup: Setup, state: State, params: Any, workdir: str) -> None:
    """Names the base a LoRA run's adapters apply to: `model_init`, or its random base written to the workdir."""
    base = setup.init_path
    if base is None:  # a random base: kept once (checkpoints hold only the adapters)
        base = paths.join(workdir, "lora_base.npz")
        flat = tree.flatten(params)
        # (A QLoRA base is written dequantized: quantizing it again when it is read gives the same weights.)
        host = {n: to_host(lora_lib.dequantized(flat[n])) for n in flat if not lora_lib.is_adapter(n)}
        if jax.process_index() == 0:
            checkpoints.save_npz(base, tree.unflatten(host))
    if jax.process_index() == 0:
        training.write_lora_base(workdir, base)


def _run(setup: Setup, workdir: str, writer: logging_utils.MetricsWriter, stop: _StopFlag) -> dict[str, Any]:
    cfg, mesh, total = setup.cfg, setup.mesh, setup.total_steps
    state = State(setup)
    ckpt = training.Checkpointer(workdir, keep=cfg.keep_ckpts)
    init_rng, train_rng = jax.random.split(jax.random.key(cfg.seed))
    rng_data = np.asarray(jax.random.key_data(train_rng))
    # The newest checkpoint that restores (damaged newer ones are set aside, one line each).
    resumed = state.resume(ckpt, setup.shapes, writer.print)
    start, position = (resumed[0], resume_position(resumed[3], setup)) if resumed else (0, 0)
    writer.truncate_after(start)  # records a killed run logged after its last checkpoint (all, when none)
    data = TrainData(setup, position)
    first_batch = data.first_batch() if start < total else None  # checks the pipeline before compiling
    for line in _describe_inputs(setup, data):
        writer.print(line)
    if resumed and start >= total:
        params, opt_state = resumed[1], resumed[2]
        writer.print(
            f"Run already finished at step {start}/{total} (checkpoint {paths.join(ckpt.directory, str(start))}); "
            + (
                "nothing to train; exporting its params as config.export_npz asks."
                if cfg.export_npz
                else "nothing to do."
            )
        )
    elif resumed:
        params, opt_state = resumed[1], resumed[2]
        writer.print(f"Resuming from step {start}/{total} ({ckpt.directory}, data position {position}).")
    else:
        params, opt_state = state.initial(setup, init_rng)
        if setup.lora:
            _record_lora_base(setup, state, params, workdir)
    if resumed and setup.lora:  # the checkpoint holds the adapters; the frozen base is read from where it points
        params = state.with_base(params, setup, training.lora_base(workdir), init_rng)
    if start < total:
        writer.print(
            f"Training {model_lib.count_params(setup.shapes):,} params on mesh "
            f"{dict(mesh.shape)} ({jax.process_count()} processes), batch {cfg.input.batch_size}, {total} steps; "
            f"workdir {workdir}"
        )
        writer.print(_trainable_line(state, opt_state))
    if cfg.log_sharding or (cfg.log_sharding is None and mesh.size > 1):
        log.info("Parameter sharding:\n%s", "\n".join(sharding.describe(setup.specs, setup.shapes)))
    batches = device_batches(data, first_batch, mesh, cfg.input.device_prefetch) if start < total else None
    train_step = state.train_step()
    logger = _Logger(setup, writer, start, ckpt.directory, batches, data, lambda: _committed(ckpt))

    done, pending, preempted, export = start, None, False, None

    def _meta(step: int, data_position: int) -> dict[str, Any]:
        return dict(
            step=step,
            data_position=data_position,
            data_shards=setup.data_shards,
            rng=rng_data.tolist(),
            total_steps=total,
        )

    try:
        while done < total:
            try:
                batch, position = next(batches)
            except step_lib.LossPositionsError:  # the steps done so far are kept: raise the bound and rerun
                # Alone, save them now; a save is collective, and the other processes of a multi-process run have
                # not met the batch.
                if done > start and done % cfg.ckpt_steps != 0 and jax.process_count() == 1:
                    _checked(ckpt.save, done, state.to_save(params), opt_state, _meta(done, position))
                    _checked(ckpt.wait)
                    writer.print(f"Saved step {done} before stopping (data position {position}).")
                raise
            params, opt_state, metrics = train_step(params, opt_state, batch, np.int32(done), rng_data)
            done += 1
            _checked(ckpt.poll)  # a failed async save stops the run now, not at the next save
            if pending is not None:  # checked one step late, so that the host does not stall the device
                logger.emit(pending[0], logger.check(*pending))
            pending = (done, metrics)
            # Processes agree on a SIGTERM every preemption_check_steps steps (a cross-host exchange); alone, each step.
            if done < total and (jax.process_count() == 1 or done % cfg.preemption_check_steps == 0):
                preempted = any_process(stop.requested)
                logger.host_syncs += jax.process_count() > 1
            due_evals = [name for name, ev in setup.evaluators.items() if ev.should_run(done, total)]
            save = done % cfg.ckpt_steps == 0 or done == total or preempted
            if save or due_evals:
                record = logger.check(*pending)
                pending = None
                logger.evaluate(done, params, due_evals, record)
                logger.emit(done, record)
            if save:
                _checked(
                    ckpt.save,
                    done,
                    state.to_save(params),
                    opt_state,
                    _meta(done, position),
                )
            if preempted:
                _checked(ckpt.wait)  # the line below is true when printed: the checkpoint is committed
                writer.print(
                    f"Stopped by {stop.name} after step {done}/{total}; its checkpoint is committed in "
                    f"{ckpt.directory} ({time.monotonic() - stop.time:.1f}s after the signal). Rerun the same "
                    f"command to resume."
                )
                break
        if done == total:
            _checked(ckpt.wait)  # the final checkpoint is committed before the export and the report
            export = export_params(state.plain_params(params), cfg, workdir)
    except BaseException:
        if batches is not None:
            batches.close()
        try:
            ckpt.close()  # a pending save still completes (or fails: the error in flight is the one reported)
        except training.CheckpointSaveError as e:
            log.warning("%s", one_line(e))
        raise
    if batches is not None:
        batches.close()
    _checked(ckpt.close)
    if batches is not None and done > start:
        writer.print(
            f"Input: the step loop waited {batches.wait_seconds:.1f}s for batches in {done - start} steps; "
            f"{logger.host_syncs} cross-host preemption checks."
        )
    return dict(
        step=done,
        total_steps=total,
        start_step=start,
        records=logger.records,
        preempted=preempted,
        signal=stop.signum if preempted else None,
        exit_code=EXIT_CODE_OF_SIGNAL.get(stop.signum, EXIT_PREEMPTED) if preempted else 0,
        checkpoint_step=ckpt.committed,
        export=export,
        input_wait_seconds=batches and batches.wait_seconds,
        host_syncs=logger.host_syncs,
    )


def train(
    config: Any, workdir: str, *, devices: Sequence[Any] | None = None, compiler_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the run `config` in `workdir`. All processes call it.

    Args:
      config: a run config (ConfigDict or dict; see trainers.config).
      workdir: the run's folder (local or a tf.io.gfile URL such as gs://...).
      devices: the devices of the mesh (default: all of `jax.devices()`).
      compiler_options: XLA options for the run's jitted functions (e.g. `{"xla_backend_optimization_level": 0}`
        compiles several times faster on CPU, for tests and smoke runs).

    Returns:
      dict(step=the last completed step, total_steps=..., start_step=the step resumed from (0: fresh),
      records=[the metrics.jsonl records written by this call], preempted=True when stopped by SIGTERM or SIGINT
      (after its checkpoint committed), signal=that signal's number or None, exit_code=the CLI's exit status (0; 143
      after SIGTERM, 130 after SIGINT), checkpoint_step=the newest committed checkpoint's step, export=path of the
      exported .npz or None).

    Raises:
      ConfigError: the config cannot run (raised before anything compiles).
      TrainingDiverged: NaN/Inf loss, gradient norm, updated params or optimizer state (that step is never saved;
        the last good checkpoint is kept).
      CheckpointFailed: a checkpoint save failed (full disk, permissions, storage error; raised at the first step
        after the failure, naming the last committed step), or checkpoints exist but none restores.
    """
    cfg = config_lib.resolve(config)
    paths.makedirs(workdir)
    setup = Setup(cfg, workdir, devices)
    # Hashable (a key of the compiled programs' caches); jax.jit takes any mapping.
    setup.compiler_options = None if compiler_options is None else FrozenDict(compiler_options)
    is_main = jax.process_index() == 0
    if is_main:
        logging_utils.write_json(os.path.join(workdir, "config.json"), _jsonable(cfg))
    writer = logging_utils.MetricsWriter(workdir, enabled=is_main)
    try:
        with _StopFlag() as stop:
            return _run(setup, workdir, writer, stop)
    finally:
        writer.close()
