"""`python -m trainers.train` as a program: SIGTERM / kill -9 / resume, two processes, bad configs.

The reference is an in-process run of the same config (same XLA options and matmul precision as the subprocesses, so
the same compiled code): a run interrupted and resumed must end with bit-identical params, and two processes with 4
devices each must log the same losses as one process with 8.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from paligemma import checkpoints, tree
from paligemma.checkpoints import training as checkpointing
from trainers import loop as loop_lib
from trainers import train as train_lib
from trainers.config import ConfigError
from trainers.state import State

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_PATH = os.path.join(REPO, "tests", "fixtures", "train", "tiny.py")
TINY = __import__("runpy").run_path(TINY_PATH)
STEPS = 10


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def tiny_config(assets, **overrides):
    config = TINY["get_config"](assets)
    config.total_steps = STEPS
    config.input.data_shards = 2
    return TINY["override"](config, **overrides)


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory):
    """(losses, final params) of an uninterrupted 8-device run (the CLI defaults: mesh data=8, 2 data shards)."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    result = train_lib.train(tiny_config(tiny_assets), workdir, compiler_options=TINY["FAST_XLA"])
    step, params = checkpointing.latest_params(workdir)
    assert step == STEPS
    return np.array([r["training_loss"] for r in result["records"]]), tree.flatten(params)


def _env(cache: str, devices: int = 8) -> dict[str, str]:
    return TINY["subprocess_env"](cache, devices)


def _command(assets: str, workdir: str, *extra: str) -> list[str]:
    return TINY["train_command"](assets, workdir, f"--config.total_steps={STEPS}", "--config.ckpt_steps=2", *extra)


def _launch(cmd: list[str], env: dict[str, str], log_path: str, timeout: float = 300) -> subprocess.Popen:
    """Starts `cmd` with stdout piped; a watchdog kills it after `timeout` seconds so that no read blocks forever."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log_path, "a"), text=True, env=env, cwd=REPO)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    return proc


def _read_until(proc: subprocess.Popen, pattern: str, log_path: str) -> re.Match:
    for line in proc.stdout:
        match = re.search(pattern, line)
        if match:
            return match
    proc.wait()
    raise AssertionError(
        f"no line matching {pattern!r}; exit code {proc.returncode}; stderr tail:\n" + open(log_path).read()[-3000:]
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out = proc.stdout.read()
    proc.wait(timeout=timeout)
    return out


@pytest.mark.slow
def test_sigterm_then_kill9_then_rerun_ends_like_an_uninterrupted_run(reference, tiny_assets, compile_cache, tmp_path):
    workdir, log_path = str(tmp_path / "run"), str(tmp_path / "stderr.txt")
    cmd, env = _command(tiny_assets, workdir, "--config.export_npz=True"), _env(compile_cache)

    # 1. SIGTERM mid-run: the process finishes its step, saves it and exits (code 143) within seconds.
    proc = _launch(cmd, env, log_path)
    _read_until(proc, r"^step 1/", log_path)
    os.kill(proc.pid, signal.SIGSTOP)  # hold it mid-run while the signal is queued
    os.kill(proc.pid, signal.SIGTERM)
    start = time.monotonic()
    os.kill(proc.pid, signal.SIGCONT)
    out = _finish(proc)
    elapsed = time.monotonic() - start
    assert proc.returncode == train_lib.EXIT_PREEMPTED, out + open(log_path).read()[-3000:]
    assert elapsed < 30, f"took {elapsed:.1f}s to stop"
    stopped = int(re.search(r"Stopped by SIGTERM after step (\d+)/", out).group(1))
    assert 1 <= stopped < STEPS
    assert checkpointing.latest_params(workdir)[0] == stopped

    # 2. The same command resumes there; kill -9 it a step or two later (possibly during an async save).
    proc = _launch(cmd, env, log_path)
    resumed = int(_read_until(proc, r"Resuming from step (\d+)/", log_path).group(1))
    assert resumed == stopped
    target = random.randint(stopped + 1, min(stopped + 2, STEPS - 1))
    _read_until(proc, rf"^step {target}/", log_path)
    proc.kill()
    _finish(proc)
    assert proc.returncode == -signal.SIGKILL

    # 3. The same command again completes; its params equal the uninterrupted run's, bit for bit.
    proc = _launch(cmd, env, log_path)
    out = _finish(proc)
    assert proc.returncode == 0, out + open(log_path).read()[-3000:]
    assert re.search(r"Resuming from step \d+/", out)
    step, params = checkpointing.latest_params(workdir)
    assert step == STEPS
    ref_losses, ref_params = reference
    _, exported = checkpoints.load(os.path.join(workdir, "params.npz"))  # the original .npz layout
    exported = tree.flatten(exported)
    for name, value in tree.flatten(params).items():
        np.testing.assert_array_equal(value, ref_params[name], err_msg=name)
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # no duplicates from the replayed steps
    np.testing.assert_array_equal([r["training_loss"] for r in records], ref_losses)


@pytest.mark.slow
def test_two_processes_with_four_devices_each_match_one_process_with_eight(
    reference, tiny_assets, compile_cache, tmp_path
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = str(tmp_path / "run")
    env = _env(compile_cache, devices=4)
    procs = []
    for i in range(2):
        cmd = _command(
            tiny_assets,
            workdir,
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            "--config.preemption_check_steps=3",
        )
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=open(tmp_path / f"out{i}.txt", "w"),
                stderr=open(tmp_path / f"err{i}.txt", "w"),
                env=env,
                cwd=REPO,
            )
        )
    for i, proc in enumerate(procs):
        proc.wait(timeout=400)
        assert proc.returncode == 0, (tmp_path / f"err{i}.txt").read_text()[-3000:]
    out0 = (tmp_path / "out0.txt").read_text()
    assert "(2 processes)" in out0 and "step 10/10" in out0
    assert "step" not in (tmp_path / "out1.txt").read_text()  # process 0 alone logs
    # The step loop exchanges nothing across hosts but the preemption check at steps 3, 6 and 9, and its batches
    # are placed ahead by the prefetch thread.
    assert re.search(
        r"Input: the step loop waited [\d.]+s for batches in 10 steps; 3 cross-host preemption checks", out0
    ), out0
    losses = [json.loads(line)["training_loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    np.testing.assert_allclose(losses, reference[0], rtol=1e-5)
    # Both processes wrote their shards of one orbax checkpoint. (Params are not compared element-wise: Adam turns
    # gradients that are zero up to rounding, e.g. of the attention key bias, into +-lr steps.)
    step, params = checkpointing.latest_params(workdir)
    assert step == STEPS and set(tree.flatten(params)) == set(reference[1])


def test_bad_configs_fail_with_one_clear_line_before_compiling(tiny_assets, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the run started (and would compile) despite a bad config")

    monkeypatch.setattr(loop_lib, "_run", never)
    cases = [
        (dict(total_step=3), r"unknown config key 'total_step'; did you mean 'total_steps'\?"),
        ({"input.data": dict(name="jsonl", path=str(tmp_path / "missing.jsonl"))}, r"config\.input\.data .*missing"),
        (dict(model_init=str(tmp_path / "nope.npz")), r"config\.model_init: checkpoint not found"),
        ({"input.batch_size": 6}, r"batch_size=6 .* not divisible by the 8 batch shards"),
        ({"mesh": [("data", 3)]}, r"config\.mesh: .* 3 devices but there are 8"),
        ({"schedule.decay_type": "exp"}, r"decay_type 'exp' unknown"),
    ]
    for overrides, pattern in cases:
        config = tiny_config(tiny_assets)
        if "total_step" in overrides:
            config.total_step = 3
        else:
            TINY["override"](config, **overrides)
        with pytest.raises(ConfigError, match=pattern) as info:
            train_lib.train(config, str(tmp_path / "w"))
        assert "\n" not in str(info.value)


def test_a_bad_pp_fails_before_the_params_are_built(tiny_assets, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("params were built (compiled) despite a bad pp")

    monkeypatch.setattr(State, "initial", never)
    for pp, pattern in [
        ("decode|no_such_op()", r"config\.input\.pp: .*no_such_op"),
        ('decode|keep("image")', r"config\.input .* lacks \['text'"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            train_lib.train(tiny_config(tiny_assets, **{"input.pp": pp}), str(tmp_path / "w"))


def test_cli_reports_a_bad_config_on_one_line(tiny_assets, compile_cache, tmp_path):
    cmd = _command(tiny_assets, str(tmp_path / "w"), "--config.input.batch_size=12")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(compile_cache), cwd=REPO, timeout=300)
    assert proc.returncode == train_lib.EXIT_CONFIG_ERROR
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Config error:")]
    assert len(errors) == 1 and "batch_size=12" in errors[0] and "8 batch shards" in errors[0], proc.stderr[-2000:]
