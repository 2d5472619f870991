"""Gemma 1 and Gemma 2 decoders, parameter tree as the released PaliGemma `llm/...` checkpoints.

Layout of the parameters (depth stacked on a leading axis L):

    embedder/input_embedding (V, D)                       tied with the output projection
    layers/attn/q_einsum/w (L, N, D, H) + kv_einsum/w (L, 2, K, D, H)     when K != N (MQA / GQA)
    layers/attn/qkv_einsum/w (L, 3, N, D, H)                               when K == N (MHA)
    layers/attn/attn_vec_einsum/w (L, N, H, D)
    layers/mlp/gating_einsum (L, 2, D, F)   [., 0] = gate (GELU side), [., 1] = up
    layers/mlp/linear (L, F, D)
    layers/{pre_attention_norm, pre_ffw_norm}/scale (L, D)
    layers/{post_attention_norm, post_ffw_norm}/scale (L, D)               Gemma 2 only
    final_norm/scale (D,)

Compute conventions: norm statistics, attention logits and softmax in float32; the rest in `dtype`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from paligemma import layers

# Logit given to masked attention positions (about the most negative bfloat16 value).
MASKED_LOGIT = -2.3819763e38

_GEMMA2 = dict(attn_logits_softcap=50.0, final_logits_softcap=30.0, post_norms=True)

# name -> sizes and behaviour; explicit config fields override these.
VARIANTS: dict[str, dict[str, Any]] = {
    "gemma_2b": dict(width=2048, depth=18, mlp_dim=16384, num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma_7b": dict(width=3072, depth=28, mlp_dim=24576, num_heads=16, num_kv_heads=16, head_dim=256),
    "gemma2_2b": dict(width=2304, depth=26, mlp_dim=9216, num_heads=8, num_kv_heads=4, head_dim=256, **_GEMMA2),
    "gemma2_9b": dict(width=3584, depth=42, mlp_dim=14336, num_heads=16, num_kv_heads=8, head_dim=256, **_GEMMA2),
    "gemma2_27b": dict(
        width=4608,
        depth=46,
        mlp_dim=36864,
        num_heads=32,
        num_kv_heads=16,
        head_dim=128,
        query_pre_attn_scalar=4608 / 32,
        **_GEMMA2,
    ),
    # Small decoders for tests, benchmarks and the CPU demo.
    "gemma_tiny": dict(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=1, head_dim=16),
    "gemma2_tiny": dict(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=2, head_dim=16, **_GEMMA2),
    "gemma_small": dict(width=256, depth=4, mlp_dim=1024, num_heads=4, num_kv_heads=1, head_dim=64),
    "gemma_bench_s": dict(width=512, depth=6, mlp_dim=2048, num_heads=8, num_kv_heads=1, head_dim=64),  # benchmarks
}

# The window of Gemma 2's local-attention layers, as the PyTorch port applies it.
GEMMA2_SLIDING_WINDOW = 4096


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
    """Hyper-parameters of the decoder. `variant` fills the fields left at None.

    `sliding_window`: None (default) gives full attention in every layer, which is how the original JAX code trained
    the released PaliGemma 2 weights; an int (Gemma 2: 4096) restricts every other layer, starting with layer 0, to
    that window, except inside the bidirectional prefix block, as the PyTorch port does.
    `final_logits_softcap`: 0 or None disables it (the original fine-tuning configs of PaliGemma 2 do).
    """

    variant: str | None = "gemma_2b"
    vocab_size: int = 257152
    width: int | None = None
    depth: int | None = None
    mlp_dim: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    query_pre_attn_scalar: float | None = None  # queries are scaled by its -1/2 power; default head_dim
    attn_logits_softcap: float | None = None
    final_logits_softcap: float | None = None
    post_norms: bool | None = None
    sliding_window: int | None = None
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6
    dropout: float = 0.0
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1
    # True: the MLP's gate and up projections are always one einsum over the [2, D, F] weight, as Qwix's LoRA and
    # quantization need (they adapt an einsum by its weight; `paligemma.quantization.qwix_ready` sets it).
    mlp_one_einsum: bool = False
    # True: with many tokens (training, prefill), the gate and up projections are one matmul batched over the
    # weight's two halves instead of one einsum over it. Faster on CPU, where XLA copies the weight and its gradient
    # transposed for the one einsum (bench-s train step: 3-5%); not on TPU (the vqav2 3B-224 step on v5e:2x4 took
    # 13.13 instead of 12.15 GiB per chip, and more HBM traffic by XLA's cost analysis).
    mlp_batched_halves: bool = False

    def __post_init__(self):
        defaults = dict(
            query_pre_attn_scalar=None, attn_logits_softcap=None, final_logits_softcap=None, post_norms=False
        )
        if self.variant is not None:
            if self.variant not in VARIANTS:
                raise ValueError(f"Unknown Gemma variant {self.variant!r}; known: {sorted(VARIANTS)}.")
            defaults.update(VARIANTS[self.variant])
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        missing = [
            n
            for n in ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim")
            if getattr(self, n) is None
        ]
        if missing:
            raise ValueError(f"Gemma config needs a `variant` or explicit {missing}.")
        if self.query_pre_attn_scalar is None:
            object.__setattr__(self, "query_pre_attn_scalar", float(self.head_dim))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}.")


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps) * (1 + scale)`, statistics in float32, result in the input dtype."""

    eps: float = 1e-6
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.zeros_init(), (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (normed * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)


class Embedder(nn.Module):
    """The token table: `encode` scales rows by sqrt(width); `decode` is the tied output projection."""

    vocab_size: int
    width: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        """Declares the token table (flax calls it before first use)."""
        # std 1/sqrt(width): encoded rows have unit scale and the tied logits start near uniform (from-scratch runs).
        init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=0)
        self.input_embedding = self.param("input_embedding", init, (self.vocab_size, self.width), self.param_dtype)

    def encode(self, ids: jax.Array) -> jax.Array:
        """Int `[B, T]` -> `[B, T, D]` in the compute dtype (the sqrt(width) factor is rounded to it first)."""
        x = jnp.take(self.input_embedding, ids, axis=0).astype(self.dtype)
        return x * jnp.sqrt(jnp.float32(self.width)).astype(self.dtype)

    def decode(self, x: jax.Array, vocab_major: bool = False) -> jax.Array:
        """`[..., D]` -> float32 logits `[..., V]`; with `vocab_major`, `[B, D]` -> `[V, B]` (see `Gemma.logits`)."""
        table = self.input_embedding.astype(self.dtype)
        if vocab_major:
            return jnp.einsum("vd,bd->vb", table, x, preferred_element_type=jnp.float32)
        return jnp.einsum("...d,vd->...v", x, table, preferred_element_type=jnp.float32)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
    """Rotary position embedding, rotate-half layout. x `[B, T, N, H]`, positions int `[B, T]`; same dtype out."""
    half = x.shape[-1] // 2
    timescale = base ** (2 * jnp.arange(half, dtype=jnp.float32) / x.shape[-1])
    radians = positions[..., None, None].astype(jnp.float32) / timescale  # [B, T, 1, H/2]
    sin, cos = jnp.sin(radians), jnp.cos(radians)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Einsum(layers.QwixFriendly, nn.Module):
    """A weight `w` of a fixed shape applied with an einsum equation."""

    shape: tuple[int, ...]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, equation: str, x: jax.Array) -> jax.Array:
        w = self.param(
            "w", nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=()), self.shape, self.param_dtype
        )
        return jnp.einsum(equation, x, w.astype(self.dtype))


def _update_cache(cache: jax.Array, new: jax.Array, write_index: jax.Array) -> jax.Array:
    """Writes `new [B, T, K, H]` into `cache [B, S, K, H]` at per-example offsets `write_index [B]`."""
    write = lambda c, n, i: jax.lax.dynamic_update_slice(c, n.astype(c.dtype), (i, 0, 0))  # noqa: E731
    return jax.vmap(write)(cache, new, write_index)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE, optional logit soft-cap and an optional KV cache."""

    cfg: GemmaConfig

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        mask: jax.Array,
        kv_cache: tuple[jax.Array, jax.Array] | None,
        write_index: jax.Array | None,
    ):
        cfg = self.cfg
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        n, k, h, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.width
        if n == k:
            q, key, value = Einsum((3, n, d, h), dtype, param_dtype, name="qkv_einsum")("btd,sndh->sbtnh", x)
        else:
            q = Einsum((n, d, h), dtype, param_dtype, name="q_einsum")("btd,ndh->btnh", x)
            key, value = Einsum((2, k, d, h), dtype, param_dtype, name="kv_einsum")("btd,skdh->sbtkh", x)
        q = apply_rope(q, positions, cfg.rope_base) * jnp.asarray(cfg.query_pre_attn_scalar**-0.5, dtype)
        key = apply_rope(key, positions, cfg.rope_base)

        if kv_cache is not None:
            key = _update_cache(kv_cache[0], key, write_index)
            value = _update_cache(kv_cache[1], value, write_index)
        new_cache = (key, value) if kv_cache is not None else None

        b, t = q.shape[:2]
        q = q.reshape(b, t, k, n // k, h)  # query head i uses kv head i // (n // k)
        logits = jnp.einsum("btkgh,bskh->bkgts", q, key.astype(dtype), preferred_element_type=jnp.float32)
        if cfg.attn_logits_softcap:
            logits = jnp.tanh(logits / cfg.attn_logits_softcap) * cfg.attn_logits_softcap
        logits = jnp.where(mask[:, None, None], logits, MASKED_LOGIT)
        probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
        out = jnp.einsum("bkgts,bskh->btkgh", probs, value.astype(dtype)).reshape(b, t, n, h)
        out = Einsum((n, h, d), dtype, param_dtype, name="attn_vec_einsum")("btnh,nhd->btd", out)
        return out, new_cache


class FeedForward(layers.QwixFriendly, nn.Module):
    """GeGLU: `gelu_tanh(x W_gate) * (x W_up)`, then `W_down`."""

    cfg: GemmaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=())
        gating = self.param("gating_einsum", init, (2, cfg.width, cfg.mlp_dim), param_dtype).astype(dtype)
        down = self.param("linear", init, (cfg.mlp_dim, cfg.width), param_dtype).astype(dtype)
        if not cfg.mlp_one_einsum and x.shape[0] * x.shape[1] < cfg.width:
            # Few tokens (decoding): one matmul per half. XLA on CPU turns the one einsum into a matmul with a
            # transposed copy of the whole weight, made again on every call: at one token, the most of a step.
            gate, up = (jnp.einsum("btd,df->btf", x, gating[half]) for half in (0, 1))
        elif not cfg.mlp_one_einsum and cfg.mlp_batched_halves:  # see GemmaConfig
            gate, up = jnp.einsum("cbtd,cdf->cbtf", jnp.broadcast_to(x, (2, *x.shape)), gating)
        else:
            # One einsum over the whole [2, D, F] weight: a LoRA adapter on it (paligemma.lora) gets its own output
            # factor for the gate and the up projection, as transformers' gate_proj/up_proj do.
            gate, up = jnp.einsum("btd,cdf->cbtf", x, gating)
        return jnp.einsum("btf,fd->btd", nn.gelu(gate, approximate=True) * up, down)


class Block(nn.Module):
    """One decoder layer (scanned): pre-norm attention and MLP, plus Gemma 2's post-norms."""

    cfg: GemmaConfig

    @nn.compact
    def __call__(self, x, layer_inputs, positions, masks, write_index, deterministic):
        cfg = self.cfg
        is_local, kv_cache = layer_inputs
        x = layers.constrain_batch(x)  # [B, T, D]: each chip keeps its rows (no-op without a mesh context)
        if kv_cache is not None:
            kv_cache = tuple(layers.constrain_batch(c) for c in kv_cache)  # [B, S, K, H]
        norm = lambda name: RMSNorm(cfg.norm_eps, jnp.dtype(cfg.param_dtype), name=name)  # noqa: E731
        mask = jnp.where(is_local, masks[1], masks[0]) if masks[1] is not None else masks[0]
        y, new_cache = Attention(cfg, name="attn")(
            norm("pre_attention_norm")(x), positions, mask, kv_cache, write_index
        )
        if cfg.post_norms:
            y = norm("post_attention_norm")(y)
        x = x + nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        y = FeedForward(cfg, name="mlp")(norm("pre_ffw_norm")(x))
        if cfg.post_norms:
            y = norm("post_ffw_norm")(y)
        x = x + nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        if new_cache is not None:
            new_cache = tuple(layers.constrain_batch(c) for c in new_cache)
        return layers.constrain_batch(x), new_cache


def attention_mask(q_block: jax.Array, q_valid: jax.Array, kv_block: jax.Array, kv_valid: jax.Array) -> jax.Array:
    """Prefix-LM rule: query i may attend key j iff `block[j] <= block[i]` and both are valid.

    `block` = cumsum(mask_ar) over the whole sequence (image tokens included). All int/bool `[B, T]` and `[B, S]`;
    returns bool `[B, T, S]`.
    """
    return (kv_block[:, None, :] <= q_block[:, :, None]) & kv_valid[:, None, :] & q_valid[:, :, None]


def local_attention_mask(
    mask: jax.Array, q_pos: jax.Array, kv_pos: jax.Array, q_block: jax.Array, kv_block: jax.Array, window: int
) -> jax.Array:
    """Restricts `mask [B, T, S]` to keys less than `window` positions back, except within one bidirectional block."""
    in_window = kv_pos[:, None, :] > q_pos[:, :, None] - window
    same_block = kv_block[:, None, :] == q_block[:, :, None]
    return mask & (in_window | same_block)


class Gemma(nn.Module):
    """The Gemma decoder. Methods: `embed` (token ids -> scaled embeddings), `__call__` (the layers), `logits`."""

    cfg: GemmaConfig

    def setup(self):
        """Builds the embedder, the scanned layers and the final norm (flax calls it before first use)."""
        cfg = self.cfg
        self.embedder = Embedder(cfg.vocab_size, cfg.width, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype))
        self.layers = layers.stacked(
            Block,
            cfg.depth,
            cfg.remat_policy,
            cfg.scan_unroll,
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            static_argnums=(6,),
        )(cfg)
        self.final_norm = RMSNorm(cfg.norm_eps, jnp.dtype(cfg.param_dtype))

    def embed(self, ids: jax.Array) -> jax.Array:
        """Int `[B, T]` -> `[B, T, D]` in the compute dtype (batch-split over the mesh context's batch axes)."""
        return layers.constrain_batch(self.embedder.encode(ids))

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        masks: tuple[jax.Array, jax.Array | None],
        cache: dict[str, jax.Array] | None = None,
        write_index: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, dict[str, jax.Array] | None]:
        """Runs the layers and the final norm.

        Args:
          x: `[B, T, D]` input embeddings in the compute dtype.
          positions: int `[B, T]` RoPE positions.
          masks: (global, local) bool `[B, T, S]` attention masks; local (for the sliding-window layers) may be None.
            S = T without a cache, else the cache length.
          cache: optional `{"k", "v"}: [L, B, S, K, H]`; the new keys/values are written at `write_index` int `[B]`.

        Returns:
          `([B, T, D]` final-normed hidden states, the updated cache or None).
        """
        cfg = self.cfg
        is_local = (jnp.arange(cfg.depth) % 2 == 0) if cfg.sliding_window else jnp.zeros((cfg.depth,), bool)
        kv = (cache["k"], cache["v"]) if cache is not None else None
        x, new_kv = self.layers(x, (is_local, kv), positions, masks, write_index, deterministic)
        new_cache = {"k": new_kv[0], "v": new_kv[1]} if cache is not None else None
        return layers.constrain_batch(self.final_norm(x)), new_cache

    def logits(self, x: jax.Array, vocab_major: bool = False) -> jax.Array:
        """`[..., D]` -> float32 `[..., V]` (tied embedding, then the final soft-cap if configured).

        `vocab_major`: `[B, D]` -> `[V, B]`, the same values transposed. XLA on CPU computes a few rows' logits in
        this layout a third faster (the table streams through the matmul once, not repacked): greedy decoding on
        CPU reduces over V in it (`paligemma.decode`).
        """
        logits = self.embedder.decode(x, vocab_major)
        if self.cfg.final_logits_softcap:
            logits = jnp.tanh(logits / self.cfg.final_logits_softcap) * self.cfg.final_logits_softcap
        return logits

    def init_cache(self, batch_size: int, cache_size: int) -> dict[str, jax.Array]:
        """Zeros `{"k", "v"}: [L, B, S, K, H]` in the compute dtype."""
        cfg = self.cfg
        shape = (cfg.depth, batch_size, cache_size, cfg.num_kv_heads, cfg.head_dim)
        zeros = lambda: layers.constrain_batch(jnp.zeros(shape, jnp.dtype(cfg.dtype)), dim=1)  # noqa: E731
        return {"k": zeros(), "v": zeros()}
