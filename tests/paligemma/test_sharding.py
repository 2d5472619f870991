"""paligemma.sharding: mesh specs, per-parameter partition rules (tensor parallel + fsdp), global batches."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from paligemma import model as model_lib
from paligemma import sharding


def test_mesh_shape_fills_the_rest_and_rejects_bad_specs():
    assert sharding.mesh_shape([("data", -1)], 8) == (("data",), (8,))
    assert sharding.mesh_shape([("fsdp", -1), ("tensor", 2)], 8) == (("fsdp", "tensor"), (4, 2))
    for bad, words in [
        ([("data", 3)], "has 3 devices"),
        ([("data", -1), ("fsdp", -1)], "at most one"),
        ([("model", 8)], "unknown"),
        ([("data", 2), ("data", 4)], "repeated"),
        ([("tensor", 3), ("data", -1)], "not divisible"),
    ]:
        with pytest.raises(sharding.ShardingError, match=words):
            sharding.mesh_shape(bad, 8)


def test_make_mesh_over_all_or_some_devices():
    mesh = sharding.make_mesh([("fsdp", 4), ("tensor", 2)])
    assert dict(mesh.shape) == {"fsdp": 4, "tensor": 2}
    assert sharding.data_parallel_size(mesh) == 4 and sharding.batch_axes(mesh) == ("fsdp",)
    one = sharding.make_mesh([("data", -1)], jax.devices()[:1])
    assert dict(one.shape) == {"data": 1} and sharding.data_parallel_size(one) == 1


def test_tiny_model_specs_on_fsdp_and_tensor_mesh():
    mesh = sharding.make_mesh([("fsdp", 4), ("tensor", 2)])
    shapes = model_lib.param_shapes(model_lib.get_config("paligemma-tiny"))
    specs = sharding.param_specs(shapes, mesh, strategy=[(".*", "fsdp(min_size_mb=0)")])
    llm, img = specs["llm"], specs["img"]
    # Tensor rules on heads / MLP units / vocabulary, fsdp on the largest other divisible dim (never the layer dim).
    assert llm["layers"]["attn"]["q_einsum"]["w"] == P(None, "tensor", "fsdp", None)  # (L, N=4, D=64, H=16)
    assert llm["layers"]["mlp"]["gating_einsum"] == P(None, None, "fsdp", "tensor")  # (L, 2, D, F=128)
    assert llm["layers"]["mlp"]["linear"] == P(None, "tensor", "fsdp")  # (L, F, D)
    assert llm["embedder"]["input_embedding"] == P("tensor", "fsdp")  # (V=1280, D)
    # K=1 kv head: the tensor split does not divide, so that dim stays whole.
    assert llm["layers"]["attn"]["kv_einsum"]["w"] == P(None, None, None, "fsdp", None)
    assert img["Transformer"]["encoderblock"]["MlpBlock_0"]["Dense_0"]["kernel"] == P(None, "fsdp", "tensor")
    assert llm["final_norm"]["scale"] == P("fsdp")
    # Every spec divides its dims.
    flat_specs, flat_shapes = sharding.flatten(specs), sharding.flatten(shapes)
    for name, spec in flat_specs.items():
        for size, axes in zip(flat_shapes[name].shape, tuple(spec) + (None,) * 8):
            assert size % sharding.axis_size(mesh, axes) == 0, name


def test_strategy_minimum_size_replicate_and_custom_rules():
    mesh = sharding.make_mesh([("data", 8)])
    name, shape = "llm/layers/mlp/linear", (2, 128, 64)
    # Default min size (4 MiB): small arrays stay replicated. No fsdp axis in the mesh: fsdp uses `data`.
    assert sharding.param_spec(name, shape, mesh) == P(None, None, None)
    assert sharding.param_spec(name, shape, mesh, strategy=[(".*", "fsdp(min_size_mb=0)")]) == P(None, "data", None)
    assert sharding.param_spec(name, shape, mesh, strategy=[(".*", "replicate")]) == P(None, None, None)
    # Not a stacked parameter: dim 0 is a candidate too; ties go to the later dim.
    assert sharding.param_spec("img/head/kernel", (64, 64), mesh, strategy=[(".*", "fsdp(min_size_mb=0)")]) == P(
        None, "data"
    )
    # An explicit rule over two axes.
    mesh2 = sharding.make_mesh([("data", 2), ("fsdp", 2), ("tensor", 2)])
    spec = sharding.param_spec(
        "x", (8, 6), mesh2, rules=[("^x$", (("data", "tensor"), None))], strategy=[(".*", "fsdp(min_size_mb=0)")]
    )
    assert spec == P(("data", "tensor"), "fsdp")
    with pytest.raises(sharding.ShardingError, match="one entry"):
        sharding.param_spec("x", (8, 6), mesh2, rules=[("^x$", ("tensor",))])
    with pytest.raises(sharding.ShardingError, match="unknown kind"):
        sharding.param_spec("x", (8, 6), mesh2, strategy=[(".*", "zero3")])


def test_put_batch_builds_global_arrays_split_over_batch_axes():
    mesh = sharding.make_mesh([("fsdp", 4), ("tensor", 2)])
    batch = {"text": np.arange(16, dtype=np.int32).reshape(8, 2), "names": np.array([b"a"] * 8, dtype=object)}
    out = sharding.put_batch(batch, mesh)
    assert out["text"].shape == (8, 2) and out["text"].sharding.spec == P(("fsdp",))
    np.testing.assert_array_equal(np.asarray(out["text"]), batch["text"])
    assert isinstance(out["names"], np.ndarray)  # strings stay on the host
    shard_rows = {d.id: s.data.shape[0] for s in out["text"].addressable_shards for d in [s.device]}
    assert set(shard_rows.values()) == {2}


def test_put_batch_replicates_a_batch_the_mesh_does_not_divide_on_one_process():
    mesh = sharding.make_mesh([("data", 8)])
    out = sharding.put_batch({"x": np.arange(3, dtype=np.float32)}, mesh)
    assert out["x"].sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(out["x"]), [0, 1, 2])


def test_activations_follow_the_batch_axes_of_the_mesh_context_and_nothing_changes_without_one():
    cfg = model_lib.get_config("paligemma-tiny")
    model = model_lib.Model(**cfg)
    params = model_lib.init_params(cfg, jax.random.key(0))
    image, text, mask_ar = model_lib.dummy_inputs(cfg, batch_size=8, text_len=5)
    image = jax.random.uniform(jax.random.key(1), image.shape, minval=-1, maxval=1)
    text = jax.random.randint(jax.random.key(2), text.shape, 0, 1000)
    hidden = jax.jit(lambda p, *a: model.apply({"params": p}, *a, method="hidden_states")[0])
    plain = hidden(params, image, text, mask_ar)
    mesh = sharding.make_mesh([("data", 4), ("tensor", 2)])
    on_mesh = jax.device_put((params, image, text, mask_ar), sharding.replicated(mesh))  # nothing says "batch"
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        split = hidden(*on_mesh)
    assert split.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 3)  # rows over data, rest replicated
    np.testing.assert_allclose(np.asarray(split), np.asarray(plain), rtol=1e-5, atol=1e-5)
    # No mesh context: the same program as before (the constraint is a no-op), rows wherever XLA puts them.
    assert hidden(*on_mesh).sharding.is_equivalent_to(NamedSharding(mesh, P()), 3)
