r"""Screen2words: fine-tune a pretrained PaliGemma (1 or 2) to summarise a mobile app screen in a sentence.

    python -m trainers.train --config configs/transfer/screen2words.py --workdir gs://BUCKET/screen2words_224
    python -m trainers.train --config configs/transfer/screen2words.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/screen2words.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/screen2words.py:mode=mock --workdir /tmp/s2w_mock  # CPU

Arguments: res (224 default | 448: the card's two columns | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation, as the card's "Screen2words (train+dev)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `screen2words` TFDS dataset: `python -m datasets.build screen2words --manual_dir DIR` (the Screen2words
    summaries and splits with the RICO screenshots; `--help_manual` lists the files): one example per screen.

Recipe (big_vision configs/proj/paligemma/transfers/screen2words.py, its defaults): prompt `caption en`, one of the
screen's 5 summaries drawn at random per visit as the target, text_len 24; 10 epochs at batch 256, lr 1e-5, no
weight decay, label smoothing 0.2; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1
(docs/reference.md §5).
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of greedy summaries (at most 24 tokens) against the 5 references, x100
as in the model card (`score_scale=100`): on the validation split ("dev") every 10% of the run and at the end (not
with final_split, which trains on it), on the test split at the end: `screen2words_test/cider` is the card's
"CIDEr (test)".
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "screen2words"
INPUT = recipes.Input("image", prompt="caption en", target="captions", text_len=24, id_key="screen_id")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Screen2words run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=256, epochs=10, lr=1e-5, label_smoothing=0.2, shuffle_buffer_size=20_000
    )
    caption = recipes.caption_eval(
        INPUT.eval_pp(arg), batch_size=256, max_decode_len=INPUT.text_len, id_key="screen_id"
    )
    recipes.add_evals(
        config, arg, caption, DATASET, {"screen2words_val": "validation", "screen2words_test": "test"}, log_percent=0.1
    )
    return recipes.finish(config, arg, INPUT)
