"""Tokenisation and PaliGemma target ops.

Ops: tok, masked_concat, tok_paligemma, tok_paligemma_prompt, loc_tokens, detection_targets.

Tokenisation uses `paligemma.tokenizer.Tokenizer` (SentencePiece) through `tf.numpy_function`, so these ops
work in graph mode / `tf.data` but hold the GIL while tokenising. The tokenizer is given as a path, either per op
(`tokenizer="path/to.model"`) or once for the whole pp string (`get_preprocess_fn(..., tokenizer=path)`);
loaded tokenizers are cached by path.

Layout, masks and truncation rules of `tok_paligemma`: see `datasets.pp.layout`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from datasets.pp import layout, utils
from datasets.pp.ops_text import _keys_in
from datasets.pp.registry import register
from paligemma.tokenizer import box_to_loc_tokens

__all__ = ["tok", "masked_concat", "tok_paligemma", "tok_paligemma_prompt", "loc_tokens", "detection_targets"]


def _text(x) -> str:
    if isinstance(x, np.ndarray):
        x = x.item()
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _scalar_string(data, key: str, op: str) -> tf.Tensor:
    v = tf.convert_to_tensor(utils.get_key(data, key, op))
    if v.dtype != tf.string:
        raise TypeError(f"{op}: {key!r} must be a tf.string, got {v.dtype.name}")
    if v.shape.rank != 0:
        raise ValueError(
            f"{op}: {key!r} must be a scalar string, got shape {v.shape} (pick one first, e.g. choice(inkey={key!r}))"
        )
    return v


def _check_int(v, name: str, op: str, minimum: int):
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {v!r}")


@register("tok")
def tok(
    key: str | None = None,
    inkey: str | None = None,
    outkey: str | None = None,
    tokenizer: str | None = None,
    bos: bool = False,
    eos: bool = False,
    length: int | None = None,
):
    """Tokenises the scalar string `data[inkey]` into `data[outkey]` int32 `[n]` (or `[length]`).

    `key` sets both keys; `inkey` defaults to `"text"`, `outkey` to `inkey`. `bos`/`eos` add the
    tokenizer's `<bos>` in front / `<eos>` at the end. With `length` the ids are padded with `pad_id` or
    truncated to `length` (keeping the `<eos>` when `eos=True`), and `data[outkey + "_truncated"]` (int32
    scalar, 1 if cut) reports truncation.
    """
    inkey, outkey = _keys_in(key, inkey, outkey, "text", "tok")
    if length is not None:
        _check_int(length, "length", "tok", 1)
    tk = utils.get_tokenizer(tokenizer, "tok")

    def _encode(s):
        ids = tk.encode(_text(s), add_bos=bos, add_eos=eos)
        cut = 0
        if length is not None:
            if len(ids) > length:
                cut = 1
                ids = ids[: length - 1] + [tk.eos_id] if eos else ids[:length]
            ids = ids + [tk.pad_id] * (length - len(ids))
        return np.asarray(ids, np.int32), np.int32(cut)

    def fn(data):
        s = _scalar_string(data, inkey, "tok")
        ids, cut = tf.numpy_function(_encode, [s], [tf.int32, tf.int32], stateful=False, name="tok")
        data[outkey] = tf.ensure_shape(ids, [length])
        if length is not None:
            data[outkey + "_truncated"] = tf.ensure_shape(cut, [])
        return data

    return fn


@register("masked_concat")
def masked_concat(keys: list | tuple, outkey: str = "text", length: int | None = None, pad_value: int = 0, **masks):
    """Concatenates 1-D int token vectors `data[k] for k in keys` into `data[outkey]` int32.

    Every other keyword is a mask: `mask_ar=[0, 0, 1]` writes `data["mask_ar"]` int32 of the same length,
    each key's tokens filled with its value (big_vision style, e.g.
    `masked_concat(["prefix", "septok", "suffix"], mask_ar=[0, 0, 1], mask_loss=[0, 0, 1])`).
    With `length` the outputs are padded (text with `pad_value`, masks with 0) or cut at the end to
    `[length]`; `data[outkey + "_truncated"]` (int32, 1 if cut) reports cuts. This op does not protect the
    `<eos>`: prefer `tok_paligemma` for PaliGemma targets.
    """
    if not isinstance(keys, (list, tuple)) or not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"masked_concat: keys must be a non-empty list of keys, got {keys!r}")
    for name, vals in masks.items():
        if (
            not isinstance(vals, (list, tuple))
            or len(vals) != len(keys)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals)
        ):
            raise ValueError(f"masked_concat: mask {name}={vals!r} must be a list of {len(keys)} ints")
    if length is not None:
        _check_int(length, "length", "masked_concat", 1)

    def fn(data):
        parts = [tf.reshape(tf.cast(utils.get_key(data, k, "masked_concat"), tf.int32), [-1]) for k in keys]
        outs = {outkey: (tf.concat(parts, 0), pad_value)}
        for name, vals in masks.items():
            outs[name] = (tf.concat([tf.fill(tf.shape(p), v) for p, v in zip(parts, vals)], 0), 0)
        for name, (x, pad) in outs.items():
            if length is not None:
                n = tf.shape(x)[0]
                x = tf.pad(x[:length], [[0, tf.maximum(length - n, 0)]], constant_values=pad)
                x = tf.ensure_shape(x, [length])
            data[name] = x
        if length is not None:
            data[outkey + "_truncated"] = tf.cast(tf.shape(outs[outkey][0])[0] > length, tf.int32)
        return data

    return fn


@register("tok_paligemma")
def tok_paligemma(
    *,
    text_len: int,
    prefix_key: str = "prefix",
    suffix_key: str = "suffix",
    tokenizer: str | None = None,
    truncate: str = "longest_first",
    keep_eos: bool = True,
    outkey: str = "text",
    truncated_key: str = "text_truncated",
):
    r"""Builds a PaliGemma training example from the scalar strings `data[prefix_key]` and `data[suffix_key]`.

    Layout (`text_len` tokens)::

        text      : <bos> prefix "\n" suffix <eos> <pad>...
        mask_ar   :   0     0     0     1      1     1...
        mask_loss :   0     0     0     1      1     0...
        mask_input:   1     1     1     1      1     0...

    `truncate` (`"longest_first"` default, `"prefix"`, `"suffix"`) decides what is cut when it does not
    fit; `keep_eos=True` keeps `<eos>` as the last token of a cut suffix (False: no eos, as big_vision).
    Details in `datasets.pp.layout`. The prefix/suffix strings stay in the example.

    Outputs (int32): `data[outkey]` `[text_len]` token ids, `data["mask_ar"]`, `data["mask_loss"]`,
    `data["mask_input"]` `[text_len]` and `data[truncated_key]` scalar (0 = not cut, bit 1 = prefix cut,
    bit 2 = suffix cut). The pipeline should count `text_truncated > 0` and report it.
    """
    _check_int(text_len, "text_len", "tok_paligemma", 3)
    if truncate not in layout.TRUNCATE_POLICIES:
        raise ValueError(f"tok_paligemma: truncate must be one of {layout.TRUNCATE_POLICIES}, got {truncate!r}")
    tk = utils.get_tokenizer(tokenizer, "tok_paligemma")
    ids = dict(bos_id=tk.bos_id, eos_id=tk.eos_id, sep_id=tk.newline_id, pad_id=tk.pad_id)

    def _build(prefix, suffix):
        out = layout.train_layout(
            tk.encode(_text(prefix)), tk.encode(_text(suffix)), text_len, truncate=truncate, keep_eos=keep_eos, **ids
        )
        return out["text"], out["mask_ar"], out["mask_loss"], out["mask_input"], out["truncated"]

    def fn(data):
        prefix = _scalar_string(data, prefix_key, "tok_paligemma")
        suffix = _scalar_string(data, suffix_key, "tok_paligemma")
        outs = tf.numpy_function(_build, [prefix, suffix], [tf.int32] * 5, stateful=False, name="tok_paligemma")
        for k, v in zip((outkey, "mask_ar", "mask_loss", "mask_input"), outs[:4]):
            data[k] = tf.ensure_shape(v, [text_len])
        data[truncated_key] = tf.ensure_shape(outs[4], [])
        return data

    return fn


@register("tok_paligemma_prompt")
def tok_paligemma_prompt(
    *,
    text_len: int,
    prefix_key: str = "prefix",
    tokenizer: str | None = None,
    outkey: str = "text",
    truncated_key: str = "text_truncated",
):
    r"""Builds the eval/decoding input from the scalar string `data[prefix_key]`: `<bos> prefix "\n" <pad>...`.

    `mask_ar` and `mask_loss` are all 0, `mask_input` is 1 on the prompt. Any suffix/answers keys are left in
    the example untouched (as strings) for the evaluator; `keep` them. A prefix longer than `text_len - 2`
    keeps its first tokens (bos and separator always kept) and sets the truncated flag to 1.

    Outputs (int32): `data[outkey]` `[text_len]` token ids, `data["mask_ar"]`, `data["mask_loss"]`,
    `data["mask_input"]` `[text_len]` and `data[truncated_key]` scalar (0 = not cut, bit 1 = prefix cut,
    bit 2 = suffix cut). The pipeline should count `text_truncated > 0` and report it.
    """
    _check_int(text_len, "text_len", "tok_paligemma_prompt", 2)
    tk = utils.get_tokenizer(tokenizer, "tok_paligemma_prompt")

    def _build(prefix):
        out = layout.prompt_layout(
            tk.encode(_text(prefix)), text_len, bos_id=tk.bos_id, sep_id=tk.newline_id, pad_id=tk.pad_id
        )
        return out["text"], out["mask_ar"], out["mask_loss"], out["mask_input"], out["truncated"]

    def fn(data):
        prefix = _scalar_string(data, prefix_key, "tok_paligemma_prompt")
        outs = tf.numpy_function(_build, [prefix], [tf.int32] * 5, stateful=False, name="tok_paligemma_prompt")
        for k, v in zip((outkey, "mask_ar", "mask_loss", "mask_input"), outs[:4]):
            data[k] = tf.ensure_shape(v, [text_len])
        data[truncated_key] = tf.ensure_shape(outs[4], [])
        return data

    return fn


# ----------------------------------------------------------------------------------------------------------
# Location / detection targets.
# ----------------------------------------------------------------------------------------------------------


def loc_strings(boxes: tf.Tensor) -> tf.Tensor:
    """Graph-mode `box_to_loc_tokens`: float boxes `[..., 4]` (yxyx in [0,1]) -> tf.string `[...]`.

    Each value -> bin `clip(round(v * 1023), 0, 1023)` (round half to even, as numpy) -> `<locNNNN>`.
    """
    b = tf.cast(boxes, tf.float64)
    bins = tf.cast(tf.clip_by_value(tf.round(b * 1023.0), 0.0, 1023.0), tf.int32)
    pieces = tf.strings.join(["<loc", tf.strings.as_string(bins, width=4, fill="0"), ">"])
    return tf.strings.reduce_join(pieces, axis=-1)


@register("loc_tokens")
def loc_tokens(inkey: str = "objects/bbox", outkey: str = "loc"):
    """Writes boxes as loc tokens.

    `data[inkey]` float `[4]` or `[N, 4]` (`y1, x1, y2, x2` in [0, 1]) -> `data[outkey]` tf.string scalar
    `"<locY1><locX1><locY2><locX2>"` or `[N]`.

    Bins: `clip(round(v * 1023), 0, 1023)`; decode as `bin / 1023` (see `paligemma.tokenizer`).
    Run it after the geometric ops so the tokens describe the final image.
    """

    def fn(data):
        b = tf.convert_to_tensor(utils.get_key(data, inkey, "loc_tokens"))
        if b.shape.rank is not None and (b.shape.rank == 0 or b.shape[-1] not in (None, 4)):
            raise ValueError(f"loc_tokens: {inkey!r} must have a last dimension of 4, got shape {b.shape}")
        data[outkey] = loc_strings(b)
        return data

    return fn


def _valid_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.clip(boxes, 0.0, 1.0)
    return (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) & np.all(np.isfinite(boxes), axis=1)


@register("detection_targets")
def detection_targets(
    boxes_key: str = "objects/bbox",
    labels_key: str = "objects/label",
    outkey: str = "suffix",
    prompt_key: str | None = "prefix",
    prompt: str = "detect {}",
    label_names: list | None = None,
    sep: str = " ; ",
    shuffle: bool = False,
    max_objects: int | None = None,
    rng_key: str = utils.RNG_KEY,
):
    """Detection target text and prompt from boxes and labels.

    Inputs: `data[boxes_key]` float `[N, 4]` (`y1, x1, y2, x2` normalised to [0, 1], after any crop/flip/
    resize), `data[labels_key]` `[N]` strings, or ints mapped through `label_names`.
    Outputs: `data[outkey]` scalar string `"<locY1><locX1><locY2><locX2> label ; <loc...>... label2"` and, if
    `prompt_key`, `data[prompt_key]` = `prompt.format("a ; b")` with the distinct labels in order of first
    appearance (`"detect cat ; dog"`).

    Degenerate boxes (zero area, e.g. cropped away) are skipped. `shuffle` permutes the objects (seeded from
    `rng_key` or `_seed` when present); `max_objects` keeps the first ones. No objects gives an empty target.
    """
    if not isinstance(prompt, str) or prompt.count("{}") != 1:
        raise ValueError(f"detection_targets: prompt must contain one '{{}}', got {prompt!r}")
    if label_names is not None and not all(isinstance(n, str) for n in label_names):
        raise ValueError("detection_targets: label_names must be a list of strings")
    if max_objects is not None:
        _check_int(max_objects, "max_objects", "detection_targets", 1)

    def _build(boxes, labels, order):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"detection_targets: {len(boxes)} boxes but {len(labels)} labels")
        names = []
        for lab in labels:
            if isinstance(lab, bytes):
                names.append(lab.decode("utf-8"))
            elif label_names is not None:
                if not 0 <= int(lab) < len(label_names):
                    raise ValueError(
                        f"detection_targets: label {int(lab)} outside label_names (0..{len(label_names) - 1})"
                    )
                names.append(label_names[int(lab)])
            else:
                raise ValueError("detection_targets: integer labels need label_names=[...]")
        keep = _valid_boxes(boxes)
        objs = [(boxes[i], names[i]) for i in np.asarray(order).reshape(-1) if i < len(boxes) and keep[i]]
        if max_objects is not None:
            objs = objs[:max_objects]
        target = sep.join(f"{box_to_loc_tokens(b)} {n}" for b, n in objs)
        uniq = list(dict.fromkeys(n for _, n in objs))
        return target.encode(), prompt.format(sep.join(uniq)).encode()

    def fn(data):
        boxes = tf.convert_to_tensor(utils.get_key(data, boxes_key, "detection_targets"))
        labels = tf.convert_to_tensor(utils.get_key(data, labels_key, "detection_targets"))
        n = tf.shape(tf.reshape(boxes, [-1, 4]))[0]
        if shuffle:
            seed = utils.op_seed(data, f"detection_targets/{boxes_key}", rng_key)
            keys = tf.random.uniform([n]) if seed is None else tf.random.stateless_uniform([n], seed=seed)
            order = tf.argsort(keys)
        else:
            order = tf.range(n)
        target, prm = tf.numpy_function(
            _build, [boxes, labels, order], [tf.string, tf.string], stateful=False, name="detection_targets"
        )
        data[outkey] = tf.ensure_shape(target, [])
        if prompt_key:
            data[prompt_key] = tf.ensure_shape(prm, [])
        return data

    return fn
