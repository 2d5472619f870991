r"""TextCaps: fine-tune a pretrained PaliGemma (1 or 2) to caption pictures whose description needs their text.

    python -m trainers.train --config configs/transfer/textcaps.py --workdir gs://BUCKET/textcaps_224
    python -m trainers.train --config configs/transfer/textcaps.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/textcaps.py:final_split=true --workdir ...  # test submission
    python -m trainers.train --config configs/transfer/textcaps.py:mode=mock --workdir /tmp/textcaps_mock  # CPU

Arguments: res (224 default | 448: the card's two columns | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation and caption only the test split, for the server), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `textcaps` TFDS dataset: `python -m datasets.build textcaps --manual_dir DIR` (TextCaps 0.1 and the TextVQA
    images; `--help_manual` lists the files): one example per image with its reference captions.

Recipe (big_vision configs/proj/paligemma/transfers/textcaps.py, its defaults and `sweep_best`): prompt
`caption en`, one of the image's 5 captions drawn at random per visit and lower-cased as the target, text_len 32;
5 epochs at batch 256, lr 1e-5, weight decay 1e-6, no label smoothing; Adam (b2 0.999), cosine schedule with 5%
warmup, clipping at 1 (docs/reference.md §5). big_vision held out the last 2% of train for tuning; here the card's
"TextCaps (train)" run trains on the whole train split.
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L; the COCO toolkit's PTB tokenisation lower-cases) of beam-3 captions
(at most 32 tokens) against all references, x100 as in the model card (`score_scale=100`): on the validation split
every 10% of the run and at the end, `textcaps_val/cider` being the card's "CIDEr (val)". The test split has no
captions: at the end its captions are written as the evaluation server's submission file,
`[{"image_id": ..., "caption": ...}]` (`textcaps_test` in the workdir's evals/).
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "textcaps"
# big_vision's TextCaps transfer trains on the lower-cased caption.
INPUT = recipes.Input(
    "image", prompt="caption en", target="captions", text_len=32, id_key="image_id", lower_target=True
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The TextCaps run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=256, epochs=5, lr=1e-5, wd=1e-6, shuffle_buffer_size=50_000
    )
    caption = recipes.caption_eval(
        INPUT.eval_pp(arg),
        batch_size=common.beam_eval_batch(arg.model, arg.res, beams=3),  # the beams' KV caches must fit
        max_decode_len=INPUT.text_len,
        sampler="beam(n=3)",
        id_key="image_id",
    )
    recipes.add_evals(
        config, arg, caption, DATASET, {"textcaps_val": "validation", "textcaps_test": "test"}, log_percent=0.1
    )
    return recipes.finish(config, arg, INPUT)
