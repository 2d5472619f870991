"""All metric functions of the project, re-exported from their family modules.

Pure functions (numpy / Python; `per_example_nll` uses jax.numpy); no TensorFlow, no Java, nothing downloaded.

  VQA            vqa_accuracy, vqa_accuracy_always_normalize (TextVQA / VizWiz), normalize_vqa_answer,
                 vqa_aggregate, exact_match_accuracy (GQA, OCR-VQA, ...)  (evaluators.vqa)
  DocVQA etc.    anls, levenshtein                                        (evaluators.anls)
  Captioning     cider (CIDEr-D), bleu, bleu4, rouge_l, ptb_tokenize      (evaluators.caption, .ptb_tokenizer)
  ChartQA        relaxed_accuracy                                         (evaluators.chartqa)
  TallyQA        tallyqa_accuracy, tallyqa_aggregate, normalize_count     (evaluators.tallyqa)
  POPE           pope_metrics, parse_yes_no                               (evaluators.pope)
  ScienceQA      scienceqa_accuracy, parse_scienceqa_answer               (evaluators.scienceqa)
  RSVQA          rsvqa_accuracy, rsvqa_aggregate, normalize_rsvqa_answer  (evaluators.rsvqa)
  A-OKVQA MC     multiple_choice_accuracy, option_letter                  (evaluators.multiple_choice)
  MMVP           mmvp_correct, paired_accuracy                            (evaluators.multiple_choice)
  RefCOCO        refcoco_iou, refcoco_example, refcoco_metrics, resize_bilinear_pil   (evaluators.refcoco)
  Detection      detection_metrics, detection_map, detection_f1, box_iou  (evaluators.detection)
  Perplexity     per_example_nll, perplexity                              (evaluators.perplexity)
"""

from evaluators.anls import anls, levenshtein
from evaluators.caption import bleu, bleu4, cider, rouge_l
from evaluators.chartqa import relaxed_accuracy
from evaluators.detection import (
    average_precision,
    box_iou,
    detection_f1,
    detection_map,
    detection_metrics,
    parse_detection_output,
)
from evaluators.multiple_choice import mmvp_correct, multiple_choice_accuracy, option_letter, paired_accuracy
from evaluators.perplexity import per_example_nll, perplexity
from evaluators.pope import parse_yes_no, pope_metrics
from evaluators.ptb_tokenizer import ptb_tokenize, ptb_tokenize_batch
from evaluators.refcoco import refcoco_example, refcoco_iou, refcoco_metrics, resize_bilinear_pil
from evaluators.rsvqa import normalize_rsvqa_answer, rsvqa_accuracy, rsvqa_aggregate
from evaluators.scienceqa import parse_scienceqa_answer, scienceqa_accuracy
from evaluators.tallyqa import normalize_count, tallyqa_accuracy, tallyqa_aggregate
from evaluators.vqa import (
    exact_match_accuracy,
    normalize_vqa_answer,
    vqa_accuracy,
    vqa_accuracy_always_normalize,
    vqa_aggregate,
)

__all__ = [
    "vqa_accuracy",
    "vqa_accuracy_always_normalize",
    "normalize_vqa_answer",
    "vqa_aggregate",
    "exact_match_accuracy",
    "anls",
    "levenshtein",
    "cider",
    "bleu",
    "bleu4",
    "rouge_l",
    "ptb_tokenize",
    "ptb_tokenize_batch",
    "relaxed_accuracy",
    "tallyqa_accuracy",
    "tallyqa_aggregate",
    "normalize_count",
    "pope_metrics",
    "parse_yes_no",
    "scienceqa_accuracy",
    "parse_scienceqa_answer",
    "rsvqa_accuracy",
    "rsvqa_aggregate",
    "normalize_rsvqa_answer",
    "multiple_choice_accuracy",
    "option_letter",
    "mmvp_correct",
    "paired_accuracy",
    "refcoco_iou",
    "refcoco_example",
    "refcoco_metrics",
    "resize_bilinear_pil",
    "detection_metrics",
    "detection_map",
    "detection_f1",
    "box_iou",
    "average_precision",
    "parse_detection_output",
    "per_example_nll",
    "perplexity",
]
