"""One image semantics: tools.predict's loader (datasets.images, no TensorFlow) gives the pixels of the pp `decode`.

Every tricky kind of file is made here with PIL/numpy (TensorFlow writes the 16-bit colour PNGs, which PIL cannot),
then read by `tools.predict.load_image` and by the training pp `decode`: PNG/GIF/BMP/WebP must be identical, and so
are JPEGs (both libjpeg-turbo with the accurate integer DCT: measured max difference 0 here, PIL 13 vs TF 2.21;
`JPEG_TOLERANCE` allows 1 level for other builds). The resize of `tools.predict` is the pp `resize` (identical
float32 sums, so identical pixels); PIL's bilinear, used before, was off by up to 1 level.
"""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import images, pp
from tools import predict

JPEG_TOLERANCE = 1  # measured 0 (libjpeg-turbo ISLOW on both sides); TF's fast DCT (precise=False) differs by <= 8

rng = np.random.default_rng(17)
NOISE = rng.integers(0, 256, (40, 56, 3)).astype(np.uint8)
PALETTE = Image.fromarray(NOISE[:10, :14]).convert("P", palette=Image.ADAPTIVE, colors=8)


def _pil(img: Image.Image, fmt: str, **kw) -> bytes:
    f = io.BytesIO()
    img.save(f, format=fmt, **kw)
    return f.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": ignored on both sides
    return _pil(Image.fromarray(NOISE), "JPEG", quality=90, exif=exif)


KINDS = {
    "gray16.png": lambda: _pil(Image.fromarray(rng.integers(0, 65536, (9, 13)).astype(np.uint16)), "PNG"),
    "rgb16.png": lambda: tf.io.encode_png(rng.integers(0, 65536, (9, 13, 3)).astype(np.uint16)).numpy(),
    "rgba16.png": lambda: tf.io.encode_png(rng.integers(0, 65536, (9, 13, 4)).astype(np.uint16)).numpy(),
    "gray_alpha16.png": lambda: tf.io.encode_png(rng.integers(0, 65536, (9, 13, 2)).astype(np.uint16)).numpy(),
    "palette.png": lambda: _pil(PALETTE, "PNG"),
    "palette_transparent.png": lambda: _pil(PALETTE, "PNG", transparency=0),
    "rgba.png": lambda: _pil(Image.fromarray(rng.integers(0, 256, (9, 13, 4)).astype(np.uint8), "RGBA"), "PNG"),
    "la.png": lambda: _pil(Image.fromarray(rng.integers(0, 256, (9, 13, 2)).astype(np.uint8), "LA"), "PNG"),
    "gray.png": lambda: _pil(Image.fromarray(NOISE[..., 0]), "PNG"),
    "bilevel.png": lambda: _pil(Image.fromarray(NOISE[..., 0] > 127), "PNG"),
    "palette.gif": lambda: _pil(PALETTE, "GIF"),
    "transparent.gif": lambda: _pil(PALETTE, "GIF", transparency=0),
    "rgb.bmp": lambda: _pil(Image.fromarray(NOISE), "BMP"),
    "rgb.webp": lambda: _pil(Image.fromarray(NOISE), "WEBP", lossless=True),
    "rgb.jpg": lambda: _pil(Image.fromarray(NOISE), "JPEG", quality=90),
    "rgb444.jpg": lambda: _pil(Image.fromarray(NOISE), "JPEG", quality=95, subsampling=0),
    "gray.jpg": lambda: _pil(Image.fromarray(NOISE[..., 1]), "JPEG", quality=90),
    "cmyk.jpg": lambda: _pil(Image.fromarray(rng.integers(0, 256, (40, 56, 4)).astype(np.uint8), "CMYK"), "JPEG"),
    "exif_rotated.jpg": _exif_rotated,
}


def _train_decode(data: bytes, op: str = "decode") -> np.ndarray:
    return pp.get_preprocess_fn(op)({"image": tf.constant(data)})["image"].numpy()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_predict_loader_gives_the_training_pixels(name, tmp_path):
    data = KINDS[name]()
    path = tmp_path / name
    path.write_bytes(data)
    loaded = np.asarray(predict.load_image(str(path)))
    trained = _train_decode(data)
    assert loaded.dtype == np.uint8 and loaded.shape == trained.shape
    diff = int(np.abs(loaded.astype(int) - trained).max())
    assert diff <= (JPEG_TOLERANCE if name.endswith(".jpg") else 0), (name, diff)
    np.testing.assert_array_equal(images.decode(data, name), loaded)


def test_sixteen_bit_gray_is_not_white(tmp_path):
    # The original failure: PIL's convert("RGB") clipped I;16 values above 255, so the image became all white.
    values = np.array([[0, 255, 256, 4096], [32768, 40000, 65280, 65535]], np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    loaded = np.asarray(predict.load_image(str(path)))
    assert loaded[..., 0].tolist() == [[0, 0, 1, 16], [128, 156, 255, 255]]  # v >> 8, as libpng gives TensorFlow
    assert (loaded == loaded[..., :1]).all()


def test_alpha_dropped_gif_transparency_black_exif_ignored():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
    assert images.decode(_pil(Image.fromarray(rgba, "RGBA"), "PNG")).tolist() == [[[10, 20, 30], [40, 50, 60]]]
    gif = images.decode(KINDS["transparent.gif"]())
    assert (gif[np.asarray(Image.open(io.BytesIO(KINDS["transparent.gif"]()))) == 0] == 0).all()
    assert images.decode(_exif_rotated()).shape == _train_decode(_exif_rotated()).shape == (40, 56, 3)


def test_fast_jpeg_dct_is_the_documented_difference():
    data = KINDS["rgb.jpg"]()
    fast = _train_decode(data, "decode(precise=False)")
    assert 0 < int(np.abs(fast.astype(int) - images.decode(data)).max()) <= 8


@pytest.mark.parametrize(
    "shape,size",
    [
        ((40, 56), (224, 224)),
        ((40, 56), (16, 24)),
        ((500, 333), (64, 64)),
        ((13, 7), (26, 21)),
        ((37, 91), (37, 92)),
        ((30, 30), (30, 30)),
    ],
)
def test_predict_preprocess_is_the_pp_resize(shape, size):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([yy * 255 // max(h - 1, 1), xx * 255 // max(w - 1, 1), (yy + xx) % 256], -1).astype(np.uint8)
    for img in (rng.integers(0, 256, (h, w, 3)).astype(np.uint8), smooth):
        ref = pp.get_preprocess_fn(f"resize({size})|value_range(-1, 1)")({"image": tf.constant(img)})["image"]
        np.testing.assert_array_equal(predict.preprocess(img, size), ref.numpy())
        np.testing.assert_array_equal(predict.preprocess(Image.fromarray(img), size), ref.numpy())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (8-bit gray) and whose data is a few bytes: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_too_large_images_are_one_clear_line_on_both_sides(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20_000, 20_000))  # 400M pixels declared, 100 bytes on disk
    with pytest.raises(images.ImageTooLargeError, match=r"bomb.png: image too large"):
        images.decode(bomb.read_bytes(), str(bomb))
    args = ["--checkpoint", str(tmp_path / "none"), "--tokenizer", "x.model", "--prompt", "caption en"]
    assert predict.main(args + ["--image", str(bomb)]) == 2
    err = capsys.readouterr().err.strip()
    # Every problem of the command line at once (here also the missing checkpoint and tokenizer), one line each.
    assert err.startswith("error:") and f"- cannot read image {bomb}: image too large" in err
    assert "Traceback" not in err and all(line.startswith("  - ") for line in err.splitlines()[1:])
    # Training: refused before decoding (checked) or after (checked=False), naming the example.
    small = KINDS["rgb.bmp"]()
    with pytest.raises(images.ImageTooLargeError, match="56x40 = 2,240 pixels, more than the limit of 1,000"):
        images.decode(small, "x.bmp", max_pixels=1000)
    data = {"image": tf.constant(small), "id": tf.constant("ex-3")}
    for op in ("decode(max_pixels=1000)", "decode(max_pixels=1000, checked=False)"):
        ds = tf.data.Dataset.from_tensors(data).map(pp.get_preprocess_fn(op))
        with pytest.raises(tf.errors.OpError, match=r"image too large[\s\S]*ex-3"):
            next(iter(ds))
    ds = tf.data.Dataset.from_tensors({"image": tf.constant(bomb.read_bytes()), "id": tf.constant("ex-4")})
    with pytest.raises(tf.errors.OpError, match=r"decode: 'image' of example id=ex-4: image too large"):
        next(iter(ds.map(pp.get_preprocess_fn("decode"))))


def test_formats_the_training_pipeline_cannot_read_are_refused():
    with pytest.raises(images.ImageError, match="TIFF images are not read by the training pipeline"):
        images.decode(_pil(Image.fromarray(NOISE), "TIFF"), "scan.tif")
    with pytest.raises(images.ImageError, match="x.png: not a readable image"):
        images.decode(b"\x89PNG not really", "x.png")
