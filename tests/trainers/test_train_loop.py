"""trainers.train in-process on 8 CPU devices: mesh equivalence, accumulation, freezing, NaN stop, model_init, evals."""

import json
import os
import runpy

import jax
import numpy as np
import pytest

from paligemma import checkpoints, siglip, tree
from paligemma import model as model_lib
from paligemma.checkpoints import training as checkpointing
from trainers import train as train_lib
from trainers.data import TrainData

TINY = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "train", "tiny.py"))
STEPS = 10
FAST = TINY["FAST_XLA"]


def run(config, workdir, **kwargs):
    return train_lib.train(config, str(workdir), compiler_options=FAST, **kwargs)


def tiny_config(assets, **overrides):
    """The fixture config, STEPS steps, 2 data shards, with `overrides` ("input.data_shards" style keys)."""
    config = TINY["get_config"](assets)
    config.total_steps = STEPS
    config.input.data_shards = 2
    return TINY["override"](config, **overrides)


def losses(result):
    return np.array([r["training_loss"] for r in result["records"] if "training_loss" in r])


@pytest.fixture(scope="module")
def data_parallel_run(tiny_assets, tmp_path_factory):
    """8-way data parallel, 2 data shards (also the reference of the multi-process test)."""
    workdir = str(tmp_path_factory.mktemp("dp8"))
    return run(tiny_config(tiny_assets), workdir), workdir


@pytest.fixture(scope="module")
def single_device_run(tiny_assets, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("one"))
    return run(tiny_config(tiny_assets), workdir, devices=jax.devices()[:1]), workdir


def test_logs_metrics_config_and_checkpoint(data_parallel_run):
    result, workdir = data_parallel_run
    assert result["step"] == STEPS and not result["preempted"] and result["checkpoint_step"] == STEPS
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all({"training_loss", "lr", "grad_norm"} <= set(r) for r in records)
    assert all(np.isfinite(r["training_loss"]) for r in records)
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["input"]["batch_size"] == 8 and saved["loss_norm"] == "example"  # defaults filled in
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    step, params = checkpointing.latest_params(workdir)
    assert step == STEPS and params["llm"]["embedder"]["input_embedding"].shape == (TINY["VOCAB"] + 1152, 64)


def test_same_losses_on_one_device_data_parallel_and_fsdp_tensor(
    data_parallel_run, single_device_run, tiny_assets, tmp_path
):
    fsdp_tp = run(tiny_config(tiny_assets, mesh=[("fsdp", 4), ("tensor", 2)]), tmp_path)
    one, dp8 = losses(single_device_run[0]), losses(data_parallel_run[0])
    assert len(one) == STEPS and one[0] > one[-1]  # it learns
    np.testing.assert_allclose(dp8, one, rtol=1e-5)
    np.testing.assert_allclose(losses(fsdp_tp), one, rtol=1e-5)


def test_accumulating_four_microbatches_matches_the_full_batch(single_device_run, tiny_assets, tmp_path):
    accum = run(tiny_config(tiny_assets, accum_steps=4), tmp_path, devices=jax.devices()[:1])
    np.testing.assert_allclose(losses(accum), losses(single_device_run[0]), rtol=1e-5)


def _initial_params(config):
    init_rng, _ = jax.random.split(jax.random.key(config.seed))
    model_config = {
        "img": dict(model_lib.get_config("paligemma-tiny")["img"]),
        "llm": {**model_lib.get_config("paligemma-tiny")["llm"], **config.model.llm},
    }
    return _init(model_config, init_rng), model_config


def _init(model_config, rng):
    params = jax.jit(lambda r: model_lib.init_params(model_config, r), compiler_options=FAST)(rng)
    return tree.flatten(jax.device_get(params))


def test_nan_in_the_data_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_assets, tmp_path, monkeypatch):
    original = TrainData.__next__
    seen = []

    def poisoned(self):
        batch = original(self)
        seen.append(1)
        if len(seen) == 3:
            batch = dict(batch, image=np.full_like(batch["image"], np.nan))
        return batch

    monkeypatch.setattr(TrainData, "__next__", poisoned)
    with pytest.raises(train_lib.TrainingDiverged, match="at step 3;.*last good checkpoint is step 2"):
        run(tiny_config(tiny_assets, ckpt_steps=2), tmp_path)
    step, params = checkpointing.latest_params(str(tmp_path))
    assert step == 2
    assert all(np.isfinite(v).all() for v in tree.flatten(params).values())
    steps = [json.loads(line)["step"] for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
    assert max(steps) == 2


def _opt_state_paths(workdir, step):
    import orbax.checkpoint as ocp

    meta = ocp.PyTreeCheckpointer().metadata(os.path.join(workdir, "checkpoints", str(step), "opt_state"))
    tree = getattr(meta.item_metadata, "tree", meta.item_metadata)
    return [
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def test_model_init_freeze_lr_mults_and_evals(tiny_assets, tmp_path):
    """model_init (dont_load, vocabulary extension, resolution change), frozen params, lr multiplier 0, evals."""
    # A checkpoint at 16 px (2x2 position grid) with a smaller vocabulary than the run's.
    small_vocab = TINY["VOCAB"] + 1152 - 40
    ckpt_config = model_lib.get_config("paligemma-tiny")
    ckpt_config["img"]["image_size"] = 16
    ckpt_config["llm"]["vocab_size"] = small_vocab
    ckpt = _init(ckpt_config, jax.random.key(42))
    path = str(tmp_path / "init.npz")
    checkpoints.save_npz(path, tree.unflatten(ckpt))
    evals = {
        "val": dict(
            type="perplexity",
            data=dict(name="jsonl", path=os.path.join(tiny_assets, "data.jsonl")),
            pp=TINY["PP"].format(size=32, text_len=16),
            batch_size=8,
            log_steps=2,
        )
    }
    config = tiny_config(
        tiny_assets,
        total_steps=3,
        model_init=path,
        freeze=["^img/", "^llm/embedder/"],
        lr_mults=[("^llm/final_norm/", 0.0)],
        evals=evals,
        **{"model_load.dont_load": ["^img/head/"]},
    )
    result = run(config, tmp_path / "run")
    _, params = checkpointing.latest_params(str(tmp_path / "run"))
    params = tree.flatten(params)
    random, _ = _initial_params(config)

    # Frozen: exactly the initial values, which come from the checkpoint, except what dont_load names.
    emb = params["llm/embedder/input_embedding"]
    np.testing.assert_array_equal(emb[:small_vocab], ckpt["llm/embedder/input_embedding"])
    np.testing.assert_array_equal(emb[small_vocab:], random["llm/embedder/input_embedding"][small_vocab:])
    for name in ("img/head/kernel", "img/head/bias"):
        np.testing.assert_array_equal(params[name], random[name])
    expected_pos = siglip.resample_posemb(ckpt["img/pos_embedding"], (2, 2), (4, 4))
    np.testing.assert_allclose(params["img/pos_embedding"], expected_pos, rtol=1e-6)
    for name in ckpt:
        if name.startswith("img/") and not name.startswith(("img/head/", "img/pos_embedding")):
            np.testing.assert_array_equal(params[name], ckpt[name], err_msg=name)
    # lr multiplier 0: unchanged; the rest trains.
    np.testing.assert_array_equal(params["llm/final_norm/scale"], ckpt["llm/final_norm/scale"])
    assert not np.array_equal(params["llm/layers/mlp/linear"], ckpt["llm/layers/mlp/linear"])
    # No optimizer state for frozen params.
    paths = _opt_state_paths(str(tmp_path / "run"), 3)
    assert any("llm/layers" in p for p in paths)
    assert not any("img" in p or "embedder" in p for p in paths)
    # The perplexity evaluator ran at steps 1, 2 (log_steps) and 3 (the end).
    assert [r["step"] for r in result["records"] if "val/perplexity" in r] == [1, 2, 3]
    assert all(np.isfinite(r["val/nll"]) for r in result["records"] if "val/nll" in r)


def test_a_relative_workdir_checkpoints_and_resumes(tiny_assets, tmp_path, monkeypatch):
    """`--workdir runs/x` (what `make demo` passes) works like an absolute path: periodic checkpoints, resume and
    reading the latest params back."""
    monkeypatch.chdir(tmp_path)
    result = run(tiny_config(tiny_assets, total_steps=4, ckpt_steps=2), "runs/rel")
    assert result["step"] == 4 and result["checkpoint_step"] == 4
    again = run(tiny_config(tiny_assets, total_steps=4, ckpt_steps=2), "runs/rel")
    assert again["start_step"] == 4
    step, params = checkpointing.latest_params("runs/rel")  # what evaluators.run / tools.predict read
    assert step == 4 and "llm" in params
