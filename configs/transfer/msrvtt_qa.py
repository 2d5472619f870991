r"""MSRVTT-QA: fine-tune a pretrained PaliGemma (1 or 2) to answer questions about short videos; accuracy.

    python -m trainers.train --config configs/transfer/msrvtt_qa.py --workdir gs://BUCKET/msrvtt_qa_224
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:final_split=true --workdir ...  # train + val
    python -m trainers.train --config configs/transfer/msrvtt_qa.py:mode=mock --workdir /tmp/msrvtt_qa_mock  # CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (train on train +
validation), num_frames (16), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` and `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`.
  * the `msrvtt_qa` TFDS dataset: `python -m datasets.build msrvtt_qa --manual_dir DIR` (`--help_manual` lists the
    files; the clips are MSR-VTT's).

Recipe (big_vision configs/proj/paligemma/transfers/msrvtt_qa.py, its `sweep_best`): 16 frames at 224 px per clip
(`frames_from_video`, [16, 224, 224, 3]), prompt `answer en {question}`, target the answer, text_len 64; 1 epoch at
batch 128, lr 1e-5, no weight decay, the image encoder frozen (`freeze`), Adam (b2 0.999), cosine schedule with 5%
warmup, clipping at 1 (docs/reference.md §5). As in msrvtt_cap.py, the 16 frames are spread uniformly over the clip
(`datasets.video.sample_indices`) where big_vision's DMVR reader takes them at a stride of 9.
Evaluation: accuracy, exact match of the greedy answer (at most 16 tokens; the answers are single words) with the
one reference after the VQA answer normalisation (`vqa` evaluator, `normalize="always"`; big_vision compares the
raw strings): on validation every 25% of the run, on test (the model card's number) at the end.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls, float32 master weights, remat
"full". Slice: planned as for one image with as many tokens (`common.token_equivalent_res`: 16 x 224 px as 896 px).
"""

import ml_collections

from configs import common, recipes

DATASET = "msrvtt_qa"
INPUT = recipes.Input("video", prompt="answer en {question}", target="answers", text_len=64)
NUM_FRAMES = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MSRVTT-QA run; `arg` = "res=224,model=paligemma-3b,final_split=false,num_frames=N,mode=real"."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, num_frames=NUM_FRAMES, mode="real")
    config = recipes.training(arg, INPUT, DATASET, arg.num_frames, batch_size=128, epochs=1, freeze_image_encoder=True)
    qa = recipes.qa_eval(INPUT.eval_pp(arg, arg.num_frames), batch_size=128, normalize="always", max_decode_len=16)
    recipes.add_evals(config, arg, qa, DATASET, {"msrvtt_qa_val": "validation", "msrvtt_qa_test": "test"})
    return recipes.finish(config, arg, INPUT, arg.num_frames)
