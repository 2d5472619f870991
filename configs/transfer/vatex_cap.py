r"""VATEX: fine-tune a pretrained PaliGemma (1 or 2) to caption a 10-second video clip; CIDEr on test.

    python -m trainers.train --config configs/transfer/vatex_cap.py --workdir gs://BUCKET/vatex
    python -m trainers.train --config configs/transfer/vatex_cap.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/vatex_cap.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/vatex_cap.py:mode=mock --workdir /tmp/vatex_mock  # CPU

Arguments: res (224 | 448 | 896; the original trained at 224 only), model (paligemma-3b | paligemma2-3b |
paligemma2-10b | paligemma2-28b), final_split (train on train + validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `vatex` TFDS dataset: `python -m datasets.build vatex --manual_dir DIR` (`--help_manual` lists the files):
    one example per clip with its 10 English captions; test = the public test set (English captions v1.1).

Recipe (big_vision configs/proj/paligemma/transfers/vatex_cap.py, its `sweep_best`): 16 frames per clip at 224 px
(`frames_from_video`: 16 x 256 image tokens), prompt `caption en`, one of the 10 captions drawn at random for each
visit of a clip as the target, text_len 64; 10 epochs at batch 128, lr 3e-6, weight decay 3e-7; Adam (b2 0.999),
cosine schedule with 5% warmup, clipping at 1, no label smoothing (docs/reference.md §5). One difference: big_vision's
video reader took 16 frames 7 frames apart from a random start (training) or the first frame (evaluation); here the
frames are the centres of 16 equal parts of the clip (`datasets.video.sample_indices`), in training, evaluation and
`tools.predict` alike.
Evaluation: CIDEr-D x100 (with BLEU-4 and ROUGE-L; PTB tokenisation as the COCO caption toolkit) of greedy captions
of up to 64 tokens against the 10 references: on the validation split every 25% of the run and at the end, and on the
test split at the end. `vatex_test/cider` is the model card's VATEX number.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common, recipes

DATASET = "vatex"
INPUT = recipes.Input("video", prompt="caption en", target="captions", text_len=64)
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The VATEX captioning run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=10, lr=3e-6, wd=3e-7)
    caption = recipes.caption_eval(INPUT.eval_pp(arg, arg.num_frames), batch_size=256, max_decode_len=INPUT.text_len)
    recipes.add_evals(config, arg, caption, DATASET, {"vatex_val": "validation", "vatex_test": "test"})
    return recipes.finish(config, arg, INPUT, arg.num_frames)
