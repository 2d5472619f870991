"""SigLIP vision transformer (the PaliGemma image encoder), parameter tree as the released `img/...` checkpoints.

Layout of the parameters (depth stacked on a leading axis, as in the released files):

    embedding/{kernel (P,P,3,W), bias (W,)}          patch embedding, VALID conv with stride P
    pos_embedding (1, N, W)                           learned, N = (H/P) * (W/P), no class token
    Transformer/encoderblock/LayerNorm_0, LayerNorm_1, MlpBlock_0/Dense_{0,1},
        MultiHeadDotProductAttention_0/{query,key,value,out}
    Transformer/encoder_norm/{scale,bias}
    head/{kernel (W, D), bias (D,)}                   projection to the LLM width (no pooling)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from paligemma import layers

# name -> (width, depth, mlp_dim, num_heads, patch_size)
VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "So400m/14": (1152, 27, 4304, 16, 14),
    "L/16": (1024, 24, 4096, 16, 16),
    "B/16": (768, 12, 3072, 12, 16),
    "S/16": (384, 12, 1536, 6, 16),
    "Ti/16": (192, 12, 768, 3, 16),
    "mu/8": (64, 2, 128, 2, 8),
}


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
    """Hyper-parameters of the image encoder. `variant` fills the sizes; explicit fields override it."""

    variant: str | None = "So400m/14"
    width: int | None = None
    depth: int | None = None
    mlp_dim: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    image_size: int | tuple[int, int] = 224
    num_classes: int | None = None  # width of the `head` projection (the LLM width); None: no head
    pool_type: str = "none"  # "none" (PaliGemma: every token goes on), "map" or "gap" (a pooled output in aux)
    layer_norm_eps: float = 1e-6
    dropout: float = 0.0
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1

    def __post_init__(self):
        sizes = dict(
            width=self.width,
            depth=self.depth,
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            patch_size=self.patch_size,
        )
        if self.variant is not None:
            if self.variant not in VARIANTS:
                raise ValueError(f"Unknown SigLIP variant {self.variant!r}; known: {sorted(VARIANTS)}.")
            defaults = dict(zip(sizes, VARIANTS[self.variant]))
            for name, value in sizes.items():
                if value is None:
                    object.__setattr__(self, name, defaults[name])
        missing = [name for name in sizes if getattr(self, name) is None]
        if missing:
            raise ValueError(f"SigLIP config needs a `variant` or explicit {missing}.")
        if self.pool_type not in ("none", "map", "gap"):
            raise ValueError(f"SigLIP pool_type must be 'none', 'map' or 'gap'; got {self.pool_type!r}.")
        if self.width % self.num_heads:
            raise ValueError(f"SigLIP width {self.width} is not divisible by num_heads {self.num_heads}.")
        h, w = self.grid
        if h * self.patch_size != self.image_hw[0] or w * self.patch_size != self.image_hw[1]:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}.")

    @property
    def image_hw(self) -> tuple[int, int]:
        """The input resolution as (height, width)."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return tuple(self.image_size)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid as (rows, columns)."""
        return (self.image_hw[0] // self.patch_size, self.image_hw[1] // self.patch_size)

    @property
    def num_tokens(self) -> int:
        """Image tokens per image (one per patch)."""
        return self.grid[0] * self.grid[1]


def resample_posemb(posemb: jax.Array, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> jax.Array:
    """Bilinearly resamples a learned position embedding `(1, h*w, C)` from `old_grid` to `new_grid`.

    Works on jax and numpy arrays; returns the same dtype, shape `(1, new_h*new_w, C)`.
    """
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    channels = posemb.shape[-1]
    grid = jnp.reshape(posemb, (*old_grid, channels)).astype(jnp.float32)
    grid = jax.image.resize(grid, (*new_grid, channels), method="bilinear")
    return jnp.reshape(grid, (1, new_grid[0] * new_grid[1], channels)).astype(posemb.dtype)


class MlpBlock(nn.Module):
    """Dense -> GELU (tanh approximation) -> Dense, with biases."""

    mlp_dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="Dense_0")(x)
        x = nn.gelu(x, approximate=True)
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        return nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name="Dense_1")(x)


class MultiHeadAttention(nn.Module):
    """Bidirectional multi-head attention with biased q/k/v/out projections; softmax in float32."""

    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, kv: jax.Array | None = None) -> jax.Array:
        """Queries from `x [B, T, W]`, keys and values from `kv [B, S, W]` (default: `x`)."""
        kv = x if kv is None else kv
        width = x.shape[-1]
        head_dim = width // self.num_heads
        proj = lambda name: nn.DenseGeneral(  # noqa: E731
            (self.num_heads, head_dim), dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )
        q, k, v = proj("query")(x), proj("key")(kv), proj("value")(kv)  # [B, T|S, N, H]
        logits = jnp.einsum("bqnh,bknh->bnqk", q * (head_dim**-0.5), k, preferred_element_type=jnp.float32)
        probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bnqk,bknh->bqnh", probs, v)
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype, name="out")(out)


class Encoder1DBlock(nn.Module):
    """Pre-LN transformer block: `x + Attn(LN(x))`, then `x + MLP(LN(x))`."""

    cfg: SiglipConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> tuple[jax.Array, None]:
        cfg = self.cfg
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        norm = lambda name: nn.LayerNorm(  # noqa: E731
            epsilon=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, name=name
        )
        x = layers.constrain_batch(x)  # [B, N, W]: each chip keeps its rows (no-op without a mesh context)
        y = norm("LayerNorm_0")(x)
        y = MultiHeadAttention(cfg.num_heads, dtype, param_dtype, name="MultiHeadDotProductAttention_0")(y)
        x = x + nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        y = norm("LayerNorm_1")(x)
        y = MlpBlock(cfg.mlp_dim, dtype, param_dtype, cfg.dropout, name="MlpBlock_0")(y, deterministic)
        x = x + nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        return layers.constrain_batch(x), None


class Encoder(nn.Module):
    """`depth` stacked blocks (one `encoderblock` with a leading depth axis) and the final LayerNorm."""

    cfg: SiglipConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.cfg
        block = layers.stacked(Encoder1DBlock, cfg.depth, cfg.remat_policy, cfg.scan_unroll, static_argnums=(2,))
        x, _ = block(cfg, name="encoderblock")(x, deterministic)
        return nn.LayerNorm(
            epsilon=cfg.layer_norm_eps,
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=jnp.dtype(cfg.param_dtype),
            name="encoder_norm",
        )(x)


class MAPHead(nn.Module):
    """Multihead attention pooling: one learned probe attends over the tokens, then a residual MLP.

    `[B, N, W] -> [B, W]`.
    """

    cfg: SiglipConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, cfg.width), param_dtype)
        probe = jnp.broadcast_to(probe.astype(dtype), (x.shape[0], 1, cfg.width))
        x = MultiHeadAttention(cfg.num_heads, dtype, param_dtype, name="MultiHeadDotProductAttention_0")(probe, x)
        y = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, name="LayerNorm_0")(x)
        x = x + MlpBlock(cfg.mlp_dim, dtype, param_dtype, name="MlpBlock_0")(y)
        return x[:, 0]


class SigLIP(nn.Module):
    """SigLIP ViT without pooling: every patch token goes through the `head` projection.

    Input `image`: float `[B, H, W, 3]` in [-1, 1]. Output: `[B, N, D]` tokens in the compute dtype, with
    N = (H/P)*(W/P) and D = `num_classes` (the LLM width) or the ViT width when there is no head. If the input
    resolution differs from `image_size`, the position embedding is resampled bilinearly to the new grid.
    With `pool_type` "map"/"gap" the pooled encoder output `[B, W]` is also stored with `sow` as
    `intermediates/pooled` (PaliGemma does not use it; a checkpoint that carries a MAP head still loads).
    """

    cfg: SiglipConfig

    @nn.compact
    def __call__(self, image: jax.Array, *, train: bool = False) -> jax.Array:
        cfg = self.cfg
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        x = nn.Conv(
            cfg.width,
            (cfg.patch_size, cfg.patch_size),
            strides=(cfg.patch_size, cfg.patch_size),
            padding="VALID",
            dtype=dtype,
            param_dtype=param_dtype,
            name="embedding",
        )(image.astype(dtype))
        batch, h, w, c = x.shape
        x = layers.constrain_batch(jnp.reshape(x, (batch, h * w, c)))
        posemb = self.param(
            "pos_embedding",
            nn.initializers.normal(stddev=1 / cfg.width**0.5),
            (1, cfg.num_tokens, cfg.width),
            param_dtype,
        )
        x = x + resample_posemb(posemb, cfg.grid, (h, w)).astype(dtype)
        x = nn.Dropout(cfg.dropout)(x, deterministic=not train)
        x = Encoder(cfg, name="Transformer")(x, not train)
        if cfg.pool_type == "map":
            self.sow("intermediates", "pooled", MAPHead(cfg, name="MAPHead_0")(x))
        elif cfg.pool_type == "gap":
            self.sow("intermediates", "pooled", jnp.mean(x, axis=1))
        if cfg.num_classes:
            x = nn.Dense(cfg.num_classes, dtype=dtype, param_dtype=param_dtype, name="head")(x)
        return layers.constrain_batch(x)
