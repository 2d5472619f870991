"""LoRA fine-tuning in the trainer: only adapters train and are saved, resume is exact, export merges them."""

import json
import os
import runpy
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paligemma import checkpoints, lora, tree
from paligemma import model as model_lib
from paligemma.checkpoints import training
from trainers import train as train_lib

TINY = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "train", "tiny.py"))
LORA = dict(rank=4, alpha=8, targets=["^llm/layers/", "^img/Transformer/.*/(query|value)/kernel$"])


def run(config, workdir):
    return train_lib.train(config, str(workdir), compiler_options=TINY["FAST_XLA"])


def lora_config(assets, **overrides):
    config = TINY["get_config"](assets)
    config.input.data_shards = 2
    config.total_steps = 4
    config.ckpt_steps = 2
    config.lr = 1e-2
    config.lora = dict(LORA)
    return TINY["override"](config, **overrides)


def _model_config(config):
    return training.model_config_from(config)


def _opt_state_names(workdir, step):
    import orbax.checkpoint as ocp

    meta = ocp.PyTreeCheckpointer().metadata(os.path.join(workdir, "checkpoints", str(step), "opt_state"))
    leaves = jax.tree_util.tree_flatten_with_path(getattr(meta.item_metadata, "tree", meta.item_metadata))[0]
    return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path) for path, _ in leaves]


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory, random_params):
    """A model_init .npz of the tiny run's model (random weights)."""
    config = TINY["get_config"]("/unused")
    params = random_params(_model_config(config), seed=3)
    path = str(tmp_path_factory.mktemp("base") / "base.npz")
    checkpoints.save_npz(path, params)
    return path, tree.flatten(params)


def test_lora_run_trains_saves_and_exports_only_what_it_should(tiny_assets, tmp_path, base_checkpoint, capsys):
    base_path, base = base_checkpoint
    workdir = tmp_path / "run"
    evals = {
        "val": dict(
            type="perplexity",
            data=dict(name="jsonl", path=os.path.join(tiny_assets, "data.jsonl")),
            pp=TINY["PP"].format(size=32, text_len=16),
            batch_size=8,
            log_steps=2,
        )
    }
    # Adapter dropout while training; the evaluator runs the adapters without it (deterministic, no dropout key).
    config = lora_config(tiny_assets, model_init=base_path, export_npz=True, evals=evals, lora=dict(LORA, dropout=0.1))
    result = run(config, workdir)
    assert "Trainable: 8,960 LoRA rank 4 adapters (35.0 KiB), optimizer state 70.0 KiB" in capsys.readouterr().out
    assert [r["step"] for r in result["records"] if "val/perplexity" in r] == [1, 2, 4]
    losses = [r["training_loss"] for r in result["records"] if "training_loss" in r]
    assert losses[-1] < losses[0]

    # Checkpoints hold the adapters only (plus optimizer state for them only) and point to the base.
    step, saved = training.latest_params(str(workdir))
    saved = tree.flatten(saved)
    model_config = _model_config(config)
    lcfg = lora.LoraConfig.from_dict(LORA)  # (dropout aside: the same adapters)
    assert step == 4 and set(saved) == set(lora.adapter_shapes(model_config, lcfg))
    moments = [n for n in _opt_state_names(str(workdir), 4) if "/mu/" in n or "/nu/" in n]  # Adam's, per param
    assert moments and all(lora.is_adapter(n) for n in moments)
    assert json.loads((workdir / "lora_base.json").read_text()) == {"path": base_path}
    assert any(np.any(saved[n] != 0) for n in saved if n.endswith("_lora_b"))  # trained

    # The export is the plain model with the adapters merged: same logits as the adapted model.
    _, exported = checkpoints.load(str(workdir / "params.npz"))
    exported = tree.flatten(exported)
    assert set(exported) == set(base)
    for name in (
        "llm/embedder/input_embedding",
        "img/head/kernel",
        "img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel",
    ):
        np.testing.assert_array_equal(exported[name], base[name])  # not targeted: untouched
    assert not np.array_equal(exported["llm/layers/attn/q_einsum/w"], base["llm/layers/attn/q_einsum/w"])
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    text = jnp.asarray(rng.integers(0, 300, (2, 6)), jnp.int32)
    mask_ar = jnp.zeros_like(text)
    full = jax.tree.map(jnp.asarray, tree.unflatten({**base, **saved}))
    adapted, _ = lora.adapted_model(model_lib.Model(**model_config), lcfg).apply({"params": full}, image, text, mask_ar)
    plain, _ = model_lib.Model(**model_config).apply({"params": tree.unflatten(exported)}, image, text, mask_ar)
    assert float(jnp.abs(plain - adapted).max() / jnp.abs(adapted).max()) < 1e-5

    # evaluators.run / tools.predict read the workdir as the merged plain params.
    _, loaded, loaded_step, source = training.load_any(str(workdir))
    assert loaded_step == 4 and "LoRA adapters merged" in source
    for name, value in tree.flatten(loaded).items():
        np.testing.assert_allclose(value, exported[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_lora_from_a_random_base_keeps_it_and_resumes_exactly(tiny_assets, tmp_path):
    """Without model_init the random base is written once to the workdir; a run resumed from step 2 ends with the
    very adapters of the uninterrupted run."""
    full = tmp_path / "full"
    run(lora_config(tiny_assets), full)
    assert json.loads((full / "lora_base.json").read_text()) == {"path": str(full / "lora_base.npz")}
    _, want = training.latest_params(str(full))

    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns("4"))
    (resumed / "lora_base.json").write_text(json.dumps({"path": str(full / "lora_base.npz")}))
    again = run(lora_config(tiny_assets), resumed)
    assert again["start_step"] == 2 and again["step"] == 4
    _, got = training.latest_params(str(resumed))
    for name, value in tree.flatten(want).items():
        np.testing.assert_array_equal(tree.flatten(got)[name], value, err_msg=name)


def test_a_missing_base_is_one_clear_error(tiny_assets, tmp_path):
    workdir = tmp_path / "run"
    run(lora_config(tiny_assets, total_steps=2), workdir)
    os.remove(workdir / "lora_base.npz")
    with pytest.raises(checkpoints.CheckpointError, match="base checkpoint .* does not exist any more"):
        training.load_any(str(workdir))


def test_qlora_trains_on_an_int8_base_and_exports_what_it_computes(tiny_assets, tmp_path, base_checkpoint):
    """QLoRA: the frozen base is quantized (int8) where it is read; the export (the dequantized base with the adapters
    merged) and the workdir read back reproduce the quantized adapted model."""
    base_path, base = base_checkpoint
    section = dict(LORA, targets=["^llm/layers/"], quantize="int8")
    config = lora_config(tiny_assets, model_init=base_path, export_npz=True, lora=section)
    result = run(config, tmp_path / "run")
    losses = [r["training_loss"] for r in result["records"] if "training_loss" in r]
    assert losses[-1] < losses[0]

    model_config, lcfg = _model_config(config), lora.LoraConfig.from_dict(section)
    _, saved = training.latest_params(str(tmp_path / "run"))
    quantized = lora.quantize_base(tree.unflatten({**base, **tree.flatten(saved)}), model_config, lcfg)
    assert lora.is_quantized(tree.flatten(quantized)["llm/layers/attn/q_einsum/w"])
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    text = jnp.asarray(rng.integers(0, 300, (2, 6)), jnp.int32)
    mask_ar = jnp.zeros_like(text)
    adapted = jax.jit(
        lambda p: lora.adapted_model(model_lib.Model(**model_config), lcfg).apply({"params": p}, image, text, mask_ar)[
            0
        ]
    )(quantized)
    _, exported = checkpoints.load(str(tmp_path / "run" / "params.npz"))
    plain, _ = model_lib.Model(**model_config).apply({"params": exported}, image, text, mask_ar)
    assert float(jnp.abs(plain - adapted).max() / jnp.abs(adapted).max()) < 1e-5
    _, loaded, _, _ = training.load_any(str(tmp_path / "run"))
    for name, value in tree.flatten(loaded).items():
        np.testing.assert_allclose(value, tree.flatten(exported)[name], rtol=1e-6, atol=1e-7, err_msg=name)
