"""Segmentation targets: object masks -> `<loc>` x4 + `<seg>` x16 text via the PaliGemma VQ-VAE.

Per object (docs/reference.md §2.6 and §3): the mask is cropped to the object's box (pixels
`floor(y1*H) .. ceil(y2*H)`, same for x), resized to 64x64 (bilinear, antialiased), binarised (> 0.5) and mapped
to {-1, +1}; `paligemma.vqvae.encode` turns it into 16 codebook indices (row-major 4x4), written as
`<segNNN>`. The box becomes 4 loc tokens (`clip(round(v*1023), 0, 1023)`). This is the inverse of what the
evaluator does (decode 16 codes to a 64x64 mask, resize it into the box).

The encoder runs in JAX on the host CPU, called from `tf.numpy_function` (batched over the objects of one
example, padded to a power of two so that few shapes are compiled).
"""

from __future__ import annotations

import threading
from typing import Any

import jax
import numpy as np
import tensorflow as tf

from datasets.pp import utils
from datasets.pp.ops_targets import loc_strings
from datasets.pp.registry import register
from paligemma import vqvae
from paligemma.tokenizer import SEG_PIECES

__all__ = ["segmentation_targets", "get_vae_params"]

_VAE: dict[str, Any] = {}
_VAE_LOCK = threading.Lock()
_ENCODE: dict[str, Any] = {}


def get_vae_params(checkpoint: str):
    """VQ-VAE params for `checkpoint`, loaded once per process (on the host CPU) and cached.

    `checkpoint`: a `vae-oid.npz` path (`paligemma.vqvae.load_params`), or `"init:SEED"` for random params
    (`paligemma.vqvae.init_params`; smoke runs only, the codes mean nothing).
    """
    with _VAE_LOCK:
        if checkpoint not in _VAE:
            with jax.default_device(jax.devices("cpu")[0]):
                if checkpoint.startswith("init:"):
                    params = vqvae.init_params(jax.random.PRNGKey(int(checkpoint[5:])))
                else:
                    params = vqvae.load_params(checkpoint)
                _VAE[checkpoint] = jax.device_put(params, jax.devices("cpu")[0])
        return _VAE[checkpoint]


def _encoder(checkpoint: str):
    fn = _ENCODE.get(checkpoint)
    if fn is None:
        params = get_vae_params(checkpoint)
        cpu = jax.devices("cpu")[0]
        jitted = jax.jit(vqvae.encode)

        def fn(masks: np.ndarray) -> np.ndarray:
            n = masks.shape[0]
            if n == 0:
                return np.zeros([0, 16], np.int32)
            bucket = 1 << (n - 1).bit_length()
            padded = np.concatenate([masks, -np.ones([bucket - n, *masks.shape[1:]], np.float32)], 0)
            with jax.default_device(cpu):
                return np.asarray(jitted(params, padded))[:n].astype(np.int32)

        _ENCODE[checkpoint] = fn
    return fn


def _as_masks(m: tf.Tensor) -> tf.Tensor:
    """[H,W] / [H,W,1] / [N,H,W] / [N,H,W,1] -> float32 [N,H,W,1] in {0, 1} (ints: > 0; floats: >= 0.5)."""
    rank = m.shape.rank
    if rank == 2:
        m = m[None, :, :, None]
    elif rank == 3:
        m = m[None] if m.shape[-1] == 1 else m[..., None]
    elif rank != 4:
        raise ValueError(f"segmentation_targets: masks must be [H,W], [H,W,1], [N,H,W] or [N,H,W,1], got {m.shape}")
    fg = m > 0 if (m.dtype.is_integer or m.dtype == tf.bool) else m >= 0.5
    return tf.cast(fg, tf.float32)


def _crop_resize(mask: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """Mask [H,W,1] float, box [4] normalised -> [64,64] float in [0,1]."""
    s = tf.shape(mask)
    hw = tf.cast(tf.stack([s[0], s[1], s[0], s[1]]), tf.float32)
    p = box * hw
    lo = tf.cast(tf.floor(p[:2] + 1e-4), tf.int32)
    hi = tf.cast(tf.math.ceil(p[2:] - 1e-4), tf.int32)
    lo = tf.clip_by_value(lo, 0, s[:2] - 1)
    hi = tf.clip_by_value(hi, lo + 1, s[:2])
    crop = mask[lo[0] : hi[0], lo[1] : hi[1], :]
    return tf.image.resize(crop, [64, 64], method="bilinear", antialias=True)[..., 0]


def _mask_box(mask: tf.Tensor) -> tf.Tensor:
    """Tight normalised box of the foreground of mask [H,W,1] ({0,1}); zeros if empty."""
    s = tf.shape(mask)
    rows = tf.where(tf.reduce_any(mask[..., 0] > 0, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(mask[..., 0] > 0, axis=0))[:, 0]
    empty = tf.logical_or(tf.size(rows) == 0, tf.size(cols) == 0)
    safe = lambda v: tf.cond(tf.size(v) > 0, lambda: tf.cast(v, tf.float32), lambda: tf.zeros([1]))  # noqa: E731
    r, c = safe(rows), safe(cols)
    H, W = tf.cast(s[0], tf.float32), tf.cast(s[1], tf.float32)
    box = tf.stack([tf.reduce_min(r) / H, tf.reduce_min(c) / W, (tf.reduce_max(r) + 1) / H, (tf.reduce_max(c) + 1) / W])
    return tf.where(empty, tf.zeros([4]), box)


@register("segmentation_targets")
def segmentation_targets(
    vae_checkpoint: str | None = None,
    masks_key: str = "objects/mask",
    boxes_key: str | None = "objects/bbox",
    labels_key: str | None = None,
    outkey: str = "suffix",
    prompt_key: str | None = None,
    prompt: str = "segment {}",
    sep: str = " ; ",
    max_objects: int | None = None,
):
    """Segmentation target text `"<loc>x4<seg>x16[ label] ; ..."` from object masks.

    Inputs: `data[masks_key]` `[N, H, W]` / `[N, H, W, 1]` (or one `[H, W]` / `[H, W, 1]`) masks at
    image resolution, integer (foreground > 0) or float (foreground >= 0.5); `data[boxes_key]` float `[N, 4]`
    (or `[4]`) normalised `y1, x1, y2, x2`; with `boxes_key=None` (or the key absent) each box is the tight
    box of its mask. Optional `data[labels_key]` `[N]` strings appended after the seg tokens.
    Outputs: `data[outkey]` scalar tf.string (objects joined with `sep`); with `prompt_key`,
    `data[prompt_key] = prompt.format(first label)` (e.g. `"segment cat"`; needs `labels_key`).

    `vae_checkpoint`: path of `vae-oid.npz` (`paligemma.vqvae.load_params`), or `"init:SEED"` (random
    weights, smoke tests only). Objects with a degenerate box or an empty mask crop are
    skipped. Run this op after the geometric ops (it reads the final masks and boxes).
    """
    if not vae_checkpoint or not isinstance(vae_checkpoint, str):
        raise ValueError("segmentation_targets: pass vae_checkpoint='path/to/vae-oid.npz' (or 'init:SEED')")
    if max_objects is not None and (not isinstance(max_objects, int) or max_objects < 1):
        raise ValueError(f"segmentation_targets: max_objects must be a positive int, got {max_objects!r}")
    if not isinstance(prompt, str) or prompt.count("{}") != 1:
        raise ValueError(f"segmentation_targets: prompt must contain one '{{}}', got {prompt!r}")
    if prompt_key and not labels_key:
        raise ValueError("segmentation_targets: prompt_key needs labels_key")
    encode = _encoder(vae_checkpoint)  # load now: fail early on a bad checkpoint
    seg_table = tf.constant(list(SEG_PIECES))

    def fn(data):
        masks = _as_masks(tf.convert_to_tensor(utils.get_key(data, masks_key, "segmentation_targets")))
        n = tf.shape(masks)[0]
        if boxes_key and boxes_key in data:
            boxes = tf.reshape(tf.cast(data[boxes_key], tf.float32), [-1, 4])
        else:
            boxes = tf.map_fn(_mask_box, masks, fn_output_signature=tf.TensorSpec([4], tf.float32))
        boxes = tf.ensure_shape(boxes, [None, 4])
        check = tf.debugging.assert_equal(tf.shape(boxes)[0], n, message="segmentation_targets: masks/boxes count")
        with tf.control_dependencies([check]):
            b = tf.clip_by_value(boxes, 0.0, 1.0)
        valid = tf.logical_and(b[:, 2] > b[:, 0], b[:, 3] > b[:, 1])
        small = tf.map_fn(
            lambda mb: _crop_resize(mb[0], mb[1]), (masks, b), fn_output_signature=tf.TensorSpec([64, 64], tf.float32)
        )
        valid = tf.logical_and(valid, tf.reduce_any(small > 0.5, axis=[1, 2]))
        idx = tf.where(valid)[:, 0]
        if max_objects is not None:
            idx = idx[:max_objects]
        small = tf.gather(small, idx)
        vq_in = tf.where(small > 0.5, 1.0, -1.0)
        codes = tf.numpy_function(encode, [vq_in], tf.int32, stateful=False, name="vqvae_encode")
        codes = tf.ensure_shape(codes, [None, 16])
        seg = tf.strings.reduce_join(tf.gather(seg_table, codes), axis=-1)
        text = tf.strings.join([loc_strings(tf.gather(b, idx)), seg])
        if labels_key:
            labels = tf.reshape(utils.get_key(data, labels_key, "segmentation_targets"), [-1])
            labels = tf.gather(labels, idx)
            text = tf.strings.join([text, labels], separator=" ")
            if prompt_key:
                first = tf.cond(tf.size(labels) > 0, lambda: labels[0], lambda: tf.constant(""))
                data[prompt_key] = tf.strings.join([prompt.split("{}")[0], first, *prompt.split("{}")[1:2]])
        data[outkey] = tf.strings.reduce_join(text, separator=sep)
        return data

    return fn
