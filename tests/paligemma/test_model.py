"""Behaviour of the PaliGemma model: call convention, prefix-LM masking, decoding cache, options."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paligemma import model as pg


def _setup(name, **llm_overrides):
    cfg = pg.get_config(name)
    cfg["llm"].update(llm_overrides)
    params = pg.init_params(cfg, jax.random.key(0))
    # Random norm scales and biases so that no part of the network is an identity by construction.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return cfg, pg.Model(**cfg), params


def _image(batch, res=32, frames=None, seed=2):
    shape = (batch, res, res, 3) if frames is None else (batch, frames, res, res, 3)
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


def _text(batch, length, vocab, seed=3):
    return jax.random.randint(jax.random.key(seed), (batch, length), 3, vocab)


@pytest.fixture(scope="module", params=["paligemma-tiny", "paligemma2-tiny"])
def tiny(request):
    return _setup(request.param)


def test_call_convention_shapes_and_dtypes(tiny):
    cfg, model, params = tiny
    text = _text(2, 7, 1000)
    mask_ar = jnp.array([[0, 0, 0, 1, 1, 1, 1]] * 2)
    logits, aux = model.apply({"params": params}, _image(2), text, mask_ar)
    assert logits.shape == (2, 7, cfg["llm"]["vocab_size"]) and logits.dtype == jnp.float32
    assert aux["img_tokens"].shape == (2, 16, 64)
    assert np.all(np.isfinite(logits))


def test_prefix_is_bidirectional_and_suffix_causal(tiny):
    _, model, params = tiny
    text = _text(1, 8, 1000)
    mask_ar = jnp.array([[0, 0, 0, 0, 1, 1, 1, 1]])
    apply = lambda t: model.apply({"params": params}, _image(1), t, mask_ar)[0]  # noqa: E731
    base = apply(text)
    # Changing the last prefix token changes the first prefix position (bidirectional block) ...
    changed_prefix = apply(text.at[0, 3].set(text[0, 3] + 1))
    assert not np.allclose(base[0, 0], changed_prefix[0, 0])
    # ... while changing a suffix token leaves every earlier position unchanged (causal).
    changed_suffix = apply(text.at[0, 6].set(text[0, 6] + 1))
    np.testing.assert_array_equal(base[0, :6], changed_suffix[0, :6])
    assert not np.allclose(base[0, 6], changed_suffix[0, 6])


def test_padding_does_not_change_valid_positions(tiny):
    _, model, params = tiny
    text = _text(1, 6, 1000)
    mask_ar = jnp.array([[0, 0, 0, 1, 1, 1]])
    short = model.apply({"params": params}, _image(1), text, mask_ar)[0]
    padded_text = jnp.concatenate([text, jnp.array([[7, 8, 9]])], axis=1)
    padded_ar = jnp.concatenate([mask_ar, jnp.ones((1, 3), jnp.int32)], axis=1)
    input_mask = jnp.array([[1] * 6 + [0] * 3], bool)
    padded = model.apply({"params": params}, _image(1), padded_text, padded_ar, input_mask)[0]
    np.testing.assert_allclose(padded[:, :6], short, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,window", [("paligemma-tiny", None), ("paligemma2-tiny", None), ("paligemma2-tiny", 5)])
def test_prefill_then_extend_matches_full_forward(name, window):
    """Prompts of different lengths in one batch; a window shorter than the sequence on Gemma 2."""
    cfg, model, params = _setup(name, sliding_window=window)
    variables = {"params": params}
    prompt_lens, suffix_len, width = [3, 6], 4, 6
    image = _image(2)
    prompts = _text(2, width, 1000, seed=4)
    suffix = _text(2, suffix_len, 1000, seed=5)
    input_mask = jnp.array([[i < n for i in range(width)] for n in prompt_lens])
    first_logits, cache = model.apply(
        variables,
        image,
        prompts,
        jnp.zeros_like(prompts),
        input_mask,
        cache_size=16 + width + suffix_len,
        method=pg.Model.prefill,
    )
    steps = []
    for i in range(suffix_len):
        logits, cache = model.apply(variables, suffix[:, i], cache, method=pg.Model.extend)
        steps.append(logits)
    for b, n in enumerate(prompt_lens):
        text = jnp.concatenate([prompts[b : b + 1, :n], suffix[b : b + 1]], axis=1)
        mask_ar = jnp.array([[0] * n + [1] * suffix_len])
        full = model.apply(variables, image[b : b + 1], text, mask_ar)[0][0]
        np.testing.assert_allclose(first_logits[b], full[n - 1], rtol=1e-5, atol=1e-5)
        for i in range(suffix_len):
            np.testing.assert_allclose(steps[i][b], full[n + i], rtol=1e-5, atol=1e-5)
    assert cache["length"].tolist() == [16 + n + suffix_len for n in prompt_lens]


def test_sliding_window_changes_only_long_range_attention():
    cfg, model_full, params = _setup("paligemma2-tiny")
    text = _text(1, 10, 1000)
    mask_ar = jnp.array([[0] * 4 + [1] * 6])
    full = model_full.apply({"params": params}, _image(1), text, mask_ar)[0]
    windowed_cfg = {"img": cfg["img"], "llm": dict(cfg["llm"], sliding_window=4)}
    windowed = pg.Model(**windowed_cfg).apply({"params": params}, _image(1), text, mask_ar)[0]
    huge_cfg = {"img": cfg["img"], "llm": dict(cfg["llm"], sliding_window=10_000)}
    huge = pg.Model(**huge_cfg).apply({"params": params}, _image(1), text, mask_ar)[0]
    np.testing.assert_array_equal(full, huge)
    # The prefix block (16 image tokens + 4 prompt tokens) stays bidirectional whatever the window ...
    np.testing.assert_allclose(full[0, :4], windowed[0, :4], rtol=1e-5, atol=1e-5)
    # ... but suffix tokens lose the keys more than 4 positions back.
    assert not np.allclose(full[0, 4:], windowed[0, 4:], atol=1e-4)


def test_multiple_images_are_encoded_separately_and_concatenated(tiny):
    _, model, params = tiny
    images = _image(2, frames=2)
    tokens = model.apply({"params": params}, images, method=pg.Model.embed_image)
    first = model.apply({"params": params}, images[:, 0], method=pg.Model.embed_image)
    second = model.apply({"params": params}, images[:, 1], method=pg.Model.embed_image)
    np.testing.assert_allclose(tokens, jnp.concatenate([first, second], axis=1), rtol=1e-5, atol=1e-5)
    logits, aux = model.apply({"params": params}, images, _text(2, 5, 1000), jnp.zeros((2, 5), jnp.int32))
    assert aux["img_tokens"].shape[1] == 32 and logits.shape[:2] == (2, 5)


def test_padded_frames_change_nothing(tiny):
    """An example with 2 real frames and a padded one (frame_mask [1, 1, 0]) computes what its 2 frames alone do:
    the logits of the full forward, the prefill and a greedy decode (the prefill moves the valid tokens first)."""
    from paligemma import decode

    _, model, params = tiny
    real = _image(2, frames=2)
    padded = jnp.concatenate([real, _image(2, frames=1, seed=9)], axis=1)  # a random third frame, masked out
    frame_mask = jnp.asarray([[1, 1, 0], [1, 1, 0]], jnp.int32)
    text, mask_ar = _text(2, 5, 1000), jnp.asarray([[0, 0, 0, 1, 1]] * 2, jnp.int32)
    want = model.apply({"params": params}, real, text, mask_ar)[0]
    got = model.apply({"params": params}, padded, text, mask_ar, frame_mask=frame_mask)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    unmasked = model.apply({"params": params}, padded, text, mask_ar)[0]
    assert float(jnp.abs(unmasked - want).max()) > 1e-3  # the third frame matters unless masked

    prompt = dict(text=text, mask_ar=jnp.zeros_like(text), mask_input=jnp.ones_like(text))
    want = decode.generate(model, params, dict(prompt, image=real), max_decode_len=4, eos_id=1)
    got = decode.generate(model, params, dict(prompt, image=padded, frame_mask=frame_mask), max_decode_len=4, eos_id=1)
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_allclose(got["logprob"], want["logprob"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="frame_mask must be"):
        model.apply({"params": params}, padded, text, mask_ar, frame_mask=frame_mask[:, :2])


def test_other_resolution_resamples_position_embedding(tiny):
    _, model, params = tiny
    logits, aux = model.apply({"params": params}, _image(1, res=48), _text(1, 4, 1000), jnp.zeros((1, 4), jnp.int32))
    assert aux["img_tokens"].shape[1] == 36 and np.all(np.isfinite(logits))


def test_scan_unroll_and_remat_give_the_same_logits():
    cfg, model, params = _setup("paligemma2-tiny")
    args = (_image(2), _text(2, 6, 1000), jnp.array([[0, 0, 0, 1, 1, 1]] * 2))
    base = model.apply({"params": params}, *args)[0]
    variant = {
        "img": dict(cfg["img"], scan_unroll=2, remat_policy="full"),
        "llm": dict(cfg["llm"], scan_unroll=2, remat_policy="dots"),
    }
    other = pg.Model(**variant).apply({"params": params}, *args)[0]
    np.testing.assert_allclose(base, other, rtol=1e-5, atol=1e-5)

    def loss(p, m):
        return jnp.mean(m.apply({"params": p}, *args)[0] ** 2)

    g1 = jax.grad(loss)(params, model)
    g2 = jax.grad(loss)(params, pg.Model(**variant))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["paligemma-tiny", "paligemma2-tiny"])
def test_the_mlp_forms_give_the_same_logits_and_gradients(name):
    """The gate/up projections as one einsum (default), batched over the two halves, or split (few tokens)."""
    cfg, model, params = _setup(name)
    args = (_image(4), _text(4, 6, 1000), jnp.array([[0, 0, 0, 1, 1, 1]] * 4))  # 4 x (16 + 6) tokens > width 64
    batched = pg.Model(img=cfg["img"], llm=dict(cfg["llm"], mlp_batched_halves=True))

    def loss(p, m):
        return jnp.mean(m.apply({"params": p}, *args)[0] ** 2)

    np.testing.assert_allclose(
        model.apply({"params": params}, *args)[0], batched.apply({"params": params}, *args)[0], rtol=1e-5, atol=1e-5
    )
    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, model)), jax.tree.leaves(jax.grad(loss)(params, batched))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_keeps_float32_logits_close():
    cfg, model, params = _setup("paligemma-tiny")
    args = (_image(1), _text(1, 6, 1000), jnp.array([[0, 0, 0, 1, 1, 1]]))
    ref = model.apply({"params": params}, *args)[0]
    bf16 = {"img": dict(cfg["img"], dtype="bfloat16"), "llm": dict(cfg["llm"], dtype="bfloat16")}
    out = pg.Model(**bf16).apply({"params": params}, *args)[0]
    assert out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out - ref))) < 0.05 * float(jnp.max(jnp.abs(ref)))


def test_released_compute_prefill_and_extend_match_its_full_forward():
    """bfloat16 compute, float32 weights, remat "full" (configs/common.py RELEASED_COMPUTE): the decode programs."""
    from configs.common import RELEASED_COMPUTE

    cfg, _, params = _setup("paligemma2-tiny")
    model = pg.Model(img=dict(cfg["img"], **RELEASED_COMPUTE), llm=dict(cfg["llm"], **RELEASED_COMPUTE))
    variables = {"params": params}
    image, prompt, suffix = _image(1), _text(1, 4, 1000, seed=4), _text(1, 3, 1000, seed=5)
    first, cache = model.apply(
        variables, image, prompt, jnp.zeros_like(prompt), cache_size=16 + 4 + 3, method=pg.Model.prefill
    )
    assert first.dtype == jnp.float32 and cache["k"].dtype == jnp.bfloat16
    steps = [first]
    for i in range(3):
        logits, cache = model.apply(variables, suffix[:, i], cache, method=pg.Model.extend)
        steps.append(logits)
    full = model.apply(variables, image, jnp.concatenate([prompt, suffix], 1), jnp.array([[0] * 4 + [1] * 3]))[0]
    scale = float(jnp.max(jnp.abs(full)))
    for i, logits in enumerate(steps):
        assert float(jnp.max(jnp.abs(logits[0] - full[0, 3 + i]))) < 0.02 * scale


def test_bad_inputs_name_the_problem(tiny):
    _, model, params = tiny
    with pytest.raises(ValueError, match=r"image must be \[B, H, W, 3\]"):
        model.apply({"params": params}, jnp.zeros((1, 32, 32)), _text(1, 3, 100), jnp.zeros((1, 3), jnp.int32))
    with pytest.raises(ValueError, match="mask_ar"):
        model.apply({"params": params}, _image(1), _text(1, 3, 100), jnp.zeros((1, 4), jnp.int32))
    with pytest.raises(ValueError, match="cache_size"):
        model.apply(
            {"params": params},
            _image(1),
            _text(1, 3, 100),
            jnp.zeros((1, 3), jnp.int32),
            cache_size=8,
            method=pg.Model.prefill,
        )
    with pytest.raises(ValueError, match="Unknown model name"):
        pg.get_config("paligemma-4b-224")
    with pytest.raises(ValueError, match="Unknown Gemma variant"):
        pg.Model(img={"variant": "mu/8", "image_size": 32}, llm={"variant": "gemma_3b"}).init(
            jax.random.key(0), *pg.dummy_inputs({"img": {"variant": "mu/8", "image_size": 32}})
        )


def test_named_configs_cover_every_release():
    for family, sizes in (("paligemma", ["3b"]), ("paligemma2", ["3b", "10b", "28b"])):
        for size in sizes:
            for res in (224, 448, 896):
                cfg = pg.get_config(f"{family}-{size}-{res}")
                assert cfg["img"]["image_size"] == res
    assert pg.get_config("paligemma-3b-ft-vqav2-448") == pg.get_config("paligemma-3b-448")
    assert pg.get_config("paligemma2-10b-mix-224")["llm"]["variant"] == "gemma2_9b"


def test_model_imports_without_tensorflow():
    code = (
        "import sys, paligemma.model, paligemma.gemma, paligemma.siglip; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
