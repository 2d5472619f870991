"""Every CLI's error boundary (issue 17): an expected failure is ONE line and a non-zero exit status, a bug a traceback.

The programs run as subprocesses (`python -m ...`) where the flag parsing or the top-level handler is what is tested;
`paligemma.cli.run_main` itself is tested in-process.
"""

import errno
import glob
import importlib.util
import os
import runpy
import subprocess
import sys
import textwrap

import pytest

from paligemma import checkpoints, cli
from paligemma.errors import UserError
from tools import convert_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lines that TensorFlow / XLA print on start-up, whatever happens next.
NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "E0000 ")

CONFIG = textwrap.dedent(
    """
    import ml_collections

    def get_config(arg=None):
        config = ml_collections.ConfigDict()
        config.model_name = "paligemma-tiny"
        config.tokenizer = "never_opened.model"
        config.input = dict(data=dict(name="jsonl", path="never_opened.jsonl"), pp="decode", batch_size=8)
        config.total_steps = 2
        config.mesh = [("data", -1)]
        config.evals = dict(val=dict(type="perplexity", data="never_opened", batch_size=2))
        return config
    """
)


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """A folder with the config file above."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "config.py").write_text(CONFIG)
    return root


# Runs a module as `python -m` would, with os.mkdir failing with EROFS under READ_ONLY_ROOT (a read-only file system:
# root, as tests often run, may write into any folder whatever its mode).
READ_ONLY = """
import errno, os, runpy, sys
root, real_mkdir = os.environ["READ_ONLY_ROOT"], os.mkdir
def mkdir(path, *args, **kwargs):
    if os.path.abspath(path).startswith(root):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    return real_mkdir(path, *args, **kwargs)
os.mkdir = mkdir
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _run(module: str, *args: str, read_only: str | None = None) -> tuple[int, list[str], str]:
    """(exit status, stderr lines other than start-up noise, whole stderr) of `python -m module args`."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", module, *args]
    if read_only:
        env["READ_ONLY_ROOT"] = read_only
        command = [sys.executable, "-c", READ_ONLY, module, *args]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(NOISE)]
    return proc.returncode, lines, proc.stderr


def _one_line(result, prefix: str, *fragments: str, code: int = 2) -> str:
    status, lines, stderr = result
    assert status == code and len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(prefix), lines
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


# ----------------------------------------------------------------------------------------------------------
# trainers.train


def _train(shared_dir, workdir, *extra, read_only=None):
    config = str(shared_dir / "config.py")
    return _run("trainers.train", "--config", config, "--workdir", str(workdir), *extra, read_only=read_only)


def test_train_override_of_a_key_the_file_does_not_set(shared_dir, tmp_path):
    # Was: a raw AttributeError "'accum_steps'" (exit 1). accum_steps=0 shows that the override reached the config.
    result = _train(shared_dir, tmp_path / "w", "--config.accum_steps=0")
    _one_line(result, "Config error:", "config.accum_steps must be a positive integer, got 0")


def test_train_unknown_key_and_bad_value_are_one_line_config_errors(shared_dir, tmp_path):
    # Was: a raw AttributeError traceback naming 'total_step'.
    result = _train(shared_dir, tmp_path / "w", "--config.total_step=3")
    _one_line(result, "Config error:", "unknown key 'total_step'", "did you mean 'total_steps'?")
    # Was: "Type <class 'list'> of field config.mesh is not supported for overriding".
    result = _train(shared_dir, tmp_path / "w", "--config.mesh=[('data', -1)")
    _one_line(result, "Config error:", "--config.mesh:", "not a Python literal")
    result = _train(shared_dir, tmp_path / "w", "--config.input.batch_size")
    _one_line(result, "Config error:", "needs a value")


def test_train_workdir_that_is_a_file(shared_dir, tmp_path):
    # Was: a FileExistsError / NotADirectoryError traceback (exit 1).
    afile = tmp_path / "afile"
    afile.write_text("")
    _one_line(_train(shared_dir, afile), "error:", str(afile), "a file is in the way")
    _one_line(_train(shared_dir, afile / "run"), "error:", str(afile / "run"), "is a file")


def test_train_read_only_workdir(shared_dir, tmp_path):
    # Was: an OSError traceback (exit 1).
    result = _train(shared_dir, tmp_path / "ro" / "run", read_only=str(tmp_path / "ro"))
    _one_line(result, "error:", "Read-only file system", str(tmp_path / "ro"), "choose a writable path")
    if os.geteuid() != 0:  # a folder without write permission (root would write into it anyway)
        (tmp_path / "locked").mkdir(mode=0o555)
        _one_line(_train(shared_dir, tmp_path / "locked" / "run"), "error:", "Permission denied")


# ----------------------------------------------------------------------------------------------------------
# evaluators.run and datasets.inspect: the same overrides, the same errors.


def test_eval_and_inspect_overrides(shared_dir, tmp_path):
    config = str(shared_dir / "config.py")
    # Was: a raw AttributeError traceback from ml_collections.
    result = _run("evaluators.run", "--config", config, "--workdir", str(tmp_path), "--config.evalz.val.batch_size=1")
    _one_line(result, "Config error:", "unknown key 'evalz'", "did you mean 'evals'?")
    result = _run("evaluators.run", "--config", config, "--config.evals.vall.batch_size=1")
    _one_line(result, "Config error:", "config.evals has no 'vall'", "did you mean 'evals.val'?")
    result = _run("evaluators.run", "--workdir", str(tmp_path), "--config.evals.val.batch_size=1")
    _one_line(result, "error:", "without --config FILE")
    result = _run("datasets.inspect", "--config", config, "--config.input.batch_sise=2")
    _one_line(result, "Config error:", "did you mean 'input.batch_size'?")


# ----------------------------------------------------------------------------------------------------------
# tools.convert_checkpoint (in-process: its main returns the status)


def test_convert_checkpoint_destination_under_a_file(tmp_path, random_params, capsys):
    cfg = runpy.run_path(os.path.join(REPO, "tests", "fixtures", "tiny_model.py"))["tiny_config"](300)
    src = str(tmp_path / "src.npz")
    checkpoints.save_npz(src, random_params(cfg))
    (tmp_path / "afile").write_text("")
    capsys.readouterr()
    # Was: a NotADirectoryError traceback.
    assert convert_checkpoint.main([src, str(tmp_path / "afile" / "hf"), "--to", "hf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "afile" in err[0], err


# ----------------------------------------------------------------------------------------------------------
# paligemma.cli.run_main


class _Expected(UserError, ValueError):
    pass


class _Stopped(UserError):
    exit_code = 3
    label = "Training stopped"


@pytest.mark.parametrize(
    "error, code, line",
    [
        (_Expected("bad thing;\n  do this"), 2, "error: bad thing; do this (log: /w/log.txt)"),
        (_Stopped("at step 3"), 3, "Training stopped: at step 3 (log: /w/log.txt)"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl"),
            2,
            "error: No space left on device: /w/metrics.jsonl (the disk is full: free space or choose a path on "
            "another disk). (log: /w/log.txt)",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/w"),
            2,
            "error: Read-only file system: /w (the file system is read-only: choose a writable path (e.g. another "
            "--workdir)). (log: /w/log.txt)",
        ),
        (FileNotFoundError("x.npz: no such checkpoint."), 2, "error: x.npz: no such checkpoint. (log: /w/log.txt)"),
    ],
)
def test_run_main_prints_one_line_for_expected_errors(error, code, line, capsys):
    def main():
        raise error

    assert cli.run_main(main, log_path=lambda: "/w/log.txt") == code
    assert capsys.readouterr().err == line + "\n"


def test_run_main_keeps_the_traceback_of_bugs_and_passes_the_status(capsys):
    def bug():
        return {}["missing"]

    with pytest.raises(KeyError):
        cli.run_main(bug)
    with pytest.raises(OSError):  # an OSError that says nothing about a path or a disk
        cli.run_main(lambda: (_ for _ in ()).throw(OSError(errno.EINVAL, "Invalid argument")))
    assert cli.run_main(lambda a, b=0: a + b, 3, b=4) == 7
    assert cli.run_main(lambda: None) == 0

    def interrupted():
        raise KeyboardInterrupt

    assert cli.run_main(interrupted) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.count("\n") == 1


def test_run_main_lists_several_config_problems(capsys):
    from trainers.config import ConfigError

    def main():
        raise ConfigError("- config.input.data: not found\n- config.model_init: not found")

    assert cli.run_main(main) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Config error:",
        "  - config.input.data: not found",
        "  - config.model_init: not found",
    ]


def test_override_parsing():
    rest, overrides = cli.split_overrides(
        ["prog", "--config", "c.py:a", "--config.a.b=1", "--workdir", "w", "--config.c", "[1]", "--", "--config.d=2"]
    )
    assert rest == ["prog", "--config", "c.py:a", "--workdir", "w", "--", "--config.d=2"]
    assert overrides == [("a.b", "1"), ("c", "[1]")]
    for bad in (["--config.a"], ["--config.a", "--workdir"], ["--config..a=1"]):
        with pytest.raises(cli.ConfigOverrideError):
            cli.split_overrides(bad)
    assert cli.parse_value("1e-5") == 1e-5 and cli.parse_value("true") is True and cli.parse_value("None") is None
    assert cli.parse_value("paligemma-3b-224") == "paligemma-3b-224" and cli.parse_value("gs://b/x") == "gs://b/x"
    assert cli.parse_value("dict(a=[dict(b=(1, -2))])") == {"a": [{"b": (1, -2)}]}
    assert cli.parse_value("'1e-3'") == "1e-3" and cli.parse_value("3", current=0.5) == 3.0
    for bad in ("[1, 2", "dict(a=b)", "{**x}", "(print(1),)"):
        with pytest.raises(ValueError):
            cli.parse_value(bad)


@pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None or bool(glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*")),
    reason="needs libtpu installed on a host without a TPU",
)
def test_no_tpu_probe_noise_on_a_host_without_a_tpu(tmp_path):
    """libtpu (installed for --dry_run) printed ~10 warning lines in every CLI on a host without a TPU."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    probe = "import jax; print(jax.devices()[0].platform)"
    before = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert "TPU" in before.stderr  # what every CLI printed before
    after = subprocess.run(
        [sys.executable, "-c", f"from paligemma import cli; print(cli.skip_absent_tpu()); {probe}"],
        env={**env, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert after.stdout.split() == ["True", "cpu"] and "TPU" not in after.stderr, after.stderr
