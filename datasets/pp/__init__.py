"""Preprocessing ops written as pp strings, big_vision style.

    from datasets import pp
    fn = pp.get_preprocess_fn(
        'decode|resize(224)|value_range(-1, 1)|strfmt("answer en {question}", outkey="prefix")'
        '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len=32)'
        '|keep("image", "text", "mask_ar", "mask_loss", "mask_input", "text_truncated")',
        tokenizer="/path/to/paligemma_tokenizer.model")
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)

* `parse` - the grammar (`datasets.pp.grammar`): `op|op(args)|...`, Python literals only.
* `registry` / `register` - name -> op factory.
* `get_preprocess_fn` - pp string -> `dict -> dict` function usable in `tf.data`.

Ops: image (`.ops_image`): decode, resize, resize_small, central_crop, random_crop, flip_lr, pad_to_square,
value_range, draw_box (a box's outline on the image: Widget Captioning). Text/keys (`.ops_text`): strfmt, lower,
choice, choice_cycle, copy, keep, drop, rename.
Targets (`.ops_targets`, `.ops_seg`): tok, masked_concat, tok_paligemma, tok_paligemma_prompt,
loc_tokens, detection_targets, segmentation_targets. Frames (`.ops_video`): frames_from_images, frames_from_video
(several images or a video's frames per example -> `[F, H, W, 3]` + `frame_mask`).
"""

from datasets.pp.grammar import OpSpec, PPSyntaxError, parse, parse_specs
from datasets.pp.registry import PPOpError, Registry, get_preprocess_fn, register, registry

# The op modules (ops_image, ops_text, ops_targets, ops_seg, ops_video) register themselves the first time `registry`
# is read; importing this package does not import TensorFlow, so `datasets.pp.layout` works on machines without it.

__all__ = [
    "parse",
    "parse_specs",
    "OpSpec",
    "PPSyntaxError",
    "PPOpError",
    "Registry",
    "registry",
    "register",
    "get_preprocess_fn",
]
