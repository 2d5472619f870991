r"""ActivityNet Captions: fine-tune a pretrained PaliGemma (1 or 2) to caption a video segment; CIDEr on test.

    python -m trainers.train --config configs/transfer/activitynet_cap.py --workdir gs://BUCKET/anet_cap
    python -m trainers.train --config configs/transfer/activitynet_cap.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/activitynet_cap.py:final_split=true --workdir ...  # + validation
    python -m trainers.train --config configs/transfer/activitynet_cap.py:mode=mock --workdir /tmp/anet_mock  # CPU

Arguments: res (224 | 448 | 896; the original trained at 224 only), model (paligemma-3b | paligemma2-3b |
paligemma2-10b | paligemma2-28b), final_split (train on train + validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `activitynet_captions` TFDS dataset: `python -m datasets.build activitynet_captions --manual_dir DIR`
    (`--help_manual` lists the files). One example per annotated segment (its clip cut out of the video) with its
    one sentence; validation = the official val_1, test = val_2, as the original.

Recipe (big_vision configs/proj/paligemma/transfers/activitynet_cap.py, its `sweep_best`): 16 frames per segment at
224 px (`frames_from_video`: the image tokens of the frames are concatenated, 16 x 256 = 4,096), prompt `caption en`,
the segment's sentence as the target, text_len 64; 1 epoch at batch 128, lr 1e-5, weight decay 1e-6, the image
encoder frozen; Adam (b2 0.999), cosine schedule with 5% warmup, clipping at 1, no label smoothing
(docs/reference.md §5). One difference: big_vision's video reader took 16 frames 30 frames apart from a random start
(training) or the first frame (evaluation); here the frames are the centres of 16 equal parts of the segment
(`datasets.video.sample_indices`), the same in training, evaluation and `tools.predict`.
Evaluation: CIDEr-D x100 (with BLEU-4 and ROUGE-L; the COCO caption toolkit's PTB tokenisation), greedy decoding of up
to 64 tokens, against the segment's sentence: on the first 1,000 validation segments every 25% of the run, and on the
full validation and test splits at the end. `anet_cap_test/cider` is the model card's ActivityNet-CAP number.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common, recipes

DATASET = "activitynet_captions"
INPUT = recipes.Input("video", prompt="caption en", target="captions", text_len=64)
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ActivityNet Captions run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(
        arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=1, lr=1e-5, wd=1e-6, freeze_image_encoder=True
    )  # sweep_best: freeze_vit=True
    caption = recipes.caption_eval(INPUT.eval_pp(arg, arg.num_frames), batch_size=256, max_decode_len=INPUT.text_len)
    splits = {"anet_cap_minival": "validation[:1000]", "anet_cap_val": "validation", "anet_cap_test": "test"}
    recipes.add_evals(config, arg, caption, DATASET, splits)
    return recipes.finish(config, arg, INPUT, arg.num_frames)
