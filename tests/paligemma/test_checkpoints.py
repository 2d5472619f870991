"""Checkpoint I/O: .npz (big_vision layout), PyTorch-hub folders without torch, this project's format, the CLI."""

import dataclasses
import json
import logging
import os
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

from paligemma import checkpoints, siglip, tree
from paligemma import model as model_lib
from tools import convert_checkpoint

# Tiny configs with explicit Gemma 1 (MQA) and Gemma 2 (GQA, soft-caps, post norms) decoders.
TINY1 = model_lib.get_config("paligemma-tiny")
TINY2 = model_lib.get_config("paligemma2-tiny")
BF16 = np.dtype(ml_dtypes.bfloat16)


def random_params(config, seed=0):
    """Random float32 params with the model's tree (numpy, no tracing of the model's forward pass)."""
    rng = np.random.default_rng(seed)
    shapes = model_lib.param_shapes(config)
    return jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)


def assert_trees_equal(a, b):
    fa, fb = tree.flatten(a), tree.flatten(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name].dtype == fb[name].dtype, name
        np.testing.assert_array_equal(np.asarray(fa[name]), np.asarray(fb[name]), err_msg=name)


def cast(tree, dtype):
    return jax.tree.map(lambda x: np.asarray(x).astype(dtype), tree)


@pytest.fixture(scope="module")
def params1():
    return random_params(TINY1, 1)


@pytest.fixture(scope="module")
def params2():
    return random_params(TINY2, 2)


# ---------------------------------------------------------------------------------------------------------------
# .npz


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_npz_round_trip(tmp_path, params2, dtype):
    path = str(tmp_path / "ckpt.npz")
    checkpoints.save_npz(path, params2, dtype=dtype)
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was renamed into place
    with np.load(path, allow_pickle=False) as raw:  # what big_vision sees
        emb = raw["llm/embedder/input_embedding"]
        assert emb.dtype == (np.dtype("V2") if dtype == "bfloat16" else np.dtype(dtype))
        assert len(raw.files) == len(tree.flatten(params2))
    config, loaded = checkpoints.load(path)
    expected = cast(params2, checkpoints.DTYPES[dtype])
    assert_trees_equal(loaded, expected)
    assert config["llm"]["post_norms"] and config["llm"]["attn_logits_softcap"] == 50.0
    # Cast while loading.
    _, as_f32 = checkpoints.load(path, dtype="float32")
    assert_trees_equal(as_f32, cast(expected, np.float32))


@pytest.mark.parametrize("wrapper", ["params/", "opt/target/"])
def test_npz_wrapper(tmp_path, params1, wrapper):
    path = str(tmp_path / "wrapped.npz")
    flat = {wrapper + k: v for k, v in tree.flatten(params1).items()}
    if wrapper == "opt/target/":
        flat["opt/state/count"] = np.zeros((), np.int32)  # other optimizer state is ignored
    np.savez(path, **flat)
    _, loaded = checkpoints.load(path)
    assert_trees_equal(loaded, params1)


def test_own_format_round_trip(tmp_path, params2):
    config = {"img": dict(TINY2["img"]), "llm": dict(TINY2["llm"], sliding_window=8, final_logits_softcap=0.0)}
    folder = str(tmp_path / "ours")
    checkpoints.save(folder, config, params2, dtype="bfloat16")
    assert sorted(os.listdir(folder)) == ["config.json", "params.npz"]
    meta = json.load(open(os.path.join(folder, "config.json")))
    assert meta["format"] == "paligemma-jax" and meta["num_params"] == model_lib.count_params(params2)
    loaded_config, loaded = checkpoints.load(folder)
    assert loaded_config == config  # saved settings kept, sliding window included
    assert_trees_equal(loaded, cast(params2, BF16))
    assert checkpoints.load(folder, sliding_window=None)[0]["llm"]["sliding_window"] is None


# ---------------------------------------------------------------------------------------------------------------
# Config inference and parameter counts.


def _shapes(config):
    return {k: v.shape for k, v in tree.flatten(model_lib.param_shapes(config)).items()}


@pytest.mark.parametrize("name", ["paligemma-tiny", "paligemma2-tiny"])
def test_infer_config(name):
    config = model_lib.get_config(name)
    shapes = _shapes(config)
    inferred = checkpoints.infer_config(shapes)
    llm = model_lib.gemma.GemmaConfig(**config["llm"])
    img = siglip.SiglipConfig(**config["img"])
    for field in ("vocab_size", "width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim", "post_norms"):
        assert inferred["llm"][field] == getattr(llm, field), field
    for field in ("width", "depth", "mlp_dim", "num_heads", "patch_size", "image_size"):
        assert inferred["img"][field] == getattr(img, field), field
    gemma2 = name.startswith("paligemma2")
    assert inferred["llm"]["attn_logits_softcap"] == (50.0 if gemma2 else None)
    assert inferred["llm"]["final_logits_softcap"] == (30.0 if gemma2 else None)
    assert inferred["llm"]["query_pre_attn_scalar"] == llm.head_dim
    assert inferred["llm"]["sliding_window"] is None and inferred["img"]["pool_type"] == "none"
    assert _shapes(inferred) == shapes
    # The inferred config describes the same model (same behaviour fields), just spelled out without a variant.
    assert model_lib.gemma.GemmaConfig(**inferred["llm"]) == dataclasses.replace(llm, variant=None)
    assert siglip.SiglipConfig(**inferred["img"]) == dataclasses.replace(img, variant=None)


def test_infer_config_mha_map_head_and_27b_scale():
    config = {
        "img": dict(variant="mu/8", image_size=32, pool_type="map"),
        "llm": dict(variant="gemma_tiny", vocab_size=64, num_kv_heads=4),
    }  # qkv_einsum layout
    inferred = checkpoints.infer_config(_shapes(config))
    assert inferred["img"]["pool_type"] == "map" and inferred["llm"]["num_kv_heads"] == 4
    assert _shapes(inferred) == _shapes(config)
    big = checkpoints.infer_config(_shapes(model_lib.get_config("paligemma2-28b-448")))
    assert big["llm"]["query_pre_attn_scalar"] == 4608 / 32 and big["img"]["image_size"] == 448
    small = checkpoints.infer_config(_shapes(model_lib.get_config("paligemma2-3b-224")))
    assert small["llm"]["query_pre_attn_scalar"] == 256


REFERENCE_COUNTS = {  # docs/reference.md §1.6, at vocabulary 257152
    "paligemma-3b-224": 2_938_573_760,
    "paligemma-3b-448": 2_939_458_496,
    "paligemma-3b-896": 2_942_997_440,
    "paligemma2-3b-224": 3_047_333_312,
    "paligemma2-10b-224": 9_677_647_808,
    "paligemma2-28b-224": 27_665_430_464,
}
MAP_HEAD_PARAMS = 15_238_352  # SigLIP So400m's attention-pooling head, unused by PaliGemma


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_param_counts(name):
    config = model_lib.get_config(name)
    ours = model_lib.count_params(model_lib.param_shapes(config))
    assert ours + MAP_HEAD_PARAMS == REFERENCE_COUNTS[name]
    config["img"]["pool_type"] = "map"
    assert model_lib.count_params(model_lib.param_shapes(config)) == REFERENCE_COUNTS[name]


# ---------------------------------------------------------------------------------------------------------------
# Errors.


def test_truncated_and_garbage_npz(tmp_path, params1):
    path = tmp_path / "ok.npz"
    checkpoints.save_npz(path, params1)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(4096))
    for bad in (truncated, garbage):
        with pytest.raises(checkpoints.CheckpointError, match=str(bad)):
            checkpoints.load(bad)
    # Damaged bytes inside an array (the zip's CRC catches them).
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("llm/embedder/input_embedding.npy")
    damaged = bytearray(data)
    middle = info.header_offset + 200 + info.file_size // 2
    damaged[middle : middle + 8] = bytes(8 - i for i in range(8))
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(checkpoints.CheckpointError, match="damaged.npz.*(CRC|corrupt)"):
        checkpoints.load(tmp_path / "damaged.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        checkpoints.load(tmp_path / "missing.npz")


def test_pickled_member_rejected(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, **{"img/x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(checkpoints.CheckpointError, match="pickle"):
        checkpoints.load(path)


def test_mismatch_lists_every_offending_key(tmp_path, params1):
    flat = dict(tree.flatten(params1))
    del flat["llm/final_norm/scale"]
    flat["llm/extra/thing"] = np.zeros((3,), np.float32)
    flat["img/head/bias"] = np.zeros((65,), np.float32)
    flat["llm/layers/mlp/linear"] = np.zeros((2, 100, 64), np.float32)
    path = tmp_path / "bad.npz"
    checkpoints.save_npz(path, tree.unflatten(flat))
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load(path, config=TINY1)
    msg = str(err.value)
    assert str(path) in msg and "4 problems" in msg
    assert "missing     llm/final_norm/scale: expected (64,)" in msg
    assert "unexpected  llm/extra/thing: found (3,)" in msg
    assert "wrong shape img/head/bias: expected (64,), found (65,)" in msg
    assert "wrong shape llm/layers/mlp/linear: expected (2, 128, 64), found (2, 100, 64)" in msg

    # A different model: every array of the decoder is reported.
    good = tmp_path / "good.npz"
    checkpoints.save_npz(good, params1)
    other = {"img": TINY1["img"], "llm": dict(TINY1["llm"], depth=3)}
    with pytest.raises(checkpoints.CheckpointError, match="good.npz") as err:
        checkpoints.load(good, config=other)
    assert str(err.value).count("wrong shape llm/layers/") == 7


def test_hf_folder_mismatch_and_corruption(tmp_path, params1):
    tensors = checkpoints.to_hf(params1, TINY1)
    del tensors["language_model.model.norm.weight"]
    tensors["language_model.model.layers.0.mlp.up_proj.weight"] = np.zeros((7, 64), np.float32)
    tensors["vision_tower.vision_model.surprise"] = np.zeros((2,), np.float32)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(checkpoints.hf_config(TINY1)))
    checkpoints.write_safetensors(str(folder / "model.safetensors"), tensors)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load(folder)
    msg = str(err.value)
    assert "model.safetensors" in msg and "3 problems" in msg
    assert "missing     language_model.model.norm.weight: expected (64,)" in msg
    assert "wrong shape language_model.model.layers.0.mlp.up_proj.weight: expected (128, 64), found (7, 64)" in msg
    assert "unexpected  vision_tower.vision_model.surprise: found (2,)" in msg

    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(checkpoints.CheckpointError, match="model.safetensors.*truncated"):
        checkpoints.load(folder)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch-hub folders without torch: prefix styles, shards, padding, bfloat16, MAP head.


def test_hf_prefix_styles_shards_and_padding(tmp_path, params2):
    tensors = checkpoints.to_hf(params2, TINY2, pad_vocab_to=1300)
    assert tensors["language_model.model.embed_tokens.weight"].shape == (1300, 64)
    newer = {}
    for name, value in tensors.items():  # the newer naming, with an lm_head, in two shards
        name = name.replace("language_model.model.", "model.language_model.")
        name = name.replace("vision_tower.", "model.vision_tower.").replace(
            "multi_modal_projector.", "model.multi_modal_projector."
        )
        newer[name] = value
    newer["lm_head.weight"] = tensors["language_model.model.embed_tokens.weight"]
    names = sorted(newer)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        checkpoints.write_safetensors(str(tmp_path / file), {k: newer[k] for k in keys}, dtype=BF16)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    hf_cfg = checkpoints.hf_config(TINY2, vocab_size=1300)
    assert hf_cfg["image_token_index"] == 1280 and hf_cfg["text_config"]["vocab_size"] == 1300
    (tmp_path / "config.json").write_text(json.dumps(hf_cfg))

    config, loaded = checkpoints.load(tmp_path)
    assert config["llm"]["vocab_size"] == 1280  # rows from <image> (1280) on are dropped
    assert_trees_equal(loaded, cast(params2, BF16))
    _, as_f32 = checkpoints.load(tmp_path, dtype="float32")
    assert_trees_equal(as_f32, cast(cast(params2, BF16), np.float32))


def test_hf_config_without_image_size(tmp_path, params1):
    """Some published config.json files omit vision_config.image_size: the position embedding decides."""
    checkpoints.save_hf(tmp_path, params1, TINY1)
    cfg = json.load(open(tmp_path / "config.json"))
    del cfg["vision_config"]["image_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    config, loaded = checkpoints.load(tmp_path)
    assert config["img"]["image_size"] == 32
    assert_trees_equal(loaded, params1)


def test_map_head(tmp_path, caplog):
    config = {"img": dict(TINY1["img"], pool_type="map"), "llm": TINY1["llm"]}
    params = random_params(config, 4)
    npz = tmp_path / "map.npz"
    checkpoints.save_npz(npz, params)
    inferred, loaded = checkpoints.load(npz)
    assert inferred["img"]["pool_type"] == "map"
    assert_trees_equal(loaded, params)
    with caplog.at_level(logging.WARNING, logger="paligemma.checkpoints"):
        _, dropped = checkpoints.load(npz, config=TINY1)
    assert "MAPHead_0" not in dropped["img"] and "attention-pooling head" in caplog.text
    # HF side: vision_use_head=True <-> the head.* tensors.
    folder = tmp_path / "hf"
    checkpoints.save_hf(folder, params, config)
    assert json.load(open(folder / "config.json"))["vision_config"]["vision_use_head"] is True
    hf_config, hf_loaded = checkpoints.load(folder)
    assert hf_config["img"]["pool_type"] == "map"
    assert_trees_equal(hf_loaded, params)


# ---------------------------------------------------------------------------------------------------------------
# Resolution change.


def test_resolution_change(tmp_path, params1):
    path = tmp_path / "ckpt.npz"
    checkpoints.save_npz(path, params1)
    config, loaded = checkpoints.load(path, image_size=64)
    assert config["img"]["image_size"] == 64
    posemb = loaded["img"]["pos_embedding"]
    assert posemb.shape == (1, 64, 64) and posemb.dtype == np.float32
    expected = siglip.resample_posemb(params1["img"]["pos_embedding"], (4, 4), (8, 8))
    np.testing.assert_allclose(posemb, np.asarray(expected), rtol=1e-6)
    # The same through config=.
    target = {"img": dict(TINY1["img"], image_size=64), "llm": TINY1["llm"]}
    config2, loaded2 = checkpoints.load(path, config=target)
    assert config2["img"]["image_size"] == 64
    np.testing.assert_array_equal(loaded2["img"]["pos_embedding"], posemb)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        checkpoints.load(path, image_size=60)


# ---------------------------------------------------------------------------------------------------------------
# CLI.


def test_convert_cli_both_ways(tmp_path, params2, capsys):
    src = str(tmp_path / "src.npz")
    checkpoints.save_npz(src, params2)
    hf = str(tmp_path / "hf")
    assert convert_checkpoint.main([src, hf, "--dtype", "bfloat16"]) == 0  # npz -> hf (default for a folder)
    out = capsys.readouterr().out
    count = model_lib.count_params(params2)
    assert f"wrote hf checkpoint {hf}: {count:,} parameters, dtype bfloat16" in out and "MiB on disk" in out
    back = str(tmp_path / "back.npz")
    assert convert_checkpoint.main([hf, back, "--dtype", "float32"]) == 0  # hf -> npz
    assert f"wrote npz checkpoint {back}" in capsys.readouterr().out
    _, loaded = checkpoints.load(back)
    assert_trees_equal(loaded, cast(cast(params2, BF16), np.float32))

    ours = str(tmp_path / "ours")
    assert convert_checkpoint.main([hf, ours, "--to", "ours", "--image_size", "64"]) == 0
    config, loaded = checkpoints.load(ours)
    assert config["img"]["image_size"] == 64 and loaded["img"]["pos_embedding"].shape == (1, 64, 64)

    assert convert_checkpoint.main([str(tmp_path / "nope.npz"), str(tmp_path / "x")]) == 2
    assert "nope.npz" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Training workdirs (orbax) and load_any


def test_load_any_training_workdir(tmp_path, params1):
    from paligemma.checkpoints import training

    wd = str(tmp_path / "run")
    ckpt = training.Checkpointer(wd, async_save=False)
    for step in (3, 5):
        ckpt.save(step, cast(params1, np.float32) if step == 5 else params1, {"c": np.zeros((), np.int32)}, {"s": step})
    ckpt.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="read as a training workdir.*Pass a .npz"):
        training.load_any(str(empty))
    with pytest.raises(checkpoints.CheckpointError, match="needs the model config: set config.model_name"):
        training.load_any(wd)  # no run config yet
    with open(os.path.join(wd, "config.json"), "w") as f:  # as the trainer writes it: model_name + overrides
        json.dump({"model_name": "paligemma-tiny", "model": {"llm": {"dropout": 0.1}}, "tokenizer": "t.model"}, f)
    assert not training.is_checkpoint_path(wd) and training.read_run_config(wd)["tokenizer"] == "t.model"
    assert training.model_config_from(training.read_run_config(wd))["llm"]["dropout"] == 0.1
    assert training.model_config_from({"seed": 1}) is None

    config, loaded, step, source = training.load_any(wd)
    assert step == 5 and source == f"{wd} (trainer step 5)" and config["img"] == TINY1["img"]
    assert_trees_equal(loaded, params1)
    _, loaded, step, _ = training.load_any(wd, step=3, dtype="bfloat16")
    assert step == 3 and loaded["llm"]["final_norm"]["scale"].dtype == BF16
    config, loaded, _, _ = training.load_any(wd, image_size=48)  # trained at 32: the position embedding is resampled
    assert config["img"]["image_size"] == 48 and loaded["img"]["pos_embedding"].shape[1] == (48 // 8) ** 2
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint of step 4; available steps: \\[3, 5\\]"):
        training.load_any(wd, step=4)
    with pytest.raises(checkpoints.CheckpointError, match="does not match the model config"):
        training.load_any(wd, model_config=TINY2)

    own = str(tmp_path / "own")  # a checkpoint folder goes through checkpoints.load
    checkpoints.save(own, TINY1, params1)
    assert training.is_checkpoint_path(own) and training.read_run_config(own) is None
    config, loaded, step, source = training.load_any(own)
    assert step is None and source == own and config["llm"] == checkpoints.load(own)[0]["llm"]
    with pytest.raises(checkpoints.CheckpointError, match="step= is for training workdirs"):
        training.load_any(own, step=5)
    with pytest.raises(FileNotFoundError, match="missing"):
        training.load_any(str(tmp_path / "missing"))
