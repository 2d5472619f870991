"""RefCOCO referring-expression segmentation: mask IoU (mIoU) and box accuracy, as big_vision's evaluator.

Per example (docs/reference.md §4.4):

1. Take the first 20 generated tokens: they must be 4 `<loc>` then 16 `<seg>` tokens, with `y2 > y1` and
   `x2 > x1` (in bins); otherwise the example is INVALID: mask IoU 0, counted in `invalid` and in the mean.
2. Box accuracy: IoU of the predicted box (`bins / 1023`, [0, 1] coordinates) with the ground-truth box
   (normalised `(y1, x1, y2, x2)`); an invalid example uses an all-zero box (IoU 0). Accuracy at 0.5 / 0.75 is the
   fraction with `IoU >= threshold`.
3. Mask: pixel box `int(y1 / 1023 * H), int(x1 / 1023 * W), int(y2 / 1023 * H), int(x2 / 1023 * W)` (truncation,
   H x W = the full-resolution ground-truth mask); if it became empty after truncation the example is invalid too.
   The 16 seg codes are decoded by the VQ-VAE (`paligemma.vqvae`) into 64x64 logits, resized to the box
   size with PIL-style bilinear resampling (PIL `Image.resize(BILINEAR)` on a float image, including PIL's
   widened filter support when shrinking; reimplemented in numpy, no PIL needed), thresholded `> 0` and pasted
   into the box. Mask IoU = `|pred & gt| / (|gt| + |pred| - |pred & gt|)` against the full-resolution ground truth
   (0 when the union is empty).
4. mIoU = mean of the per-example IoUs (not the cumulative / "overall" IoU).

Token ids follow docs/reference.md §1.3: `<locN>` = 256000 + N, `<segN>` = 257024 + N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from paligemma import vqvae
from paligemma.tokenizer import parse_segmentations

__all__ = [
    "LOC0",
    "SEG0",
    "resize_bilinear_pil",
    "tokens_from_ids",
    "tokens_from_text",
    "refcoco_iou",
    "refcoco_example",
    "refcoco_metrics",
]

LOC0 = 256000
SEG0 = 257024
NUM_LOC = 1024
NUM_SEG = 128
_LOC_MAX = NUM_LOC - 1


# ---------------------------------------------------------------------------------------------------------------
# PIL-compatible bilinear resize of a float image.
# ---------------------------------------------------------------------------------------------------------------


def _pil_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """The `(out, in)` weight matrix PIL's resampler uses for BILINEAR.

    A triangle filter, support 1 scaled by the shrink factor, pixel centres at +0.5, weights normalised per output
    pixel.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    w = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = np.arange(xmin, xmax)
        k = 1.0 - np.abs((x - center + 0.5) / filterscale)
        k = np.where(k > 0, k, 0.0)
        total = k.sum()
        if total != 0:
            k = k / total
        w[xx, xmin:xmax] = k
    return w


def resize_bilinear_pil(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a 2-D float image like `PIL.Image.fromarray(float32).resize((width, height), BILINEAR)`.

    PIL resamples horizontally then vertically, each pass in float64 with the result stored as float32; an axis
    whose size does not change is not resampled. Reproduced here.

    Args:
      image: `[h, w]` float array. height, width: output size (>= 1).

    Returns:
      float32 `[height, width]`.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {(height, width)}")
    h, w = img.shape
    if width != w:
        img = (img.astype(np.float64) @ _pil_bilinear_weights(w, width).T).astype(np.float32)
    if height != h:
        img = (_pil_bilinear_weights(h, height) @ img.astype(np.float64)).astype(np.float32)
    return img


# ---------------------------------------------------------------------------------------------------------------
# Parsing the first 20 tokens.
# ---------------------------------------------------------------------------------------------------------------


def tokens_from_ids(ids: Sequence[int], loc0: int = LOC0, seg0: int = SEG0) -> tuple[np.ndarray, bool]:
    """Reads `(4 loc bins + 16 seg codes, valid)` from generated token ids (only the first 20 are looked at).

    Returns:
      `(t, valid)` with `t` int `[20]` (zeros when invalid) and `valid` True iff there are 20 tokens, the
      first 4 are loc tokens, the next 16 seg tokens, and `y2 > y1`, `x2 > x1`.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)[:20]
    out = np.zeros(20, np.int64)
    if len(ids) < 20:
        return out, False
    t = np.concatenate([ids[:4] - loc0, ids[4:] - seg0])
    valid = bool(
        np.all((t[:4] >= 0) & (t[:4] <= _LOC_MAX))
        and np.all((t[4:] >= 0) & (t[4:] < NUM_SEG))
        and t[2] > t[0]
        and t[3] > t[1]
    )
    return (t if valid else out), valid


def tokens_from_text(text: str) -> tuple[np.ndarray, bool]:
    """Like `tokens_from_ids` for decoded text, via `paligemma.tokenizer.parse_segmentations`.

    The first parsed object is used (text before it is tolerated, unlike the id path); it is valid when it has
    exactly 16 seg codes and a non-empty box. Bins are recovered as `round(coordinate * 1023)`.
    """
    objects = parse_segmentations(text)
    out = np.zeros(20, np.int64)
    if not objects:
        return out, False
    box, codes, _ = objects[0]
    if codes is None or len(codes) != 16:
        return out, False
    bins = [int(round(float(v) * _LOC_MAX)) for v in box]
    if not (bins[2] > bins[0] and bins[3] > bins[1]):
        return out, False
    return np.asarray(bins + list(codes), np.int64), True


def _box_iou01(a, b) -> float:
    def area(y1, x1, y2, x2):
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    y1, x1, y2, x2 = (float(v) for v in a)
    gy1, gx1, gy2, gx2 = (float(v) for v in b)
    inter = area(max(y1, gy1), max(x1, gx1), min(y2, gy2), min(x2, gx2))
    union = area(y1, x1, y2, x2) + area(gy1, gx1, gy2, gx2) - inter
    return inter / union if union > 0 else 0.0


def _box_from_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    h, w = mask.shape
    return (rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w)


# ---------------------------------------------------------------------------------------------------------------
# Metrics.
# ---------------------------------------------------------------------------------------------------------------


def refcoco_iou(bins: Sequence[int], mask64: np.ndarray, gt_mask: np.ndarray) -> float:
    """Mask IoU of one VALID prediction against the full-resolution ground truth.

    Args:
      bins: the 4 loc bins `(y1, x1, y2, x2)` in 0..1023.
      mask64: the decoded 64x64 logits (`paligemma.vqvae.decode`).
      gt_mask: `[H, W]` ground-truth mask (bool, or numbers with foreground `> 0`).

    Returns:
      IoU in [0, 1]; 0.0 when the pixel box is empty after `int()` truncation.
    """
    gt = np.asarray(gt_mask)
    if gt.ndim == 3:
        gt = gt[..., 0]
    gt = gt > 0
    h, w = gt.shape
    y1, x1, y2, x2 = (int(b) / _LOC_MAX for b in bins)
    y1, x1, y2, x2 = int(y1 * h), int(x1 * w), int(y2 * h), int(x2 * w)
    if x2 <= x1 or y2 <= y1:
        return 0.0
    pred = resize_bilinear_pil(np.asarray(mask64, np.float32), y2 - y1, x2 - x1) > 0.0
    inter = int(np.sum(gt[y1:y2, x1:x2] & pred))
    union = int(gt.sum()) + int(pred.sum()) - inter
    return inter / union if union > 0 else 0.0


def refcoco_example(
    prediction,
    gt_mask: np.ndarray,
    gt_box: Sequence[float] | None = None,
    *,
    vqvae_params: Mapping | None = None,
    mask64: np.ndarray | None = None,
    det_ious: Sequence[float] = (0.5, 0.75),
) -> dict:
    """Scores one example.

    Args:
      prediction: generated token ids (sequence of ints; first 20 used) or decoded text (str).
      gt_mask: `[H, W]` (or `[H, W, 1]`) full-resolution ground truth, foreground `> 0`.
      gt_box: normalised `(y1, x1, y2, x2)`; default: the tight box of `gt_mask` (pixel edges / size).
      vqvae_params: VQ-VAE params (`paligemma.vqvae.load_params`), used to decode the seg codes.
      mask64: alternatively the already decoded `[64, 64]` logits of this example.
      det_ious: box-accuracy thresholds.

    Returns:
      `{"iou", "box_iou", "valid", "box_hit": {thr: bool}}`. An invalid prediction has `iou` 0.
    """
    t, valid = tokens_from_text(prediction) if isinstance(prediction, str) else tokens_from_ids(prediction)
    gt = np.asarray(gt_mask)
    if gt.ndim == 3:
        gt = gt[..., 0]
    if gt_box is None:
        gt_box = _box_from_mask(gt > 0)
    box01 = t[:4] / _LOC_MAX
    box_iou = _box_iou01(box01, gt_box)
    iou = 0.0
    h, w = gt.shape
    y1, x1, y2, x2 = (int(v * s) for v, s in zip(box01, (h, w, h, w)))
    if valid and not (x2 <= x1 or y2 <= y1):
        if mask64 is None:
            if vqvae_params is None:
                raise ValueError("refcoco_example needs vqvae_params or mask64 to decode the seg tokens")
            mask64 = np.asarray(vqvae.decode(vqvae_params, t[None, 4:].astype(np.int32)))[0]
        iou = refcoco_iou(t[:4], mask64, gt)
    else:
        valid = False
    return {
        "iou": float(iou),
        "box_iou": float(box_iou),
        "valid": bool(valid),
        "box_hit": {thr: bool(thr <= box_iou) for thr in det_ious},
    }


def refcoco_metrics(
    predictions: Sequence,
    gt_masks: Sequence[np.ndarray],
    gt_boxes: Sequence[Sequence[float]] | None = None,
    *,
    vqvae_params: Mapping | None = None,
    det_ious: Sequence[float] = (0.5, 0.75),
    batch_size: int = 64,
) -> dict:
    """RefCOCO metrics over a dataset.

    Args:
      predictions: per example, generated token ids or decoded text (see `refcoco_example`).
      gt_masks: per example, the full-resolution ground-truth mask.
      gt_boxes: per example, the normalised ground-truth box (default: from the mask).
      vqvae_params: VQ-VAE params; seg codes of valid predictions are decoded in batches of `batch_size`.
      det_ious: box-accuracy thresholds.

    Returns:
      `{"miou", "boxacc@0.5", "boxacc@0.75", "invalid", "total", "ious"}` (`ious` = per-example list).
    """
    n = len(predictions)
    if len(gt_masks) != n or (gt_boxes is not None and len(gt_boxes) != n):
        raise ValueError("predictions, gt_masks and gt_boxes must have the same length")
    parsed = [tokens_from_text(p) if isinstance(p, str) else tokens_from_ids(p) for p in predictions]
    masks64: list[np.ndarray | None] = [None] * n
    todo = [i for i, (_, v) in enumerate(parsed) if v]
    if todo:
        if vqvae_params is None:
            raise ValueError("refcoco_metrics needs vqvae_params to decode the seg tokens")
        for s in range(0, len(todo), batch_size):
            chunk = todo[s : s + batch_size]
            codes = np.stack([parsed[i][0][4:] for i in chunk]).astype(np.int32)
            decoded = np.asarray(vqvae.decode(vqvae_params, codes))
            for i, m in zip(chunk, decoded):
                masks64[i] = m
    ious, hits, invalid = [], {thr: [] for thr in det_ious}, 0
    for i in range(n):
        t, valid = parsed[i]
        ids = np.concatenate([t[:4] + LOC0, t[4:] + SEG0]) if valid else np.zeros(0, np.int64)
        r = refcoco_example(
            ids, gt_masks[i], None if gt_boxes is None else gt_boxes[i], mask64=masks64[i], det_ious=det_ious
        )
        ious.append(r["iou"])
        invalid += not r["valid"]
        for thr in det_ious:
            hits[thr].append(r["box_hit"][thr])
    out = {"miou": float(np.mean(ious)) if ious else 0.0, "invalid": invalid, "total": n, "ious": ious}
    for thr in det_ious:
        out[f"boxacc@{thr}"] = float(np.mean(hits[thr])) if hits[thr] else 0.0
    return out
