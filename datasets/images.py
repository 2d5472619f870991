"""The one image semantics of training and prediction, in numpy/PIL (this module does not import TensorFlow).

    pixels = images.decode(data, name="cat.png")       # uint8 [H, W, 3], the pixels the pp op `decode` gives
    small = images.resize(pixels, (224, 224))          # uint8, the pp op `resize(224)`'s pixels (within 1, see resize)

The training pipeline decodes with TensorFlow (the pp op `decode`, `datasets/pp/ops_image.py`); `tools.predict` runs
on hosts without TensorFlow and uses `decode` and `resize` here. Both give the same uint8 pixels
(`tests/datasets/test_images.py` checks every kind below, exactly):

* 8-bit RGB, grayscale (expanded to 3 equal channels), 1-bit, palette PNGs and GIFs (first frame), BMP, WebP.
* 16-bit PNGs (gray, gray+alpha, RGB, RGBA): the high byte of each value (`v >> 8`, what libpng's strip-16 gives
  TensorFlow), not PIL's `convert("RGB")`, which clips grayscale values above 255 to white.
* Alpha (RGBA, LA, palette or grayscale transparency): dropped, the stored colour kept (no compositing), as
  TensorFlow's `decode_image(channels=3)` does. GIF pixels of the transparent colour index are black (0, 0, 0),
  as TensorFlow's GIF decoder makes them.
* JPEG: decoded by libjpeg(-turbo) with the accurate integer DCT (`INTEGER_ACCURATE`, PIL's only mode, the pp
  `decode` default); CMYK/YCCK JPEGs (Adobe inverted) become RGB the same way on both sides. The pp option
  `decode(precise=False)` (TensorFlow's fast DCT, big_vision's default) differs by up to ~8 levels. CMYK -> RGB
  is TensorFlow's `(255 - c) * (255 - k) // 255` (PIL's own `convert("RGB")` rounds and differs by 1).
* EXIF orientation is ignored on both sides (as TensorFlow and big_vision do): a phone photo stored sideways with
  an orientation tag is seen sideways, in training and in prediction alike.
* Size: an image of more than `MAX_PIXELS` pixels (width x height, read from the header before decoding) is refused
  with one line naming it (`ImageError`), on both sides: a decompression bomb never reaches the decoder.

`resize` is `tf.image.resize(method="bilinear", antialias=True)` (the pp `resize` op) reimplemented: a separable
triangle filter, widened by the scale factor when shrinking, rows then columns, in float32 (the same sums), rounded
half to even and clipped: identical uint8 pixels. (PIL's bilinear resize, used before, differs by up to 1 level in
20-50% of the pixels: it rounds to uint8 between its two passes and uses fixed-point weights.)
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

__all__ = ["ImageError", "ImageTooLargeError", "FORMATS", "MAX_PIXELS", "image_size", "check_size", "decode", "resize"]

# PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS, its DecompressionBombError threshold): ~0.5 GB of RGB pixels.
MAX_PIXELS = 178_956_970

# The formats TensorFlow's `decode_image` reads (PIL format name -> what users call it; MPO: a multi-picture JPEG).
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "GIF": "GIF", "BMP": "BMP", "WEBP": "WebP"}
_SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageError(ValueError):
    """An image that cannot be used: not an image, corrupt, or too large. The message names the file."""


class ImageTooLargeError(ImageError):
    """More pixels than the limit (`MAX_PIXELS`), known from the header, before decoding."""


def _open(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():  # the size is checked by `check_size`, with one clear line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}: image too large ({e}); the limit is {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: not a readable image ({e}; JPEG, PNG, GIF, BMP or WebP expected)") from None


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(height, width) from the header of the encoded image `data`, without decoding its pixels."""
    with _open(data, name) as img:
        return img.size[1], img.size[0]


def check_size(height: int, width: int, name: str = "image", max_pixels: int = MAX_PIXELS) -> None:
    """Raises ImageTooLargeError when `height x width` exceeds `max_pixels` (a decompression bomb, or a huge scan)."""
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image too large ({width}x{height} = {height * width:,} pixels, more than the limit of "
            f"{max_pixels:,}; a decompression bomb?)"
        )


def _gif_first_frame(img: Image.Image) -> np.ndarray:
    frame = next(iter(ImageSequence.Iterator(img)))
    transparency = frame.info.get("transparency")
    rgb = np.array(frame.convert("RGB"))
    if frame.mode == "P" and isinstance(transparency, int):
        rgb[np.asarray(frame) == transparency] = 0  # TensorFlow's GIF decoder makes transparent pixels black
    return rgb


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.format == "GIF":
        return _gif_first_frame(img)
    if img.mode in _SIXTEEN_BIT_GRAY:
        gray = np.minimum(np.asarray(img).astype(np.uint32), 65535) >> 8  # the high byte, as libpng's strip-16
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
    if img.mode == "CMYK":  # PIL's CMYK convention (Adobe files un-inverted); TensorFlow's integer formula
        cmyk = np.asarray(img).astype(np.int32)
        return ((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) // 255).astype(np.uint8)
    if img.mode in ("P", "PA"):  # palette colours; transparency (alpha) dropped
        return np.array(img.convert("RGBA"))[..., :3]
    return np.array(img.convert("RGB"))  # RGBA/LA: alpha dropped, not composited; L: 3 equal channels; CMYK


def decode(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> uint8 `[H, W, 3]`, the pixels of the pp op `decode` (see the module docstring).

    Raises ImageError (naming `name`) for bytes that are not an image, a corrupt image, or more than `max_pixels`.
    """
    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    with _open(data, name) as img:
        if img.format not in FORMATS:
            raise ImageError(
                f"{name}: {img.format} images are not read by the training pipeline (TensorFlow decodes "
                f"{', '.join(sorted(set(FORMATS.values())))}); convert it to PNG"
            )
        check_size(img.size[1], img.size[0], name, max_pixels)
        try:
            img.load()
            out = _to_rgb(img)
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: cannot decode the image ({e}; truncated or corrupt?)") from None
    return np.ascontiguousarray(out, dtype=np.uint8)


def _weights(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts [out], weights [out, span]) of TensorFlow's ScaleAndTranslate triangle kernel, antialiased, float32."""
    scale = np.float32(out_size) / np.float32(in_size)
    inv_scale = np.float32(1.0 / np.float64(scale))
    kernel_scale = max(inv_scale, np.float32(1.0))
    span = min(2 * int(np.ceil(kernel_scale)) + 1, in_size)
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, span), np.float32)
    for x in range(out_size):
        sample = np.float32(np.float32(x) + np.float32(0.5)) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        lo = int(np.ceil(sample - kernel_scale - np.float32(0.5)))
        hi = int(np.floor(sample + kernel_scale - np.float32(0.5)))
        lo, hi = min(max(lo, 0), in_size - 1), min(max(hi, 0), in_size - 1) + 1
        pos = (np.arange(lo, hi, dtype=np.float32) + np.float32(0.5) - sample) / kernel_scale
        w = np.maximum(np.float32(0), np.float32(1) - np.abs(pos)).astype(np.float32)
        total = np.float32(0)
        for v in w:  # summed in order, in float32
            total = np.float32(total + v)
        if abs(total) >= 1000.0 * np.finfo(np.float32).tiny:
            weights[x, : hi - lo] = w * np.float32(np.float32(1.0) / total)
        starts[x] = lo
    return starts, weights


def _resize_axis(x: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = x.shape[axis]
    starts, weights = _weights(out_size, in_size)
    x = np.moveaxis(x, axis, 0)
    out = np.zeros((out_size,) + x.shape[1:], np.float32)
    for k in range(weights.shape[1]):  # accumulated in span order, as the TensorFlow kernel does
        idx = np.minimum(starts + k, in_size - 1)
        w = weights[:, k].reshape((-1,) + (1,) * (x.ndim - 1))
        out = out + w * x[idx]
    return np.moveaxis(out, 0, axis)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 `[H, W, C]` -> uint8 `[h, w, C]` at `size` = (h, w), as the pp op `resize` (bilinear, antialiased).

    TensorFlow's kernel, weights and rounding, in numpy. For some size pairs its float32 sums round differently from
    TensorFlow's in a few pixels: about 0.1-0.2% of them (e.g. 32x22 -> 16x16, 48x64 -> 32x32) come out one level
    apart; the rest are equal. Already at `size`: returned unchanged.
    """
    image = np.asarray(image)
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    x = image.astype(np.float32)
    x = _resize_axis(x, h, 0)  # rows first, then columns: TensorFlow's order (the same float32 sums)
    x = _resize_axis(x, w, 1)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
