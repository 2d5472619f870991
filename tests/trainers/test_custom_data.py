"""configs/custom/jsonl.py on a user's JSONL: trains from scratch with the usual flags, names its data, fits the
vocabulary to the trained tokenizer, logs quietly, and says when a rerun has nothing to do; TFDS/inspect messages."""

import json
import logging
import os
import subprocess
import sys

import jax
import pytest

from datasets import tfds_source
from trainers import config as config_lib
from trainers.setup import Setup
from trainers.train import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, "tests", "fixtures", "data", "jsonl_custom")
CONFIG = os.path.join(REPO, "configs", "custom", "jsonl.py")
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _config(*overrides, arg=""):
    spec = f"{CONFIG}:data={DATA}/train.jsonl,val={DATA}/val.jsonl,vocab=300,text_len=48,batch=4,eval_every=2" + arg
    return config_lib.from_command_line(spec, [o.split("=", 1) for o in overrides])


def test_from_scratch_run_names_its_data_fits_the_vocabulary_and_a_rerun_says_it_is_done(tmp_path, capsys, caplog):
    # --config.input.data.path works on the free-form input.data dict (the tokenizer follows it: data="input.data").
    config = _config(f"input.data.path={DATA}/train.jsonl", "total_steps=2", "log_training_steps=1")
    caplog.set_level(logging.INFO, logger="trainers.train")
    result = train(config, str(tmp_path), devices=jax.devices()[:1], compiler_options=FAST)
    assert result["step"] == 2 and result["records"][-1]["val/perplexity"] > 0
    out = capsys.readouterr().out
    first = out.splitlines()[:3]
    assert first[0].startswith(f"Data: jsonl:{DATA}/train.jsonl (9 examples); pp: decode|resize(32)"), first
    assert "model vocabulary 1,452 (the tokenizer's size: trained from scratch" in first[1], first
    assert "Parameter sharding" not in caplog.text  # one device: the table says nothing
    saved = config_lib.load(CONFIG + f":data={DATA}/train.jsonl")  # the named variant alone: 1,280 rows
    assert config_lib.model_config(config_lib.resolve(saved))["llm"]["vocab_size"] == 1280
    run_config = json.load(open(tmp_path / "config.json"))
    assert run_config["model"]["llm"]["vocab_size"] == 1452  # predict/evaluators.run rebuild the same model

    # Rerunning the finished run: one line saying so, nothing trained; the sharding table on request.
    caplog.clear()
    again = train(_config("total_steps=2", "log_sharding=True"), str(tmp_path), devices=jax.devices()[:1])
    out = capsys.readouterr().out
    assert again["start_step"] == again["step"] == 2 and not again["records"]
    assert "Run already finished at step 2/2 (checkpoint " in out and "nothing to do." in out
    assert "Resuming" not in out and "Training " not in out
    assert "Parameter sharding" in caplog.text


def test_explicit_vocab_size_or_model_init_is_kept_and_must_hold_the_tokenizer(tmp_path):
    config = config_lib.resolve(_config("model.llm.vocab_size=1280", "total_steps=2"))
    with pytest.raises(config_lib.ConfigError, match="1452 pieces but the model's vocabulary is 1280"):
        Setup(config, str(tmp_path), jax.devices()[:1])
    # The rule itself: from scratch and no llm.vocab_size.
    from trainers.setup import vocab_follows_tokenizer

    assert vocab_follows_tokenizer(config_lib.resolve(_config("total_steps=1")))
    assert not vocab_follows_tokenizer(config_lib.resolve(_config("total_steps=1", "model_init=x.npz")))


def test_released_model_argument_and_bad_model_name():
    config = config_lib.resolve(_config("total_steps=1", arg=",model=paligemma-3b-pt-448"))
    assert config.model_name == "paligemma-3b-448" and config.model_init == "paligemma-3b-pt-448"
    assert "resize(448)" in config.input.pp and config.lr == 1e-5
    with pytest.raises(ValueError, match="not a released checkpoint name"):
        _config(arg=",model=paligemma-huge")


def test_not_prepared_message_names_the_data_dir_actually_read(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    msg = tfds_source.not_prepared_message("vqa", None)
    assert f"not prepared in {tmp_path / 'tfds'}" in msg and "~/tensorflow_datasets" not in msg
    assert f"--data_dir {tmp_path / 'tfds'}" in msg
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert os.path.expanduser("~/tensorflow_datasets") in tfds_source.not_prepared_message("coco_captions", None)
    assert "in /data/x." in tfds_source.not_prepared_message("coco_captions", "/data/x")


def test_inspect_of_an_unbuilt_dataset_or_a_missing_eval_is_one_line(tmp_path):
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds"), JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    for args, expected in (
        (["--config", "configs/transfer/cococap.py"], f"not prepared in {tmp_path / 'tfds'}"),
        (["--config", f"{CONFIG}:data={DATA}/train.jsonl", "--eval", "nope"], "No eval 'nope'"),
    ):
        res = subprocess.run(
            [sys.executable, "-m", "datasets.inspect", *args], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and expected in res.stderr
        errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1, res.stderr
