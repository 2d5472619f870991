r"""MSR-VTT captioning: fine-tune a pretrained PaliGemma (1 or 2) to caption short videos, scored by CIDEr (x100).

    python -m trainers.train --config configs/transfer/msrvtt_cap.py --workdir gs://BUCKET/msrvtt_cap_224
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:final_split=true --workdir ...  # train + val
    python -m trainers.train --config configs/transfer/msrvtt_cap.py:mode=mock --workdir /tmp/msrvtt_mock  # CPU smoke

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on train +
validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `msrvtt` TFDS dataset: `python -m datasets.build msrvtt --manual_dir DIR` (`--help_manual` lists the files).

Recipe (big_vision configs/proj/paligemma/transfers/msrvtt_cap.py, its `sweep_best`): 16 frames at 224 px per clip
(`frames_from_video`: decoded with PyAV, [16, 224, 224, 3]; the model concatenates their image tokens), prompt
`caption en`, one of the clip's 20 captions drawn at random per visit, text_len 32; 20 epochs at batch 128, lr 1e-5,
no weight decay, the image encoder frozen (`freeze`: no gradient, no optimizer state; big_vision gives it no
schedule), Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1 (docs/reference.md §5). One difference:
big_vision's DMVR reader takes 16 frames at a stride of 9 from a (random, at eval the first) start; here the 16
frames are spread uniformly over the whole clip (`datasets.video.sample_indices`), in training and evaluation.
Evaluation: CIDEr-D (with BLEU-4 and ROUGE-L) of greedy captions (at most 32 tokens) against all references,
reported x100 as in the model card (`score_scale=100`): on validation every 25% of the run, on test (the model
card's number) at the end.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common, recipes

DATASET = "msrvtt"
INPUT = recipes.Input("video", prompt="caption en", target="captions", text_len=32)
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSR-VTT captioning run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=20, freeze_image_encoder=True)
    caption = recipes.caption_eval(INPUT.eval_pp(arg, arg.num_frames), batch_size=64, max_decode_len=INPUT.text_len)
    recipes.add_evals(config, arg, caption, DATASET, {"msrvtt_val": "validation", "msrvtt_test": "test"})
    return recipes.finish(config, arg, INPUT, arg.num_frames)
