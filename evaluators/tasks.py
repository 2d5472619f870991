"""The evaluator types of `config.evals` (registered with `evaluators.registry.register_evaluator`).

type          extra keys (defaults)                                        metrics
perplexity    id_key=None                                                  nll, perplexity, token_nll
vqa           answers_key="answers", id_key="question_id",                 accuracy, accuracy_<answer type>,
              answer_type_key=None, normalize="vqav2" | "always" |         mean_accuracy (with mean_over_types)
              "exact" | "exact_cased", min_matches=1,
              mean_over_types=False, submission_file=True,
              max_decode_len=16, sampler, seed
anls          answers_key="answers", id_key="question_id", threshold=0.5,  anls
              collapse_whitespace=False, submission_file=True, ...
caption       references_key="captions", id_key="image_id",                cider, bleu4, rouge_l (x score_scale);
              group_key=None, exclude_from_avg=None,                       with group_key: cider_<group>, ...,
              score_scale=1.0, submission_file=True, max_decode_len=32     cider_avg, cider_avg_no_<excluded>
detection     targets_key="suffix", iou_threshold=0.5, id_key=None, ...    map, f1, precision, recall
refcoco_seg   vqvae_checkpoint (path or "init:SEED"), mask_key="mask",      miou, boxacc@0.5, boxacc@0.75, invalid
              box_key="bbox", id_key=None, max_decode_len=20, ...
chartqa, tallyqa, pope, scienceqa, rsvqa, multiple_choice, mmvp: see `evaluators.qa_tasks` (`evaluators.common` imports
both modules, which registers every type).

vqa's `normalize`: "vqav2" is the official VQAv2 script (normalise only when the ground truths disagree, leave-one-out
min(1, matches/3)); "always" normalises every answer (TextVQA, VizWiz); "exact" compares the stripped, lowercased
answer with each ground truth (`M.exact_match_accuracy`: big_vision's plain VQA evaluator with `to_lower=True`, for
GQA, xGQA, OCR-VQA, AI2D, ...), "exact_cased" without lowercasing (big_vision's AI2D setting); with them
`min_matches` ground truths must match for full credit, score min(1, matches / min_matches) (3 for A-OKVQA DA and
OK-VQA as big_vision, whose vqa evaluator scores several answers so; 1 = "equals any ground truth").

Submission files (`evaluators.submission`): `submission_format="list"` (default) writes `[{<id name>: id, "answer":
prediction}]` with `submission_id_name` (default: "question_id" for vqa, "questionId" for anls; "image" for VizWiz)
and `[{"image_id", "caption"}]` for caption (TextCaps, COCO, NoCaps); `submission_format="aokvqa"` writes A-OKVQA's
`{question_id: {"direct_answer" | "multiple_choice": prediction}}` (`python -m evaluators.submission merge_aokvqa`
joins the DA and MC files).

Several images or video frames per example: the pp gives image `[F, H, W, 3]` (batched `[B, F, H, W, 3]`) and, when
some are padding, "frame_mask" `[F]`; every type passes a kept "frame_mask" to the model (decoding, perplexity).
`mean_over_types=True` adds `mean_accuracy`, the unweighted mean of the per-answer-type accuracies (MaRVL: the mean
over its languages, with the language as the answer type). `score_scale=100` reports CIDEr etc. as the papers and
model cards do (CIDEr 0.7 -> 70.0); a dict scales each metric on its own (`dict(cider=100, rouge_l=100)`: BLEU-4
stays a fraction, as the card prints SciCap's).

Field values come from the eval batch (keep them in the pp string). Lists of strings may be `[N]` string arrays
(empty strings = padding, dropped) or JSON text (JSONL nested values).

Perplexity runs the training layout (`tok_paligemma` with `mask_loss`): model input `text[:, :-1]`, targets
`text[:, 1:]` weighted by `mask_loss[:, 1:]`; `nll` is the mean over examples of the per-example mean NLL of the
suffix tokens (`evaluators.metrics.per_example_nll`), `perplexity = exp(nll)`, `token_nll` the mean over all suffix
tokens. Examples without suffix tokens are left out (counted in `empty_targets`).

RefCOCO follows docs/reference.md §4.4: the first 20 generated tokens must be 4 `<loc>` + 16 `<seg>` (ids of this
tokenizer), the seg codes are decoded by the VQ-VAE and scored with `evaluators.refcoco.refcoco_example` against the
full-resolution mask (`mask_key`: encoded PNG bytes, a JSON nested list, or an array). Records keep the canonical
ids (`<locN>` = 256000 + N, `<segN>` = 257024 + N) under `seg_ids` ([] when invalid).
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from evaluators import metrics as M
from evaluators.base import Evaluator, GenerativeEvaluator
from evaluators.refcoco import LOC0, SEG0, tokens_from_ids
from evaluators.registry import EvalConfigError, register_evaluator
from evaluators.submission import SUBMISSION_KEYS, check_submission_config, submission
from evaluators.values import as_scalar, as_text, as_text_list, mean, safe_metric_name
from paligemma import vqvae
from paligemma.loss import weighted_nll_sums
from paligemma.tokenizer import parse_detections

__all__ = [
    "PerplexityEvaluator",
    "VqaEvaluator",
    "AnlsEvaluator",
    "CaptionEvaluator",
    "DetectionEvaluator",
    "RefcocoSegEvaluator",
    "load_vqvae",
    "decode_mask",
]


def _id(value: Any) -> Any:
    return None if value is None else as_scalar(value)


# ----------------------------------------------------------------------------------------------------------
# Perplexity.


def _suffix_nll(model, params, batch):
    """Per-example mean NLL `[B]` and suffix-token counts `[B]` of a training-layout batch.

    The NLL is float32, 0 without suffix tokens. A batch's "frame_mask" `[B, F]` (images `[B, F, H, W, 3]`) goes to
    the model as `frame_mask=`. The logits are computed only at the suffix positions, a few at a time
    (`weighted_nll_sums`); the values are `M.per_example_nll` of the full logits.
    """
    text, mask_ar, mask_loss = batch["text"], batch["mask_ar"], batch["mask_loss"]
    input_mask = batch["mask_input"].astype(bool)
    variables = {"params": params}
    keywords = {"frame_mask": batch["frame_mask"]} if "frame_mask" in batch else {}  # frames per example, padded
    hidden, _ = model.apply(
        variables,
        batch["image"],
        text[:, :-1],
        mask_ar[:, :-1],
        input_mask=input_mask[:, :-1],
        **keywords,
        train=False,
        method="hidden_states",
    )
    weights = mask_loss[:, 1:].astype(jnp.float32)
    total = weighted_nll_sums(hidden, text[:, 1:], weights, lambda h: model.apply(variables, h, method="logits"))
    count = jnp.sum(weights, axis=-1)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0), jnp.sum(mask_loss[:, 1:], axis=-1)


@register_evaluator("perplexity")
class PerplexityEvaluator(Evaluator):
    """Mean per-example NLL of the suffix (training layout), and its perplexity."""

    KEYS = dict(id_key=None)
    MODEL_KEYS = ("image", "text", "mask_ar", "mask_loss", "mask_input")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fn = jax.jit(functools.partial(_suffix_nll, self.model))

    def _predict(self, params, inputs, *, step, batch_index):
        nll, count = self._fn(params, inputs)
        return {"nll": nll, "count": count}

    def _records(self, batch, outputs, rows):
        ids = self._optional_field(batch, "id_key")
        out = []
        for r in rows:
            rec = {"nll": float(outputs["nll"][r]), "num_tokens": int(outputs["count"][r])}
            if ids is not None:
                rec["id"] = _id(ids[r])
            out.append(rec)
        return out

    def _metrics(self, records):
        kept = [r for r in records if r["num_tokens"] > 0]
        nll = [r["nll"] for r in kept]
        tokens = sum(r["num_tokens"] for r in kept)
        return {
            "nll": mean(nll),
            "perplexity": M.perplexity(nll) if nll else float("nan"),
            "token_nll": sum(r["nll"] * r["num_tokens"] for r in kept) / tokens if tokens else float("nan"),
            "empty_targets": len(records) - len(kept),
        }


# ----------------------------------------------------------------------------------------------------------
# Question answering.


def split_scored(records: list[dict], invalid: tuple[str, str] | None = None) -> tuple[list[dict], dict[str, int]]:
    """The scored records (`score` not None), and the counts of the others when non-zero.

    `unscored`: no ground truth (a test split). With `invalid=(field, metric)`: the records that have `field` (a
    ground truth the type cannot score, e.g. mock data) are counted under `metric` instead.
    """
    num_invalid = sum(invalid[0] in r for r in records) if invalid else 0
    unscored = sum(r["score"] is None for r in records) - num_invalid
    counts = {"unscored": unscored} if unscored else {}
    if num_invalid:
        counts[invalid[1]] = num_invalid
    return [r for r in records if r["score"] is not None], counts


def check_one_of(cfg: dict, where: str, key: str, allowed: dict[str, str | None]) -> None:
    """Raises `EvalConfigError` unless `cfg[key]` is a key of `allowed` (value -> what it means, or None)."""
    if cfg[key] not in allowed:
        named = [repr(v) if what is None else f"{v!r} ({what})" for v, what in allowed.items()]
        options = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
        raise EvalConfigError(f"{where}: {key} must be {options}, got {cfg[key]!r}")


class _ReferenceEvaluator(GenerativeEvaluator):
    """Shared parts of the types that compare one generated text per example with a reference field of the batch.

    Records: "prediction", the texts of the `REFERENCE_KEY` field under `REFERENCE_FIELD` (a list; empty on a test
    split), "id" (the `id_key` field, when the batch has it) and, when the type has the config key `TYPE_KEY` and it
    names a field, that field's text under `TYPE_FIELD` (the answer type, the caption group). Config keys: `id_key`
    ("question_id" unless a type sets another), `submission_file` (True unless a type sets False) and the
    `SUBMISSION_KEYS`.

    Submission file: `[{<submission_id_name>: id, <SUBMISSION_ANSWER>: prediction}]` (`submission_format="list"`),
    or, with `submission_format="aokvqa"`, the A-OKVQA leaderboard's `{id: {<SUBMISSION_AOKVQA_FIELD>: prediction}}`.
    """

    KEYS = dict(GenerativeEvaluator.KEYS, id_key="question_id", submission_file=True, **SUBMISSION_KEYS)
    REFERENCE_KEY = "answers_key"
    REFERENCE_FIELD = "answers"
    TYPE_KEY: str | None = "answer_type_key"
    TYPE_FIELD = "answer_type"
    SUBMISSION_ID = "question_id"
    SUBMISSION_ANSWER = "answer"
    SUBMISSION_AOKVQA_FIELD = "direct_answer"

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        check_submission_config(cfg, where)

    def _records(self, batch, outputs, rows):
        refs = self._field(batch, self.config[self.REFERENCE_KEY])
        ids = self._optional_field(batch, "id_key")
        types = self._optional_field(batch, self.TYPE_KEY) if self.TYPE_KEY in self.config else None
        out = []
        for r, pred in zip(rows, self.texts(outputs, rows)):
            rec = {"prediction": pred, self.REFERENCE_FIELD: as_text_list(refs[r])}
            if ids is not None:
                rec["id"] = _id(ids[r])
            if types is not None:
                rec[self.TYPE_FIELD] = as_text(types[r])
            out.append(rec)
        return out

    def _submission(self, records):
        return submission(
            records,
            self.config,
            default_id=self.SUBMISSION_ID,
            answer_name=self.SUBMISSION_ANSWER,
            aokvqa_field=self.SUBMISSION_AOKVQA_FIELD,
        )


class _QaEvaluator(_ReferenceEvaluator):
    """Shared parts of the QA types: the `_ReferenceEvaluator` records (answers list, id, answer type) + "score".

    No answers (a test split): predicted for the submission file, not scored (score None). A type's `_score` may
    also return None (an answer it cannot score, e.g. a POPE label that is not yes/no).
    """

    KEYS = dict(_ReferenceEvaluator.KEYS, answers_key="answers")

    def _score(self, prediction: str, answers: list[str]) -> float | None:
        raise NotImplementedError

    def _records(self, batch, outputs, rows):
        out = super()._records(batch, outputs, rows)
        for rec in out:
            score = self._score(rec["prediction"], rec["answers"]) if rec["answers"] else None
            rec["score"] = None if score is None else float(score)
        return out

    @staticmethod
    def scored(records: list[dict]) -> list[dict]:
        """The records that have ground-truth answers."""
        return [r for r in records if r["score"] is not None]


@register_evaluator("vqa")
class VqaEvaluator(_QaEvaluator):
    """VQA accuracy over the answers list.

    The VQAv2 script (`normalize="vqav2"`, or `"always"` for TextVQA / VizWiz), or exact match (`"exact"`,
    `"exact_cased"`; see `evaluators.vqa.exact_match_accuracy`).
    """

    KEYS = dict(
        _QaEvaluator.KEYS,
        max_decode_len=16,
        answer_type_key=None,
        normalize="vqav2",
        min_matches=1,
        mean_over_types=False,
    )
    NORMALIZE = {
        "vqav2": "official VQAv2 script",
        "always": "TextVQA / VizWiz",
        "exact": "stripped, lowercased exact match",
        "exact_cased": None,
    }

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        check_one_of(cfg, where, "normalize", self.NORMALIZE)
        mm = cfg["min_matches"]
        if isinstance(mm, bool) or not isinstance(mm, int) or mm < 1:
            raise EvalConfigError(f"{where}: min_matches must be an int >= 1, got {mm!r}")
        if mm != 1 and not cfg["normalize"].startswith("exact"):
            raise EvalConfigError(
                f"{where}: min_matches applies to normalize='exact' / 'exact_cased' (the VQAv2 script has its own "
                f"rule), got min_matches={mm} with normalize={cfg['normalize']!r}"
            )

    def _score(self, prediction, answers):
        normalize = self.config["normalize"]
        if normalize == "always":
            return M.vqa_accuracy_always_normalize(prediction, answers)
        if normalize in ("exact", "exact_cased"):
            return M.exact_match_accuracy(
                prediction, answers, lowercase=normalize == "exact", min_matches=self.config["min_matches"]
            )
        return M.vqa_accuracy(prediction, answers)

    def _metrics(self, records):
        unscored = len(records) - len(records := self.scored(records))
        if not records:  # a test split: only the submission file
            return {"unscored": unscored}
        types = [r.get("answer_type") for r in records]
        agg = M.vqa_aggregate([r["score"] for r in records], types if all(t is not None for t in types) else None)
        out = {"accuracy": agg["overall"]}
        if unscored:
            out["unscored"] = unscored
        for t, v in sorted(agg["per_answer_type"].items()):
            out[f"accuracy_{safe_metric_name(t)}"] = v
        if self.config["mean_over_types"] and agg["per_answer_type"]:
            out["mean_accuracy"] = mean(list(agg["per_answer_type"].values()))
        return out


@register_evaluator("anls")
class AnlsEvaluator(_QaEvaluator):
    """DocVQA-style ANLS over the answers list."""

    KEYS = dict(_QaEvaluator.KEYS, max_decode_len=32, threshold=0.5, collapse_whitespace=False)
    SUBMISSION_ID = "questionId"

    def _score(self, prediction, answers):
        return M.anls(
            prediction,
            answers,
            float(self.config["threshold"]),
            collapse_whitespace=bool(self.config["collapse_whitespace"]),
        )

    def _metrics(self, records):
        unscored = len(records) - len(records := self.scored(records))
        out = {"anls": mean([r["score"] for r in records])} if records else {}
        return dict(out, unscored=unscored) if unscored else out


# ----------------------------------------------------------------------------------------------------------
# Captioning.


CAPTION_METRICS = ("cider", "bleu4", "rouge_l")


def _caption_scores(records: list[dict], scales: dict[str, float]) -> dict[str, float]:
    """CIDEr, BLEU-4 and ROUGE-L (each x its `scales` entry) of the records' predictions against their references."""
    preds = [r["prediction"] for r in records]
    refs = [r["references"] for r in records]
    return {
        "cider": scales["cider"] * M.cider(preds, refs)[0],
        "bleu4": scales["bleu4"] * M.bleu4(preds, refs)[0],
        "rouge_l": scales["rouge_l"] * M.rouge_l(preds, refs)[0],
    }


def _caption_scales(score_scale) -> dict[str, float]:
    """`score_scale` per metric: one number for all, or a dict (the metrics it leaves out keep their raw scale)."""
    if hasattr(score_scale, "keys"):
        return {k: float(score_scale[k]) if k in score_scale else 1.0 for k in CAPTION_METRICS}
    return dict.fromkeys(CAPTION_METRICS, float(score_scale))


@register_evaluator("caption")
class CaptionEvaluator(_ReferenceEvaluator):
    """COCO-toolkit CIDEr-D, BLEU-4 and ROUGE-L against the reference captions; per group with `group_key`.

    With `group_key` (e.g. "language": COCO-35L, XM3600) each group is scored on its own, as if its examples were
    the whole eval set (CIDEr's document frequencies come from that group's references only; big_vision runs one
    evaluator per language split), reported as `cider_<group>`, `bleu4_<group>`, `rouge_l_<group>`, plus
    `cider_avg` / `bleu4_avg` / `rouge_l_avg` (unweighted mean over the groups) and, with `exclude_from_avg`
    (a group or a list of groups, e.g. "en"), `cider_avg_no_<groups>` (the mean over the other groups: the model
    card's "avg-34" of COCO-35L with "en" excluded). No pooled `cider` then: it would mix the groups' vocabularies.
    """

    KEYS = dict(
        _ReferenceEvaluator.KEYS,
        max_decode_len=32,
        references_key="captions",
        id_key="image_id",
        group_key=None,
        exclude_from_avg=None,
        score_scale=1.0,
    )
    REFERENCE_KEY = "references_key"
    REFERENCE_FIELD = "references"  # none on a test split: predicted, not scored
    TYPE_KEY = "group_key"
    TYPE_FIELD = "group"
    SUBMISSION_ID = "image_id"
    SUBMISSION_ANSWER = "caption"
    SUBMISSION_AOKVQA_FIELD = "caption"

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        if cfg["exclude_from_avg"] is not None and cfg["group_key"] is None:
            raise EvalConfigError(f"{where}: exclude_from_avg needs group_key (the field naming each example's group)")
        excl = cfg["exclude_from_avg"]
        if excl is not None and not isinstance(excl, str) and not all(isinstance(g, str) for g in excl):
            raise EvalConfigError(f"{where}: exclude_from_avg must be a group name or a list of them, got {excl!r}")
        scale = cfg["score_scale"]
        if hasattr(scale, "keys") and set(scale.keys()) - set(CAPTION_METRICS):
            raise EvalConfigError(
                f"{where}: score_scale is one number or a dict over {list(CAPTION_METRICS)}, got keys {sorted(scale)}"
            )

    def _metrics(self, records):
        unscored = len(records) - len(records := [r for r in records if r["references"]])
        if not records:
            return {"unscored": unscored}
        scale = _caption_scales(self.config["score_scale"])
        if self.config["group_key"] is None:
            out = _caption_scores(records, scale)
        else:
            by_group: dict[str, list[dict]] = {}
            for r in records:
                by_group.setdefault(r["group"], []).append(r)
            per_group = {g: _caption_scores(rs, scale) for g, rs in sorted(by_group.items())}
            out = {}
            for g, scores in per_group.items():
                out.update({f"{k}_{safe_metric_name(g)}": v for k, v in scores.items()})
            for k in CAPTION_METRICS:
                out[f"{k}_avg"] = mean([s[k] for s in per_group.values()])
            excl = self.config["exclude_from_avg"]
            excluded = [] if excl is None else [excl] if isinstance(excl, str) else [str(g) for g in excl]
            if excluded:
                kept = [s["cider"] for g, s in per_group.items() if g not in excluded]
                out["cider_avg_no_" + "_".join(safe_metric_name(g) for g in excluded)] = mean(kept)
        return dict(out, unscored=unscored) if unscored else out


# ----------------------------------------------------------------------------------------------------------
# Detection.


@register_evaluator("detection")
class DetectionEvaluator(GenerativeEvaluator):
    """mAP and F1 at an IoU threshold; ground truth is loc-token text (what `detection_targets` writes)."""

    KEYS = dict(GenerativeEvaluator.KEYS, max_decode_len=128, targets_key="suffix", iou_threshold=0.5, id_key=None)

    def _records(self, batch, outputs, rows):
        targets = self._field(batch, self.config["targets_key"])
        ids = self._optional_field(batch, "id_key")
        out = []
        for r, pred in zip(rows, self.texts(outputs, rows)):
            rec = {"prediction": pred, "target": as_text(targets[r])}
            if ids is not None:
                rec["id"] = _id(ids[r])
            out.append(rec)
        return out

    def _metrics(self, records):
        gts = [parse_detections(r["target"]) for r in records]
        res = M.detection_metrics([r["prediction"] for r in records], gts, float(self.config["iou_threshold"]))
        return {k: res[k] for k in ("map", "f1", "precision", "recall")}


# ----------------------------------------------------------------------------------------------------------
# RefCOCO segmentation.

_VQVAE: dict[str, Any] = {}
_VQVAE_LOCK = threading.Lock()
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM")


def load_vqvae(checkpoint: str) -> Any:
    """VQ-VAE params for a `vae-oid.npz` path or "init:SEED" (random; smoke tests only), loaded once."""
    with _VQVAE_LOCK:
        if checkpoint not in _VQVAE:
            if checkpoint.startswith("init:"):
                _VQVAE[checkpoint] = vqvae.init_params(jax.random.key(int(checkpoint[5:])))
            else:
                _VQVAE[checkpoint] = vqvae.load_params(checkpoint, require_encoder=False)
        return _VQVAE[checkpoint]


def decode_mask(value: Any) -> np.ndarray:
    """A ground-truth mask field -> `[H, W]` array (foreground > 0).

    Accepts an array `[H, W]` / `[H, W, 1]`, encoded image bytes (PNG/JPEG, as TFDS stores masks), a JSON nested
    list (as JSONL stores it) or base64 of an encoded image.
    """
    if isinstance(value, np.ndarray) and value.dtype != object:
        arr = value
    else:
        raw = value.item() if isinstance(value, np.ndarray) else value
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        if not isinstance(raw, bytes):
            raise ValueError(f"cannot read a mask from a {type(raw).__name__}")
        if raw.lstrip().startswith(b"["):
            arr = np.asarray(json.loads(raw.decode("utf-8")))
        else:
            if not raw.startswith(_IMAGE_MAGIC):
                try:
                    raw = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError) as e:
                    raise ValueError(
                        "a mask field must be an array, encoded PNG/JPEG bytes, base64 of those, or a JSON nested list"
                    ) from e
            arr = np.asarray(Image.open(io.BytesIO(raw)))
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"a mask must be [H, W] or [H, W, 1], got shape {arr.shape}")
    return arr


@register_evaluator("refcoco_seg")
class RefcocoSegEvaluator(GenerativeEvaluator):
    """RefCOCO referring segmentation: mIoU (VQ-VAE masks) and box accuracy at IoU 0.5 / 0.75."""

    KEYS = dict(
        GenerativeEvaluator.KEYS, max_decode_len=20, vqvae_checkpoint=None, mask_key="mask", box_key="bbox", id_key=None
    )
    DET_IOUS = (0.5, 0.75)

    def _check_config(self, cfg, where):
        super()._check_config(cfg, where)
        if cfg["max_decode_len"] < 20:
            raise EvalConfigError(
                f"{where}: max_decode_len must be >= 20 (4 loc + 16 seg tokens), got {cfg['max_decode_len']}"
            )
        if not cfg["vqvae_checkpoint"]:
            raise EvalConfigError(
                f"{where}: vqvae_checkpoint is required (the vae-oid.npz path, or 'init:0' for "
                f"random weights in smoke tests)"
            )

    def _start_run(self, params):
        self._vqvae = load_vqvae(str(self.config["vqvae_checkpoint"]))
        tok = self.tokenizer
        self._loc0, self._seg0 = tok.loc_id(0), tok.seg_id(0)
        if tok.loc_id(1023) - self._loc0 != 1023 or tok.seg_id(127) - self._seg0 != 127:
            raise ValueError(f"Evaluator {self.name!r}: the tokenizer's <loc>/<seg> ids are not contiguous")

    def _parse(self, tokens: np.ndarray) -> tuple[np.ndarray, bool]:
        return tokens_from_ids([int(t) for t in tokens[:20]], loc0=self._loc0, seg0=self._seg0)

    def _records(self, batch, outputs, rows):
        masks = self._field(batch, self.config["mask_key"])
        boxes = self._optional_field(batch, "box_key")
        ids = self._optional_field(batch, "id_key")
        texts = self.texts(outputs, rows)
        parsed = [self._parse(outputs["tokens"][r]) for r in rows]
        valid = [i for i, (_, ok) in enumerate(parsed) if ok]
        decoded = {}
        if valid:
            codes = np.stack([parsed[i][0][4:] for i in valid]).astype(np.int32)
            for i, m in zip(valid, np.asarray(vqvae.decode_jit(self._vqvae, codes))):
                decoded[i] = m
        out = []
        for i, (r, text) in enumerate(zip(rows, texts)):
            t, ok = parsed[i]
            seg_ids = [int(v) + LOC0 for v in t[:4]] + [int(v) + SEG0 for v in t[4:]] if ok else []
            gt_box = None if boxes is None else [float(v) for v in np.asarray(boxes[r]).reshape(-1)]
            res = M.refcoco_example(
                seg_ids, decode_mask(masks[r]), gt_box, mask64=decoded.get(i), det_ious=self.DET_IOUS
            )
            rec = {
                "prediction": text,
                "seg_ids": seg_ids,
                "iou": res["iou"],
                "box_iou": res["box_iou"],
                "valid": res["valid"],
            }
            if gt_box is not None:
                rec["gt_box"] = gt_box
            if ids is not None:
                rec["id"] = _id(ids[r])
            out.append(rec)
        return out

    def _metrics(self, records):
        out = {"miou": mean([r["iou"] for r in records])}
        for thr in self.DET_IOUS:
            out[f"boxacc@{thr}"] = mean([float(r["box_iou"] >= thr) for r in records])
        out["invalid"] = mean([float(not r["valid"]) for r in records])
        return out
