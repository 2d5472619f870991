"""Detection metrics for PaliGemma `<loc>` output: mAP@IoU (VOC-style, all-point interpolation) and F1.

Boxes are `(y1, x1, y2, x2)` normalised to [0, 1] (the layout of
`paligemma.tokenizer.parse_detections`, which decodes a bin as `bin / 1023`). IoU is computed on these
continuous coordinates (no +1 pixel convention). Labels are compared after `strip().lower()`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from paligemma.tokenizer import parse_detections

__all__ = [
    "box_iou",
    "parse_detection_output",
    "average_precision",
    "detection_map",
    "detection_f1",
    "detection_metrics",
]

Box = Sequence[float]
Detection = tuple  # (box, label) or (box, label, score)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two `(y1, x1, y2, x2)` boxes; degenerate boxes have area 0; 0.0 when the union is 0."""
    ay1, ax1, ay2, ax2 = (float(v) for v in a)
    by1, bx1, by2, bx2 = (float(v) for v in b)
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    inter = ih * iw
    area_a = max(0.0, ay2 - ay1) * max(0.0, ax2 - ax1)
    area_b = max(0.0, by2 - by1) * max(0.0, bx2 - bx1)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def parse_detection_output(text: str) -> list[tuple[tuple[float, float, float, float], str]]:
    """Parses `"<loc..>x4 label ; ..."` with `paligemma.tokenizer.parse_detections` (bins / 1023)."""
    return parse_detections(text)


def _norm_label(label: str) -> str:
    return str(label).strip().lower()


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC (2010+) all-point interpolated AP.

    The area under the precision envelope (precision made monotonically non-increasing from the right), summed
    where recall changes. Inputs are the cumulative curves in ranking order.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _with_scores(predictions: Sequence[Sequence[Detection]]):
    """Yields (image, box, label, score) of every predicted box.

    Without a score the k-th box of an image gets score -k (first emitted = most confident), so equal ranks across
    images keep image order (stable sort).
    """
    for img, dets in enumerate(predictions):
        for k, det in enumerate(dets):
            box, label = det[0], det[1]
            score = float(det[2]) if len(det) > 2 else -float(k)
            yield img, tuple(float(v) for v in box), _norm_label(label), score


def detection_map(
    predictions: Sequence[Sequence[Detection]], ground_truths: Sequence[Sequence[Detection]], iou_threshold: float = 0.5
) -> dict:
    """Mean average precision at one IoU threshold (PASCAL VOC protocol, all-point interpolation).

    Per class: detections of that class over all images are ranked by score (descending; see below for
    score-less output), each is compared with the ground-truth box of the same class in the same image with the
    highest IoU (matched or not, as in the VOC devkit); it is a true positive when that IoU `>= iou_threshold`
    and that box was not matched before, else a false positive (duplicates are false positives).
    AP = `average_precision` of the resulting curve; recall is relative to the number of ground-truth boxes
    of the class. mAP = mean over classes that have at least one ground-truth box
    (classes only predicted are ignored, as in VOC; their false positives do not enter any AP).

    Generated output has no confidence: a detection `(box, label)` gets score `-k` for the k-th object of
    its image (earlier = more confident; ties broken by image order). Pass `(box, label, score)` to rank by
    explicit scores.

    Args:
      predictions: per image, a list of `(box, label)` or `(box, label, score)`.
      ground_truths: per image, a list of `(box, label)`.
      iou_threshold: 0.5 for mAP@0.5.

    Returns:
      `{"map": float, "per_class_ap": {label: ap}, "num_classes": n}` (`map` is 0.0 without ground truth).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction lists but {len(ground_truths)} ground-truth lists")
    gt_by_class: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    num_gt: dict[str, int] = defaultdict(int)
    for img, gts in enumerate(ground_truths):
        for det in gts:
            label = _norm_label(det[1])
            gt_by_class[label][img].append(tuple(float(v) for v in det[0]))
            num_gt[label] += 1
    dets_by_class: dict[str, list] = defaultdict(list)
    for img, box, label, score in _with_scores(predictions):
        dets_by_class[label].append((score, img, box))

    per_class = {}
    for label in num_gt:
        dets = sorted(dets_by_class.get(label, []), key=lambda d: -d[0])  # stable: keeps image order on ties
        used = {img: [False] * len(boxes) for img, boxes in gt_by_class[label].items()}
        tp = np.zeros(len(dets))
        fp = np.zeros(len(dets))
        for i, (_, img, box) in enumerate(dets):
            gts = gt_by_class[label].get(img, [])
            best, best_j = -1.0, -1
            for j, g in enumerate(gts):
                iou = box_iou(box, g)
                if iou > best:
                    best, best_j = iou, j
            if best_j >= 0 and best >= iou_threshold and not used[img][best_j]:
                tp[i] = 1
                used[img][best_j] = True
            else:
                fp[i] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / num_gt[label]
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        per_class[label] = average_precision(recall, precision)
    m = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"map": m, "per_class_ap": per_class, "num_classes": len(per_class)}


def detection_f1(
    predictions: Sequence[Sequence[Detection]], ground_truths: Sequence[Sequence[Detection]], iou_threshold: float = 0.5
) -> dict:
    """Micro-averaged precision / recall / F1 at one IoU threshold.

    Per image, predicted and ground-truth boxes with the same label are matched one-to-one greedily by
    decreasing IoU (pairs with IoU `>= iou_threshold` only). TP = matched pairs; precision = TP / #predicted,
    recall = TP / #ground truth, summed over the dataset; F1 = 2PR / (P + R). Scores are ignored.

    Returns:
      `{"precision", "recall", "f1", "tp", "num_pred", "num_gt"}` (0.0 where a denominator is 0).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction lists but {len(ground_truths)} ground-truth lists")
    tp = num_pred = num_gt = 0
    for preds, gts in zip(predictions, ground_truths):
        num_pred += len(preds)
        num_gt += len(gts)
        pairs = []
        for i, p in enumerate(preds):
            for j, g in enumerate(gts):
                if _norm_label(p[1]) == _norm_label(g[1]):
                    iou = box_iou(p[0], g[0])
                    if iou >= iou_threshold:
                        pairs.append((-iou, i, j))
        pairs.sort()
        used_p, used_g = set(), set()
        for _, i, j in pairs:
            if i not in used_p and j not in used_g:
                used_p.add(i)
                used_g.add(j)
                tp += 1
    precision = tp / num_pred if num_pred else 0.0
    recall = tp / num_gt if num_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "num_pred": num_pred, "num_gt": num_gt}


def detection_metrics(
    predictions: Sequence[str | Sequence[Detection]],
    ground_truths: Sequence[Sequence[Detection]],
    iou_threshold: float = 0.5,
) -> dict:
    """MAP and F1 at `iou_threshold` for generated detection output.

    Args:
      predictions: per image, the decoded model text (parsed with `parse_detection_output`) or an already
        parsed list of `(box, label[, score])`.
      ground_truths: per image, a list of `(box_yxyx_in_01, label)`.

    Returns:
      `{"map", "per_class_ap", "precision", "recall", "f1", ...}` (see `detection_map`,
      `detection_f1`).
    """
    parsed = [parse_detection_output(p) if isinstance(p, str) else list(p) for p in predictions]
    out = detection_map(parsed, ground_truths, iou_threshold)
    out.update(detection_f1(parsed, ground_truths, iou_threshold))
    return out
