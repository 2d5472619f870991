"""Nothing wrong passes silently, a damaged checkpoint never blocks a run (issue 17, the trainer's part).

Each test reproduces a failure of the original trainer: a checkpoint of NaN/Inf params called good, a damaged latest
checkpoint that stopped every rerun, duplicate metrics.jsonl records after a kill before the first checkpoint, a full
disk noticed only at the end, "checkpoint saved" printed before the save committed, Ctrl-C without a checkpoint.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from orbax.checkpoint._src.path import atomicity

from paligemma import tree
from paligemma.checkpoints import training as checkpointing
from trainers import loop as loop_lib
from trainers import train as train_lib
from trainers.data import TrainData
from trainers.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, CheckpointFailed, TrainingDiverged

# A restore that fails on a damaged checkpoint leaves orbax's pending read coroutines unawaited (garbage-collected
# later, with a warning each): expected here, not a leak of the trainer.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_PATH = os.path.join(REPO, "tests", "fixtures", "train", "tiny.py")
TINY = __import__("runpy").run_path(TINY_PATH)


def run(config, workdir, **kwargs):
    return train_lib.train(config, str(workdir), compiler_options=TINY["FAST_XLA"], **kwargs)


def tiny_config(assets, **overrides):
    config = TINY["get_config"](assets)
    config.input.data_shards = 2
    return TINY["override"](config, **overrides)


def metric_steps(workdir):
    return [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def three_checkpoints(tiny_assets, tmp_path_factory):
    """A workdir with the checkpoints of steps 1, 2 and 3 (kept 3)."""
    workdir = str(tmp_path_factory.mktemp("three"))
    run(tiny_config(tiny_assets, total_steps=3, ckpt_steps=1, keep_ckpts=3), workdir)
    assert checkpointing.checkpoint_steps(workdir) == [1, 2, 3]
    return workdir


# 1. -----------------------------------------------------------------------------------------------------------------


def test_a_step_with_non_finite_params_is_caught_and_never_saved(tiny_assets, tmp_path):
    """lr=1e39 (constant): step 1's loss and gradient are finite but its params are Inf (was saved, called good)."""
    config = tiny_config(tiny_assets, total_steps=3, ckpt_steps=1, lr=1e39, schedule=dict(decay_type="constant"))
    with pytest.raises(TrainingDiverged, match=r"non-finite updated parameters.* at step 1;.*last good checkpoint is "):
        run(config, tmp_path)
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is step none"):
        run(config, tmp_path)  # nothing was saved (a rerun starts over and stops alike)
    assert checkpointing.checkpoint_steps(str(tmp_path)) == []


# 2. -----------------------------------------------------------------------------------------------------------------


def _damage(ckpt, how):
    if how == "truncated data file":
        files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ckpt, "params")) for f in fs]
        data = max((f for f in files if os.sep + "d" + os.sep in f), key=os.path.getsize)
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
    elif how.endswith("/"):
        shutil.rmtree(os.path.join(ckpt, how))
    else:
        os.remove(os.path.join(ckpt, how))


@pytest.mark.parametrize(
    "how",
    ["params/manifest.ocdbt", "meta/metadata", "opt_state/_METADATA", "params/", "truncated data file"],
)
def test_a_damaged_latest_checkpoint_is_skipped_for_the_newest_intact_one(
    three_checkpoints, tiny_assets, tmp_path, capsys, how
):
    workdir = str(tmp_path / "run")
    shutil.copytree(three_checkpoints, workdir)
    _damage(os.path.join(workdir, "checkpoints", "3"), how)
    # What evaluators.run / tools.predict read: the newest readable params. (opt_state/meta damage leaves them.)
    expected = 3 if how in ("meta/metadata", "opt_state/_METADATA") else 2
    assert checkpointing.latest_params(workdir)[0] == expected
    if expected == 2:  # asked for by step: one error naming the step, not orbax's own
        with pytest.raises(FileNotFoundError, match=r"checkpoint of step 3 cannot be read .*pick another step"):
            checkpointing.latest_params(workdir, step=3)

    result = run(tiny_config(tiny_assets, total_steps=4, ckpt_steps=1, keep_ckpts=3), workdir)
    out = capsys.readouterr().out
    assert result["start_step"] == 2 and result["step"] == 4, out
    skipped = [line for line in out.splitlines() if "damaged checkpoint" in line]
    assert len(skipped) == 1 and "step 3" in skipped[0] and "checkpoints_damaged" in skipped[0], out
    assert "Resuming from step 2/4" in out
    assert checkpointing.checkpoint_steps(workdir) == [2, 3, 4]  # step 3 saved anew
    assert os.path.isdir(os.path.join(workdir, "checkpoints_damaged", "3"))
    assert metric_steps(workdir) == [1, 2, 3, 4]


def test_no_restorable_checkpoint_is_one_error_and_moves_nothing(three_checkpoints, tiny_assets, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(three_checkpoints, workdir)
    for step in (1, 2, 3):
        os.remove(os.path.join(workdir, "checkpoints", str(step), "params", "manifest.ocdbt"))
    with pytest.raises(CheckpointFailed, match=r"no checkpoint .* can be restored \(step 3: .*step 1: ") as info:
        run(tiny_config(tiny_assets, total_steps=4, ckpt_steps=1), workdir)
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2", "3"]


# 3. -----------------------------------------------------------------------------------------------------------------


def test_metrics_of_a_run_killed_before_its_first_checkpoint_are_not_duplicated(tiny_assets, tmp_path):
    # What a run killed at step 3 of 4, before any checkpoint, leaves (with a line cut by the kill).
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "training_loss": 1.0}) + "\n" for s in (1, 2, 3)) + '{"st'
    )
    run(tiny_config(tiny_assets, total_steps=4), tmp_path)
    assert metric_steps(str(tmp_path)) == [1, 2, 3, 4]


# 4. -----------------------------------------------------------------------------------------------------------------


def test_a_failed_async_save_stops_the_run_at_once(tiny_assets, tmp_path, monkeypatch):
    """The commit of step 2 fails with ENOSPC in orbax's background thread; it was noticed only at step 4's save."""
    original = atomicity.on_commit_callback
    logged_at_failure = []

    async def full_disk(tmpdir, *args, **kwargs):
        if os.path.basename(str(tmpdir.get_final())) == "2":
            logged_at_failure.append(max(metric_steps(str(tmp_path))))
            raise OSError(errno.ENOSPC, "No space left on device")
        return await original(tmpdir, *args, **kwargs)

    monkeypatch.setattr(atomicity, "on_commit_callback", full_disk)
    with pytest.raises(CheckpointFailed) as info:
        run(tiny_config(tiny_assets, total_steps=8, ckpt_steps=2), tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"step 2 .*No space left on device.*last good checkpoint is step none", message), message
    # Stopped at the first step after the failure (its metrics are logged one step late), not at the next save.
    assert max(metric_steps(str(tmp_path))) <= logged_at_failure[0] + 2 < 8
    assert checkpointing.checkpoint_steps(str(tmp_path)) == []


def test_a_failed_save_names_the_last_committed_step(tiny_assets, tmp_path, monkeypatch):
    original = checkpointing.Checkpointer.save

    def save(self, step, *args):
        if step == 4:
            raise_in = self._manager.save

            def failing(*a, **k):
                raise PermissionError(errno.EACCES, "Permission denied", os.path.join(self.directory, "4"))

            self._manager.save = failing
            try:
                return original(self, step, *args)
            finally:
                self._manager.save = raise_in
        return original(self, step, *args)

    monkeypatch.setattr(checkpointing.Checkpointer, "save", save)
    with pytest.raises(CheckpointFailed, match=r"step 4 .*Permission denied.*last good checkpoint is step 2\."):
        run(tiny_config(tiny_assets, total_steps=6, ckpt_steps=2), tmp_path)
    assert checkpointing.checkpoint_steps(str(tmp_path)) == [2]


# 5. -----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_and_says_so_only_once_committed(tiny_assets, tmp_path, monkeypatch, signum):
    """Ctrl-C was a KeyboardInterrupt traceback without a checkpoint; the stop line must follow the commit."""
    original_next = TrainData.__next__
    calls = []

    def interrupting(self):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signum)
        return original_next(self)

    printed = {}
    original_print = loop_lib.logging_utils.MetricsWriter.print

    def recording(self, line):
        if line.startswith("Stopped by"):
            printed["committed"] = checkpointing.checkpoint_steps(str(tmp_path))
        original_print(self, line)

    monkeypatch.setattr(TrainData, "__next__", interrupting)
    monkeypatch.setattr(loop_lib.logging_utils.MetricsWriter, "print", recording)
    config = tiny_config(tiny_assets, total_steps=50, ckpt_steps=1000)
    result = run(config, tmp_path)
    assert result["preempted"] and result["signal"] == signum
    assert result["exit_code"] == (EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_PREEMPTED)
    stopped = result["step"]
    assert 1 <= stopped < 50 and result["checkpoint_step"] == stopped
    assert printed["committed"] == [stopped]  # on storage when the line was printed
    again = run(tiny_config(tiny_assets, total_steps=stopped + 1), tmp_path)
    assert again["start_step"] == stopped


def _launch(assets, workdir, cache, *extra):
    cmd = TINY["train_command"](assets, workdir, "--config.total_steps=500", *extra)
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=TINY["subprocess_env"](cache),
        cwd=REPO,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_to_committed_checkpoint_time_and_exit_code(tiny_assets, tmp_path_factory, tmp_path, signum):
    """The time from the signal to a committed checkpoint (printed: the README quotes it), one line, the exit code."""
    cache = str(tmp_path_factory.getbasetemp() / "jax_cache_reliability")
    workdir = str(tmp_path / "run")
    proc = _launch(tiny_assets, workdir, cache)
    try:
        for line in proc.stdout:
            if line.startswith("step 2/"):
                break
        start = time.monotonic()
        proc.send_signal(signum)
        committed = None
        while proc.poll() is None and committed is None:
            if os.path.isdir(os.path.join(workdir, "checkpoints")) and checkpointing.checkpoint_steps(workdir):
                committed = time.monotonic() - start
            time.sleep(0.02)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    elapsed = time.monotonic() - start
    committed = committed if committed is not None else elapsed
    print(f"{signal.Signals(signum).name}: checkpoint committed {committed:.2f}s, process exited {elapsed:.2f}s")
    expected = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_PREEMPTED
    assert proc.returncode == expected, err[-3000:]
    assert committed < 10 and elapsed < 20
    stops = [line for line in out.splitlines() if line.startswith("Stopped by")]
    assert len(stops) == 1 and "committed" in stops[0], out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    step = int(re.search(r"after step (\d+)/", stops[0]).group(1))
    assert checkpointing.checkpoint_steps(workdir) == [step]
    _, params = checkpointing.latest_params(workdir)
    assert all(np.isfinite(v).all() for v in tree.flatten(params).values())
