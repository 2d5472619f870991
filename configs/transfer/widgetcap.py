r"""Widget Captioning: fine-tune a pretrained PaliGemma (1 or 2) to say what a marked element of an app screen does.

    python -m trainers.train --config configs/transfer/widgetcap.py --workdir gs://BUCKET/widgetcap_224
    python -m trainers.train --config configs/transfer/widgetcap.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/widgetcap.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/widgetcap.py:mode=mock --workdir /tmp/widgetcap_mock  # CPU

Arguments: res (224 default | 448: the card's two columns | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation, as the card's "Widget Captioning (train+dev)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `widget_caption` TFDS dataset: `python -m datasets.build widget_caption --manual_dir DIR` (the Widget
    Captioning CSV and splits with the RICO screenshots and view hierarchies; `--help_manual` lists the files): one
    example per UI element with its box.

Recipe (big_vision configs/proj/paligemma/transfers/widgetcap.py, its defaults and `sweep_best`): the screenshot
resized to res x res with the element's box drawn on it as a one-pixel red outline (pp op `draw_box`, after the
resize, so the line is one pixel at the model's resolution); prompt `caption en` (the box, not the text, says which
element); one of the element's captions drawn at random per visit as the target, text_len 32; 4 epochs at batch 64,
lr 3e-6, weight decay 3e-7, label smoothing 0.1, dropout 0.1 in the language model; Adam (b2 0.999), cosine
schedule with 5% warmup, clipping at 1 (docs/reference.md §5).
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of greedy captions (at most 32 tokens) against the element's
references, x100 as in the model card (`score_scale=100`): on the validation split ("dev") every 10% of the run and
at the end (not with final_split, which trains on it), on the test split at the end: `widgetcap_test/cider` is the
card's "CIDEr (test)".
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "widget_caption"
INPUT = recipes.Input(
    "image",
    prompt="caption en",
    target="captions",
    text_len=32,
    id_key="id",
    image_ops='draw_box(box_key="bbox", color=(255, 0, 0))',  # the element's box, drawn after the resize
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Widget Captioning run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=64, epochs=4, lr=3e-6, wd=3e-7, label_smoothing=0.1, shuffle_buffer_size=50_000
    )
    config.model.llm.dropout = 0.1
    caption = recipes.caption_eval(INPUT.eval_pp(arg), batch_size=256, max_decode_len=INPUT.text_len)
    recipes.add_evals(
        config, arg, caption, DATASET, {"widgetcap_val": "validation", "widgetcap_test": "test"}, log_percent=0.1
    )
    return recipes.finish(config, arg, INPUT)
