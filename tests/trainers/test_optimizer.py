"""trainers.optimizer / step / config units: schedules, weight-decay and lr multipliers, losses, config checks."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from paligemma import loss
from paligemma import model as model_lib
from trainers import config as config_lib
from trainers import optimizer, step


def _opt_config(**overrides):
    base = dict(
        optax_name="sgd",
        optax={},
        lr=0.1,
        wd=0.0,
        wd_mults=config_lib.DEFAULT_WD_MULTS,
        lr_mults=(),
        schedule=dict(decay_type="constant", warmup_steps=0, warmup_percent=0.0, end_factor=0.0, timescale=10_000),
        grad_clip_norm=None,
    )
    base.update(overrides)
    return ml_collections.ConfigDict(base, type_safe=False)


def test_schedules():
    cos = optimizer.make_schedule(dict(decay_type="cosine", warmup_steps=2, end_factor=0.0), total_steps=10)
    np.testing.assert_allclose([float(cos(t)) for t in (0, 1, 2, 6, 10)], [0.5, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
    lin = optimizer.make_schedule(dict(decay_type="linear", warmup_percent=0.0, end_factor=0.2), total_steps=10)
    np.testing.assert_allclose([float(lin(t)) for t in (0, 5, 10)], [1.0, 0.6, 0.2], atol=1e-6)
    rsqrt = optimizer.make_schedule(dict(decay_type="rsqrt", warmup_steps=0, timescale=4), total_steps=100)
    np.testing.assert_allclose(float(rsqrt(12)), 1 / math.sqrt(4.0), rtol=1e-6)
    const = optimizer.make_schedule(dict(decay_type="constant", warmup_percent=0.5), total_steps=4)
    np.testing.assert_allclose([float(const(t)) for t in range(4)], [0.5, 1.0, 1.0, 1.0])


def test_weight_decay_and_lr_multipliers_apply_where_configured():
    params = {
        "llm": {
            "layers": {"mlp": {"linear": jnp.full((2, 2), 2.0)}, "pre_ffw_norm": {"scale": jnp.ones(2)}},
            "embedder": {"input_embedding": jnp.full((3, 2), 4.0)},
        },
        "img": {"head": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}},
    }
    grads = jax.tree.map(jnp.ones_like, params)
    cfg = _opt_config(wd=0.01, lr_mults=[("^img/", 0.5)], wd_mults=[("embedder", 2.0), *config_lib.DEFAULT_WD_MULTS])
    tx, lr_fn = optimizer.make_optimizer(cfg, params, total_steps=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    lr, wd = 0.1, 0.01
    expected = {  # -(lr * lr_mult * g + wd * wd_mult * p)
        "llm/layers/mlp/linear": -(lr * 1 + wd * 1 * 2.0),  # default wd rule covers the LLM weights
        "llm/layers/pre_ffw_norm/scale": -(lr * 1),  # norms: no decay
        "llm/embedder/input_embedding": -(lr * 1 + wd * 2 * 4.0),  # first matching rule wins
        "img/head/kernel": -(lr * 0.5 + wd * 1 * 1.0),  # lr multiplier; image weights decay too
        "img/head/bias": -(lr * 0.5),  # biases: no decay
    }
    flat = optimizer.flatten(updates)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(flat[name]), value, rtol=1e-6, err_msg=name)
    assert float(lr_fn(3)) == pytest.approx(0.1)


def test_adam_clipping_and_frozen_names():
    params = {"a": jnp.zeros(3), "b": {"kernel": jnp.zeros((2, 2))}}
    cfg = _opt_config(optax_name="adam", grad_clip_norm=1.0)
    tx, _ = optimizer.make_optimizer(cfg, params, total_steps=5)
    grads = {"a": jnp.full(3, 100.0), "b": {"kernel": jnp.full((2, 2), -100.0)}}
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.1, rtol=1e-4)  # Adam's first step is lr * sign(g)
    assert optimizer.frozen_names(["img/a", "llm/b", "img/c"], ["^img/"]) == ["img/a", "img/c"]
    with pytest.raises(optimizer.OptimizerConfigError, match="config.optax"):
        optimizer.make_optimizer(_opt_config(optax_name="adam", optax={"bogus": 1}), params, total_steps=5)


def test_loss_normalisation_and_label_smoothing():
    nll = jnp.array([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    weights = jnp.array([[1, 1, 0], [1, 0, 0]])
    total, denom = step.loss_parts(nll, weights, "example")
    assert float(total / denom) == pytest.approx((2.0 + 2.0) / 2)  # mean of per-example means
    total, denom = step.loss_parts(nll, weights, "token")
    assert float(total / denom) == pytest.approx(6.0 / 3)
    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1]]]))
    targets = jnp.array([[0]])
    assert float(loss.token_nll(logits, targets)[0, 0]) == pytest.approx(-math.log(0.7), rel=1e-6)
    smoothed = float(loss.token_nll(logits, targets, 0.3)[0, 0])
    soft = 0.7 * np.eye(3)[0] + 0.3 / 3
    assert smoothed == pytest.approx(-np.sum(soft * np.log([0.7, 0.2, 0.1])), rel=1e-6)


def test_microbatches_interleave_rows():
    batch = {"x": jnp.arange(8)}
    micro = step.split_microbatches(batch, 4)["x"]
    np.testing.assert_array_equal(micro, [[0, 4], [1, 5], [2, 6], [3, 7]])


def test_config_defaults_nearest_key_and_value_checks():
    base = dict(
        model_name="paligemma-tiny",
        input=dict(data=dict(name="jsonl", path="x"), pp="keep()", batch_size=8),
        total_steps=10,
    )
    cfg = config_lib.resolve(base)
    assert cfg.optax_name == "adam" and cfg.loss_norm == "example" and cfg.schedule.warmup_percent == 0.05
    assert cfg.input.shuffle_buffer_size == 10_000 and list(cfg.mesh) == [("data", -1)]
    for bad, pattern in [
        ({"lr_mult": []}, "did you mean 'lr_mults'"),
        ({"input": {**base["input"], "batchsize": 2}}, "input.batchsize'; did you mean 'batch_size'"),
        ({"total_epochs": 2}, "exactly one of"),
        ({"loss_norm": "batch"}, "'example' or 'token'"),
        ({"optax": {"weight_decay": 0.1}}, "config.wd"),
        ({"freeze": "img"}, "list of regexes"),
        ({"wd_mults": [("(", 1.0)]}, "bad regex"),
    ]:
        with pytest.raises(config_lib.ConfigError, match=pattern):
            config_lib.resolve({**base, **bad})
    with pytest.raises(config_lib.ConfigError, match="input.pp is required"):
        config_lib.resolve({**base, "input": dict(data={}, batch_size=8)})
    assert config_lib.num_steps(config_lib.resolve({**base, "total_steps": None, "total_epochs": 2.5}), 100) == 31


def test_load_config_file_with_argument(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(
        "import ml_collections\n\ndef get_config(arg=None):\n"
        "    return ml_collections.ConfigDict(dict(seed=int(arg or 0)))\n"
    )
    assert config_lib.load(f"{path}:7").seed == 7 and config_lib.load(str(path)).seed == 0
    with pytest.raises(config_lib.ConfigError, match="not found"):
        config_lib.load(str(tmp_path / "missing.py"))


def test_bf16_compute_keeps_float32_master_params_and_optimizer_state():
    model_config = model_lib.get_config("paligemma-tiny")
    model_config["llm"].update(dtype="bfloat16", dropout=0.1)
    model_config["img"].update(dtype="bfloat16")
    model = model_lib.Model(**model_config)
    shapes = model_lib.param_shapes(model_config)
    tx, lr_fn = optimizer.make_optimizer(_opt_config(optax_name="adam"), shapes, total_steps=10)
    fn = step.make_train_step(model, tx, trainable=list(optimizer.flatten(shapes)), lr_fn=lr_fn, accum_steps=2)
    text = jax.ShapeDtypeStruct((4, 8), jnp.int32)
    batch = dict(
        image=jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32),
        text=text,
        mask_ar=text,
        mask_loss=text,
        mask_input=text,
    )
    args = (shapes, jax.eval_shape(tx.init, shapes), batch, jnp.int32(0), jax.random.key(0))
    params, opt_state, metrics = jax.eval_shape(fn, *args)
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    assert {x.dtype for x in jax.tree.leaves(opt_state)} <= {np.dtype(np.float32), np.dtype(np.int32)}
    assert {x.dtype for x in metrics.values()} == {np.dtype(np.float32)}
    jaxpr = str(jax.make_jaxpr(fn)(*args))
    assert "bf16" in jaxpr and "dot_general" in jaxpr  # the matmuls run in bfloat16


@pytest.mark.parametrize("name, kwargs", [("adafactor", {}), ("sgd", {"momentum": 0.9}), ("adamw", {"b2": 0.95})])
def test_other_optimizers_update_finitely(name, kwargs):
    params = {"llm": {"w": jnp.ones((256, 128)), "b": jnp.ones(3)}}
    tx, _ = optimizer.make_optimizer(_opt_config(optax_name=name, optax=kwargs, wd=1e-4), params, total_steps=3)
    state = tx.init(params)
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) and float(jnp.abs(u).max()) > 0 for u in jax.tree.leaves(updates))
