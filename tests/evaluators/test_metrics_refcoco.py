"""RefCOCO mIoU / box accuracy on hand-made boxes and masks; PIL-compatible bilinear resize."""

import numpy as np
import pytest

from evaluators.metrics import refcoco_example, refcoco_iou, refcoco_metrics, resize_bilinear_pil
from evaluators.refcoco import LOC0, SEG0, tokens_from_ids

H, W = 100, 200
# Ground truth: rows 20..59, cols 50..149 (40 x 100 = 4000 pixels).
GT = np.zeros((H, W), bool)
GT[20:60, 50:150] = True
GT_BOX = (0.2, 0.25, 0.6, 0.75)
# Bins chosen so that int(bin / 1023 * size) gives exactly rows 20..60, cols 50..150:
# 205 -> 20.04, 614 -> 60.02 (x100); 256 -> 50.05, 768 -> 150.15 (x200).
BINS = [205, 256, 614, 768]
CODES = list(range(16))
IDS = [LOC0 + b for b in BINS] + [SEG0 + c for c in CODES] + [1]  # trailing eos is ignored

FULL = np.ones((64, 64), np.float32)  # every pixel foreground
LEFT = np.where(np.arange(64)[None, :] < 32, 1.0, -1.0) * np.ones((64, 1), np.float32)  # left half


def test_resize_matches_pil():
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.RandomState(0)
    img = rng.randn(64, 64).astype(np.float32)
    for h, w in [(40, 100), (1, 1), (10, 200), (100, 37), (64, 64), (128, 30), (7, 64), (64, 5), (333, 211)]:
        want = np.asarray(Image.fromarray(img, mode="F").resize((w, h), resample=Image.BILINEAR))
        got = resize_bilinear_pil(img, h, w)
        assert got.shape == (h, w) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def test_iou_full_and_half_masks():
    assert refcoco_iou(BINS, FULL, GT) == 1.0
    # Width 64 -> 100: columns 0..49 are > 0 (centre 49 maps to 31.68, value 0.64; 50 -> 32.32, value -0.64).
    pred = resize_bilinear_pil(LEFT, 40, 100) > 0
    assert pred.sum() == 40 * 50
    assert refcoco_iou(BINS, LEFT, GT) == pytest.approx(0.5)
    # Against a ground truth that is only the left half: perfect.
    gt_left = np.zeros((H, W), bool)
    gt_left[20:60, 50:100] = True
    assert refcoco_iou(BINS, LEFT, gt_left) == 1.0
    # Ground truth larger than the box: IoU = 4000 / 8000.
    gt_big = np.zeros((H, W), np.uint8)
    gt_big[20:60, 0:200] = 255
    assert refcoco_iou(BINS, FULL, gt_big) == pytest.approx(4000 / 8000)


def test_token_validation():
    t, valid = tokens_from_ids(IDS)
    assert valid and list(t) == BINS + CODES
    assert not tokens_from_ids(IDS[:19])[1]  # too short
    assert not tokens_from_ids([5] + IDS[1:])[1]  # text token instead of a loc
    assert not tokens_from_ids(IDS[:4] + [LOC0] + IDS[5:])[1]  # loc where a seg should be
    assert not tokens_from_ids(IDS[:19] + [SEG0 + 128])[1]  # seg id beyond <seg127>
    assert not tokens_from_ids([LOC0 + 614, LOC0 + 256, LOC0 + 205, LOC0 + 768] + IDS[4:])[1]  # y2 < y1
    assert not tokens_from_ids([LOC0 + 205, LOC0 + 256, LOC0 + 205, LOC0 + 768] + IDS[4:])[1]  # y2 == y1
    assert tokens_from_ids(IDS + [LOC0, 5, 5])[1]  # extra tokens after 20 ignored


def test_example_and_box_accuracy():
    r = refcoco_example(IDS, GT, GT_BOX, mask64=FULL)
    assert r["valid"] and r["iou"] == 1.0
    py1, px1, py2, px2 = (b / 1023 for b in BINS)
    inter = (min(py2, 0.6) - max(py1, 0.2)) * (min(px2, 0.75) - max(px1, 0.25))
    union = (py2 - py1) * (px2 - px1) + 0.4 * 0.5 - inter
    assert r["box_iou"] == pytest.approx(inter / union, abs=1e-12)
    assert r["box_hit"] == {0.5: True, 0.75: True}
    # Ground-truth box derived from the mask by default.
    assert refcoco_example(IDS, GT, mask64=FULL)["box_iou"] == pytest.approx(r["box_iou"])
    # Invalid: IoU 0 and box IoU 0 (all-zero box).
    bad = refcoco_example([5] * 20, GT, GT_BOX, mask64=FULL)
    assert not bad["valid"] and bad["iou"] == 0.0 and bad["box_iou"] == 0.0
    # Box empty after int() truncation (H = 3: bins 0 and 300 both give row 0) -> invalid.
    tiny = np.ones((3, 3), bool)
    ids = [LOC0, LOC0, LOC0 + 300, LOC0 + 1023] + [SEG0] * 16
    r = refcoco_example(ids, tiny, (0, 0, 1, 1), mask64=FULL)
    assert not r["valid"] and r["iou"] == 0.0


def test_text_input():
    tok = pytest.importorskip("paligemma.tokenizer")
    text = tok.box_to_loc_tokens([b / 1023 for b in BINS]) + tok.seg_codes_to_tokens(CODES) + " the dog"
    r = refcoco_example(text, GT, GT_BOX, mask64=LEFT)
    assert r["valid"] and r["iou"] == pytest.approx(0.5)
    missing_seg = tok.box_to_loc_tokens([b / 1023 for b in BINS]) + tok.seg_codes_to_tokens(CODES[:15])
    assert not refcoco_example(missing_seg, GT, GT_BOX, mask64=LEFT)["valid"]
    assert not refcoco_example("a dog", GT, GT_BOX, mask64=LEFT)["valid"]


def test_metrics_with_vqvae_decoder():
    import jax

    from paligemma import vqvae

    params = vqvae.init_params(
        jax.random.PRNGKey(0),
        embedding_dim=8,
        encoder_channels=(4, 4, 4, 8),
        decoder_hidden=8,
        decoder_channels=(8, 8, 8, 8),
    )
    mask64 = np.asarray(vqvae.decode(params, np.asarray([CODES], np.int32)))[0]
    expected = refcoco_example(IDS, GT, GT_BOX, mask64=mask64)["iou"]
    out = refcoco_metrics([IDS, [5] * 20, IDS], [GT, GT, GT], [GT_BOX] * 3, vqvae_params=params)
    assert out["total"] == 3 and out["invalid"] == 1
    assert out["ious"] == pytest.approx([expected, 0.0, expected], abs=1e-12)
    assert out["miou"] == pytest.approx(2 * expected / 3)
    assert out["boxacc@0.5"] == pytest.approx(2 / 3) and out["boxacc@0.75"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        refcoco_metrics([IDS], [GT])  # valid prediction but nothing to decode with
