r"""Trains PaliGemma from a run config on a device mesh; resumable, multi-host.

    python -m trainers.train --config configs/transfer/vqav2.py:res=224 --workdir /tmp/vqav2 \
        [--config.lr=3e-5 --config.total_steps=100 ...]

What a run does (see trainers/config.py for every config key and its default):
  * validates the config, the mesh, the batch split, the data source, `model_init` and the evaluators, and fails with
    one line (exit code 2) before anything compiles;
  * places the parameters on the mesh (`paligemma.sharding`: fsdp + tensor-parallel rules), from `model_init`
    (with `model_load.dont_load`, vocabulary extension and resolution change) or from a random init;
  * resumes from the workdir's newest checkpoint that restores (params, optimizer state, step, data position), so the
    resumed run sees exactly the batches an uninterrupted one would; a damaged newer one is moved to
    `{workdir}/checkpoints_damaged/` with one line saying why;
  * runs one jitted train step per batch (explicit in/out shardings, donated state); every `log_training_steps` it
    prints a progress line and appends to `{workdir}/metrics.jsonl` and TensorBoard (`{workdir}/tensorboard`);
  * runs `config.evals` when they are due (their metrics go to the same logs as `{name}/{metric}`);
  * checkpoints asynchronously every `ckpt_steps` and at the end (orbax, keep `keep_ckpts`); a failed save stops the
    run at once with one line naming the last committed checkpoint (exit code 3);
  * stops on a NaN/Inf loss, gradient norm, updated parameter or optimizer state with a message naming the step
    (exit code 1), without saving that step;
  * on SIGTERM (TPU VM preemption, `kill`) or Ctrl-C finishes the current step, saves a checkpoint of it, waits until
    it is committed, says so and exits with code 143 (130 for Ctrl-C); rerunning the same command resumes there;
  * at the end writes the params as an original-layout `.npz` when `export_npz` asks.

Multi-host: on a Cloud TPU VM slice `jax.distributed.initialize()` is called automatically (`--multihost=auto`);
`--multihost=on` calls it elsewhere (SLURM, ...), and `--coordinator_address/--num_processes/--process_id` set it up by
hand (e.g. several processes on one machine). Every process reads its own share of the data; process 0 writes the logs.

This module is the CLI (flags, exit codes) and re-exports `train`; the run itself lives in `trainers.distributed`
(multi-host set-up), `trainers.setup` (mesh, model, data source, evaluators: checked before compiling),
`trainers.params` (initial parameters), `trainers.state` (shardings, optimizer, the jitted train step),
`trainers.data` (the input), `trainers.loop` (`train()` and its loop) and `trainers.export` (the final `.npz`).
"""

from __future__ import annotations

import os

# Third-party INFO logs of TensorFlow's and libtpu's C++ code, off before anything imports them (a value already set
# wins). TensorFlow 2.21's oneDNN lines at import bypass TF_CPP_MIN_LOG_LEVEL and still print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TPU_MIN_LOG_LEVEL", "1")

import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from paligemma import cli, host_memory  # noqa: E402
from trainers import config as config_lib  # noqa: E402
from trainers import dry_run  # noqa: E402
from trainers.distributed import initialize_distributed  # noqa: E402
from trainers.errors import (  # noqa: E402
    EXIT_CONFIG_ERROR,
    EXIT_DIVERGED,
    EXIT_PREEMPTED,
    TrainingDiverged,
    one_line,
)
from trainers.loop import train  # noqa: E402

__all__ = [
    "EXIT_CONFIG_ERROR",
    "EXIT_DIVERGED",
    "EXIT_PREEMPTED",
    "TrainingDiverged",
    "initialize_distributed",
    "main",
    "train",
]


def _define_flags():
    cli.define_config_flag("config", "Run config file (get_config(arg)); path.py:arg passes arg.")
    flags.DEFINE_string("workdir", None, "Folder of the run (local or gs://...): checkpoints, logs, metrics.")
    flags.DEFINE_enum(
        "multihost",
        "auto",
        ["auto", "on", "off"],
        "jax.distributed.initialize(): auto = on Cloud TPU VMs or with the flags below.",
    )
    flags.DEFINE_string(
        "coordinator_address",
        os.environ.get("JAX_COORDINATOR_ADDRESS"),
        "host:port of process 0 (multi-process runs set up by hand).",
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
    flags.DEFINE_string(
        "dry_run",
        None,
        "Compile the run for a TPU topology (e.g. v5e:2x4 or v5e-8) on this host and "
        "print its per-chip memory, FLOPs and estimated step time; trains nothing (needs libtpu).",
    )
    flags.DEFINE_string("dry_run_json", None, "With --dry_run: also write the numbers to this JSON file.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: Sequence[str]) -> int:
    """CLI entry: returns the exit code.

    0 done, 1 diverged, 2 bad config or input, 3 a checkpoint save or restore failed, 130 stopped by Ctrl-C, 143
    stopped by SIGTERM.

    Expected failures (a bad config or override, a missing or damaged file, a read-only or full disk, a workdir that
    is a file) print one line (`paligemma.cli.run_main`); a bug keeps its traceback.
    """
    return cli.run_main(_main, argv)


def _main(argv: Sequence[str]) -> int:
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise config_lib.ConfigError(f"unexpected arguments: {argv[1:]} (overrides are --config.KEY=VALUE).")
    flag = cli.config_flag("config")
    config = config_lib.from_command_line(flag.spec, flag.overrides)
    initialize_distributed(FLAGS.multihost, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.basicConfig(
        level=logging.INFO if jax.process_index() == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes at INFO
    if FLAGS.dry_run:
        return dry_run.run(config, FLAGS.dry_run, json_path=FLAGS.dry_run_json, config_name=flag.filename)
    try:
        result = train(config, FLAGS.workdir)
    except TrainingDiverged as e:
        print(f"Training stopped: {one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
    return result["exit_code"]  # 0; EXIT_PREEMPTED after SIGTERM, EXIT_INTERRUPTED after SIGINT


if __name__ == "__main__":
    host_memory.reexec_with_huge_pages()
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
