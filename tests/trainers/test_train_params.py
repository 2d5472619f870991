"""`model_init` loading keeps the checkpoint in its stored dtype on the host and casts shard by shard as it places the
arrays: a bfloat16 .npz gives exactly the float32 parameters it gave when the whole file was cast on the host first
(same resolution, a resampled position embedding, an extended vocabulary)."""

import types

import jax
import ml_collections
import numpy as np
import pytest

from paligemma import checkpoints, sharding, tree
from paligemma import model as model_lib
from trainers import params as params_lib


def _setup(model_config, path):
    return types.SimpleNamespace(
        cfg=ml_collections.ConfigDict(dict(model_load=dict(dont_load=[]))),
        shapes=model_lib.param_shapes(model_config),
        init_path=str(path),
        model_config=model_config,
        model=model_lib.Model(**model_config),
        compiler_options=None,
    )


def _shardings(shapes):
    mesh = sharding.make_mesh([("data", -1)])
    specs = sharding.param_specs(shapes, mesh, strategy=[(".*", "fsdp")])
    return tree.flatten(sharding.to_shardings(specs, mesh))


@pytest.mark.parametrize("change", ["none", "resolution", "vocabulary"])
def test_a_bfloat16_checkpoint_loads_to_the_same_params_as_a_host_cast(change, tmp_path, monkeypatch):
    stored = model_lib.get_config("paligemma-tiny")
    path = tmp_path / "ckpt.bf16.npz"
    checkpoints.save_npz(path, model_lib.init_params(stored, jax.random.key(0)), dtype="bfloat16")
    config = model_lib.get_config("paligemma-tiny")
    if change == "resolution":
        config["img"]["image_size"] = 48  # 4x4 -> 6x6 patches: the position embedding is resampled
    if change == "vocabulary":
        config["llm"]["vocab_size"] = stored["llm"]["vocab_size"] + 64
    setup = _setup(config, path)

    # What loading did before: the whole checkpoint cast to float32 on the host, resampled at the model's resolution.
    _, before = checkpoints.load(path, dtype="float32", image_size=config["img"]["image_size"])
    before = tree.flatten(before)

    host_dtypes = {}
    original_load = checkpoints.load

    def recording_load(*args, **kwargs):
        out = original_load(*args, **kwargs)
        host_dtypes.update({n: a.dtype for n, a in tree.flatten(out[1]).items()})
        return out

    monkeypatch.setattr(checkpoints, "load", recording_load)
    params = tree.flatten(params_lib.loaded_params(setup, _shardings(setup.shapes), jax.random.key(1)))

    assert set(host_dtypes.values()) == {np.dtype(checkpoints.DTYPES["bfloat16"])}  # never cast on the host
    assert set(params) == set(before)
    for name, value in params.items():
        assert value.dtype == np.float32, name
        got = np.asarray(value)
        if change == "vocabulary" and name == params_lib.EMBEDDING:
            rows = before[name].shape[0]
            np.testing.assert_array_equal(got[:rows], before[name])
            assert got.shape[0] == rows + 64 and np.all(np.isfinite(got[rows:]))
        else:
            np.testing.assert_array_equal(got, before[name], err_msg=name)
    if change == "resolution":
        assert params["img/pos_embedding"].shape == (1, 36, before["img/pos_embedding"].shape[-1])
