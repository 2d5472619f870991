"""LoRA adapters (paligemma.lora): the adapted forward pass, its start at the base model, merging, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paligemma import lora, quantization
from paligemma import model as model_lib
from paligemma.tree import flatten, unflatten

TARGETS = (r"^llm/layers/", r"^img/Transformer/.*/(query|value|Dense_0)/kernel$", r"^img/embedding/kernel$")


@pytest.fixture(scope="module")
def setup(tiny_model):
    cfg, base = tiny_model
    base = jax.tree.map(jnp.asarray, base)  # eager apply: jax arrays (Qwix finds weights among them)
    lcfg = lora.LoraConfig(rank=4, alpha=8.0, targets=TARGETS)
    rng = np.random.default_rng(1)
    image = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    text = jnp.asarray(rng.integers(0, 300, (2, 7)), jnp.int32)
    mask_ar = jnp.asarray([[0, 0, 0, 1, 1, 1, 1]] * 2, jnp.int32)
    # Trained-looking adapters: both factors nonzero.
    adapters = {n: rng.normal(0, 0.2, s.shape).astype(s.dtype) for n, s in lora.adapter_shapes(cfg, lcfg).items()}
    return cfg, base, lcfg, (image, text, mask_ar), adapters


def _logits(model, params, inputs):
    return np.asarray(model.apply({"params": params}, *inputs)[0])


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fresh_adapters_leave_the_logits_exactly_as_the_base_models(setup):
    cfg, base, lcfg, inputs, _ = setup
    fresh = lora.init_adapters(cfg, lcfg, jax.random.key(0))
    assert all(np.all(np.asarray(v) == 0) for n, v in fresh.items() if n.endswith("_lora_b"))
    assert all(np.any(np.asarray(v) != 0) for n, v in fresh.items() if n.endswith("_lora_a"))
    adapted = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    got = _logits(adapted, unflatten({**flatten(base), **fresh}), inputs)
    # Bit for bit against the base computed the way the adapted model computes it (one einsum per adapted weight);
    # the plain model's few-token MLP path (two matmuls) agrees with it to float32 rounding.
    one_einsum = _logits(quantization.qwix_ready(model_lib.Model(**cfg)), base, inputs)
    np.testing.assert_array_equal(got, one_einsum)
    assert _rel(_logits(model_lib.Model(**cfg), base, inputs), one_einsum) < 1e-6


def test_a_bfloat16_base_keeps_its_dtype_and_float32_adapters_change_nothing_at_start(setup):
    """A bfloat16 base with (always float32) fresh adapters computes bit for bit what the bfloat16 base computes: the
    adapters do not promote the activations to float32."""
    cfg, base, lcfg, inputs, _ = setup
    bf16 = {k: {**v, "dtype": "bfloat16", "param_dtype": "bfloat16"} for k, v in cfg.items()}
    base16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), base)
    lcfg = lora.LoraConfig(rank=4, alpha=8.0, targets=TARGETS[:2])  # not the patch conv: float32 inputs only
    fresh = lora.init_adapters(bf16, lcfg, jax.random.key(0))
    assert {np.asarray(v).dtype for v in fresh.values()} == {np.dtype("float32")}
    adapted = lora.adapted_model(model_lib.Model(**bf16), lcfg)
    got = _logits(adapted, unflatten({**flatten(base16), **fresh}), inputs)
    np.testing.assert_array_equal(got, _logits(model_lib.Model(**bf16), base16, inputs))


def test_adapted_forward_is_the_weight_plus_scaled_low_rank_product(setup):
    """W + (alpha / r) * A B written out by hand for each kind of weight (einsum, dense, conv) gives the same logits."""
    cfg, base, lcfg, inputs, adapters = setup
    s = lcfg.alpha / lcfg.rank
    flat = {n: np.asarray(v, np.float64) for n, v in flatten(base).items()}
    a = {n: np.asarray(v, np.float64) for n, v in adapters.items()}

    def ab(name):
        return a[name + "_lora_a"], a[name + "_lora_b"]

    hand = dict(flat)
    for layer in range(flat["llm/layers/attn/q_einsum/w"].shape[0]):
        A, B = ab("llm/layers/attn/q_einsum/w")  # w [N, D, H]: A [D, r], B [r, N, H]
        hand["llm/layers/attn/q_einsum/w"] = hand["llm/layers/attn/q_einsum/w"].copy()
        hand["llm/layers/attn/q_einsum/w"][layer] += s * np.einsum("dr,rnh->ndh", A[layer], B[layer])
    A, B = ab("llm/layers/attn/kv_einsum/w")  # w [L, 2, K, D, H]: A [L, D, r], B [L, r, 2, K, H]
    hand["llm/layers/attn/kv_einsum/w"] = flat["llm/layers/attn/kv_einsum/w"] + s * np.einsum("ldr,lrskh->lskdh", A, B)
    A, B = ab("llm/layers/attn/attn_vec_einsum/w")  # w [L, N, H, D]: A [L, N, H, r], B [L, r, D]
    hand["llm/layers/attn/attn_vec_einsum/w"] = flat["llm/layers/attn/attn_vec_einsum/w"] + s * np.einsum(
        "lnhr,lrd->lnhd", A, B
    )
    A, B = ab("llm/layers/mlp/gating_einsum")  # [L, 2, D, F]: A [L, D, r], B [L, r, 2, F]
    hand["llm/layers/mlp/gating_einsum"] = flat["llm/layers/mlp/gating_einsum"] + s * np.einsum("ldr,lrcf->lcdf", A, B)
    A, B = ab("llm/layers/mlp/linear")  # [L, F, D]
    hand["llm/layers/mlp/linear"] = flat["llm/layers/mlp/linear"] + s * A @ B
    for name in ("query", "value"):  # dense [L, D, N, H]: A [L, D, r], B [L, r, N*H]
        w = f"img/Transformer/encoderblock/MultiHeadDotProductAttention_0/{name}/kernel"
        A, B = ab(w)
        hand[w] = flat[w] + s * (A @ B).reshape(flat[w].shape)
    w = "img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel"
    hand[w] = flat[w] + s * np.matmul(*ab(w))
    A, B = ab("img/embedding/kernel")  # conv [kh, kw, 3, D]: A [kh, kw, 3, r], B [r, D]
    hand["img/embedding/kernel"] = flat["img/embedding/kernel"] + s * np.einsum("hwcr,rd->hwcd", A, B)
    assert set(n[: -len("_lora_a")] for n in adapters if n.endswith("_lora_a")) <= set(hand)

    hand = unflatten({n: v.astype(np.float32) for n, v in hand.items()})
    adapted = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    got = _logits(adapted, unflatten({**flatten(base), **adapters}), inputs)
    want = _logits(model_lib.Model(**cfg), hand, inputs)
    assert _rel(got, want) < 1e-5
    assert _rel(got, _logits(model_lib.Model(**cfg), base, inputs)) > 1e-2  # the adapters do change the output


def test_merged_params_give_the_adapted_models_logits(setup):
    cfg, base, lcfg, inputs, adapters = setup
    params = unflatten({**flatten(base), **adapters})
    merged = lora.merge(params, cfg, lcfg)
    assert set(flatten(merged)) == set(flatten(base))
    assert all(np.asarray(v).dtype == np.asarray(flatten(base)[n]).dtype for n, v in flatten(merged).items())
    adapted = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    assert _rel(_logits(model_lib.Model(**cfg), merged, inputs), _logits(adapted, params, inputs)) < 1e-5
    # Untargeted weights are untouched.
    for name in ("llm/embedder/input_embedding", "img/head/kernel", "llm/final_norm/scale"):
        np.testing.assert_array_equal(flatten(merged)[name], flatten(base)[name])


def test_adapted_decoding_matches_the_merged_model(setup):
    """Prefill and the cached per-token steps see the adapters too: greedy decodes equal the merged model's."""
    from paligemma import decode

    cfg, base, lcfg, (image, text, _), adapters = setup
    adapted = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    params = unflatten({**flatten(base), **adapters})
    merged = lora.merge(params, cfg, lcfg)
    batch = dict(image=image, text=text, mask_ar=jnp.zeros_like(text), mask_input=jnp.ones_like(text))
    got = decode.generate(adapted, params, batch, max_decode_len=6, eos_id=1)
    want = decode.generate(model_lib.Model(**cfg), merged, batch, max_decode_len=6, eos_id=1)
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_allclose(got["logprob"], want["logprob"], rtol=1e-4)


def test_numpy_params_in_an_eager_call_are_refused_not_silently_unadapted(setup, tiny_model):
    cfg, _, lcfg, inputs, adapters = setup
    adapted = lora.adapted_model(model_lib.Model(**cfg), lcfg)
    with pytest.raises(TypeError, match="jax arrays"):
        adapted.apply({"params": unflatten({**flatten(tiny_model[1]), **adapters})}, *inputs)


def test_rank_16_adapters_on_the_3b_decoder_are_under_two_percent_of_full_fine_tuning():
    """LoRA rank 16 on the decoder: trainable entries (so also Adam state) vs. full fine-tuning (shapes only)."""
    cfg = model_lib.get_config("paligemma-3b-224")
    adapters = lora.adapter_shapes(cfg, lora.LoraConfig(rank=16, alpha=16))
    full = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(model_lib.param_shapes(cfg)))
    ratio = sum(int(np.prod(s.shape)) for s in adapters.values()) / full
    assert ratio < 0.02, ratio
    assert {n.rsplit("/", 1)[0] for n in adapters} == {
        "llm/layers/attn/q_einsum",
        "llm/layers/attn/kv_einsum",
        "llm/layers/attn/attn_vec_einsum",
        "llm/layers/mlp",
    }


@pytest.mark.parametrize("qtype, tile, bound", [("int8", None, 0.03), ("int4", None, 0.3), ("int4", 16, 0.2)])
def test_qlora_adapts_a_quantized_base_and_merges_into_its_dequantized_weights(setup, qtype, tile, bound):
    """QLoRA: the decoder's weights quantized (Qwix PTQ) under the same adapters; close to float LoRA (the bound is
    the quantization error, measured 0.7% int8 and 15% int4 per channel, 10% int4 in blocks of 16, on these random
    weights), and exactly its own merge."""
    cfg, base, _, inputs, _ = setup
    floating = lora.LoraConfig(rank=4, alpha=8.0, targets=(r"^llm/layers/",))
    quantized = lora.LoraConfig(rank=4, alpha=8.0, targets=(r"^llm/layers/",), quantize=qtype, tile_size=tile)
    rng = np.random.default_rng(2)
    adapters = {
        n: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype) for n, s in lora.adapter_shapes(cfg, quantized).items()
    }
    params = unflatten({**flatten(base), **adapters})
    qparams = lora.quantize_base(params, cfg, quantized)
    assert lora.is_quantized(flatten(qparams)["llm/layers/mlp/linear"])
    assert not lora.is_quantized(flatten(qparams)["llm/embedder/input_embedding"])

    def logits(lcfg, p):
        return np.asarray(
            jax.jit(lambda p: lora.adapted_model(model_lib.Model(**cfg), lcfg).apply({"params": p}, *inputs)[0])(p)
        )

    got = logits(quantized, qparams)
    assert _rel(got, logits(floating, params)) < bound
    merged = lora.merge(qparams, cfg, quantized)
    assert _rel(_logits(model_lib.Model(**cfg), merged, inputs), got) < 1e-5


def test_qlora_refuses_image_encoder_dense_targets_it_cannot_adapt(tiny_model):
    cfg, _ = tiny_model
    lcfg = lora.LoraConfig(targets=(r"^llm/layers/", r"^img/.*/query/kernel$"), quantize="int8")
    with pytest.raises(ValueError, match="QLoRA adapts the decoder's einsum weights"):
        lora.adapter_shapes(cfg, lcfg)


@pytest.mark.parametrize(
    "section, message",
    [
        (dict(rank=4, rnak=3), "unknown key(s) ['rnak']"),
        (dict(rank=0), "positive integer"),
        (dict(targets=["^nothing/"]), "match no adaptable weight"),
        (dict(targets=["embedder"]), "cannot take an adapter"),
        (dict(targets=["("]), "is not a regex"),
        (dict(quantize="int3"), "'int8' or 'int4'"),
        (dict(targets=["^img/embedding/kernel$"]), "needs float32 inputs"),
    ],
)
def test_bad_lora_config_is_one_clear_error(tiny_model, section, message):
    cfg, _ = tiny_model
    if "embedding" in str(section):
        cfg = {**cfg, "img": {**cfg["img"], "dtype": "bfloat16"}}
    with pytest.raises(ValueError, match=None) as info:
        lora.adapter_shapes(cfg, lora.LoraConfig.from_dict(section))
    assert message in str(info.value)
