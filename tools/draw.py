"""Drawing PaliGemma detection / segmentation output on images.

    from paligemma.tokenizer import parse_detections
    img = draw_detections(Image.open("cat.jpg"), parse_detections("<loc0100><loc0200><loc0800><loc0900> cat"))
    img.save("cat_boxes.png")

Boxes are `(y1, x1, y2, x2)` normalised to [0, 1] (as `paligemma.tokenizer.parse_detections` returns them, bins /
1023) and are scaled to the image's pixel size. Each label gets a fixed colour (hash of the label), the box outline
and a filled tag with the label text at its top-left corner (inside the box when there is no room above).
`frames_grid` lays the frames of one example (images or video frames) out as a contact sheet with a caption.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evaluators.refcoco import resize_bilinear_pil

__all__ = ["draw_detections", "draw_masks", "mask_in_box", "frames_grid", "color_for", "PALETTE"]

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (128, 0, 0),
)


def color_for(label: str) -> tuple[int, int, int]:
    """A fixed RGB colour for `label` (same label -> same colour across images and runs)."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def _to_pil(image: Any) -> Image.Image:
    """PIL image (converted to RGB) from a PIL image or an `[H, W, 3]` / `[H, W]` uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 [H, W, 3] (0..255), got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    y1, x1, y2, x2 = (float(v) for v in box)
    y1, y2 = sorted((y1, y2))
    x1, x2 = sorted((x1, x2))
    clip = lambda v, hi: int(round(min(max(v, 0.0), 1.0) * hi))  # noqa: E731
    return clip(x1, width), clip(y1, height), clip(x2, width), clip(y2, height)


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else (255, 255, 255)


def _draw_tag(draw: ImageDraw.ImageDraw, x: int, y_top: int, y_inside: int, text: str, color, font) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    y = y_top - h if y_top - h >= 0 else y_inside
    draw.rectangle([x, y, x + w, y + h], fill=color)
    draw.text((x + 2 - left, y + 2 - top), text, fill=_text_color(color), font=font)


def draw_detections(
    image: Any, detections: Sequence[Sequence[Any]], *, line_width: int | None = None, font_size: int | None = None
) -> Image.Image:
    """Draws labelled boxes on a copy of `image`.

    Args:
      image: PIL image or uint8 `[H, W, 3]` array (the original, any size).
      detections: `(box, label)` or `(box, label, score)` items; box `(y1, x1, y2, x2)` in [0, 1].
      line_width: outline width in pixels (default: ~0.5% of the image's larger side, at least 2).
      font_size: label text size (default: ~3.5% of the larger side, at least 10).

    Returns:
      A new RGB PIL image of the same size.
    """
    img = _to_pil(image).copy()
    w, h = img.size
    lw = line_width or max(2, round(max(w, h) * 0.005))
    font = _font(font_size or max(10, round(max(w, h) * 0.035)))
    draw = ImageDraw.Draw(img)
    for det in detections:
        box, label = det[0], str(det[1])
        color = color_for(label)
        x1, y1, x2, y2 = _pixel_box(box, w, h)
        draw.rectangle([x1, y1, max(x2 - 1, x1), max(y2 - 1, y1)], outline=color, width=lw)
        text = label if len(det) < 3 else f"{label} {float(det[2]):.2f}"
        if text:
            _draw_tag(draw, x1, y1, y1 + lw, text, color, font)
    return img


def mask_in_box(mask64: np.ndarray, box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pastes 64x64 VQ-VAE mask logits into `box` of an `height` x `width` image, as the RefCOCO metric does.

    Args:
      mask64: float `[64, 64]` logits (`paligemma.vqvae.decode`), foreground > 0.
      box: `(y1, x1, y2, x2)` in [0, 1]; pixel box by `int()` truncation of `v * size`.
      height, width: the image's size.

    Returns:
      bool `[height, width]` (all False when the pixel box is empty).
    """
    out = np.zeros((height, width), bool)
    y1, x1, y2, x2 = (float(v) for v in box)
    py1, px1, py2, px2 = int(y1 * height), int(x1 * width), int(y2 * height), int(x2 * width)
    py1, px1, py2, px2 = max(py1, 0), max(px1, 0), min(py2, height), min(px2, width)
    if py2 <= py1 or px2 <= px1:
        return out
    out[py1:py2, px1:px2] = resize_bilinear_pil(np.asarray(mask64, np.float32), py2 - py1, px2 - px1) > 0
    return out


def draw_masks(
    image: Any, masks: Sequence[np.ndarray], *, labels: Sequence[str] | None = None, alpha: float = 0.5
) -> Image.Image:
    """Overlays binary masks (each bool `[H, W]` at the image's size) in their label colours on a copy of `image`.

    Args:
      image: PIL image or uint8 `[H, W, 3]` array.
      masks: per object a `[H, W]` mask (foreground > 0), e.g. from `mask_in_box`.
      labels: per object a label (for the colour); default "mask 0", "mask 1", ...
      alpha: opacity of the overlay.

    Returns:
      A new RGB PIL image.
    """
    img = _to_pil(image)
    arr = np.asarray(img).astype(np.float32)
    h, w = arr.shape[:2]
    labels = list(labels) if labels is not None else [f"mask {i}" for i in range(len(masks))]
    if len(labels) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(labels)} labels")
    for mask, label in zip(masks, labels):
        m = np.asarray(mask) > 0
        if m.shape != (h, w):
            raise ValueError(f"mask shape {m.shape} differs from the image's {(h, w)}; paste it with mask_in_box")
        arr[m] = (1 - alpha) * arr[m] + alpha * np.asarray(color_for(str(label)), np.float32)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """`text` broken into lines no wider than `width` pixels (at spaces; a longer word gets a line of its own)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def frames_grid(
    frames: Sequence[Any],
    *,
    caption: str | None = None,
    columns: int | None = None,
    tile: int = 256,
    gap: int = 4,
    font_size: int | None = None,
) -> Image.Image:
    """A contact sheet: `frames` in a grid, row by row, each numbered, and `caption` in a band below.

    Args:
      frames: PIL images or uint8 `[H, W, 3]` arrays (sizes may differ), in order.
      caption: text under the grid (wrapped to its width; newlines kept), e.g. the model's answer.
      columns: frames per row (default: ceil(sqrt(n))).
      tile: a frame larger than `tile` x `tile` is scaled down (aspect kept) to fit; smaller ones keep their size.
      gap: pixels between (and around) the frames.
      font_size: caption and number size (default: ~6% of a cell's width, at least 10).

    Returns:
      A new RGB PIL image: white background, frame i at row i // columns, column i % columns, each centred in a cell
      of the largest (scaled) frame's size, its number in a tag at its top-left corner.
    """
    if not len(frames):
        raise ValueError("frames_grid needs at least one frame")
    if isinstance(columns, bool) or (columns is not None and (not isinstance(columns, int) or columns < 1)):
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    images = []
    for frame in frames:
        img = _to_pil(frame)
        if max(img.size) > tile:
            scale = tile / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
        images.append(img)
    n = len(images)
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    cell_w, cell_h = max(i.width for i in images), max(i.height for i in images)
    width = cols * cell_w + (cols + 1) * gap
    size = font_size or max(10, round(cell_w * 0.06))
    font, number_font = _font(size), _font(max(8, round(size * 0.8)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(measure, caption, font, width - 2 * gap) if caption else []
    line_h = measure.textbbox((0, 0), "Ag", font=font)[3] + 2
    band = len(lines) * line_h + gap if lines else 0
    sheet = Image.new("RGB", (width, rows * cell_h + (rows + 1) * gap + band), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        x = gap + c * (cell_w + gap) + (cell_w - img.width) // 2
        y = gap + r * (cell_h + gap) + (cell_h - img.height) // 2
        sheet.paste(img, (x, y))
        _draw_tag(draw, x, 0, y, str(i), (0, 0, 0), number_font)  # inside the frame, at its top-left
    top = rows * cell_h + (rows + 1) * gap
    for k, line in enumerate(lines):
        draw.text((gap, top + k * line_h), line, fill=(0, 0, 0), font=font)
    return sheet
