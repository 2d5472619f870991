r"""RefCOCO referring segmentation, scored by mIoU.

Fine-tunes a pretrained PaliGemma to output a box and a mask for a referring expression (`segment {expression}` ->
4 <loc> + 16 <seg> tokens).

    python -m trainers.train --config configs/transfer/refcoco_seg.py --workdir gs://BUCKET/refcoco_seg_448
    python -m trainers.train --config configs/transfer/refcoco_seg.py:res=224,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/refcoco_seg.py:final_split=true --workdir ...
    python -m trainers.train --config configs/transfer/refcoco_seg.py:mode=mock --workdir /tmp/seg_mock  # CPU smoke run

Arguments: res (448 default | 224 | 896), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (evaluate on
the test splits too; a single dataset also trains on its validation split), dataset (refcocox_combined, the
model card's row, default | refcoco_unc | refcocoplus_unc | refcocog_umd ...), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz`, `paligemma_tokenizer.model` and the segmentation VQ-VAE
    `vae-oid.npz` (`--config.vae=PATH` points elsewhere).
  * this project's `refcoco` TFDS dataset: `python -m datasets.build refcoco/refcocox_combined --manual_dir DIR`,
    and `refcoco/refcoco_unc`, `refcoco/refcocoplus_unc`, `refcoco/refcocog_umd` for the evaluations
    (`--help_manual` lists the files: COCO train2014 images + the refer annotations).

Recipe, the model card's RefCOCO row (dataset=refcocox_combined: refcoco, refcoco+ and refcocog trained together,
without any of their validation and test images; big_vision configs/proj/paligemma/transfers/refcoco_seg.py and its
sweep_best): 100 epochs, label smoothing 0.3, text_len 48; at 224 px lr 3e-5, batch 256, LLM dropout 0.1; at 448 px
lr 1e-5, batch 256; at 896 px lr 1e-5, batch 64. Adam (b2 0.999), cosine with 5% warmup, clipping at 1, no weight
decay (docs/reference.md §5). One dataset alone (dataset=refcoco_unc, ...): 448px, batch 64, lr 1e-5, label
smoothing 0.3, 10 epochs (our choice). Targets: the object's mask is cropped to its
box, encoded by the VQ-VAE into 16 codes and written after the box's 4 loc tokens; one of the object's expressions is
drawn at random per visit. Evaluation: greedy decoding, masks decoded by the VQ-VAE and pasted into the predicted box;
mIoU (the mean over expressions of the mask IoU) and box accuracy at IoU 0.5 / 0.75, every 10% and at the end. The
combined run evaluates the validation split of each of the three (`seg_refcoco_validation/miou`,
`seg_refcocoplus_validation/miou`, `seg_refcocog_validation/miou`: the card's three numbers), and with final_split also
refcoco / refcoco+ testA and testB and refcocog test at the end.
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls with float32 master weights and
Adam moments, every layer of both towers rematerialised ("full"), the loss's logits only at the suffix tokens.
Slice (configs/common.py `RELEASED_SLICES`, checked with `--dry_run`, README table): 3B (PaliGemma 1 or 2) on v5e-8
at 224 px, v5e-16 at 448, v5e-32 at 896; 10B on v5e-32 (896: v5e-64); 28B on v5e-64 (448 and 896: v5e-128); FSDP
over all chips (28B at 896: plus a tensor axis of 4), accum_steps = batch / (batch shards x examples per shard).
"""

import ml_collections

from configs import common

IMAGE = "decode|resize({res}, antialias=True)|value_range(-1, 1)|"
TRAIN_PP = (
    IMAGE + 'choice(inkey="refexps", outkey="expression")|strfmt("segment {{expression}}", outkey="prefix")'
    '|decode(key="mask", channels=1)'
    '|segmentation_targets(vae_checkpoint="{vae}", masks_key="mask", boxes_key="bbox")'
    '|tok_paligemma(text_len={text_len})|keep("image", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    IMAGE + 'strfmt("segment {{refexp}}", outkey="prefix")|tok_paligemma_prompt(text_len={text_len})'
    '|keep("image", "text", "mask_ar", "mask_input", "mask", "bbox", "refexp_id")'
)


# big_vision's sweep_best for the combined data, per res: (lr, batch size, LLM dropout); 100 epochs, smoothing 0.3.
COMBINED_RECIPE = {224: (3e-5, 256, 0.1), 448: (1e-5, 256, 0.0), 896: (1e-5, 64, 0.0)}
# The card's RefCOCO row: mIoU on the validation split of each of the three (val: every 10%; tests: at the end).
COMBINED_EVALS = {
    "refcoco_unc": ("validation", "testA", "testB"),
    "refcocoplus_unc": ("validation", "testA", "testB"),
    "refcocog_umd": ("validation", "test"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The RefCOCO segmentation run.

    `arg` = "res=448,model=paligemma-3b,final_split=false,dataset=refcocox_combined,mode=real" (any subset).
    """
    arg = common.parse_arg(
        arg, res=448, model="paligemma-3b", final_split=False, dataset="refcocox_combined", mode="real"
    )
    mock = arg.mode == "mock"
    combined = arg.dataset == "refcocox_combined"
    res = common.pp_res(arg)
    text_len = common.text_len(arg, 48)
    vae = common.vqvae_checkpoint(arg)
    name = f"refcoco/{arg.dataset}"

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)

    train_split = "train+validation" if arg.final_split and not combined else "train"
    config.input = dict(
        data=dict(name=name, split=train_split),
        batch_size=64,
        shuffle_buffer_size=20_000,
        pp=TRAIN_PP.format(res=res, text_len=text_len, vae=vae),
    )
    config.total_epochs = 10

    common.original_transfer_recipe(config, label_smoothing=0.3)
    if combined:
        config.lr, config.input.batch_size, dropout = COMBINED_RECIPE[
            min(COMBINED_RECIPE, key=lambda r: abs(r - arg.res))
        ]
        config.total_epochs = 100
        config.model.llm.dropout = dropout

    seg = dict(
        type="refcoco_seg",
        batch_size=64,
        max_decode_len=20,
        sampler="greedy",
        vqvae_checkpoint=vae,
        mask_key="mask",
        box_key="bbox",
        id_key="refexp_id",
        pp=EVAL_PP.format(res=res, text_len=text_len),
    )
    config.evals = {}
    if combined:
        for dataset, splits in COMBINED_EVALS.items():
            for split in splits if arg.final_split else splits[:1]:
                short = dataset.split("_")[0]
                every = 0.1 if split == "validation" else None
                config.evals[f"seg_{short}_{split}"] = dict(
                    seg, data=dict(name=f"refcoco/{dataset}", split=split), log_percent=every
                )
    else:
        splits = (
            ("testA", "testB")
            if arg.final_split and "unc" in arg.dataset
            else (("test",) if arg.final_split else ("validation",))
        )
        for split in splits:
            config.evals[f"seg_{split}"] = dict(seg, data=dict(name=name, split=split), log_percent=0.1)
    common.fit_released_slice(config, arg.model, arg.res)  # mesh + accum_steps for the planned TPU slice
    if mock:
        common.mock_mode(config, tokenizer_keys=("refexps",), prompts=("segment",), res=res)
    return config
