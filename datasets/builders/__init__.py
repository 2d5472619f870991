"""This project's own TFDS builders, one package per builder.

Importing a builder package registers its `tfds.core.GeneratorBasedBuilder` under its TFDS name (TFDS registers a
builder class when it is defined). `register_all()` imports every package listed in `BUILDERS`; `datasets.sources` and
the CLIs call it, so `tfds.builder("easy_vqa")` works after `import datasets.sources`.

| TFDS name   | package                          | needs manual files | what                                      |
|-------------|----------------------------------|--------------------|-------------------------------------------|
| `easy_vqa`  | `datasets.builders.easy_vqa`     | no (pip package)   | easy-VQA, 38,575 / 9,673 questions        |
| `vqa`       | `datasets.builders.vqa`          | yes                | VQAv2 (COCO 2014 images + official JSON)  |
| `refcoco`   | `datasets.builders.refcoco`      | yes                | RefCOCO/+/g, one example per expression   |
| `docvqa`    | `datasets.builders.docvqa`       | yes                | DocVQA single page, one per question      |
| `nocaps`    | `datasets.builders.nocaps`       | yes                | NoCaps val/test, one per image            |
| `nlvr2`     | `datasets.builders.nlvr2`        | yes                | NLVR2, one per sentence (image pair)      |
| `marvl`     | `datasets.builders.marvl`        | yes                | MaRVL, test split per language (5)        |
| `msrvtt`    | `datasets.builders.msrvtt`       | yes                | MSR-VTT captioning, one per clip (bytes)  |
| `msrvtt_qa` | `datasets.builders.msrvtt_qa`    | yes                | MSRVTT-QA, one per question with its clip |
| `activitynet_captions` | `datasets.builders.activitynet_captions` | yes | ActivityNet Captions, one per segment |
| `activitynet_qa` | `datasets.builders.activitynet_qa` | yes | ActivityNet-QA, one per question with its video |
| `vatex`     | `datasets.builders.vatex`        | yes                | VATEX English captions, one per clip      |
| `msvd_qa`   | `datasets.builders.msvd_qa`      | yes                | MSVD-QA, one per question with its clip   |
| `coco35l`   | `datasets.builders.coco35l`      | yes                | COCO-35L, one per (image, language)       |
| `xm3600`    | `datasets.builders.xm3600`       | yes                | Crossmodal-3600, one per (image, language)|
| `textcaps`  | `datasets.builders.textcaps`     | yes                | TextCaps 0.1, one per image               |
| `scicap`    | `datasets.builders.scicap`       | yes                | SciCap first sentence, no subfig; figures |
| `screen2words` | `datasets.builders.screen2words` | yes            | Screen2words, one per RICO screen         |
| `widget_caption` | `datasets.builders.widget_caption` | yes        | Widget Captioning, one per UI element     |
| `okvqa`     | `datasets.builders.okvqa`        | yes                | OK-VQA v1.1, one per question (COCO 2014) |
| `aokvqa`    | `datasets.builders.aokvqa`       | yes                | A-OKVQA v1.0, one per question (COCO 2017)|
| `gqa`       | `datasets.builders.gqa`          | yes                | GQA balanced questions, one per question  |
| `xgqa`      | `datasets.builders.xgqa`         | yes                | xGQA zero-shot test, a split per language |
| `vizwiz_vqa` | `datasets.builders.vizwiz_vqa`  | yes                | VizWiz VQA, one per question (image)      |
| `textvqa`   | `datasets.builders.textvqa`      | yes                | TextVQA 0.5.1, one per question           |
| `stvqa`     | `datasets.builders.stvqa`        | yes                | ST-VQA task 3, one per question           |
| `infovqa`   | `datasets.builders.infovqa`      | yes                | InfographicVQA, one per question          |
| `ocrvqa`    | `datasets.builders.ocrvqa`       | yes                | OCR-VQA, one per question (book covers)   |
| `chartqa`   | `datasets.builders.chartqa`      | yes                | ChartQA human + augmented, one per question|
| `ai2d`      | `datasets.builders.ai2d`         | yes                | AI2D diagrams, one per question           |
| `scienceqa` | `datasets.builders.scienceqa`    | yes                | ScienceQA image questions (IMG subset)    |
| `rsvqa_lr`  | `datasets.builders.rsvqa_lr`     | yes                | RSVQA-LR non-numeric, one per question    |
| `rsvqa_hr`  | `datasets.builders.rsvqa_hr`     | yes                | RSVQA-HR non-numeric, one per question    |
| `tallyqa`   | `datasets.builders.tallyqa`      | yes                | TallyQA counting, one per question        |
| `pope`      | `datasets.builders.pope`         | yes                | POPE yes/no, a split per setting (3)      |
| `mmvp`      | `datasets.builders.mmvp`         | yes                | MMVP, 300 questions in 150 pairs          |

Shared file handling (reading the official JSON/JSONL, image/video files, the `EncodedVideo` feature) is in
`datasets.builders.common`. Stock TFDS datasets (`coco_captions`, `ref_coco`, ...) are used by name and need no
entry here.
"""

from __future__ import annotations

import importlib

# TFDS name -> module that defines (and so registers) the builder.
BUILDERS = {
    "easy_vqa": "datasets.builders.easy_vqa",
    "vqa": "datasets.builders.vqa",
    "refcoco": "datasets.builders.refcoco",
    "docvqa": "datasets.builders.docvqa",
    "nocaps": "datasets.builders.nocaps",
    "nlvr2": "datasets.builders.nlvr2",
    "marvl": "datasets.builders.marvl",
    "msrvtt": "datasets.builders.msrvtt",
    "msrvtt_qa": "datasets.builders.msrvtt_qa",
    "activitynet_captions": "datasets.builders.activitynet_captions",
    "activitynet_qa": "datasets.builders.activitynet_qa",
    "vatex": "datasets.builders.vatex",
    "msvd_qa": "datasets.builders.msvd_qa",
    "ai2d": "datasets.builders.ai2d",
    "scienceqa": "datasets.builders.scienceqa",
    "rsvqa_lr": "datasets.builders.rsvqa_lr",
    "rsvqa_hr": "datasets.builders.rsvqa_hr",
    "tallyqa": "datasets.builders.tallyqa",
    "pope": "datasets.builders.pope",
    "mmvp": "datasets.builders.mmvp",
    "coco35l": "datasets.builders.coco35l",
    "xm3600": "datasets.builders.xm3600",
    "textcaps": "datasets.builders.textcaps",
    "scicap": "datasets.builders.scicap",
    "screen2words": "datasets.builders.screen2words",
    "widget_caption": "datasets.builders.widget_caption",
    "okvqa": "datasets.builders.okvqa",
    "aokvqa": "datasets.builders.aokvqa",
    "gqa": "datasets.builders.gqa",
    "xgqa": "datasets.builders.xgqa",
    "vizwiz_vqa": "datasets.builders.vizwiz_vqa",
    "textvqa": "datasets.builders.textvqa",
    "stvqa": "datasets.builders.stvqa",
    "infovqa": "datasets.builders.infovqa",
    "ocrvqa": "datasets.builders.ocrvqa",
    "chartqa": "datasets.builders.chartqa",
}


def register_all() -> None:
    """Imports all of this project's builder packages (idempotent)."""
    for module in BUILDERS.values():
        importlib.import_module(module)


def get_builder_class(name: str):
    """The builder class of one of this project's datasets (`name` may carry a `/config` suffix)."""
    base = name.split("/")[0].split(":")[0]
    if base not in BUILDERS:
        raise KeyError(f"{base!r} is not one of this project's TFDS builders: {sorted(BUILDERS)}")
    return importlib.import_module(BUILDERS[base]).Builder
