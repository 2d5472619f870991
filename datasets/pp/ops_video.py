"""Frame pp ops: several images, or a video's frames, per example -> uint8 `[F, H, W, 3]` + `frame_mask` `[F]`.

    frames_from_images(num_frames=4, size=224)|value_range(-1, 1)|...|keep("image", "frame_mask", "text", ...)
    frames_from_video(num_frames=16, size=224)|value_range(-1, 1)|...|keep("image", "frame_mask", "text", ...)

The model reads `image [B, F, H, W, 3]` (each frame encoded separately, the image tokens concatenated) and
`frame_mask [B, F]` (int32, 1 = a real frame, 0 = padding). F is fixed per config (`num_frames`), so examples batch.
Both ops sample F of the example's N images / frames with `datasets.video.sample_indices` (the centres of F equal
segments; fewer than F: all of them, in order, then zero frames with mask 0), as `tools.predict` does. Image ops that
follow (`resize`, crops, `flip_lr`, `pad_to_square`, `value_range`) treat every frame alike.
"""

from __future__ import annotations

import tensorflow as tf

from datasets import video
from datasets.pp import ops_image, utils
from datasets.pp.registry import register

__all__ = ["frames_from_images", "frames_from_video", "sample_indices"]

MASK_KEY = "frame_mask"


def _num_frames(num_frames, op: str) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{op}: num_frames must be a positive int, got {num_frames!r}")
    return num_frames


def _setup(op: str, num_frames, size, id_keys, resize_key: str):
    """A frame op's checked arguments: (F, (h, w), id_keys as a tuple or None, `resize(size)` of `resize_key`)."""
    hw = utils.as_size(size, op)
    resize = ops_image.resize(hw, key=resize_key, boxes_key=None, masks_key=None)
    return _num_frames(num_frames, op), hw, tuple(id_keys) if id_keys else None, resize


def sample_indices(n: tf.Tensor, num_frames: int) -> tuple[tf.Tensor, tf.Tensor]:
    """`datasets.video.sample_indices` in graph code: (indices int32 [num_frames], mask bool [num_frames]).

    `n` (a scalar tensor) must be positive; callers assert it.
    """
    n = tf.cast(n, tf.int64)
    i = tf.range(num_frames, dtype=tf.int64)
    uniform = (2 * i + 1) * n // (2 * num_frames)
    short = tf.minimum(i, n - 1)
    idx = tf.where(n >= num_frames, uniform, short)
    return tf.cast(idx, tf.int32), i < n


def _frame_names(data, inkey: str, id_keys, idx: tf.Tensor, n: tf.Tensor) -> tuple[str, list[tf.Tensor]]:
    """(id key, per sampled frame "<id value>, image <k> of <n>[ (<file>)]"): how `decode` names a bad frame."""
    key = next((k for k in (id_keys or utils.ID_KEYS) if k in data), None)
    if key is None:
        key, value = "example", tf.constant("<no id>")
    else:  # the value part of utils.example_id
        value = tf.convert_to_tensor(data[key])
        value = tf.strings.reduce_join(
            tf.reshape(value if value.dtype == tf.string else tf.strings.as_string(value), [-1]), separator=","
        )
    files = data.get(f"{inkey}/filenames")
    names = []
    for k in range(idx.shape[0]):
        parts = [value, ", image ", tf.strings.as_string(idx[k]), " of ", tf.strings.as_string(n)]
        if files is not None:
            parts += [" (", tf.gather(tf.reshape(tf.convert_to_tensor(files), [-1]), idx[k]), ")"]
        names.append(tf.strings.join(parts))
    return key, names


@register("frames_from_images")
def frames_from_images(
    inkey: str = "images",
    outkey: str = "image",
    num_frames: int = 2,
    size=224,
    mask_key: str = MASK_KEY,
    precise: bool = True,
    checked: bool = True,
    id_keys: tuple | list | None = None,
):
    """`num_frames` of the example's N images -> uint8 `[F, h, w, 3]` in `outkey` and int32 `[F]` in `mask_key`.

    Input: `data[inkey]` tf.string `[N]` of encoded images (the JSONL source's `images`), N >= 1 (N = 0 fails
    naming the example); or already decoded uint8 `[N, H, W, 3]`. F images are chosen with `sample_indices`; each is
    decoded exactly as the op `decode(precise=..., checked=...)` and resized exactly as `resize(size)` (antialiased
    bilinear; `size` an int or `(h, w)`), so the images may have different sizes. Fewer than F images: zero frames,
    mask 0. A corrupt image fails naming the example, the image's index and, when the example has
    `<inkey>/filenames` (the JSONL source adds it), its file.
    """
    f, hw, id_keys, resize = _setup("frames_from_images", num_frames, size, id_keys, inkey)

    def fn(data):
        value = utils.get_key(data, inkey, "frames_from_images")
        if isinstance(value, tf.RaggedTensor):
            value = value.to_tensor()
        value = tf.convert_to_tensor(value)
        if value.dtype == tf.string:
            value = tf.reshape(value, [-1])  # a single image (scalar) is N = 1
        elif not (value.dtype == tf.uint8 and value.shape.rank == 4):
            raise TypeError(
                f"frames_from_images: {inkey!r} must be encoded images (tf.string [N]) or uint8 [N, H, W, 3], got "
                f"{value.dtype.name} {value.shape}"
            )
        ident = utils.example_id(data, id_keys)
        n = tf.shape(value)[0]
        check = tf.debugging.Assert(n > 0, [f"frames_from_images: {inkey!r} holds no image (N = 0) in example", ident])
        with tf.control_dependencies([check]):
            idx, mask = sample_indices(n, f)
        id_key, names = _frame_names(data, inkey, id_keys, idx, n)
        decode = ops_image.decode(key=inkey, precise=precise, checked=checked, id_keys=(id_key,))
        zeros = tf.zeros([*hw, 3], tf.uint8)
        frames = []
        for k in range(f):
            one = {inkey: tf.gather(value, idx[k]), id_key: names[k]}

            def real(one=one):
                return resize(decode(dict(one)))[inkey]

            frames.append(tf.cond(mask[k], real, lambda: zeros))
        data[outkey] = tf.ensure_shape(tf.stack(frames), [f, *hw, 3])
        data[mask_key] = tf.cast(mask, tf.int32)
        return data

    return fn


@register("frames_from_video")
def frames_from_video(
    inkey: str = "video",
    outkey: str = "image",
    num_frames: int = 16,
    size=224,
    mask_key: str = MASK_KEY,
    id_keys: tuple | list | None = None,
):
    """A video container's bytes -> `num_frames` frames, uint8 `[F, h, w, 3]` in `outkey`, int32 `[F]` in `mask_key`.

    Input: `data[inkey]` a scalar tf.string, the container file (MP4, WebM, MKV, AVI, ...: what FFmpeg reads; the
    JSONL source's `video`). Decoded by `datasets.video.read_video` (PyAV, through `tf.numpy_function`), F frames
    sampled with `sample_indices` over the decoded frame count, each resized exactly as `resize(size)`. A clip shorter
    than F: zero frames, mask 0. An empty, corrupt or unreadable video, or one without a video stream, fails naming
    the example and, when the example has `<inkey>/filename` (the JSONL source adds it), the file.
    """
    f, hw, id_keys, resize = _setup("frames_from_video", num_frames, size, id_keys, outkey)

    def read(raw, name):
        name = name.decode("utf-8", "replace")
        try:
            frames, mask = video.read_video(raw, f, name=name)
        except ValueError as e:  # video.VideoError: names the example (and file) and the problem
            raise ValueError(f"frames_from_video: {e}") from None
        return frames, mask

    def fn(data):
        value = tf.convert_to_tensor(utils.get_key(data, inkey, "frames_from_video"))
        if value.dtype != tf.string or value.shape.rank != 0:
            raise TypeError(
                f"frames_from_video: {inkey!r} must be the video file's bytes (a scalar tf.string), got "
                f"{value.dtype.name} {value.shape}"
            )
        parts = [f"{inkey!r} of example ", utils.example_id(data, id_keys)]
        if f"{inkey}/filename" in data:
            parts += [" (", data[f"{inkey}/filename"], ")"]
        frames, mask = tf.numpy_function(read, [value, tf.strings.join(parts)], [tf.uint8, tf.bool], stateful=False)
        data[outkey] = tf.ensure_shape(frames, [f, None, None, 3])
        data = resize(data)
        data[mask_key] = tf.cast(tf.ensure_shape(mask, [f]), tf.int32)
        return data

    return fn
