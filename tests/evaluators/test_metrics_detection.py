"""Detection mAP@0.5 (VOC all-point) and F1 on tiny hand-computed cases."""

import numpy as np
import pytest

from evaluators.metrics import average_precision, box_iou, detection_f1, detection_map, detection_metrics

A = (0.0, 0.0, 0.5, 0.5)
B = (0.5, 0.5, 1.0, 1.0)
B_SHIFTED = (0.5, 0.5, 1.0, 0.95)  # IoU 0.9 with B
OFF = (0.0, 0.6, 0.2, 0.9)  # overlaps nothing


def test_box_iou():
    assert box_iou(A, A) == 1.0
    assert box_iou(A, B) == 0.0
    assert box_iou((0, 0, 1, 1), (0, 0, 0.5, 1)) == pytest.approx(0.5)
    assert box_iou((0, 0, 1, 1), (0.5, 0.5, 1.5, 1.5)) == pytest.approx(0.25 / 1.75)
    assert box_iou(B, B_SHIFTED) == pytest.approx(0.9)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_average_precision_curve():
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> envelope 2/3 everywhere -> AP = 2/3.
    assert average_precision(np.array([0, 0.5, 1.0]), np.array([0, 0.5, 2 / 3])) == pytest.approx(2 / 3)
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert average_precision(np.array([]), np.array([])) == 0.0


GTS = [[(A, "cat")], [(B, "cat"), ((0.1, 0.1, 0.3, 0.3), "dog")]]


def test_map_hand_case():
    # No scores: rank = position within the image, ties in image order:
    #   img0#0 OFF (FP), img1#0 B' (TP), img0#1 A (TP), img1#1 bird (class without ground truth: ignored).
    # cat: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> AP 2/3. dog: no detections -> AP 0. mAP = 1/3.
    preds = [[(OFF, "cat"), (A, "cat")], [(B_SHIFTED, "Cat "), (B, "bird")]]
    out = detection_map(preds, GTS)
    assert out["per_class_ap"] == {"cat": pytest.approx(2 / 3), "dog": 0.0}
    assert out["map"] == pytest.approx(1 / 3)
    # Perfect order -> cat AP 1.
    preds = [[(A, "cat"), (OFF, "cat")], [(B_SHIFTED, "cat")]]
    assert detection_map(preds, GTS)["per_class_ap"]["cat"] == pytest.approx(1.0)


def test_map_explicit_scores_and_duplicates():
    # Two detections on A: the higher-scored one matches, the duplicate is a false positive.
    preds = [[(A, "cat", 0.9), (A, "cat", 0.8)], [(B, "cat", 0.1)]]
    # order: A TP (p 1, r .5), A dup FP (p .5, r .5), B TP (p 2/3, r 1) -> AP = .5 * 1 + .5 * 2/3.
    assert detection_map(preds, GTS)["per_class_ap"]["cat"] == pytest.approx(0.5 + 1 / 3)
    # IoU threshold matters: B' has IoU 0.9 with B.
    preds = [[], [(B_SHIFTED, "cat", 1.0)]]
    assert detection_map(preds, GTS, iou_threshold=0.95)["per_class_ap"]["cat"] == 0.0
    assert detection_map(preds, GTS, iou_threshold=0.5)["per_class_ap"]["cat"] == pytest.approx(0.5)


def test_f1_hand_case():
    preds = [[(OFF, "cat"), (A, "cat")], [(B_SHIFTED, "cat"), (B, "bird")]]
    out = detection_f1(preds, GTS)
    # TP 2 (A, B'), 4 predictions, 3 ground truths.
    assert (out["tp"], out["num_pred"], out["num_gt"]) == (2, 4, 3)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(4 / 7)
    assert detection_f1([[]], [[]])["f1"] == 0.0


def test_detection_metrics_from_text():
    tok = pytest.importorskip("paligemma.tokenizer")
    texts = [
        tok.box_to_loc_tokens(OFF) + " cat ; " + tok.box_to_loc_tokens(A) + " cat",
        tok.box_to_loc_tokens(B_SHIFTED) + " cat ; " + tok.box_to_loc_tokens(B) + " bird",
    ]
    out = detection_metrics(texts, GTS)
    assert out["map"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(4 / 7)
    with pytest.raises(ValueError):
        detection_map([[]], GTS)
