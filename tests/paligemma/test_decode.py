"""Decoding: every sampler against a recomputation with the full (uncached) forward pass of the model."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from paligemma import decode
from paligemma import model as pg

PROMPT_LENS = (6, 3, 4, 1, 5, 6, 2, 4)  # B = 8 (one example per device in the sharding test), T = 6
MAX_LEN = 8
NEVER = -1  # an eos_id the model cannot produce: every example generates MAX_LEN tokens


def _params(name, seed=0, embed_scale=0.1, layer_scale=2.0, norm_scale=1.0):
    """Random parameters (numpy, no compilation) that give varied, moderately peaked next-token distributions.

    Weights are N(0, 1/fan_in); norm scales and biases N(0, norm_scale^2) (SigLIP LayerNorm scales around 1). With a
    unit-scale tied embedding the embedding dominates the residual stream and every step repeats the input token; a
    smaller embedding and larger decoder weights (Gemma 2: larger norm scales, its post-norms undo weight scales)
    make the layers matter.
    """
    cfg = pg.get_config(name)
    rng = np.random.default_rng(seed)

    def init(key_path, shape):
        path = "/".join(k.key for k in key_path)
        x = rng.standard_normal(shape.shape).astype(np.float32)
        if path.endswith(("scale", "bias")):
            return norm_scale * x + (1.0 if "LayerNorm" in path or "encoder_norm" in path else 0.0)
        if path.endswith("input_embedding"):
            return embed_scale * x
        stacked = "layers/" in path or "encoderblock/" in path
        fan_in = np.prod(shape.shape[1:-1] if stacked else shape.shape[:-1])
        return x / np.sqrt(fan_in) * (layer_scale if path.startswith("llm/") else 1.0)

    return pg.Model(**cfg), jax.device_put(jax.tree_util.tree_map_with_path(init, pg.param_shapes(cfg)))


def _batch(prompt_lens, width, vocab, seed=0):
    rng = np.random.default_rng(seed)
    batch = len(prompt_lens)
    mask = np.array([[i < n for i in range(width)] for n in prompt_lens], np.int32)
    return {
        "image": rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32),
        "text": np.where(mask, rng.integers(3, vocab, (batch, width)), 0).astype(np.int32),
        "mask_ar": np.zeros((batch, width), np.int32),
        "mask_input": mask,
    }


class FullForward:
    """The uncached model on `prompt + generated tokens` (padded to one shape so that it compiles once)."""

    def __init__(self, model, params, batch, max_len):
        self.params, self.batch, self.max_len = params, batch, max_len
        self.prompt_lens = batch["mask_input"].sum(axis=1)
        self._apply = jax.jit(lambda p, *args: model.apply({"params": p}, *args)[0])

    def logits(self, generated, lengths):
        """Logits `[B, L, V]` predicting generated token i (i < lengths[b]) after the prompt and tokens < i."""
        batch, width = self.batch["text"].shape
        generated = np.pad(generated, ((0, 0), (0, self.max_len - generated.shape[1])))
        text = np.zeros((batch, width + self.max_len), np.int32)
        mask_ar = np.zeros_like(text)
        valid = np.zeros_like(text)
        for b, n in enumerate(self.prompt_lens):
            text[b, :n] = self.batch["text"][b, :n]
            text[b, n : n + lengths[b]] = generated[b, : lengths[b]]
            mask_ar[b, n:] = 1
            valid[b, : n + lengths[b]] = 1
        full = np.asarray(self._apply(self.params, self.batch["image"], text, mask_ar, valid))
        index = self.prompt_lens[:, None] - 1 + np.arange(self.max_len)[None]
        return np.take_along_axis(full, index[:, :, None], axis=1)

    def greedy(self, steps):
        tokens = np.zeros((len(self.prompt_lens), self.max_len), np.int32)
        for i in range(steps):
            tokens[:, i] = self.logits(tokens, np.full(len(tokens), i)).argmax(-1)[:, i]
        return tokens

    def logprob(self, tokens, lengths):
        """Per-example sum of log_softmax of the full forward at the generated tokens."""
        tokens = np.pad(tokens, ((0, 0), (0, self.max_len - tokens.shape[1])))
        logp = jax.nn.log_softmax(self.logits(tokens, lengths), axis=-1)
        picked = np.take_along_axis(np.asarray(logp), tokens[:, :, None], axis=2)[:, :, 0]
        return np.where(np.arange(self.max_len) < np.asarray(lengths)[:, None], picked, 0.0).sum(axis=1)


@pytest.fixture(scope="module")
def setup():
    model, params = _params("paligemma-tiny")
    batch = _batch(PROMPT_LENS, 6, 1280)
    ref = FullForward(model, params, batch, MAX_LEN)
    return model, params, batch, ref, ref.greedy(MAX_LEN)


def _generate(setup, sampler="greedy", **kw):
    model, params, batch = setup[:3]
    kw = {"max_decode_len": MAX_LEN, "eos_id": NEVER, **kw}
    return {k: np.asarray(v) for k, v in decode.generate(model, params, batch, sampler=sampler, **kw).items()}


def test_greedy_equals_argmax_of_full_forward(setup):
    _, _, _, ref, greedy = setup
    out = _generate(setup)
    assert out["tokens"].dtype == np.int32 and out["lengths"].dtype == np.int32
    assert out["logprob"].dtype == np.float32 and out["tokens"].shape == (8, MAX_LEN)
    assert len({tuple(r) for r in greedy}) == 8 and len(np.unique(greedy)) > 20  # a non-degenerate case
    np.testing.assert_array_equal(out["tokens"], greedy)
    np.testing.assert_array_equal(out["lengths"], MAX_LEN)
    np.testing.assert_allclose(out["logprob"], ref.logprob(greedy, out["lengths"]), rtol=1e-4, atol=1e-4)


def test_greedy_gives_the_same_tokens_and_logprob_however_it_picks(setup, monkeypatch):
    """CPU picks with a max and a min over V, vocab-major ([V, B]) for several examples; TPU/GPU use argmax."""
    outputs = {}
    for axis in (0, -1, None):
        monkeypatch.setattr(decode, "_greedy_axis", lambda sampler, logits, axis=axis: axis)
        outputs[axis] = _generate(setup)
    for axis in (0, -1):
        np.testing.assert_array_equal(outputs[axis]["tokens"], outputs[None]["tokens"])
        np.testing.assert_allclose(outputs[axis]["logprob"], outputs[None]["logprob"], rtol=1e-5)


def test_greedy_choice_breaks_ties_and_nans_as_argmax_and_scores_with_log_softmax():
    """The greedy pick is argmax's: the first maximum, or the first NaN; in either logits layout."""
    rows = np.array(
        [
            [0.5, 2.0, -1.0, 2.0, 0.0],  # a tie: the first maximum
            [-np.inf, -3.0, -np.inf, -2.5, -2.5],
            [1.0, np.nan, 3.0, np.nan, 0.0],  # argmax picks the first NaN
            [7.0, 7.0, 7.0, 7.0, 7.0],
        ],
        np.float32,
    )
    expected = np.asarray(jax.nn.log_softmax(rows, axis=1))[np.arange(4), np.argmax(rows, axis=1)]
    for logits, axis in ((rows, -1), (rows.T, 0)):
        tokens, logprob = decode._greedy_pick(jax.numpy.asarray(logits), axis)
        np.testing.assert_array_equal(np.asarray(tokens), np.argmax(rows, axis=1))
        np.testing.assert_allclose(np.asarray(logprob)[[0, 1, 3]], expected[[0, 1, 3]], rtol=1e-6)
        assert np.isnan(np.asarray(logprob)[2])


def test_eos_stops_each_example_and_pads(setup):
    _, _, _, ref, greedy = setup
    eos = int(greedy[0, 2])
    out = _generate(setup, eos_id=eos, pad_id=7)
    for b, row in enumerate(greedy):
        hits = np.nonzero(row == eos)[0]
        stop = hits[0] + 1 if hits.size else MAX_LEN
        assert out["lengths"][b] == stop
        np.testing.assert_array_equal(out["tokens"][b, :stop], row[:stop])
        np.testing.assert_array_equal(out["tokens"][b, stop:], 7)
    assert out["lengths"][0] <= 3
    np.testing.assert_allclose(out["logprob"], ref.logprob(out["tokens"], out["lengths"]), rtol=1e-4, atol=1e-4)


def test_mixed_prompt_lengths_equal_decoding_alone(setup):
    model, params, batch, _, greedy = setup
    b = 1  # prompt of 3 tokens, padded to 6 in the batch
    alone = {
        "image": batch["image"][b : b + 1],
        "text": batch["text"][b : b + 1, :3],
        "mask_ar": batch["mask_ar"][b : b + 1, :3],
    }  # no mask_input: all valid
    out = decode.generate(model, params, alone, max_decode_len=MAX_LEN, eos_id=NEVER)
    np.testing.assert_array_equal(np.asarray(out["tokens"])[0], greedy[b])


def test_temperature_near_zero_equals_greedy_and_sampling_is_seeded(setup):
    greedy = setup[4]
    cold = _generate(setup, "temperature(t=1e-6)", rng=jax.random.key(0))
    np.testing.assert_array_equal(cold["tokens"], greedy)
    assert decode.parse_sampler("temperature(0)") == decode.Sampler("greedy")
    first = _generate(setup, "temperature(1.0)", rng=jax.random.key(1))
    again = _generate(setup, "temperature(t=1.0)", rng=jax.random.key(1))
    other = _generate(setup, "temperature(1.0)", rng=jax.random.key(2))
    np.testing.assert_array_equal(first["tokens"], again["tokens"])
    assert not np.array_equal(first["tokens"], other["tokens"])
    assert not np.array_equal(first["tokens"], greedy)
    np.testing.assert_allclose(
        first["logprob"], setup[3].logprob(first["tokens"], first["lengths"]), rtol=1e-4, atol=1e-4
    )


def test_stochastic_sampler_needs_rng(setup):
    with pytest.raises(ValueError, match="rng=jax.random.key"):
        _generate(setup, "temperature(0.5)")


@pytest.mark.parametrize("sampler", ["top_k(k=3, t=2.0)", "nucleus(0.5, t=1.5)"])
def test_filtered_sampling_stays_within_the_allowed_tokens(setup, sampler):
    ref = setup[3]
    out = _generate(setup, sampler, rng=jax.random.key(3))
    again = _generate(setup, sampler, rng=jax.random.key(3))
    np.testing.assert_array_equal(out["tokens"], again["tokens"])
    assert not np.array_equal(out["tokens"], setup[4])
    logits = ref.logits(out["tokens"], out["lengths"])
    if sampler.startswith("top_k"):  # the chosen token is among the 3 largest logits
        rank = (logits > np.take_along_axis(logits, out["tokens"][:, :, None], axis=2)).sum(axis=2)
        assert rank.max() < 3
    else:  # the probability (at t = 1.5) of the tokens more likely than the chosen one is below p = 0.5
        probs = np.asarray(jax.nn.softmax(logits / 1.5, axis=-1))
        chosen = np.take_along_axis(probs, out["tokens"][:, :, None], axis=2)
        assert np.where(probs > chosen, probs, 0).sum(axis=2).max() < 0.5
    np.testing.assert_allclose(out["logprob"], ref.logprob(out["tokens"], out["lengths"]), rtol=1e-4, atol=1e-4)


def test_beam_of_one_equals_greedy(setup):
    greedy = setup[4]
    np.testing.assert_array_equal(_generate(setup, "beam(1)")["tokens"], greedy)
    eos = int(greedy[0, 2])
    np.testing.assert_array_equal(
        _generate(setup, "beam(n=1)", eos_id=eos)["tokens"], _generate(setup, "greedy", eos_id=eos)["tokens"]
    )


def test_beam_search_finds_likelier_sequences_with_exact_logprob(setup):
    model, params, batch, ref, greedy = setup
    run = lambda sampler, eos: {
        k: np.asarray(v)
        for k, v in decode.generate(  # noqa: E731
            model, params, batch, max_decode_len=2, eos_id=eos, sampler=sampler
        ).items()
    }
    # Two steps without eos: the greedy path is among the candidates, so beam search scores at least as well.
    out = run("beam(4)", NEVER)
    greedy_logprob = ref.logprob(greedy, np.full(8, 2))
    recomputed = ref.logprob(out["tokens"], out["lengths"])
    np.testing.assert_allclose(out["logprob"], recomputed, rtol=1e-4, atol=1e-4)
    assert np.all(recomputed >= greedy_logprob - 1e-5) and np.any(recomputed > greedy_logprob + 1e-3)
    np.testing.assert_array_equal(out["lengths"], 2)
    # With an eos that greedy takes first for example 0, finished hypotheses compete with open ones.
    eos = int(greedy[0, 0])
    for penalty in (0.0, 1.0):
        out = run(f"beam(4, length_penalty={penalty})", eos)
        recomputed = ref.logprob(out["tokens"], out["lengths"])
        np.testing.assert_allclose(out["logprob"], recomputed, rtol=1e-4, atol=1e-4)
        for b in range(8):
            n = out["lengths"][b]
            assert n == 2 or out["tokens"][b, n - 1] == eos
            assert np.all(out["tokens"][b, n:] == 0) and eos not in out["tokens"][b, : n - 1]
        if penalty == 0.0:  # eos, the likeliest first token, beats every longer sequence on raw log-prob
            assert out["lengths"][0] == 1


def test_best_of_n_keeps_the_likeliest_sample(setup):
    model, params, batch, _, greedy = setup
    n, key = 8, jax.random.key(4)
    first = {k: v[:1] for k, v in batch.items()}
    run = lambda sampler, b: {
        k: np.asarray(v)
        for k, v in decode.generate(  # noqa: E731
            model, params, b, max_decode_len=MAX_LEN, eos_id=NEVER, sampler=sampler, rng=key
        ).items()
    }
    out = run(f"best_of_n({n}, t=1.0)", first)
    np.testing.assert_array_equal(out["tokens"], run(f"best_of_n({n}, t=1.0)", first)["tokens"])
    np.testing.assert_array_equal(run(f"best_of_n(n={n}, t=1e-6)", first)["tokens"][0], greedy[0])
    # The n candidates are the temperature samples (same key) of the example repeated n times.
    samples = run("temperature(1.0)", {k: np.repeat(v, n, axis=0) for k, v in first.items()})
    assert len({tuple(r) for r in samples["tokens"]}) == n
    best = samples["logprob"].argmax()
    np.testing.assert_array_equal(out["tokens"][0], samples["tokens"][best])
    np.testing.assert_allclose(out["logprob"][0], samples["logprob"][best], rtol=1e-5)
    assert out["lengths"][0] == MAX_LEN


def test_sharded_batch_gives_the_same_tokens(setup):
    model, params, batch, _, greedy = setup
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded = {k: jax.device_put(v, NamedSharding(mesh, PartitionSpec("data"))) for k, v in batch.items()}
    replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    out = decode.generate(model, replicated, sharded, max_decode_len=MAX_LEN, eos_id=NEVER)
    np.testing.assert_array_equal(np.asarray(out["tokens"]), greedy)
    assert len(out["tokens"].sharding.device_set) == 8
    # Beam search reorders cache rows across the sharded batch.
    eos = int(greedy[0, 0])
    beams = [
        decode.generate(model, p, b, max_decode_len=2, eos_id=eos, sampler="beam(4, 0.5)")
        for p, b in ((params, batch), (replicated, sharded))
    ]
    for name in ("tokens", "lengths"):
        np.testing.assert_array_equal(np.asarray(beams[0][name]), np.asarray(beams[1][name]))
    np.testing.assert_allclose(np.asarray(beams[0]["logprob"]), np.asarray(beams[1]["logprob"]), rtol=1e-5)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("foo", "unknown sampler 'foo'"),
        ("top_k", "needs argument 'k'"),
        ("top_k(k=0)", "integer >= 1"),
        ("top_k(2.5)", "integer >= 1"),
        ("top_p(p=1.5)", r"p must be in \(0, 1\]"),
        ("temperature(t=-1)", "t must be >= 0"),
        ("beam(n=2, alpha=0.6)", "no argument 'alpha'"),
        ("beam(2, 0.6, 1)", "at most 2 argument"),
        ("greedy(1)", "at most 0 argument"),
        ("best_of_n(2, n=3)", "given twice"),
        ("temperature(t=__import__('os'))", "not a Python literal"),
        ("temperature(t=float('nan'))", "not a Python literal"),
        ("os.system('x')", "not of the form"),
        ("top_k(k=4", "not of the form"),
        ("temperature(t='hot')", "finite number"),
    ],
)
def test_bad_sampler_strings_raise(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        decode.parse_sampler(spec)
    assert "Known samplers" in str(info.value) and "beam(n" in str(info.value)


def test_sampler_parsing():
    assert decode.parse_sampler(" nucleus(0.9, t=0.7) ") == decode.Sampler("top_p", p=0.9, t=0.7)
    assert decode.parse_sampler("beam(n=4, length_penalty=0.6)") == decode.Sampler("beam", n=4, length_penalty=0.6)
    assert decode.parse_sampler("top_k(40)") == decode.Sampler("top_k", k=40, t=1.0)
    assert decode.parse_sampler("best_of_n(4, 0.5)") == decode.Sampler("best_of_n", n=4, t=0.5)
    assert decode.parse_sampler("top_k(k=1, t=0.3)").kind == "greedy"
    assert decode.parse_sampler("greedy").static_key == ("greedy", 1, 0)


def test_invalid_requests_name_the_problem(setup, monkeypatch):
    model, params, batch = setup[:3]
    call = lambda b, **kw: decode.generate(model, params, b, **{"max_decode_len": 4, "eos_id": 1, **kw})  # noqa
    with pytest.raises(ValueError, match="lacks \\['mask_ar'\\]"):
        call({k: v for k, v in batch.items() if k != "mask_ar"})
    with pytest.raises(ValueError, match="mask_input.*must match"):
        call(dict(batch, mask_input=batch["mask_input"][:, :4]))
    with pytest.raises(ValueError, match="image.*B = 8"):
        call(dict(batch, image=batch["image"][:2]))
    with pytest.raises(ValueError, match="left-aligned"):
        call(dict(batch, mask_input=batch["mask_input"][:, ::-1]))
    with pytest.raises(ValueError, match="max_decode_len must be an integer >= 1"):
        call(batch, max_decode_len=0)
    monkeypatch.setattr(decode, "MAX_SEQUENCE_LEN", 24)
    with pytest.raises(ValueError, match=r"16 image tokens \+ prompt length 6 \+ max_decode_len 3 = 25 exceeds"):
        call(batch, max_decode_len=3)


def test_decode_texts_strips_eos_and_pad(tokenizer):
    tok = tokenizer
    ids = tok.encode("a red circle")
    tokens = np.array([ids + [tok.eos_id, 0, 0], ids[:2] + [tok.pad_id] * (len(ids) + 1)], np.int32)
    lengths = np.array([len(ids) + 1, 2], np.int32)
    assert decode.decode_texts(tok, tokens, lengths) == ["a red circle", tok.decode(ids[:2])]
