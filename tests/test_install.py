"""`pip install -e .` (pyproject.toml): the packages import from any folder, the console scripts run, and a
Hugging Face-style `datasets` distribution installed next to this project keeps working (README, "Install").

Offline: each test makes a throwaway venv that sees this interpreter's site-packages (a `.pth`), installs the
project into it with `--no-index --no-build-isolation --no-deps` and runs Python there from a folder outside the
checkout. The Hugging Face package is a fake distribution written by the test (nothing is downloaded).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

pytest.importorskip("setuptools", minversion="64", reason="the offline builds use this interpreter's setuptools")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("paligemma", "datasets", "evaluators", "trainers", "tools", "configs")


def _pip_env() -> dict[str, str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    for name in ("PYTHONPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        env.pop(name, None)
    return env


def _venv(tmp_path) -> tuple[str, str]:
    """A venv (python, site-packages) that sees this interpreter's packages (jax, setuptools, pip, ...)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "zz_base_interpreter.pth"), "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    return python, site


def _pip_install(python: str, *args: str, cwd: str = ROOT) -> None:
    cmd = [python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps", "--no-cache-dir"]
    r = subprocess.run(cmd + list(args), cwd=cwd, env=_pip_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def editable(tmp_path):
    """(python, site-packages, an empty folder outside the checkout) after `pip install -e <checkout>`."""
    before = {name for name in os.listdir(ROOT) if name == "build" or name.endswith(".egg-info")}
    python, site = _venv(tmp_path)
    _pip_install(python, "-e", ROOT)
    after = {name for name in os.listdir(ROOT) if name == "build" or name.endswith(".egg-info")}
    assert after == before, f"the editable install left {after - before} in the checkout"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return python, site, str(elsewhere)


def _run(python: str, code: str, cwd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", textwrap.dedent(code)], cwd=cwd, env=_pip_env(), capture_output=True, text=True, timeout=timeout
    )


def _assert_train_script_reports_a_missing_config(bin_dir: str, cwd: str) -> None:
    """`paligemma-train --config missing.py` exits 2 with one line naming the file, as `python -m trainers.train`."""
    r = subprocess.run(
        [os.path.join(bin_dir, "paligemma-train"), "--config", "missing.py", "--workdir", "w"],
        cwd=cwd,
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "missing.py" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _readme_api_imports() -> str:
    """The import lines of the README's Python API snippet (the first ```python block)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].rstrip() for line in block.splitlines() if line.startswith(("import ", "from "))]
    assert any("paligemma" in line for line in lines), block
    return "\n".join(lines)


def _fake_hf_datasets(site: str) -> None:
    """A distribution named `datasets` with a top-level `datasets` package, as Hugging Face's installs it."""
    os.makedirs(os.path.join(site, "datasets"))
    with open(os.path.join(site, "datasets", "__init__.py"), "w") as f:
        f.write("HUGGING_FACE = True\ndef load_dataset(name):\n    return f'hf:{name}'\n")
    info = os.path.join(site, "datasets-9.9.9.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: datasets\nVersion: 9.9.9\n")
    with open(os.path.join(info, "top_level.txt"), "w") as f:
        f.write("datasets\n")
    with open(os.path.join(info, "RECORD"), "w") as f:
        f.write("datasets/__init__.py,,\n")


def test_editable_install_imports_from_any_folder(editable):
    python, _, elsewhere = editable
    r = _run(
        python,
        f"""
        import importlib, importlib.metadata, importlib.util, os
        exec({_readme_api_imports()!r})
        for name in ["paligemma.model", "paligemma.checkpoints", "paligemma.tokenizer", "datasets.pipeline",
                     "evaluators.run", "trainers.train", "tools.predict", "tools.convert_checkpoint",
                     "configs.transfer.easyvqa"]:
            module = importlib.import_module(name)
            assert module.__file__.startswith({ROOT!r} + os.sep), (name, module.__file__)
        assert importlib.util.find_spec("tests") is None, "tests/ must not be installed"
        assert importlib.metadata.version("paligemma-jax")
        print("ok")
        """,
        cwd=elsewhere,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    requires = _run(python, "import importlib.metadata as m; print(m.requires('paligemma-jax'))", elsewhere).stdout
    assert "jax==" in requires and "tensorflow-datasets==" in requires, requires  # requirements.txt, one list


def test_console_scripts_run_from_any_folder(editable):
    python, _, elsewhere = editable
    bin_dir = os.path.dirname(python)
    for script, flag in [
        ("paligemma-train", "--workdir"),
        ("paligemma-eval", "--workdir"),
        ("paligemma-predict", "--checkpoint"),
        ("paligemma-convert", "--to"),
    ]:
        r = subprocess.run(
            [os.path.join(bin_dir, script), "--help"],
            cwd=elsewhere,
            env=_pip_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        # absl's --help exits 1 (as `python -m trainers.train --help` does), argparse's 0.
        assert r.returncode in (0, 1) and flag in r.stdout + r.stderr, (script, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
    # The same exit codes and one-line errors as `python -m trainers.train`.
    _assert_train_script_reports_a_missing_config(bin_dir, elsewhere)


def test_hugging_face_datasets_next_to_the_project(editable):
    """Measured behaviour (README, "Install"): the user's `datasets` wins in their own code; the CLIs still work."""
    python, site, elsewhere = editable
    _fake_hf_datasets(site)

    # A user's code outside the checkout: `import datasets` is Hugging Face's; the model library is unaffected.
    r = _run(
        python,
        """
        import datasets
        assert datasets.HUGGING_FACE and datasets.load_dataset("x") == "hf:x"
        from paligemma import checkpoints, model
        # setuptools' editable finder grafts this project's submodules that the other package lacks onto it
        # (not supported: use prefer_project_datasets below); the user's `datasets` itself is never replaced.
        import datasets.pipeline
        assert datasets.HUGGING_FACE and datasets.load_dataset("y") == "hf:y"
        print("ok")
        """,
        cwd=elsewhere,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr

    # The documented Python workaround: this project's `datasets` first, in this process only.
    r = _run(
        python,
        f"""
        from tools.entry_points import prefer_project_datasets
        assert prefer_project_datasets()
        import datasets.pipeline, trainers.train
        assert datasets.pipeline.__file__.startswith({ROOT!r}), datasets.pipeline.__file__
        assert not prefer_project_datasets()
        print("ok")
        """,
        cwd=elsewhere,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr

    # Once Hugging Face's is imported, the two cannot share the process: one clear error, no silent swap.
    r = _run(
        python,
        """
        import datasets
        from tools.entry_points import prefer_project_datasets
        try:
            prefer_project_datasets()
        except RuntimeError as e:
            print(e)
        """,
        cwd=elsewhere,
    )
    assert r.returncode == 0 and "already imported" in r.stdout, r.stdout + r.stderr

    # The console scripts, and `python -m` from the checkout (the Makefile flow), use this project's `datasets`.
    _assert_train_script_reports_a_missing_config(os.path.dirname(python), elsewhere)
    r = _run(python, "import datasets.pipeline, trainers.train; print(datasets.__file__)", cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == os.path.join(ROOT, "datasets", "__init__.py"), r.stderr

    # Uninstalling the project leaves Hugging Face's package whole.
    r = subprocess.run(
        [python, "-m", "pip", "uninstall", "-y", "-q", "paligemma-jax"], env=_pip_env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert _run(python, "import datasets; assert datasets.HUGGING_FACE", cwd=elsewhere).returncode == 0


def test_wheel_holds_exactly_the_project_packages(tmp_path):
    """A regular (non-editable) wheel, built from a copy so that build/ and *.egg-info stay out of the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), src / package, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "tests").mkdir()
    (src / "tests" / "__init__.py").write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-build-isolation", "--no-deps"]
        + ["--no-cache-dir", "-w", str(tmp_path / "dist"), str(src)],
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = os.listdir(tmp_path / "dist")
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES), top
    assert "tools/launch_tpu.sh" in names
    tracked = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [n for n in tracked if os.path.exists(os.path.join(ROOT, n)) and n not in names]
    assert not missing, f"files of the packages missing from the wheel: {missing}"
    assert "paligemma-train = tools.entry_points:train" in entry_points, entry_points
