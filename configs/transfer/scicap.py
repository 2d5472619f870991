r"""SciCap: fine-tune a pretrained PaliGemma (1 or 2) to caption graph plots of scientific papers.

    python -m trainers.train --config configs/transfer/scicap.py --workdir gs://BUCKET/scicap_224
    python -m trainers.train --config configs/transfer/scicap.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/scicap.py:final_split=true --workdir ...  # the card's run
    python -m trainers.train --config configs/transfer/scicap.py:mode=mock --workdir /tmp/scicap_mock  # CPU

Arguments: res (224 default | 448: the card's two columns | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}),
final_split (train on train + validation, as the card's "SciCap (train+val)"), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `scicap` TFDS dataset: `python -m datasets.build scicap --manual_dir DIR` (the SciCap release; `--help_manual`
    lists the files): the First-Sentence / No-Subfig figures, one example per figure with its caption.

Recipe (big_vision configs/proj/paligemma/transfers/scicap.py, its defaults): prompt `caption en`, the figure's one
caption (SciCap's lower-cased, tokenized caption with the figure index removed) as the target, text_len 96; 80
epochs at batch 256, lr 3e-5, no weight decay, label smoothing 0.1; Adam (b2 0.999), cosine schedule with 5% warmup,
clipping at 1 (docs/reference.md §5).
Evaluation: CIDEr-D, BLEU-4 and ROUGE-L of greedy captions (at most 96 tokens) against the one reference, CIDEr
and ROUGE-L x100, BLEU-4 as a fraction (`score_scale` per metric, as the card prints them): on the validation split
every 30% of the run and at the end (not with final_split, which trains on it), on the test split at the end. The
card's "CIDEr/BLEU-4 (test)" is `scicap_test/cider` (e.g. 162.25) and `scicap_test/bleu4` (e.g. 0.192).
Compute and slice: `RELEASED_COMPUTE` (bfloat16 compute, float32 weights, remat "full") and the slice planned by
`common.fit_released_slice` for the model and resolution (README table).
"""

import ml_collections

from configs import common, recipes

DATASET = "scicap"
INPUT = recipes.Input("image", prompt="caption en", target="caption", text_len=96, choose=False, id_key="image_id")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The SciCap run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, batch_size=256, epochs=80, lr=3e-5, label_smoothing=0.1, shuffle_buffer_size=50_000
    )
    caption = recipes.caption_eval(
        INPUT.eval_pp(arg),
        batch_size=256,
        max_decode_len=INPUT.text_len,
        references_key="caption",
        id_key="image_id",
        score_scale=dict(cider=100.0, rouge_l=100.0),  # BLEU-4 as a fraction, as the card prints it
    )
    recipes.add_evals(
        config, arg, caption, DATASET, {"scicap_val": "validation", "scicap_test": "test"}, log_percent=0.3
    )
    return recipes.finish(config, arg, INPUT)
