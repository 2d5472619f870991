"""PEFT interop of LoRA adapters (paligemma/checkpoints/peft.py) against peft + transformers, float32, tiny models.

Ours -> PEFT: random factors (B nonzero) -> `save_peft` -> `peft.PeftModel.from_pretrained` on the transformers model
of the same base weights (`checkpoints.save_hf`): its logits equal our adapted model's (relative error <= 1e-4).
PEFT -> ours: `load_peft` of that folder gives our logits back (<= 1e-5), and of an adapter made by
`peft.get_peft_model` in torch (random A and B, separate k/v and gate/up A's, rsLoRA, rank/alpha patterns) gives
transformers' logits (<= 1e-4).
"""

import json
import os
import runpy
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from paligemma import checkpoints, lora  # noqa: E402
from paligemma import model as model_lib  # noqa: E402
from paligemma.checkpoints import peft as peft_io  # noqa: E402
from paligemma.checkpoints.safetensors import SafetensorsFile, write_safetensors  # noqa: E402
from paligemma.tree import flatten, unflatten  # noqa: E402

HF = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf_logits.py"))
PREFIX, SUFFIX, IMAGE_TOKENS = 7, 5, 16  # mu/8 at 32 px: 16 image tokens

# Decoder attention + MLP, image encoder attention + MLP, the patch convolution and the projector.
TARGETS = (
    r"^llm/layers/(attn|mlp)/",
    r"^img/Transformer/encoderblock/(MultiHeadDotProductAttention_0|MlpBlock_0)/",
    r"^img/embedding/kernel$",
    r"^img/head/kernel$",
)


def _rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def _inputs(vocab, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32)
    text = rng.integers(3, vocab, (batch, PREFIX + SUFFIX)).astype(np.int32)
    text[:, 0] = 2  # bos
    mask_ar = np.tile(np.array([0] * PREFIX + [1] * SUFFIX, np.int32), (batch, 1))
    return pixels, pixels.transpose(0, 2, 3, 1), text, mask_ar


def _our_logits(cfg, lcfg, params, adapters, inputs):
    """Our adapted model's logits: `lora.adapted_model` applied to the base params plus the factors."""
    model = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    apply = jax.jit(lambda p, *x: model.apply({"params": p}, *x)[0])
    return np.asarray(apply(unflatten({**flatten(params), **adapters}), *inputs[1:]))


@pytest.fixture(scope="module")
def base(tiny_model, tmp_path_factory):
    """`(cfg, params, hf_folder, inputs, base_logits)`: the tiny model, its transformers folder and test inputs."""
    cfg, params = tiny_model
    folder = tmp_path_factory.mktemp("hf_base")
    checkpoints.save_hf(folder, params, cfg)
    vocab = cfg["llm"]["vocab_size"]
    inputs = _inputs(vocab)
    return (
        cfg,
        params,
        folder,
        inputs,
        HF["hf_logits"](_hf_model(folder), inputs[0], *inputs[2:], IMAGE_TOKENS, vocab, vocab),
    )


def _hf_model(folder):
    return transformers.PaliGemmaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ours_saved(base, tmp_path_factory):
    """Random factors (A as initialised, B ~ N(0, 0.05)), our adapted model's logits, and their `save_peft` folder."""
    cfg, params, hf_folder, inputs, _ = base
    lcfg = lora.LoraConfig(rank=4, alpha=8.0, targets=TARGETS)
    adapters = {k: np.asarray(v) for k, v in lora.init_adapters(cfg, lcfg, jax.random.key(1)).items()}
    rng = np.random.default_rng(2)
    adapters = {k: rng.normal(0, 0.05, v.shape).astype(v.dtype) if k.endswith("_b") else v for k, v in adapters.items()}
    logits = _our_logits(cfg, lcfg, params, adapters, inputs)
    folder = tmp_path_factory.mktemp("peft_ours")
    peft_io.save_peft(adapters, cfg, lcfg, folder, base_model_name_or_path=str(hf_folder))
    return lcfg, adapters, logits, folder


def test_ours_to_peft(base, ours_saved, record_property):
    cfg, _, hf_folder, inputs, base_logits = base
    lcfg, _, ours, folder = ours_saved
    assert _rel_err(ours, base_logits) > 0.05  # the adapters matter

    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["peft_type"] == "LORA"
    expected = ["down_proj", "fc1", "fc2", "gate_proj", "k_proj", "linear", "o_proj", "out_proj"]
    assert config["target_modules"] == sorted([*expected, "patch_embedding", "q_proj", "up_proj", "v_proj"])
    keys = SafetensorsFile(str(folder / "adapter_model.safetensors")).tensors
    assert keys["base_model.model.model.language_model.layers.1.self_attn.k_proj.lora_B.weight"][1] == (16, 4)

    hf_model = peft.PeftModel.from_pretrained(_hf_model(hf_folder), folder).eval()
    theirs = peft.get_peft_model_state_dict(hf_model)
    assert sorted(theirs) == sorted(keys)  # every saved tensor was loaded into a module, and nothing else is adapted
    ref = HF["hf_logits"](
        hf_model, inputs[0], *inputs[2:], IMAGE_TOKENS, cfg["llm"]["vocab_size"], cfg["llm"]["vocab_size"]
    )
    err = _rel_err(ours, ref)
    record_property("rel_err", err)
    print(f"ours -> peft: max relative error {err:.2e}")
    assert err <= 1e-4


def test_peft_to_ours_round_trip(base, ours_saved, record_property):
    cfg, params, _, inputs, _ = base
    lcfg, adapters, ours, folder = ours_saved
    loaded_cfg, loaded = peft_io.load_peft(folder, cfg)
    # The k/v and gate/up halves share their A: read back as one pair of the same rank, the scale folded into B.
    assert loaded_cfg.rank == 4 and loaded_cfg.scale == 1.0
    assert sorted(loaded) == sorted(adapters)
    for name, value in adapters.items():
        want = value * lcfg.scale if name.endswith("_b") else value
        np.testing.assert_allclose(loaded[name], want, rtol=1e-6, atol=1e-7, err_msg=name)
    err = _rel_err(_our_logits(cfg, loaded_cfg, params, loaded, inputs), ours)
    record_property("rel_err", err)
    print(f"peft -> ours (our folder): max relative error {err:.2e}")
    assert err <= 1e-5


def test_torch_peft_to_ours(base, tmp_path, record_property):
    """An adapter trained in torch: separate A per module, rsLoRA, a rank and alpha per module."""
    cfg, params, hf_folder, inputs, base_logits = base
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "fc1", "out_proj"]
    config = peft.LoraConfig(
        r=4,
        lora_alpha=6,
        target_modules=[*modules, "patch_embedding", "linear"],
        rank_pattern={"k_proj": 2, "up_proj": 3},
        alpha_pattern={"language_model.layers.1.mlp.down_proj": 5},
        use_rslora=True,
    )
    hf_model = peft.get_peft_model(_hf_model(hf_folder), config)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    hf_model.eval()
    ref = HF["hf_logits"](
        hf_model, inputs[0], *inputs[2:], IMAGE_TOKENS, cfg["llm"]["vocab_size"], cfg["llm"]["vocab_size"]
    )
    assert _rel_err(ref, base_logits) > 0.05
    hf_model.save_pretrained(tmp_path)

    lcfg, adapters = peft_io.load_peft(tmp_path, cfg)
    assert lcfg.rank == 7  # gate/up: 4 + 3 (k/v: 2 + 4)
    assert lcfg.targeted("llm/layers/attn/kv_einsum/w") and not lcfg.targeted(
        "img/Transformer/encoderblock/MlpBlock_0/Dense_1/kernel"
    )
    err = _rel_err(_our_logits(cfg, lcfg, params, adapters, inputs), ref)
    record_property("rel_err", err)
    print(f"peft (torch) -> ours: max relative error {err:.2e}")
    assert err <= 1e-4


def test_target_modules_regex_when_short_names_are_ambiguous(base, tmp_path):
    """Only the decoder's q/k/v: the short names would also pick the image encoder's, so a regex selects them."""
    cfg, _, hf_folder, _, _ = base
    lcfg = lora.LoraConfig(rank=2, alpha=2.0, targets=(r"^llm/layers/attn/(q|kv)_einsum/",))
    adapters = lora.init_adapters(cfg, lcfg, jax.random.key(0))
    peft_io.save_peft(adapters, cfg, lcfg, tmp_path)
    assert isinstance(json.loads((tmp_path / "adapter_config.json").read_text())["target_modules"], str)
    hf_model = peft.PeftModel.from_pretrained(_hf_model(hf_folder), tmp_path)
    adapted = {n.rsplit(".lora_A", 1)[0] for n in peft.get_peft_model_state_dict(hf_model) if ".lora_A" in n}
    assert adapted == {
        f"base_model.model.model.language_model.layers.{i}.self_attn.{p}"
        for i in range(2)
        for p in ("q_proj", "k_proj", "v_proj")
    }


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_refused(base, ours_saved, tmp_path):
    cfg, *_ = base
    folder = ours_saved[3]

    dora = _copy(folder, tmp_path / "dora")
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: use_dora = True: DoRA"):
        peft_io.load_peft(dora, cfg)

    head = _copy(folder, tmp_path / "lm_head")
    reader = SafetensorsFile(str(head / "adapter_model.safetensors"))
    tensors = {k: reader.array(k) for k in reader.tensors}
    tensors["base_model.model.lm_head.lora_A.weight"] = np.zeros((4, 64), np.float32)
    tensors["base_model.model.lm_head.lora_B.weight"] = np.zeros((cfg["llm"]["vocab_size"], 4), np.float32)
    write_safetensors(str(head / "adapter_model.safetensors"), tensors)
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors.*\n.*lm_head\.lora_A\.weight: module 'lm_head'"):
        peft_io.load_peft(head, cfg)

    missing = _copy(folder, tmp_path / "missing")
    (missing / "adapter_model.safetensors").unlink()
    (missing / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors: missing.*adapter_model\.bin: pickle"):
        peft_io.load_peft(missing, cfg)

    # Shapes that do not fit the model config: the adapter of a wider model.
    wide = {"img": dict(cfg["img"]), "llm": {**cfg["llm"], "mlp_dim": 256}}
    with pytest.raises(ValueError, match=r"mlp\.down_proj\.lora_A\.weight: shape \(4, 128\), expected \(4, 256\)"):
        peft_io.load_peft(folder, wide)


def test_mha_qkv_split(random_params, tmp_path):
    """Full multi-head attention (our fused qkv_einsum): PEFT's merged q/k/v/o weights equal ours, and read back."""
    cfg = {
        "img": dict(variant="mu/8", image_size=32),
        "llm": dict(variant="gemma_tiny", vocab_size=256, num_kv_heads=4),
    }
    params = random_params(cfg, seed=4)
    lcfg = lora.LoraConfig(rank=3, alpha=6.0, targets=(r"^llm/layers/attn/",))
    rng = np.random.default_rng(5)
    adapters = {k: rng.normal(0, 0.1, s.shape).astype(np.float32) for k, s in lora.adapter_shapes(cfg, lcfg).items()}
    assert adapters["llm/layers/attn/qkv_einsum/w_lora_b"].shape == (2, 3, 3, 4, 16)  # [L, r, q|k|v, N, H]
    checkpoints.save_hf(tmp_path / "hf", params, cfg)
    peft_io.save_peft(adapters, cfg, lcfg, tmp_path / "peft")
    hf_model = peft.PeftModel.from_pretrained(_hf_model(tmp_path / "hf"), tmp_path / "peft").merge_and_unload()
    theirs = {checkpoints.canonical_hf_name(k): v.numpy() for k, v in hf_model.state_dict().items()}
    merged = lora.merge(unflatten({**flatten(params), **adapters}), cfg, lcfg)
    ours = {
        checkpoints.canonical_hf_name(k): v for k, v in checkpoints.to_hf(jax.tree.map(np.asarray, merged), cfg).items()
    }
    attn = [k for k in ours if ".self_attn." in k and k.startswith("text/")]
    assert len(attn) == 8  # q, k, v, o in 2 layers
    for k in attn:
        np.testing.assert_allclose(theirs[k], ours[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.allclose(ours[k], checkpoints.to_hf(params, cfg)[k.replace("text/", "language_model.model.")])

    loaded_cfg, loaded = peft_io.load_peft(tmp_path / "peft", cfg)
    assert loaded_cfg.rank == 3
    for name, value in adapters.items():
        np.testing.assert_allclose(loaded[name], value * (lcfg.scale if name.endswith("_b") else 1), rtol=1e-6)


def test_convert_checkpoint_cli(base, ours_saved, tmp_path, capsys):
    """`--peft DIR` merges an adapter into a checkpoint; `--to peft` exports a LoRA run's adapters."""
    from paligemma.checkpoints import training
    from tools import convert_checkpoint

    cfg, params, *_ = base
    lcfg, adapters, _, folder = ours_saved
    own = str(tmp_path / "own")
    checkpoints.save(own, cfg, params)
    merged_dir = str(tmp_path / "merged")
    assert convert_checkpoint.main([own, merged_dir, "--to", "ours", "--peft", str(folder)]) == 0
    assert "merged PEFT adapter" in capsys.readouterr().out
    want = flatten(lora.merge(unflatten({**flatten(params), **adapters}), cfg, lcfg))
    got = flatten(checkpoints.load(merged_dir)[1])
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)

    run = tmp_path / "run"  # a LoRA run's workdir: its checkpoints hold the adapters only
    ckpt = training.Checkpointer(str(run), async_save=False)
    ckpt.save(7, unflatten(adapters), {"c": np.zeros((), np.int32)}, {"s": 7})
    ckpt.close()
    (run / "config.json").write_text(json.dumps({"model": cfg, "lora": lcfg.to_dict()}))
    out = tmp_path / "adapter"
    assert convert_checkpoint.main([str(run), str(out), "--to", "peft", "--base_model", "google/x"]) == 0
    assert "wrote peft adapter" in capsys.readouterr().out
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "google/x"
    training.write_lora_base(str(run), own)  # without --base_model: the run's own base
    assert convert_checkpoint.main([str(run), str(tmp_path / "adapter2"), "--to", "peft"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "adapter2" / "adapter_config.json").read_text())["base_model_name_or_path"] == own
    ours, theirs = (SafetensorsFile(str(f / "adapter_model.safetensors")) for f in (out, folder))
    assert sorted(ours.tensors) == sorted(theirs.tensors)
    for k in ours.tensors:
        np.testing.assert_array_equal(ours.array(k), theirs.array(k))

    assert convert_checkpoint.main([own, str(tmp_path / "x"), "--to", "peft"]) == 2
    assert "--to peft exports a LoRA training run's adapters" in capsys.readouterr().err


def test_transformers4_key_names(base, ours_saved, tmp_path):
    """Adapters saved under transformers 4 (`language_model.model.*`, `vision_tower.vision_model.*`) read the same."""
    cfg, *_ = base
    folder = ours_saved[3]
    old = _copy(folder, tmp_path / "old")
    reader = SafetensorsFile(str(old / "adapter_model.safetensors"))
    renames = {
        "base_model.model.model.language_model.": "base_model.model.language_model.model.",
        "base_model.model.model.vision_tower.": "base_model.model.vision_tower.vision_model.",
        "base_model.model.model.multi_modal_projector.": "base_model.model.multi_modal_projector.",
    }
    tensors = {}
    for k in reader.tensors:
        new = next(n + k[len(o) :] for o, n in renames.items() if k.startswith(o))
        tensors[new] = reader.array(k)
    write_safetensors(str(old / "adapter_model.safetensors"), tensors)
    (lcfg_new, new), (lcfg_old, old_factors) = peft_io.load_peft(folder, cfg), peft_io.load_peft(old, cfg)
    assert lcfg_old == lcfg_new and sorted(old_factors) == sorted(new)
    for k in new:
        np.testing.assert_array_equal(old_factors[k], new[k])


def test_adapters_trained_by_the_trainer_give_transformers_our_logits(base, tiny_assets, tmp_path):
    """A LoRA run of the trainer (a few steps from the tiny model's weights), its adapters exported with
    `convert_checkpoint --to peft` and loaded by peft into transformers: the same logits as our adapted model."""
    from paligemma.checkpoints import training
    from tools import convert_checkpoint
    from trainers import train as train_lib

    cfg, params, hf_folder, inputs, base_logits = base
    tiny = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "train", "tiny.py"))
    init = str(tmp_path / "base.npz")
    checkpoints.save_npz(init, params)
    config = tiny["get_config"](tiny_assets)
    config.model = dict(llm=dict(vocab_size=cfg["llm"]["vocab_size"]))
    config.model_init, config.total_steps, config.lr = init, 4, 1e-2
    config.lora = dict(rank=4, alpha=8.0, targets=list(TARGETS))
    workdir = str(tmp_path / "run")
    train_lib.train(config, workdir, compiler_options=tiny["FAST_XLA"])

    folder = tmp_path / "adapter"
    assert convert_checkpoint.main([workdir, str(folder), "--to", "peft"]) == 0
    _, trained = training.latest_params(workdir)
    lcfg = lora.LoraConfig.from_dict(config.lora.to_dict())
    ours = _our_logits(cfg, lcfg, params, flatten(trained), inputs)
    assert _rel_err(ours, base_logits) > 1e-3  # the adapters trained
    hf_model = peft.PeftModel.from_pretrained(_hf_model(hf_folder), folder).eval()
    vocab = cfg["llm"]["vocab_size"]
    assert _rel_err(ours, HF["hf_logits"](hf_model, inputs[0], *inputs[2:], IMAGE_TOKENS, vocab, vocab)) <= 1e-4
