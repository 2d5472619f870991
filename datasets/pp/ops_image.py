"""Image pp ops: decode, resize, crops, flips, padding, value range.

Geometric ops (`resize`, `resize_small`, `central_crop`, `random_crop`, `flip_lr`, `pad_to_square`)
transform, besides the image under `key`, the companions found in the example:

* `boxes_key` (default `"objects/bbox"`): float boxes `[N, 4]` (or `[4]`), `(y1, x1, y2, x2)` normalised
  to [0, 1] of the image. Resizing keeps normalised boxes unchanged; crops/pads re-normalise them to the new image
  and clip to [0, 1] (a box that falls completely outside a crop becomes degenerate, zero area; boxes are never
  dropped so they stay aligned with `objects/label` etc.; target ops skip degenerate boxes); `flip_lr` maps
  `x -> 1 - x` and swaps x1/x2.
* `masks_key` (default `"objects/mask"`): per-pixel masks at the image's resolution, `[H, W]`, `[H, W, 1]`,
  `[N, H, W]` or `[N, H, W, 1]` (a rank-3 mask whose static last dimension is 1 is read as one `[H, W, 1]`
  mask). They get the same crop/flip/pad as the image and are resized with nearest neighbour (values preserved).

Frames: `resize`, `resize_small`, `central_crop`, `random_crop`, `flip_lr`, `pad_to_square` and `value_range` also take
`[F, H, W, C]` (several images or video frames per example, from `frames_from_images` / `frames_from_video`), and
give every frame the same resize, crop, flip or padding (one random draw per example).

Pass `boxes_key=None` / `masks_key=None` to leave those keys alone. Random ops are seeded from the example's
`rng` key, or else its `_seed` key (added by `datasets.pipeline`), when present (stateless: same example
seed -> same crop/flip), else from `tf.random`.
"""

from __future__ import annotations

import re

import tensorflow as tf

from datasets import images
from datasets.pp import utils
from datasets.pp.registry import register

__all__ = [
    "decode",
    "resize",
    "resize_small",
    "central_crop",
    "random_crop",
    "flip_lr",
    "pad_to_square",
    "value_range",
    "draw_box",
]

_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


# ----------------------------------------------------------------------------------------------------------
# Decoding.
# ----------------------------------------------------------------------------------------------------------


def _looks_like_image(b: tf.Tensor) -> tf.Tensor:
    head = tf.strings.substr(b, 0, 12)
    ok = tf.constant(False)
    for m in _MAGIC:
        ok = tf.logical_or(ok, tf.equal(tf.strings.substr(head, 0, len(m)), m))
    webp = tf.logical_and(
        tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    )
    return tf.logical_or(ok, webp)


def _clean(msg: str) -> str:
    msg = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", msg)
    return re.sub(r"\s*\[Op:\w+\].*$", "", msg, flags=re.S).strip()


def _decode_graph(b, channels: int, precise: bool):
    if precise:
        return tf.cond(
            tf.io.is_jpeg(b),
            lambda: tf.io.decode_jpeg(b, channels=channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(b, channels=channels, expand_animations=False, dtype=tf.uint8),
        )
    return tf.io.decode_image(b, channels=channels, expand_animations=False, dtype=tf.uint8)


@register("decode")
def decode(
    key: str = "image",
    channels: int = 3,
    precise: bool = True,
    checked: bool = True,
    id_keys: tuple | list | None = None,
    max_pixels: int = images.MAX_PIXELS,
):
    r"""Decodes encoded image bytes (JPEG, PNG, GIF first frame, BMP, WebP) in `data[key]`.

    Input: `data[key]` scalar tf.string. An already decoded uint8 image (rank 3) passes through unchanged.
    Output: `data[key]` uint8 `[H, W, channels]` (grayscale is expanded to 3 channels and RGBA dropped to RGB
    when `channels=3`).

    The pixels are those of `datasets.images.decode` (TensorFlow-free, used by `tools.predict`), exactly: 16-bit
    PNGs -> high byte, alpha dropped (not composited), GIF transparency black, EXIF orientation ignored; see that
    module.

    `precise` (default True): JPEGs use the accurate integer DCT (`INTEGER_ACCURATE`, as PIL and libjpeg's default,
    so prediction sees the same pixels); `precise=False` is TensorFlow's fast DCT (big_vision's default, a few
    percent faster, up to ~8 levels different).
    `max_pixels`: a larger image (width x height) is refused with an error naming the example; with `checked` the
    size is read from the header before decoding (a decompression bomb never reaches the decoder), without it the
    decoded shape is checked.
    `checked` (default True): decoding runs through `tf.py_function` so that a corrupt or truncated image
    raises an error naming the example (the first of `id_keys` present, by default `image/id`,
    `question_id`, `id`, `image_id`, `example_id`, `tfds_id`, ...), its size and first bytes, e.g.
    `decode: cannot decode 'image' of example question_id=17 (512 bytes, starts with b'\xff\xd8...')`.
    With `checked=False` decoding stays pure graph code (a little faster and no GIL); bytes that are not an
    image at all (empty, wrong magic bytes) still fail with a message naming the example, but a truncated file
    with a valid header fails with TensorFlow's generic decoder error.
    """
    if channels not in (1, 3, 4):
        raise ValueError(f"decode: channels must be 1, 3 or 4, got {channels!r}")
    id_keys = tuple(id_keys) if id_keys else None

    def _eager(b, ident):
        raw = b.numpy()
        name = f"{key!r} of example {ident.numpy().decode('utf-8', 'replace')}"
        try:
            images.check_size(*images.image_size(raw, name), name, max_pixels)
        except images.ImageTooLargeError as e:
            raise ValueError(f"decode: {e}") from None
        except images.ImageError:
            pass  # not readable by PIL: TensorFlow's decoder says what is wrong, below
        try:
            return _decode_graph(b, channels, precise)
        except tf.errors.OpError as e:
            raise ValueError(
                f"decode: cannot decode {name} ({len(raw)} bytes, starts with {raw[:12]!r}): {_clean(e.message)}"
            ) from None

    def fn(data):
        value = utils.get_key(data, key, "decode")
        if value.dtype == tf.uint8 and value.shape.rank == 3:
            return data
        if value.dtype != tf.string:
            raise TypeError(f"decode: {key!r} must be encoded bytes (tf.string), got {value.dtype.name}")
        ident = utils.example_id(data, id_keys)
        if checked:
            img = tf.py_function(_eager, [value, ident], tf.uint8)
        else:
            check = tf.debugging.Assert(
                _looks_like_image(value),
                [
                    f"decode: {key!r} is not an encoded image (empty or unknown format) in example",
                    ident,
                    "length",
                    tf.strings.length(value),
                    "first bytes",
                    tf.strings.substr(value, 0, 12),
                ],
            )
            with tf.control_dependencies([check]):
                img = _decode_graph(tf.identity(value), channels, precise)
            shape = tf.shape(img, out_type=tf.int64)
            too_large = tf.debugging.Assert(
                shape[0] * shape[1] <= max_pixels,
                [f"decode: {key!r}: image too large (more than {max_pixels:,} pixels) in example", ident, shape],
            )
            with tf.control_dependencies([too_large]):
                img = tf.identity(img)
        img = tf.ensure_shape(img, [None, None, channels])
        data[key] = img
        return data

    return fn


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers.
# ----------------------------------------------------------------------------------------------------------


def _check_method(method: str, op: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"{op}: method must be one of {_METHODS}, got {method!r}")
    return method


def _cast_like(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Casts a float result back to `dtype`; integers are rounded and clipped (not truncated)."""
    if dtype.is_integer:
        x = tf.clip_by_value(tf.round(x), dtype.min, dtype.max)
    return tf.cast(x, dtype)


def _resize_image(img, hw, method, antialias):
    out = tf.image.resize(img, hw, method=method, antialias=antialias)
    return _cast_like(out, img.dtype)


def _hw(img) -> tuple[tf.Tensor, tf.Tensor]:
    s = tf.shape(img)
    return s[-3], s[-2]


def _masks_4d(m: tf.Tensor):
    """Mask -> ([N, H, W, C], restore_fn)."""
    rank = m.shape.rank
    if rank == 2:
        return m[None, :, :, None], lambda x: x[0, :, :, 0]
    if rank == 3:
        if m.shape[-1] == 1:
            return m[None], lambda x: x[0]
        return m[..., None], lambda x: x[..., 0]
    if rank == 4:
        return m, lambda x: x
    raise ValueError(f"masks must be [H,W], [H,W,1], [N,H,W] or [N,H,W,1], got shape {m.shape}")


def _apply_masks(data, masks_key, fn):
    if masks_key and masks_key in data:
        m4, restore = _masks_4d(tf.convert_to_tensor(data[masks_key]))
        data[masks_key] = restore(fn(m4))


def _apply_boxes(data, boxes_key, fn):
    if boxes_key and boxes_key in data:
        b = tf.convert_to_tensor(data[boxes_key])
        dtype = b.dtype
        b2 = tf.reshape(tf.cast(b, tf.float32), [-1, 4])
        out = fn(b2[:, 0], b2[:, 1], b2[:, 2], b2[:, 3])
        data[boxes_key] = tf.cast(tf.reshape(tf.stack(out, axis=-1), tf.shape(b)), dtype)


def _crop(data, key, boxes_key, masks_key, oy, ox, h, w):
    """Crops image + masks to the window (oy, ox, h, w) and re-normalises boxes."""
    img = data[key]
    H, W = _hw(img)
    data[key] = img[..., oy : oy + h, ox : ox + w, :]  # [H, W, C] or frames [F, H, W, C]
    _apply_masks(data, masks_key, lambda m: m[:, oy : oy + h, ox : ox + w, :])
    Hf, Wf, hf, wf = (tf.cast(v, tf.float32) for v in (H, W, h, w))
    oyf, oxf = tf.cast(oy, tf.float32), tf.cast(ox, tf.float32)

    def tb(y1, x1, y2, x2):
        ty = lambda y: tf.clip_by_value((y * Hf - oyf) / hf, 0.0, 1.0)  # noqa: E731
        tx = lambda x: tf.clip_by_value((x * Wf - oxf) / wf, 0.0, 1.0)  # noqa: E731
        return ty(y1), tx(x1), ty(y2), tx(x2)

    _apply_boxes(data, boxes_key, tb)
    return data


def _assert_fits(img, h, w, op, data):
    sh, sw = img.shape[-3], img.shape[-2]
    if (sh is not None and sh < h) or (sw is not None and sw < w):
        raise ValueError(f"{op}: image smaller than the crop ({h}x{w}): image shape {img.shape}")
    H, W = _hw(img)
    return tf.debugging.Assert(
        tf.logical_and(H >= h, W >= w),
        [f"{op}: image smaller than the crop ({h}x{w}); image height, width:", H, W, "example", utils.example_id(data)],
    )


# ----------------------------------------------------------------------------------------------------------
# Geometric ops.
# ----------------------------------------------------------------------------------------------------------


@register("resize")
def resize(
    size,
    method: str = "bilinear",
    antialias: bool = True,
    key: str = "image",
    boxes_key: str | None = "objects/bbox",
    masks_key: str | None = "objects/mask",
):
    """Resizes `data[key]` (`[H, W, C]`, any numeric dtype) to `size` (int -> square, or `(h, w)`).

    Output keeps the input dtype (integers are rounded and clipped) and has static shape `[h, w, C]`.
    `method`: bilinear (default, as PaliGemma's training pipeline, with `antialias=True`), bicubic,
    nearest, area, lanczos3/5, gaussian, mitchellcubic. Masks are resized with nearest neighbour; normalised boxes
    are unchanged (the aspect ratio change applies to both image and box).
    """
    hw = utils.as_size(size, "resize")
    method = _check_method(method, "resize")

    def fn(data):
        img = utils.get_key(data, key, "resize")
        data[key] = tf.ensure_shape(_resize_image(img, hw, method, antialias), [*img.shape[:-3], *hw, img.shape[-1]])
        _apply_masks(data, masks_key, lambda m: tf.image.resize(m, hw, method="nearest"))
        return data

    return fn


@register("resize_small")
def resize_small(
    smaller_size: int,
    method: str = "bilinear",
    antialias: bool = True,
    key: str = "image",
    boxes_key: str | None = "objects/bbox",
    masks_key: str | None = "objects/mask",
):
    """Resizes `data[key]` `[H, W, C]` so that its smaller side is `smaller_size`, keeping the aspect ratio.

    The other side becomes `round(side * smaller_size / min(H, W))`. Dtype is kept. Masks follow (nearest);
    normalised boxes are unchanged.
    """
    if not isinstance(smaller_size, int) or isinstance(smaller_size, bool) or smaller_size <= 0:
        raise ValueError(f"resize_small: smaller_size must be a positive int, got {smaller_size!r}")
    method = _check_method(method, "resize_small")

    def fn(data):
        img = utils.get_key(data, key, "resize_small")
        H, W = _hw(img)
        Hf, Wf = tf.cast(H, tf.float32), tf.cast(W, tf.float32)
        scale = smaller_size / tf.minimum(Hf, Wf)
        hw = tf.stack([tf.cast(tf.round(Hf * scale), tf.int32), tf.cast(tf.round(Wf * scale), tf.int32)])
        hw = tf.maximum(hw, smaller_size)  # guards against float rounding below the target
        data[key] = _resize_image(img, hw, method, antialias)
        _apply_masks(data, masks_key, lambda m: tf.image.resize(m, hw, method="nearest"))
        return data

    return fn


@register("central_crop")
def central_crop(
    size, key: str = "image", boxes_key: str | None = "objects/bbox", masks_key: str | None = "objects/mask"
):
    """Crops the central `size` (int or `(h, w)`) window of `data[key]` `[H, W, C]` -> `[h, w, C]`.

    The offset is `((H - h) // 2, (W - w) // 2)`. Fails (naming the example) if the image is smaller than the
    crop. Boxes are re-normalised to the crop and clipped; masks are cropped the same way. Dtype is kept.
    """
    h, w = utils.as_size(size, "central_crop")

    def fn(data):
        img = utils.get_key(data, key, "central_crop")
        with tf.control_dependencies([_assert_fits(img, h, w, "central_crop", data)]):
            H, W = _hw(img)
            oy, ox = (H - h) // 2, (W - w) // 2
        data = _crop(data, key, boxes_key, masks_key, oy, ox, h, w)
        data[key] = tf.ensure_shape(data[key], [*img.shape[:-3], h, w, img.shape[-1]])
        return data

    return fn


@register("random_crop")
def random_crop(
    size,
    key: str = "image",
    boxes_key: str | None = "objects/bbox",
    masks_key: str | None = "objects/mask",
    rng_key: str = utils.RNG_KEY,
):
    """Crops a uniformly random `size` (int or `(h, w)`) window of `data[key]` `[H, W, C]` -> `[h, w, C]`.

    The offset is drawn from the example's `rng_key` (or `_seed`) seed (stateless) when present, else
    `tf.random`. Boxes and masks follow the crop (boxes re-normalised and clipped). Fails (naming the example) if
    the image is smaller than the crop.
    """
    h, w = utils.as_size(size, "random_crop")

    def fn(data):
        img = utils.get_key(data, key, "random_crop")
        with tf.control_dependencies([_assert_fits(img, h, w, "random_crop", data)]):
            H, W = _hw(img)
            oy = utils.uniform_int(data, f"random_crop/{key}/y", H - h + 1, rng_key)
            ox = utils.uniform_int(data, f"random_crop/{key}/x", W - w + 1, rng_key)
        data = _crop(data, key, boxes_key, masks_key, oy, ox, h, w)
        data[key] = tf.ensure_shape(data[key], [*img.shape[:-3], h, w, img.shape[-1]])
        return data

    return fn


@register("flip_lr")
def flip_lr(
    prob: float = 0.5,
    key: str = "image",
    boxes_key: str | None = "objects/bbox",
    masks_key: str | None = "objects/mask",
    rng_key: str = utils.RNG_KEY,
):
    """Flips `data[key]` `[H, W, C]` left-right with probability `prob` (random; `prob=1` always flips).

    Boxes become `(y1, 1 - x2, y2, 1 - x1)` and masks are flipped with the image (same draw). Seeded from the
    example's `rng_key` (or `_seed`) when present, else `tf.random`. Note: text that mentions
    "left"/"right" is not changed.
    """
    if not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"flip_lr: prob must be in [0, 1], got {prob!r}")

    def fn(data):
        img = utils.get_key(data, key, "flip_lr")
        do = utils.uniform(data, f"flip_lr/{key}", (), rng_key) < prob
        data[key] = tf.cond(do, lambda: tf.reverse(img, axis=[-2]), lambda: img)
        if masks_key and masks_key in data:
            _apply_masks(data, masks_key, lambda m: tf.cond(do, lambda: tf.reverse(m, axis=[2]), lambda: m))

        def tb(y1, x1, y2, x2):
            return (y1, tf.where(do, 1.0 - x2, x1), y2, tf.where(do, 1.0 - x1, x2))

        _apply_boxes(data, boxes_key, tb)
        return data

    return fn


@register("pad_to_square")
def pad_to_square(
    value=0,
    align: str = "center",
    key: str = "image",
    boxes_key: str | None = "objects/bbox",
    masks_key: str | None = "objects/mask",
):
    """Pads `data[key]` `[H, W, C]` with `value` to `[S, S, C]`, `S = max(H, W)`.

    `align="center"` splits the padding evenly (the extra pixel goes bottom/right); `"topleft"` puts the
    image in the top-left corner (padding only bottom/right). Masks are padded with 0; boxes are re-normalised to
    the square. Dtype is kept.
    """
    if align not in ("center", "topleft"):
        raise ValueError(f"pad_to_square: align must be 'center' or 'topleft', got {align!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"pad_to_square: value must be a number, got {value!r}")

    def fn(data):
        img = utils.get_key(data, key, "pad_to_square")
        H, W = _hw(img)
        S = tf.maximum(H, W)
        if align == "center":
            top, left = (S - H) // 2, (S - W) // 2
        else:
            top, left = tf.constant(0), tf.constant(0)
        pads = [[top, S - H - top], [left, S - W - left]]
        lead = [[0, 0]] * (img.shape.rank - 3)  # frames [F, H, W, C]: every frame padded alike
        data[key] = tf.pad(img, lead + pads + [[0, 0]], constant_values=tf.cast(value, img.dtype))
        _apply_masks(data, masks_key, lambda m: tf.pad(m, [[0, 0]] + pads + [[0, 0]]))
        Hf, Wf, Sf = (tf.cast(v, tf.float32) for v in (H, W, S))
        tf_, lf = tf.cast(top, tf.float32), tf.cast(left, tf.float32)

        def tb(y1, x1, y2, x2):
            return ((y1 * Hf + tf_) / Sf, (x1 * Wf + lf) / Sf, (y2 * Hf + tf_) / Sf, (x2 * Wf + lf) / Sf)

        _apply_boxes(data, boxes_key, tb)
        return data

    return fn


# ----------------------------------------------------------------------------------------------------------
# Pixel values.
# ----------------------------------------------------------------------------------------------------------


@register("value_range")
def value_range(
    vmin: float, vmax: float, in_min: float = 0, in_max: float = 255, clip_values: bool = False, key: str = "image"
):
    """Maps pixel values linearly from `[in_min, in_max]` to `[vmin, vmax]`.

    Input: `data[key]` any numeric dtype (uint8 0..255 by default). Output: float32, same shape.
    `value_range(-1, 1)` gives SigLIP's input range. `clip_values` clips the result to `[vmin, vmax]`.
    """
    for n, v in (("vmin", vmin), ("vmax", vmax), ("in_min", in_min), ("in_max", in_max)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ValueError(f"value_range: {n} must be a number, got {v!r}")
    if in_max == in_min:
        raise ValueError("value_range: in_min and in_max must differ")

    def fn(data):
        x = tf.cast(utils.get_key(data, key, "value_range"), tf.float32)
        x = (x - in_min) / (in_max - in_min) * (vmax - vmin) + vmin
        if clip_values:
            x = tf.clip_by_value(x, min(vmin, vmax), max(vmin, vmax))
        data[key] = x
        return data

    return fn


# ----------------------------------------------------------------------------------------------------------
# Drawing.
# ----------------------------------------------------------------------------------------------------------


@register("draw_box")
def draw_box(box_key: str = "bbox", color=(255, 0, 0), key: str = "image"):
    """Draws the outline of one box on the image: how Widget Captioning shows the model which element to describe.

    `data[box_key]`: `[4]` (or `[1, 4]`) normalised `(y1, x1, y2, x2)`, e.g. a TFDS `BBoxFeature`. The outline is one
    pixel wide, in `color` (pixel values of the image's range: put the op before `value_range`, after `resize`, so
    that the line is one pixel at the model's resolution); `data[key]` `[H, W, 3]` keeps its dtype.
    """
    if len(color) != 3 or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in color):
        raise ValueError(f"draw_box: color must be 3 numbers (R, G, B), got {color!r}")

    def fn(data):
        img = utils.get_key(data, key, "draw_box")
        box = tf.reshape(tf.cast(utils.get_key(data, box_key, "draw_box"), tf.float32), [1, 1, 4])
        drawn = tf.image.draw_bounding_boxes(tf.cast(img, tf.float32)[None], box, tf.constant([color], tf.float32))[0]
        data[key] = tf.ensure_shape(_cast_like(drawn, img.dtype), img.shape)
        return data

    return fn
