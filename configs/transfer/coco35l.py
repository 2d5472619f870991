r"""COCO-35L: fine-tune a pretrained PaliGemma (1 or 2) to caption in 35 languages; scored on COCO-35L and XM3600.

    python -m trainers.train --config configs/transfer/coco35l.py --workdir gs://BUCKET/coco35l_224
    python -m trainers.train --config configs/transfer/coco35l.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/coco35l.py:mode=mock --workdir /tmp/coco35l_mock  # CPU smoke

Arguments: res (224 default | 448: the card's two columns | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation: then only XM3600 is scored), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `coco35l` TFDS dataset: `python -m datasets.build coco35l --manual_dir DIR` (the COCO-35L caption files and
    the COCO 2014 images) and the `xm3600` one: `python -m datasets.build xm3600 --manual_dir DIR2` (`--help_manual`
    lists the files of each). Both hold one example per (image, language).

Recipe (big_vision configs/proj/paligemma/transfers/coco35l.py, its defaults and `sweep_best`): prompt
`caption {language}` ("caption de", ...), one of the image's captions in that language drawn at random per visit as
the target, text_len 32; all 35 languages in one shuffled stream (big_vision mixes 35 equal per-language streams; each
language has the same images, so the mix is the same); 5 x 566,435 = 2,832,175 examples (5 "epochs" of one
language's captions, as big_vision counts: about 0.71 passes over the 35 x 113,287 (image, language) examples) at
batch 256, lr 1e-5, weight decay 1e-6, no label smoothing; Adam (b2 0.999), cosine schedule with 5% warmup, clipping
at 1 (docs/reference.md §5).
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of greedy captions (at most 32 tokens) against the captions in the
prompt's language, the official files' tokenized captions, x100 as in the model card (`score_scale=100`), each
language scored on its own (`group_key="language"`: document frequencies from that language's references). Entries:
  * `coco35l_dev`: the COCO-35L dev split (validation), all 35 languages, at the end: `cider_en`, `cider_avg_no_en`
    (the mean over the 34 other languages) and `cider_avg` (all 35) are the card's "CIDEr dev (en/avg-34/avg)";
  * `coco35l_dev7`: 7 representative languages of it (ar, bn, en, id, sw, tr, zh, as big_vision's frequent
    evaluations), every 25% of the run;
  * `xm3600`: Crossmodal-3600 in the 35 COCO-35L languages (its 36th, Cusco Quechua, is left out as in big_vision's
    reported metrics), at the end: the card's "XM3600 (Eval of COCO-35L transfer)" en / avg-34 / avg row.
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes
from datasets.builders.coco35l.coco35l_dataset_builder import LANGUAGES

DATASET = "coco35l"
INPUT = recipes.Input("image", prompt="caption {language}", target="captions", text_len=32, id_key="id")
FREQUENT_LANGUAGES = ("ar", "bn", "en", "id", "sw", "tr", "zh")  # big_vision's subset for evaluations during the run
TOTAL_EXAMPLES = 5 * 566_435  # 5 epochs of the 566,435 English (image, caption) pairs: big_vision's sweep_best


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The COCO-35L run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(arg, INPUT, DATASET, batch_size=256, epochs=1, lr=1e-5, wd=1e-6)
    config.total_epochs = None
    config.total_examples = TOTAL_EXAMPLES
    caption = recipes.caption_eval(
        INPUT.eval_pp(arg, extra_keys=("language",)),
        batch_size=256,
        max_decode_len=INPUT.text_len,
        group_key="language",
        exclude_from_avg="en",
    )
    recipes.add_evals(config, arg, caption, DATASET, {"coco35l_dev7": "validation", "coco35l_dev": "validation"})
    if "coco35l_dev7" in config.evals:
        config.evals.coco35l_dev7.data.where = dict(language=list(FREQUENT_LANGUAGES))
    recipes.add_evals(config, arg, caption, "xm3600", {"xm3600": "test"}, log_percent=None)
    config.evals.xm3600.data.where = dict(language=list(LANGUAGES))
    config = recipes.finish(config, arg, INPUT)
    if arg.mode == "mock":
        config.total_examples = None  # the mock run counts steps
        for name in config.evals:
            if "where" in config.evals[name].data:
                del config.evals[name].data["where"]  # mock languages are random words: nothing would match
    return config
