"""Parity with transformers' PaliGemmaForConditionalGeneration (float32, eager attention) on tiny random models.

HF -> ours: a random PyTorch model is saved with `save_pretrained` and loaded with `checkpoints.load`.
Ours -> HF: random params of our tiny configs are written with `checkpoints.save_hf` and loaded with `from_pretrained`.
Logits over the text positions are compared with relative error max|ours - hf| / max|hf| <= 1e-4 (we see ~1e-6).

HF is given 0-based `position_ids` (its default is 1-based; RoPE is relative so that only changes rounding) and
`token_type_ids` 0 for the image tokens and the prefix, 1 for the suffix (our mask_ar).
"""

import logging
import os
import runpy

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from paligemma import checkpoints  # noqa: E402
from paligemma import model as model_lib  # noqa: E402

HF = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf_logits.py"))
TOLERANCE = 1e-4
PREFIX, SUFFIX = 7, 5

# Two tiny PyTorch models. The released HF files pad the embedding past the real vocabulary and put <image> at the
# first padded row; these do the same (real vocabulary 300, table 320, <image> = 300).
VOCAB, TABLE = 300, 320
HF_MODELS = {
    # PaliGemma 1: Gemma with multi-query attention.
    "pg1": dict(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=8,
            image_size=32,
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="gemma",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            vocab_size=TABLE,
        ),
        projection_dim=64,
        hidden_size=64,
    ),
    # PaliGemma 2: Gemma 2 with GQA, soft-caps, sandwich norms, a query scale != head_dim and a sliding window
    # (local layers 0 and 2) shorter than the sequence. 28 px images with 14 px patches.
    "pg2": dict(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=3,
            patch_size=7,
            image_size=28,
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="gemma2",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=TABLE,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=20.0,
            sliding_window=6,
        ),
        projection_dim=64,
        hidden_size=64,
    ),
}


def _randomize(module: "torch.nn.Module", seed: int):
    """Every parameter random (norm scales and biases included, which are zero at init), of moderate size."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 or "probe" in name:
                std = 0.2
            elif "embed_tokens" in name:
                std = 0.5
            else:
                std = (p[0].numel()) ** -0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def _hf_model(name: str):
    cfg = transformers.PaliGemmaConfig(**HF_MODELS[name], image_token_index=VOCAB, vocab_size=TABLE)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.PaliGemmaForConditionalGeneration(cfg).eval()
    _randomize(model, seed=1 if name == "pg1" else 2)
    return model


def _inputs(image_size: int, num_images: int, vocab: int, batch: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (batch * num_images, 3, image_size, image_size)).astype(np.float32)
    text = rng.integers(3, vocab, (batch, PREFIX + SUFFIX)).astype(np.int32)
    text[:, 0] = 2  # bos
    mask_ar = np.tile(np.array([0] * PREFIX + [1] * SUFFIX, np.int32), (batch, 1))
    image = pixels.transpose(0, 2, 3, 1).reshape(batch, num_images, image_size, image_size, 3)
    if num_images == 1:
        image = image[:, 0]
    return pixels, image, text, mask_ar


def _our_logits(config, params, image, text, mask_ar, with_pooled=False):
    """Logits `[B, T, V]` (and, with `with_pooled`, SigLIP's MAP-head output `[B*F, W]`)."""
    model = model_lib.Model(**config)
    apply = jax.jit(lambda p, *x: model.apply({"params": p}, *x, mutable=["intermediates"]))
    (logits, _), state = apply(params, image, text, mask_ar)
    if with_pooled:
        return np.asarray(logits), np.asarray(state["intermediates"]["img"]["pooled"][0])
    return np.asarray(logits)


def _rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module", params=["pg1", "pg2"])
def hf_folder(request, tmp_path_factory):
    model = _hf_model(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return request.param, model, folder


@pytest.mark.parametrize("num_images", [1, 2])
def test_hf_to_ours(hf_folder, num_images, record_property):
    name, hf_model, folder = hf_folder
    config, params = checkpoints.load(folder, sliding_window="hf")
    vision = HF_MODELS[name]["vision_config"]
    assert config["llm"]["vocab_size"] == VOCAB  # <image> row and padding dropped
    assert params["llm"]["embedder"]["input_embedding"].shape == (VOCAB, 64)
    assert config["llm"]["sliding_window"] == (6 if name == "pg2" else None)
    size = vision["image_size"]
    pixels, image, text, mask_ar = _inputs(size, num_images, VOCAB)
    num_tokens = num_images * (size // vision["patch_size"]) ** 2
    assert num_tokens + PREFIX + SUFFIX > 6
    ref = HF["hf_logits"](hf_model, pixels, text, mask_ar, num_tokens, VOCAB, VOCAB)
    ours = _our_logits(config, params, image, text, mask_ar)
    err = _rel_err(ours, ref)
    record_property("rel_err", err)
    print(f"{name} images={num_images}: max relative error {err:.2e}")
    assert ours.shape == ref.shape
    assert err <= TOLERANCE
    if num_images == 1:  # HF's default 1-based positions: RoPE is relative, only the rounding changes
        one_based = HF["hf_logits"](hf_model, pixels, text, mask_ar, num_tokens, VOCAB, VOCAB, zero_based=False)
        print(f"{name} images=1, HF 1-based positions: max relative error {_rel_err(ours, one_based):.2e}")
        assert _rel_err(ours, one_based) <= TOLERANCE

    if name == "pg2" and num_images == 2:
        # The window matters for this input: the default load (full attention, the training code) differs from HF.
        full_config, _ = checkpoints.load(folder)
        assert full_config["llm"]["sliding_window"] is None
        assert _rel_err(_our_logits(full_config, params, image, text, mask_ar), ref) > 1e-3


# Our tiny configs for the reverse direction: Gemma 1 with full multi-head attention (the qkv_einsum layout) and
# Gemma 2 with a sliding window; both vision towers carry SigLIP's MAP head (HF vision_use_head=True).
OUR_CONFIGS = {
    "gemma_mha": {
        "img": dict(variant="mu/8", image_size=32, pool_type="map"),
        "llm": dict(variant="gemma_tiny", vocab_size=256, num_kv_heads=4),
    },
    "gemma2_window": {
        "img": dict(variant="mu/8", image_size=32, pool_type="map"),
        "llm": dict(variant="gemma2_tiny", vocab_size=256, sliding_window=6, final_logits_softcap=20.0),
    },
}


def _random_params(config, seed):
    params = jax.jit(lambda key: model_lib.init_params(config, key))(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: (np.asarray(x) + rng.normal(0, 0.2, x.shape)).astype(np.float32), params)


@pytest.mark.parametrize("name", sorted(OUR_CONFIGS))
def test_ours_to_hf(name, tmp_path, caplog, record_property):
    config = OUR_CONFIGS[name]
    params = _random_params(config, seed=3)
    checkpoints.save_hf(tmp_path, params, config)
    with caplog.at_level(logging.WARNING):
        hf_model, info = transformers.PaliGemmaForConditionalGeneration.from_pretrained(
            tmp_path, attn_implementation="eager", output_loading_info=True
        )
    hf_model.eval()
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info

    vocab = config["llm"]["vocab_size"]
    pixels, image, text, mask_ar = _inputs(32, 2, vocab, seed=5)
    ref = HF["hf_logits"](hf_model, pixels, text, mask_ar, 2 * 16, vocab, vocab)
    ours, pooled = _our_logits(config, params, image, text, mask_ar, with_pooled=True)
    err = _rel_err(ours, ref)
    record_property("rel_err", err)
    print(f"ours->hf {name}: max relative error {err:.2e}")
    assert err <= TOLERANCE

    # The MAP head went across too: HF's pooled output equals ours.
    with torch.no_grad():
        hf_pooled = hf_model.model.vision_tower(torch.tensor(pixels)).pooler_output.numpy()
    assert _rel_err(pooled, hf_pooled) <= TOLERANCE

    # And back: the folder loads to the same params (sliding window: the default load keeps full attention).
    loaded_config, loaded = checkpoints.load(tmp_path, sliding_window="hf")
    assert loaded_config["llm"]["sliding_window"] == config["llm"].get("sliding_window")
    jax.tree.map(np.testing.assert_array_equal, loaded, params)


@pytest.mark.parametrize("name", ["paligemma-3b-224", "paligemma2-28b-448"])
def test_full_size_layout_matches_transformers(name):
    """Every tensor name and shape `to_hf` produces for a released size is the one transformers builds (on the meta
    device, nothing allocated), MAP head included; the count is docs/reference.md §1.6's (with the MAP head)."""
    config = model_lib.get_config(name)
    config["img"]["pool_type"] = "map"
    zeros = np.zeros((), np.float32)
    dummy = jax.tree.map(lambda s: np.broadcast_to(zeros, s.shape), model_lib.param_shapes(config))
    ours = {k: tuple(v.shape) for k, v in checkpoints.to_hf(dummy, config).items()}
    hf_cfg = transformers.PaliGemmaConfig(**checkpoints.hf_config(config))
    with torch.device("meta"):
        hf_model = transformers.PaliGemmaForConditionalGeneration(hf_cfg)
    # In memory transformers 5.x names `model.language_model.*` / `model.vision_tower.*`: compare canonical names.
    canonical = lambda names: {checkpoints.canonical_hf_name(k): v for k, v in names.items()}  # noqa: E731
    theirs = canonical({k: tuple(v.shape) for k, v in hf_model.state_dict().items()})
    theirs.pop(None)  # the tied lm_head
    assert canonical(ours) == theirs
    counts = {"paligemma-3b-224": 2_938_573_760, "paligemma2-28b-448": 27_666_315_200}
    assert sum(int(np.prod(s)) for s in ours.values()) == counts[name]
