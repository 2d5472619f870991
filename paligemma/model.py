"""PaliGemma: SigLIP image tokens in front of Gemma text embeddings, decoded with a prefix-LM mask.

    cfg = get_config("paligemma-3b-224")            # {"img": {...}, "llm": {...}}
    model = Model(**cfg)
    logits, aux = model.apply({"params": params}, image, text, mask_ar)

`image` float `[B, H, W, 3]` in [-1, 1] (or `[B, F, H, W, 3]` for F images/frames per example), `text` int32
`[B, T]`, `mask_ar` int `[B, T]` (0 = bidirectional prefix, 1 = causal step); `logits` float32 `[B, T, V]` for the
text positions. Image tokens come first, always valid, in the bidirectional prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from paligemma import gemma, layers, siglip

# A block index larger than any cumsum(mask_ar): a decoded token may attend to everything before it.
_AFTER_ALL_BLOCKS = jnp.iinfo(jnp.int32).max

_LLM_BY_SIZE = {
    ("paligemma", "3b"): "gemma_2b",
    ("paligemma2", "3b"): "gemma2_2b",
    ("paligemma2", "10b"): "gemma2_9b",
    ("paligemma2", "28b"): "gemma2_27b",
}

# Small named models for tests, benchmarks and CPU runs (not released checkpoints).
_SMALL = {
    "paligemma-tiny": dict(img=dict(variant="mu/8", image_size=32), llm=dict(variant="gemma_tiny", vocab_size=1280)),
    "paligemma2-tiny": dict(img=dict(variant="mu/8", image_size=32), llm=dict(variant="gemma2_tiny", vocab_size=1280)),
    "paligemma-small": dict(img=dict(variant="S/16", image_size=64), llm=dict(variant="gemma_small", vocab_size=2048)),
    # The reduced PaliGemma of the peer benchmarks (tools/benchmark_train.py): the released vocabulary.
    "paligemma-bench-s": dict(
        img=dict(variant="S/16", image_size=224), llm=dict(variant="gemma_bench_s", vocab_size=257152)
    ),
}


def get_config(name: str) -> dict[str, dict[str, Any]]:
    """Model config `{"img": {...}, "llm": {...}}` for a released model name or a small named variant.

    Released names: `paligemma-3b-{224,448,896}`, `paligemma2-{3b,10b,28b}-{224,448,896}`; checkpoint names such as
    `paligemma-3b-pt-224`, `paligemma2-3b-mix-448` or `paligemma-3b-ft-vqav2-448` are accepted too. Small variants:
    `paligemma-tiny`, `paligemma2-tiny`, `paligemma-small`, `paligemma-bench-s`.
    """
    if name in _SMALL:
        return {k: dict(v) for k, v in _SMALL[name].items()}
    match = re.fullmatch(r"(paligemma2?)-(3b|10b|28b)(?:-(?:pt|mix|ft-[\w-]+?))?-(224|448|896)", name)
    if not match or (match.group(1), match.group(2)) not in _LLM_BY_SIZE:
        known = ["paligemma-3b-{224,448,896}", "paligemma2-{3b,10b,28b}-{224,448,896}", *_SMALL]
        raise ValueError(f"Unknown model name {name!r}. Known: {', '.join(known)}.")
    family, size, res = match.group(1), match.group(2), int(match.group(3))
    return {
        "img": dict(variant="So400m/14", image_size=res),
        "llm": dict(variant=_LLM_BY_SIZE[(family, size)], vocab_size=257152),
    }


def _frozen_config(value: Any) -> Any:
    """A config value as a hashable one: mappings as `FrozenDict`s, lists and tuples as tuples (recursively)."""
    if isinstance(value, Mapping):
        return FrozenDict({k: _frozen_config(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen_config(v) for v in value)
    return value


class Model(nn.Module):
    """PaliGemma. Fields are the config sections: `img` (SiglipConfig fields), `llm` (GemmaConfig fields).

    Given as any mappings (`Model(**get_config(name))`), they are held as `FrozenDict`s (`_frozen_config`), so a model
    is hashable and equal to any model of the same config: a static argument of `jax.jit` or a `functools.cache` key.
    """

    img: Mapping[str, Any]
    llm: Mapping[str, Any]

    def __post_init__(self):
        # Before flax's own __post_init__, which starts the module's bookkeeping (fields are read-only after it).
        object.__setattr__(self, "img", _frozen_config(self.img))
        object.__setattr__(self, "llm", _frozen_config(self.llm))
        super().__post_init__()

    def setup(self):
        """Builds the config dataclasses and the two towers (flax calls it before first use)."""
        self.llm_config = gemma.GemmaConfig(**dict(self.llm))
        img = dict(self.img)
        img.setdefault("num_classes", self.llm_config.width)
        self.img_config = siglip.SiglipConfig(**img)
        self._img = siglip.SigLIP(self.img_config, name="img")
        self._llm = gemma.Gemma(self.llm_config, name="llm")

    def embed_image(self, image: jax.Array, *, train: bool = False) -> jax.Array:
        """Float `[B, H, W, 3]` or `[B, F, H, W, 3]` in [-1, 1] -> image tokens `[B, F*N, D]` (compute dtype).

        Each of the F images is encoded separately; their tokens are concatenated in order.
        """
        if image.ndim not in (4, 5) or image.shape[-1] != 3:
            raise ValueError(f"image must be [B, H, W, 3] or [B, F, H, W, 3] in [-1, 1]; got shape {image.shape}.")
        if image.ndim == 4:
            return self._img(image, train=train)
        batch, frames = image.shape[:2]
        tokens = self._img(image.reshape(batch * frames, *image.shape[2:]), train=train)
        return layers.constrain_batch(tokens.reshape(batch, frames * tokens.shape[1], tokens.shape[2]))

    def _embed_inputs(self, image, text, mask_ar, input_mask, frame_mask, train):
        if text.ndim != 2 or mask_ar.shape != text.shape:
            raise ValueError(f"text and mask_ar must both be [B, T]; got {text.shape} and {mask_ar.shape}.")
        if input_mask is None:
            input_mask = jnp.ones(text.shape, bool)
        elif input_mask.shape != text.shape:
            raise ValueError(f"input_mask must be [B, T] like text {text.shape}; got {input_mask.shape}.")
        if frame_mask is not None and (image.ndim != 5 or frame_mask.shape != image.shape[:2]):
            raise ValueError(
                f"frame_mask must be [B, F] for image [B, F, H, W, 3]; got {frame_mask.shape} and image {image.shape}."
            )
        img_tokens = self.embed_image(image, train=train)
        batch, num_img = img_tokens.shape[:2]
        x = layers.constrain_batch(
            jnp.concatenate([img_tokens.astype(self.llm_config.dtype), self._llm.embed(text)], axis=1)
        )
        full_ar = jnp.concatenate([jnp.zeros((batch, num_img), jnp.int32), mask_ar.astype(jnp.int32)], axis=1)
        if frame_mask is None:
            img_valid = jnp.ones((batch, num_img), bool)
        else:  # each frame's tokens are valid when the frame is (a padded frame is attended by nothing)
            img_valid = jnp.repeat(frame_mask.astype(bool), num_img // image.shape[1], axis=1)
        valid = jnp.concatenate([img_valid, input_mask.astype(bool)], axis=1)
        return x, img_tokens, jnp.cumsum(full_ar, axis=1), valid

    def _masks(self, q_block, q_valid, q_pos, kv_block, kv_valid, kv_pos):
        mask = gemma.attention_mask(q_block, q_valid, kv_block, kv_valid)
        window = self.llm_config.sliding_window
        local = gemma.local_attention_mask(mask, q_pos, kv_pos, q_block, kv_block, window) if window else None
        return mask, local

    def __call__(
        self,
        image: jax.Array,
        text: jax.Array,
        mask_ar: jax.Array,
        input_mask: jax.Array | None = None,
        *,
        frame_mask: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Full forward: float32 logits `[B, T, V]` over the text positions, and `aux`.

        `aux = {"img_tokens": [B, N, D], "pre_logits": [B, T, D]}`.

        `input_mask` (bool `[B, T]`, default all true) marks the valid text tokens (padding at the end).
        `frame_mask` (bool/int `[B, F]`, with image `[B, F, H, W, 3]`; default all true) marks the real frames: a
        padded frame's tokens are attended by nothing and take no position, so an example with F' real frames and
        F - F' padded ones computes what it computes with its F' frames alone.
        """
        text_hidden, aux = self.hidden_states(image, text, mask_ar, input_mask, frame_mask=frame_mask, train=train)
        return self.logits(text_hidden), aux

    def hidden_states(
        self,
        image: jax.Array,
        text: jax.Array,
        mask_ar: jax.Array,
        input_mask: jax.Array | None = None,
        *,
        frame_mask: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The forward pass without the output projection (`frame_mask` as in `__call__`).

        Returns the final-normed hidden states `[B, T, D]` (compute dtype) of the text positions and
        `aux = {"img_tokens": [B, N, D], "pre_logits": [B, T, D]}`.

        `logits(hidden)` gives `__call__`'s logits; the training loss applies it only where it needs them.
        """
        x, img_tokens, block, valid = self._embed_inputs(image, text, mask_ar, input_mask, frame_mask, train)
        positions = jnp.cumsum(valid, axis=1) - 1
        masks = self._masks(block, valid, positions, block, valid, positions)
        hidden, _ = self._llm(x, positions, masks, deterministic=not train)
        text_hidden = layers.constrain_batch(hidden[:, img_tokens.shape[1] :])
        return text_hidden, {"img_tokens": img_tokens, "pre_logits": text_hidden}

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Hidden states `[..., D]` (from `hidden_states`) -> float32 logits `[..., V]`.

        The tied output projection, then Gemma 2's final soft-cap when configured.
        """
        return self._llm.logits(hidden)

    def prefill(
        self,
        image: jax.Array,
        text: jax.Array,
        mask_ar: jax.Array,
        input_mask: jax.Array | None = None,
        *,
        cache_size: int,
        frame_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Encodes image + prompt into a fresh KV cache of `cache_size` positions.

        Prompts must be left-aligned: valid tokens first, padding (input_mask 0) at the end, so example b has
        `N + sum(input_mask[b])` valid positions. Returns float32 logits `[B, V]` at each example's last valid
        position (the distribution of the first generated token) and the cache
        `{"k", "v": [L, B, cache_size, K, H], "length": int32 [B]}`. With a `frame_mask` (see `__call__`), the
        valid tokens are moved to the front of the cache (in order) before it is written, so that cache slot i holds
        position i, as `extend` expects.
        """
        x, _, block, valid = self._embed_inputs(image, text, mask_ar, input_mask, frame_mask, False)
        if frame_mask is not None:  # padded frames' tokens sit before the text: compact the valid tokens first
            order = jnp.argsort(~valid, axis=1, stable=True)
            x = jnp.take_along_axis(x, order[..., None], axis=1)
            block, valid = jnp.take_along_axis(block, order, axis=1), jnp.take_along_axis(valid, order, axis=1)
        batch, seq = x.shape[:2]
        if seq > cache_size:
            raise ValueError(
                f"cache_size {cache_size} is smaller than the prefill length {seq} "
                f"(image tokens + text); raise cache_size."
            )
        pad = lambda a, value: jnp.pad(a, ((0, 0), (0, cache_size - seq)), constant_values=value)  # noqa: E731
        positions = jnp.cumsum(valid, axis=1) - 1
        masks = self._masks(
            block,
            valid,
            positions,
            pad(block, 0),
            pad(valid, False),
            jnp.broadcast_to(jnp.arange(cache_size), (batch, cache_size)),
        )
        cache = self._llm.init_cache(batch, cache_size)
        hidden, cache = self._llm(x, positions, masks, cache, jnp.zeros((batch,), jnp.int32))
        length = jnp.sum(valid, axis=1, dtype=jnp.int32)
        last = jnp.take_along_axis(hidden, (length - 1)[:, None, None], axis=1)[:, 0]
        return self._llm.logits(last), dict(cache, length=length)

    def extend(
        self, tokens: jax.Array, cache: dict[str, jax.Array], vocab_major: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Appends one token per example (int `[B]`) after each example's `length`.

        Returns float32 logits `[B, V]` (`[V, B]` with `vocab_major`, see `gemma.Gemma.logits`) for the next token
        and the updated cache. The caller must keep `length < cache_size`.
        """
        batch, cache_size = cache["k"].shape[1:3]
        length = cache["length"]
        positions = length[:, None]
        kv_pos = jnp.broadcast_to(jnp.arange(cache_size), (batch, cache_size))
        q_block = jnp.full((batch, 1), _AFTER_ALL_BLOCKS, jnp.int32)
        masks = self._masks(
            q_block,
            jnp.ones((batch, 1), bool),
            positions,
            jnp.zeros((batch, cache_size), jnp.int32),
            kv_pos <= positions,
            kv_pos,
        )
        x = self._llm.embed(tokens[:, None])
        hidden, kv = self._llm(x, positions, masks, {"k": cache["k"], "v": cache["v"]}, length)
        return self._llm.logits(hidden[:, 0], vocab_major), dict(kv, length=length + 1)


def init_params(config: Mapping[str, Any], rng: jax.Array) -> dict[str, Any]:
    """Random parameters for `Model(**config)` (float arrays in the configured param dtype)."""
    model = Model(**config)
    return model.init(rng, *dummy_inputs(config))["params"]


def param_shapes(config: Mapping[str, Any]) -> dict[str, Any]:
    """`jax.ShapeDtypeStruct` tree of the parameters, without allocating them."""
    model = Model(**config)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), *dummy_inputs(config)))["params"]


def dummy_inputs(config: Mapping[str, Any], batch_size: int = 1, text_len: int = 2):
    """Zero `(image [B, H, W, 3], text [B, T], mask_ar [B, T])` of the config's resolution, for initialisation."""
    img = siglip.SiglipConfig(**{"num_classes": None, **dict(config["img"])})
    h, w = img.image_hw
    return (
        jnp.zeros((batch_size, h, w, 3), jnp.float32),
        jnp.zeros((batch_size, text_len), jnp.int32),
        jnp.zeros((batch_size, text_len), jnp.int32),
    )


def count_params(tree: Any) -> int:
    """Number of scalars in a parameter (or shape) tree."""
    return sum(int(x.size) for x in jax.tree.leaves(tree))
