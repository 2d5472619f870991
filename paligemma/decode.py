"""Autoregressive decoding for PaliGemma: greedy, sampling, beam search and best-of-n, compiled on device.

    out = decode.generate(model, params, batch, max_decode_len=32, eos_id=tok.eos_id, sampler="beam(n=4)")
    texts = decode.decode_texts(tok, out["tokens"], out["lengths"])

`batch` holds the eval-prompt layout of `tok_paligemma_prompt`: "image" float `[B, H, W, 3]` (or `[B, F, H, W, 3]`)
in [-1, 1], "text" int `[B, T]` and "mask_ar" int `[B, T]` (0 on the prompt), "mask_input" `[B, T]` (1 on the prompt;
prompts left-aligned, padding after them; optional, default all valid). Arrays may be numpy, jax, or global jax
arrays sharded over a mesh: the compiled program follows the shardings of its inputs.

Two compiled programs, dispatched back to back with no host synchronisation: `Model.prefill` encodes image + prompt
into a KV cache (compiled once per model and input shapes, shared by every sampler and decode length), then one
`jax.jit` holds the whole decoding loop: the cache grows to `image tokens + T + max_decode_len` positions and a
`jax.lax.while_loop` feeds one token per step to `Model.extend`, on device, until every example has produced
`eos_id` (or `max_decode_len` tokens). Compiled programs are cached per (model config, sampler kind, static sizes);
floats (temperature, p, length penalty), `eos_id` and `pad_id` are runtime values, so sweeping them does not
recompile.

Weight-only int8/int4 inference: pass `paligemma.quantization.quantize(model, params, "int8")`'s `(qmodel, qparams)`
in place of `(model, params)`; the quantized model is cached there, so its compiled programs are reused too.

Samplers (strings parsed as Python literals with `ast`, never evaluated; positional or keyword arguments):
    greedy                          argmax
    temperature(t=1.0)              sample from softmax(logits / t); t=0 is greedy
    top_k(k, t=1.0)                 sample among the k most likely tokens (tempered)
    top_p(p, t=1.0) / nucleus(...)  sample from the smallest set of most likely tokens (of the tempered
                                    distribution) whose probability reaches p
    beam(n, length_penalty=0.0)     beam search, n beams per example; a finished hypothesis (ending in eos) of
                                    `length` generated tokens (eos included) and summed log-prob `s` scores
                                    `s / length ** length_penalty` (0 = raw log-prob); hypotheses still open at
                                    `max_decode_len` compete with the same formula at that length
    best_of_n(n, t=1.0)             n temperature samples per example; returns the one with the highest logprob

`logprob` is always the sum, over the generated tokens (eos included, padding excluded), of the log-probabilities
under the model's own distribution, `log_softmax(logits)`: untempered and unfiltered, so it is comparable across
samplers; with length_penalty=0 it is the score that beam search maximises.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Gemma's trained context (image tokens + prompt + generated tokens); longer sequences are refused.
MAX_SEQUENCE_LEN = 8192

# A log-probability score that no real hypothesis reaches (finite, so that sums and divisions stay finite).
_NEG = -1e30

_KNOWN = (
    "greedy",
    "temperature(t=1.0)",
    "top_k(k, t=1.0)",
    "top_p(p, t=1.0)",
    "nucleus(p, t=1.0)",
    "beam(n, length_penalty=0.0)",
    "best_of_n(n, t=1.0)",
)

# name -> ((argument, default or _REQUIRED), ...)
_REQUIRED = object()
_SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "greedy": (),
    "temperature": (("t", 1.0),),
    "top_k": (("k", _REQUIRED), ("t", 1.0)),
    "top_p": (("p", _REQUIRED), ("t", 1.0)),
    "beam": (("n", _REQUIRED), ("length_penalty", 0.0)),
    "best_of_n": (("n", _REQUIRED), ("t", 1.0)),
}
_ALIASES = {"nucleus": "top_p"}
_INT_ARGS = ("k", "n")


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A parsed sampler. `kind` is one of greedy, temperature, top_k, top_p, beam, best_of_n.

    `n` and `k` fix shapes (they are part of the compiled program); `t`, `p` and `length_penalty` are runtime values.
    """

    kind: str
    n: int = 1
    k: int = 0
    t: float = 1.0
    p: float = 1.0
    length_penalty: float = 0.0

    @property
    def stochastic(self) -> bool:
        """Whether the sampler draws random numbers (and so needs `rng`)."""
        return self.kind in ("temperature", "top_k", "top_p", "best_of_n")

    @property
    def static_key(self) -> tuple[str, int, int]:
        """The part of the sampler that shapes the compiled program."""
        return (self.kind, self.n, self.k)

    def runtime_values(self) -> dict[str, jax.Array]:
        """float32 scalars passed to the compiled program."""
        return {name: jnp.float32(getattr(self, name)) for name in ("t", "p", "length_penalty")}


def _sampler_error(spec: str, problem: str) -> ValueError:
    return ValueError(
        f"Bad sampler {spec!r}: {problem}. Known samplers: {', '.join(_KNOWN)} "
        f"(e.g. 'top_k(k=40, t=0.7)', 'beam(4, length_penalty=0.6)')."
    )


def _literal(node: ast.AST, spec: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _sampler_error(spec, f"argument {ast.unparse(node)!r} is not a Python literal") from None


def parse_sampler(spec: str | Sampler) -> Sampler:
    """Parses a sampler string such as `"top_p(0.9, t=0.7)"` (see the module docstring) into a `Sampler`.

    Raises ValueError naming the problem and listing the known samplers for an unknown name, a malformed string,
    unknown/missing/duplicate arguments or out-of-range values.
    """
    if isinstance(spec, Sampler):
        return spec
    if not isinstance(spec, str):
        raise _sampler_error(str(spec), f"expected a string, got {type(spec).__name__}")
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise _sampler_error(spec, "not of the form name or name(arg, key=value, ...)") from None
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if any(isinstance(a, ast.Starred) for a in node.args) or any(kw.arg is None for kw in node.keywords):
            raise _sampler_error(spec, "*args / **kwargs are not supported")
        args = [_literal(a, spec) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg in kwargs:
                raise _sampler_error(spec, f"argument {kw.arg!r} given twice")
            kwargs[kw.arg] = _literal(kw.value, spec)
    else:
        raise _sampler_error(spec, "not of the form name or name(arg, key=value, ...)")
    kind = _ALIASES.get(name, name)
    if kind not in _SIGNATURES:
        raise _sampler_error(spec, f"unknown sampler {name!r}")
    return _bind(spec, kind, args, kwargs)


def _bind(spec: str, kind: str, args: list[Any], kwargs: dict[str, Any]) -> Sampler:
    signature = _SIGNATURES[kind]
    names = [n for n, _ in signature]
    if len(args) > len(names):
        raise _sampler_error(spec, f"{kind} takes at most {len(names)} argument(s) {names}, got {len(args)}")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise _sampler_error(spec, f"{kind} has no argument {key!r} (arguments: {names})")
        if key in values:
            raise _sampler_error(spec, f"argument {key!r} given twice")
        values[key] = value
    for arg, default in signature:
        if arg not in values:
            if default is _REQUIRED:
                raise _sampler_error(spec, f"{kind} needs argument {arg!r}")
            values[arg] = default
    for arg, value in values.items():
        if arg in _INT_ARGS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _sampler_error(spec, f"{arg} must be an integer >= 1, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _sampler_error(spec, f"{arg} must be a finite number, got {value!r}")
    if values.get("t", 1.0) < 0:
        raise _sampler_error(spec, f"temperature t must be >= 0 (0 = greedy), got {values['t']}")
    if "p" in values and not 0 < values["p"] <= 1:
        raise _sampler_error(spec, f"p must be in (0, 1], got {values['p']}")
    if kind in ("temperature", "top_k", "top_p") and values["t"] == 0:
        return Sampler("greedy")
    if kind == "top_k" and values["k"] == 1:
        return Sampler("greedy")
    return Sampler(kind, **{k: (float(v) if k not in _INT_ARGS else v) for k, v in values.items()})


# ------------------------------------------------------------------------------------------------------------------
# Token choice per step: logits [B, V] float32 -> tokens int32 [B].


def _choose(sampler: Sampler, logits: jax.Array, key: jax.Array | None, values: Mapping[str, jax.Array]) -> jax.Array:
    if sampler.kind == "greedy":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    tempered = logits / values["t"]
    if sampler.kind in ("temperature", "best_of_n"):
        return jax.random.categorical(key, tempered, axis=-1).astype(jnp.int32)
    if sampler.kind == "top_k":
        top, index = jax.lax.top_k(tempered, sampler.k)
        pick = jax.random.categorical(key, top, axis=-1)
        return jnp.take_along_axis(index, pick[:, None], axis=-1)[:, 0].astype(jnp.int32)
    if sampler.kind == "top_p":
        ordered, index = jax.lax.top_k(tempered, tempered.shape[-1])
        probs = jax.nn.softmax(ordered, axis=-1)
        # Keep a token while the mass before it is below p: the most likely token is always kept.
        keep = (jnp.cumsum(probs, axis=-1) - probs) < values["p"]
        pick = jax.random.categorical(key, jnp.where(keep, ordered, -jnp.inf), axis=-1)
        return jnp.take_along_axis(index, pick[:, None], axis=-1)[:, 0].astype(jnp.int32)
    raise AssertionError(sampler.kind)


def _greedy_pick(logits: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """Float32 logits, vocabulary on `axis` (`[B, V]`: -1, `[V, B]`: 0) -> (argmax int32 `[B]`, log-probs `[B]`).

    The tokens are argmax's choice (the first maximum; the first NaN, if any), found with a max and a min over V:
    XLA on CPU runs these plain reductions several times faster than argmax's (value, index) reduction. log_softmax
    at the maximum is `-log(sum(exp(logits - max)))`, the arithmetic of `jax.nn.log_softmax`.
    """
    vocab = logits.shape[axis]
    top = jnp.max(logits, axis=axis, keepdims=True)
    ids = jax.lax.broadcasted_iota(jnp.int32, logits.shape, axis % logits.ndim)
    tokens = jnp.min(jnp.where((logits == top) | jnp.isnan(logits), ids, vocab), axis=axis)
    return tokens, -jnp.log(jnp.sum(jnp.exp(logits - top), axis=axis))


def _token_logprob(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log_softmax(logits [B, V])[b, tokens[b]] -> float32 [B]."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]


def _repeat_batch(tree: Any, n: int) -> Any:
    """Repeats every example n times (b -> b*n .. b*n+n-1) in a cache {"k","v": [L,B,...], "length": [B]} or [B, V]."""
    if n == 1:
        return tree
    if isinstance(tree, dict):
        return {
            "k": jnp.repeat(tree["k"], n, axis=1),
            "v": jnp.repeat(tree["v"], n, axis=1),
            "length": jnp.repeat(tree["length"], n, axis=0),
        }
    return jnp.repeat(tree, n, axis=0)


def _gather_batch(cache: dict[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]:
    """Reorders the cache rows by int `index [B*n]`."""
    return {
        "k": jnp.take(cache["k"], index, axis=1),
        "v": jnp.take(cache["v"], index, axis=1),
        "length": jnp.take(cache["length"], index, axis=0),
    }


def _set_column(tokens: jax.Array, step: jax.Array, column: jax.Array) -> jax.Array:
    """Tokens [..., L] with column `step` replaced by `column [...]`."""
    return jnp.where(jnp.arange(tokens.shape[-1]) == step, column[..., None], tokens)


# ------------------------------------------------------------------------------------------------------------------
# The decoding loops. `extend(tokens [B], cache, vocab_major=False) -> (logits [B, V] or [V, B], cache)`.


def _sample_loop(
    extend: Callable,
    logits: jax.Array,
    cache: dict[str, jax.Array],
    *,
    sampler: Sampler,
    values: Mapping[str, jax.Array],
    rng: jax.Array | None,
    max_decode_len: int,
    eos_id: jax.Array,
    pad_id: jax.Array,
    greedy_axis: int | None = None,
) -> dict[str, jax.Array]:
    """One token per step for every example until all have produced eos. Greedy and the sampling samplers.

    `greedy_axis` (greedy samplers only, from `_greedy_axis`): pick with `_greedy_pick`, each step's logits `[B, V]`
    (-1) or vocab-major `[V, B]` (0, see `gemma.Gemma.logits`); None: `_choose` and log_softmax.
    """
    batch = logits.shape[0]
    vocab_major = greedy_axis == 0

    def choose_and_record(state, logits, step):
        if greedy_axis is not None:
            sampled, logprob = _greedy_pick(logits, greedy_axis)
        else:
            key = jax.random.fold_in(rng, step) if rng is not None else None
            sampled = _choose(sampler, logits, key, values)
            logprob = _token_logprob(logits, sampled)
        done = state["done"]
        # Finished examples record pad_id but keep feeding a valid token (their rows are ignored).
        return dict(
            state,
            step=step + 1,
            last=sampled,
            tokens=_set_column(state["tokens"], step, jnp.where(done, pad_id, sampled)),
            lengths=state["lengths"] + (~done).astype(jnp.int32),
            logprob=state["logprob"] + jnp.where(done, 0.0, logprob),
            done=done | (sampled == eos_id),
        )

    state = dict(
        step=jnp.int32(0),
        last=jnp.zeros((batch,), jnp.int32),
        tokens=jnp.full((batch, max_decode_len), pad_id, jnp.int32),
        lengths=jnp.zeros((batch,), jnp.int32),
        logprob=jnp.zeros((batch,), jnp.float32),
        done=jnp.zeros((batch,), bool),
        cache=cache,
    )
    state = choose_and_record(state, logits.T if vocab_major else logits, jnp.int32(0))

    def body(state):
        logits, cache = extend(state["last"], state["cache"], vocab_major=vocab_major)
        return choose_and_record(dict(state, cache=cache), logits, state["step"])

    cond = lambda s: (s["step"] < max_decode_len) & ~jnp.all(s["done"])  # noqa: E731
    state = jax.lax.while_loop(cond, body, state)
    return {"tokens": state["tokens"], "lengths": state["lengths"], "logprob": state["logprob"]}


def _beam_search(
    extend: Callable,
    logits: jax.Array,
    cache: dict[str, jax.Array],
    *,
    n: int,
    length_penalty: jax.Array,
    max_decode_len: int,
    eos_id: jax.Array,
    pad_id: jax.Array,
) -> dict[str, jax.Array]:
    """Beam search with `n` beams per example (cache rows B*n, reordered by parent beam every step).

    Each step takes the 2n best one-token extensions of the open beams: those ending in eos compete for the best
    finished hypothesis (score `logprob / length ** length_penalty`; only the best one is kept, as only one sequence
    per example is returned), the n best others stay open. An example stops
    when no open beam can still beat its best finished hypothesis (log-probs only decrease, so an open beam with
    log-prob s can at best reach s / l ** length_penalty for some remaining length l).
    """
    batch, vocab = logits.shape
    steps = max_decode_len

    def normalise(score, length):
        return score / jnp.asarray(length, jnp.float32) ** length_penalty

    def choose_and_record(state, logits, step):
        length = step + 1
        logp = jax.nn.log_softmax(logits, axis=-1).reshape(batch, n, vocab)
        candidates = (state["scores"][:, :, None] + logp).reshape(batch, n * vocab)
        top_scores, top_index = jax.lax.top_k(candidates, 2 * n)
        parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        is_eos = token == eos_id
        history = jnp.take_along_axis(state["tokens"], parent[:, :, None], axis=1)
        cand_tokens = _set_column(history, step, token)  # [B, 2n, L]

        finished = jnp.where(is_eos, normalise(top_scores, length), _NEG)
        pick = jnp.argmax(finished, axis=1)
        better = (jnp.take_along_axis(finished, pick[:, None], axis=1)[:, 0] > state["best_score"]) & ~state["done"]
        pick_tokens = jnp.take_along_axis(cand_tokens, pick[:, None, None], axis=1)[:, 0]
        best = dict(
            best_tokens=jnp.where(better[:, None], pick_tokens, state["best_tokens"]),
            best_score=jnp.where(better, jnp.max(finished, axis=1), state["best_score"]),
            best_logprob=jnp.where(
                better, jnp.take_along_axis(top_scores, pick[:, None], axis=1)[:, 0], state["best_logprob"]
            ),
            best_length=jnp.where(better, length, state["best_length"]),
        )

        scores, keep = jax.lax.top_k(jnp.where(is_eos, _NEG, top_scores), n)
        rows = (jnp.arange(batch)[:, None] * n + jnp.take_along_axis(parent, keep, axis=1)).reshape(-1)
        open_bound = jnp.maximum(normalise(scores[:, 0], length), normalise(scores[:, 0], steps))
        has_finished = best["best_length"] > 0
        return dict(
            state,
            **best,
            step=length,
            scores=scores,
            last=jnp.take_along_axis(token, keep, axis=1).reshape(-1),
            tokens=jnp.take_along_axis(cand_tokens, keep[:, :, None], axis=1),
            cache=_gather_batch(state["cache"], rows) if n > 1 else state["cache"],
            done=state["done"] | (has_finished & (best["best_score"] >= open_bound)),
        )

    first_scores = jnp.where(jnp.arange(n) == 0, 0.0, _NEG).astype(jnp.float32)
    state = dict(
        step=jnp.int32(0),
        last=jnp.zeros((batch * n,), jnp.int32),
        scores=jnp.broadcast_to(first_scores, (batch, n)),
        tokens=jnp.full((batch, n, steps), pad_id, jnp.int32),
        best_tokens=jnp.full((batch, steps), pad_id, jnp.int32),
        best_score=jnp.full((batch,), _NEG, jnp.float32),
        best_logprob=jnp.zeros((batch,), jnp.float32),
        best_length=jnp.zeros((batch,), jnp.int32),
        done=jnp.zeros((batch,), bool),
        cache=_repeat_batch(cache, n),
    )
    state = choose_and_record(state, _repeat_batch(logits, n), jnp.int32(0))

    def body(state):
        logits, cache = extend(state["last"], state["cache"])
        return choose_and_record(dict(state, cache=cache), logits, state["step"])

    cond = lambda s: (s["step"] < steps) & ~jnp.all(s["done"])  # noqa: E731
    state = jax.lax.while_loop(cond, body, state)
    # Examples not done ran to max_decode_len: their best open beam (index 0, same length for all) competes too.
    use_open = ~state["done"] & (normalise(state["scores"][:, 0], steps) > state["best_score"])
    return {
        "tokens": jnp.where(use_open[:, None], state["tokens"][:, 0], state["best_tokens"]),
        "lengths": jnp.where(use_open, steps, state["best_length"]).astype(jnp.int32),
        "logprob": jnp.where(use_open, state["scores"][:, 0], state["best_logprob"]),
    }


def _best_of_n(extend, logits, cache, *, sampler, values, rng, max_decode_len, eos_id, pad_id):
    """N independent temperature samples per example (rows b*n..b*n+n-1); keeps the highest logprob."""
    n, batch = sampler.n, logits.shape[0]
    out = _sample_loop(
        extend,
        _repeat_batch(logits, n),
        _repeat_batch(cache, n),
        sampler=sampler,
        values=values,
        rng=rng,
        max_decode_len=max_decode_len,
        eos_id=eos_id,
        pad_id=pad_id,
    )
    logprob = out["logprob"].reshape(batch, n)
    pick = jnp.argmax(logprob, axis=1)
    take = (
        lambda x: jnp.take_along_axis(  # noqa: E731
            x.reshape(batch, n, *x.shape[1:]), pick.reshape((batch, 1) + (1,) * (x.ndim - 1)), axis=1
        )[:, 0]
    )
    return {name: take(x) for name, x in out.items()}


# ------------------------------------------------------------------------------------------------------------------
# The compiled programs (cached per model and static sizes).


@functools.lru_cache(maxsize=32)
def _prefill_program(model) -> Callable:
    """Jit of `Model.prefill` into a cache of exactly image tokens + T positions; the decoding loop pads it.

    Kept apart from the loop so that one compiled prefill serves every sampler and decode length of a shape. Cached
    per model (hashable by its config): equal models share the jitted function, and so its compiled programs.
    """

    def prefill(params, image, text, mask_ar, mask_input, frame_mask):
        num_img = jax.eval_shape(lambda: model.apply({"params": params}, image, method="embed_image")).shape[1]
        size = num_img + text.shape[1]
        return model.apply(
            {"params": params},
            image,
            text,
            mask_ar,
            mask_input,
            cache_size=size,
            frame_mask=frame_mask,
            method="prefill",
        )

    return jax.jit(prefill)


@functools.lru_cache(maxsize=32)
def _loop_program(
    model, static_key: tuple[str, int, int], max_decode_len: int, greedy_axis: int | None = None
) -> Callable:
    """Jit of the decoding loop: `(params, logits [B, V], cache, rng, eos_id, pad_id, values) -> outputs`.

    Cached per (model, `Sampler.static_key`, max_decode_len, greedy_axis); the sampler's floats are runtime
    `values`. `greedy_axis`: how greedy decoding picks (see `_greedy_axis`).
    """
    sampler = Sampler(*static_key)

    def loop(params, logits, cache, rng, eos_id, pad_id, values):
        grow = max_decode_len  # cache positions: image tokens + T + max_decode_len
        cache = {
            "k": jnp.pad(cache["k"], ((0, 0), (0, 0), (0, grow), (0, 0), (0, 0))),
            "v": jnp.pad(cache["v"], ((0, 0), (0, 0), (0, grow), (0, 0), (0, 0))),
            "length": cache["length"],
        }

        def extend(tokens, cache, vocab_major=False):
            return model.apply({"params": params}, tokens, cache, vocab_major, method="extend")

        common = dict(max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id)
        if sampler.kind == "beam":
            return _beam_search(extend, logits, cache, n=sampler.n, length_penalty=values["length_penalty"], **common)
        if sampler.kind == "best_of_n":
            return _best_of_n(extend, logits, cache, sampler=sampler, values=values, rng=rng, **common)
        return _sample_loop(
            extend, logits, cache, sampler=sampler, values=values, rng=rng, greedy_axis=greedy_axis, **common
        )

    return jax.jit(loop)


# ------------------------------------------------------------------------------------------------------------------
# Public API.


def _greedy_axis(sampler: Sampler, logits: jax.Array) -> int | None:
    """How greedy decoding picks its tokens: the `_greedy_pick` axis on CPU, None (argmax) on TPU/GPU.

    On CPU: over `[B, V]` logits (-1) for one example, vocab-major `[V, B]` ones (0) for several, where XLA's
    matmul streams the table once instead of repacking it (measured on bench-s: README, Benchmarks). TPU/GPU lay out
    and reduce the usual form well, and there a `[V, B]` array with a small B would be padded to the chip's tiles.
    """
    if sampler.kind != "greedy" or not all(d.platform == "cpu" for d in logits.devices()):
        return None
    return 0 if logits.shape[0] > 1 else -1


def _check_batch(batch: Mapping[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """`(image, text, mask_ar, mask_input, frame_mask)` of a decode batch, checked (frame_mask None when absent)."""
    missing = [k for k in ("image", "text", "mask_ar") if k not in batch]
    if missing:
        raise ValueError(
            f"batch lacks {missing}; generate needs 'image', 'text', 'mask_ar' (and 'mask_input' for "
            f"padded prompts), e.g. from the tok_paligemma_prompt pp op. Got keys {sorted(batch)}."
        )
    image, text, mask_ar = batch["image"], batch["text"], batch["mask_ar"]
    mask_input = batch.get("mask_input")
    if mask_input is None:
        mask_input = np.ones(np.shape(text), np.int32)
    if len(np.shape(text)) != 2:
        raise ValueError(f"batch['text'] must be int [B, T]; got shape {np.shape(text)}.")
    for name, value in (("mask_ar", mask_ar), ("mask_input", mask_input)):
        if np.shape(value) != np.shape(text):
            raise ValueError(
                f"batch[{name!r}] has shape {np.shape(value)} but batch['text'] has "
                f"{np.shape(text)}; they must match ([B, T])."
            )
    if len(np.shape(image)) not in (4, 5) or np.shape(image)[0] != np.shape(text)[0]:
        raise ValueError(
            f"batch['image'] must be [B, H, W, 3] or [B, F, H, W, 3] with B = {np.shape(text)[0]} "
            f"like batch['text']; got shape {np.shape(image)}."
        )
    text_dtype = text.dtype if hasattr(text, "dtype") else np.asarray(text).dtype
    if not np.issubdtype(text_dtype, np.integer):
        raise ValueError(f"batch['text'] must hold integer token ids; got dtype {text_dtype}.")
    if isinstance(mask_input, np.ndarray) and mask_input.size:
        valid = mask_input.astype(bool)
        if np.any(valid[:, 1:] & ~valid[:, :-1]):
            rows = np.nonzero(np.any(valid[:, 1:] & ~valid[:, :-1], axis=1))[0].tolist()
            raise ValueError(
                f"prompts must be left-aligned (mask_input 1s first, padding after); rows {rows} "
                f"have a valid token after padding. Use tok_paligemma_prompt or move the padding."
            )
    frame_mask = batch.get("frame_mask")
    if frame_mask is not None and (len(np.shape(image)) != 5 or np.shape(frame_mask) != np.shape(image)[:2]):
        raise ValueError(
            f"batch['frame_mask'] must be [B, F] for batch['image'] [B, F, H, W, 3]; got {np.shape(frame_mask)} and "
            f"{np.shape(image)}."
        )
    return image, text, mask_ar, mask_input, frame_mask


def generate(
    model,
    params: Any,
    batch: Mapping[str, Any],
    *,
    max_decode_len: int,
    eos_id: int,
    sampler: str | Sampler = "greedy",
    rng: jax.Array | None = None,
    pad_id: int = 0,
) -> dict[str, jax.Array]:
    """Generates up to `max_decode_len` tokens after each prompt of `batch` (layout in the module docstring).

    Args:
      model: a `paligemma.model.Model` (unbound), or its quantized wrapper (`paligemma.quantization.quantize`).
      params: its parameter tree (the `"params"` collection), numpy or jax, possibly sharded.
      batch: "image" float `[B, H, W, 3]` / `[B, F, H, W, 3]`, "text" int `[B, T]`, "mask_ar" `[B, T]`,
        "mask_input" `[B, T]` (left-aligned prompts; optional, default all valid), "frame_mask" `[B, F]` (with
        F frames per example: 0 for a padded frame; optional, default all real).
      max_decode_len: number of tokens to generate at most (>= 1).
      eos_id: an example stops after producing it; an id outside the vocabulary never stops anything.
      sampler: a sampler string (module docstring) or a `Sampler`.
      rng: a jax PRNG key; required by the stochastic samplers (same key -> same output), ignored otherwise.
      pad_id: written after an example's eos.

    Returns:
      {"tokens": int32 `[B, max_decode_len]` (eos included, pad_id after it), "lengths": int32 `[B]` (generated
      tokens incl. eos), "logprob": float32 `[B]` (sum of the model's log-probs of the generated tokens)}.
    """
    spec = parse_sampler(sampler)
    if isinstance(max_decode_len, bool) or not isinstance(max_decode_len, (int, np.integer)) or max_decode_len < 1:
        raise ValueError(f"max_decode_len must be an integer >= 1, got {max_decode_len!r}.")
    for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int token id, got {value!r}.")
    if spec.stochastic and rng is None:
        raise ValueError(
            f"sampler {sampler!r} draws random tokens and needs rng=jax.random.key(seed); greedy and "
            f"beam(...) need none."
        )
    inputs = (params, *_check_batch(batch))
    prefill = _prefill_program(model)
    logits_shape, cache_shape = jax.eval_shape(prefill, *inputs)  # traced once per shape (jit's cache)
    prompt_len, vocab = cache_shape["k"].shape[2], logits_shape.shape[-1]
    if prompt_len + max_decode_len > MAX_SEQUENCE_LEN:
        text_len = np.shape(inputs[2])[1]
        raise ValueError(
            f"{prompt_len - text_len} image tokens + prompt length {text_len} + max_decode_len {max_decode_len} = "
            f"{prompt_len + max_decode_len} exceeds the model's context of {MAX_SEQUENCE_LEN} tokens; lower "
            f"max_decode_len, the prompt length (text_len of the eval pp) or the image resolution."
        )
    if spec.kind == "top_k" and spec.k > vocab:
        raise ValueError(f"top_k k={spec.k} exceeds the vocabulary size {vocab}; lower k.")
    if spec.kind == "beam" and 2 * spec.n > vocab:
        raise ValueError(f"beam n={spec.n} needs 2n <= the vocabulary size {vocab}; lower n.")
    logits, cache = prefill(*inputs)
    loop = _loop_program(model, spec.static_key, int(max_decode_len), _greedy_axis(spec, logits))
    return loop(
        params,
        logits,
        cache,
        rng if spec.stochastic else None,
        jnp.int32(eos_id),
        jnp.int32(pad_id),
        spec.runtime_values(),
    )


def decode_texts(tokenizer, tokens: Any, lengths: Any) -> list[str]:
    """Texts of generated `tokens` int `[B, L]` cut at `lengths` int `[B]`, without eos/pad/bos.

    `tokenizer` is a `paligemma.tokenizer.Tokenizer` (anything with `decode(ids, stop_at_eos=...)`, `eos_id`,
    `pad_id`).
    """
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(f"tokens must be [B, L] and lengths [B]; got {tokens.shape} and {lengths.shape}.")
    drop = {tokenizer.eos_id, tokenizer.pad_id}
    return [
        tokenizer.decode([int(i) for i in row[:n] if int(i) not in drop], stop_at_eos=True)
        for row, n in zip(tokens, lengths)
    ]


__all__: Sequence[str] = ("generate", "decode_texts", "parse_sampler", "Sampler", "MAX_SEQUENCE_LEN")
