"""Several images or a video's frames per example, in numpy and PyAV (this module does not import TensorFlow).

    idx, mask = video.sample_indices(40, 4)             # [5 15 25 35], [True True True True]
    frames, mask = video.read_video("clip.mp4", 16)     # uint8 [16, H, W, 3], bool [16]
    batch = video.stack_frames([a, b, c], 224)          # uint8 [3, 224, 224, 3], each as the pp op `resize(224)`

The model takes `image [B, F, H, W, 3]` and `frame_mask [B, F]` (1 = a real frame, 0 = padding). The pp ops
`frames_from_images` / `frames_from_video` (`datasets/pp/ops_video.py`) and `tools.predict` both sample frames with
`sample_indices`, so training and prediction see the same frames:

* `sample_indices(n, F)`: F frames of a clip of n, deterministic and uniform: frame i of F is the centre of the i-th of
  F equal segments, `floor((i + 0.5) * n / F)` (computed in integers: `(2i + 1) * n // (2F)`). A clip of fewer than F
  frames gives every frame once, in order, then padding (the last frame's index repeated, mask False).
* `read_video(source, F)`: decodes a container that FFmpeg reads (MP4, WebM, MKV, AVI, MOV, ...; the first video
  stream), samples F frames over the decoded frame count with `sample_indices` and returns them as uint8 RGB (FFmpeg's
  rgb24 conversion) `[F, H, W, 3]`, padding frames zeros, and the mask. Only the sampled frames are converted and
  kept: when the container states its frame count (MP4 does) the video is decoded once; otherwise, or when the stated
  count is wrong, a second pass decodes it again with the true count (memory stays at F frames, not the clip). A
  rotation stored in the container's metadata is ignored, as images' EXIF orientation is. Frames of a size different
  from the first sampled frame (a stream whose resolution changes) are resized to it (`stack_frames`).
* `stack_frames(frames, size)`: frames of any sizes -> one uint8 `[F, h, w, 3]` array, each resized exactly as the pp
  op `resize(size)` does (`datasets.images.resize`: antialiased bilinear, TensorFlow's float32 sums).

Errors: an empty, corrupt or unreadable container, one without a video stream or without a decodable frame, or a frame
larger than `images.MAX_PIXELS` raises `VideoError` (a ValueError) naming the video (`name=`, by default the path)
and the problem.

PyAV (`av`, in requirements.txt) is imported when a video is first read; sampling and stacking work without it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from datasets import images

__all__ = ["VideoError", "sample_indices", "read_video", "stack_frames"]


class VideoError(ValueError):
    """A video that cannot be used: empty, corrupt, no video stream, no frames. The message names the file."""


def sample_indices(num_available: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32 [num_frames], mask bool [num_frames]): `num_frames` uniform samples of a clip of `num_available`.

    Index i is `(2i + 1) * num_available // (2 * num_frames)`, the centre frame of the i-th of `num_frames` equal
    segments (e.g. 40 frames, 4 samples: 5, 15, 25, 35). Fewer frames than asked: every frame once, in order, then
    the last index repeated with mask False (e.g. 3 frames, 5 samples: 0, 1, 2, 2, 2 and mask 1, 1, 1, 0, 0).
    """
    n, f = _count(num_available, "num_available"), _count(num_frames, "num_frames")
    if n == 0:
        raise ValueError("sample_indices: the clip has no frames (num_available=0)")
    if f == 0:
        raise ValueError("sample_indices: num_frames must be at least 1")
    i = np.arange(f, dtype=np.int64)
    if n >= f:
        return ((2 * i + 1) * n // (2 * f)).astype(np.int32), np.ones(f, bool)
    return np.minimum(i, n - 1).astype(np.int32), i < n


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def stack_frames(frames: Sequence[np.ndarray], size: int | tuple[int, int]) -> np.ndarray:
    """uint8 frames `[H_i, W_i, 3]` of any sizes -> uint8 `[F, h, w, 3]`, each as the pp op `resize(size)` gives it.

    `size`: an int (square) or `(h, w)`. Frames already at the size are copied unchanged.
    """
    if isinstance(size, bool) or not (
        isinstance(size, (int, np.integer)) or (isinstance(size, (tuple, list)) and len(size) == 2)
    ):
        raise ValueError(f"stack_frames: size must be an int or (height, width), got {size!r}")
    h, w = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"stack_frames: size must be positive, got {size!r}")
    if len(frames) == 0:
        raise ValueError("stack_frames: no frames")
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for k, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"stack_frames: frame {k} must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        out[k] = images.resize(frame, (h, w))
    return out


def _av():
    try:
        import av  # noqa: PLC0415 (only the readers of videos need PyAV)
    except ImportError as e:  # pragma: no cover - av is in requirements.txt
        raise ImportError(f"reading videos needs PyAV: pip install av (see requirements.txt) ({e})") from None
    return av


def _decode_pass(av, open_container, name: str, keep) -> tuple[int, dict[int, np.ndarray]]:
    """Decodes the first video stream: (frames decoded, {index: rgb24 frame} of the indices kept).

    `keep(stated)` -> the set of frame indices to convert and keep, given the frame count the container states (0
    when it states none); called once, before decoding.
    """
    try:
        container = open_container()
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{name}: not a readable video ({_why(e)}; MP4, WebM, MKV, AVI, MOV, ... expected)") from None
    kept: dict[int, np.ndarray] = {}
    count = 0
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError(f"{name}: no video stream in the file (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height:
            _check_size(height, width, name)
        stated = int(stream.frames or 0)
        if not stated and container.duration and stream.average_rate:  # e.g. WebM: an estimate from the duration
            stated = int(round(container.duration / 1_000_000 * float(stream.average_rate)))
        wanted = keep(stated)
        try:
            for frame in container.decode(stream):
                if count in wanted:
                    _check_size(frame.height, frame.width, name)
                    kept[count] = frame.to_ndarray(format="rgb24")
                count += 1
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{name}: cannot decode the video after {count} frames ({_why(e)}; corrupt?)") from None
    return count, kept


def _check_size(height: int, width: int, name: str) -> None:
    try:
        images.check_size(height, width, name)
    except images.ImageError as e:
        raise VideoError(str(e).replace("image too large", "video frames too large", 1)) from None


def _why(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__  # FFmpeg's words, without errno and '<none>'
    return str(msg).strip().rstrip(".")


def read_video(
    source: bytes | str | os.PathLike, num_frames: int, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a video and samples `num_frames` frames: (uint8 `[F, H, W, 3]`, bool mask `[F]`).

    `source`: the container's bytes or a local path. `name` names the video in errors (default: the path, or
    "video"). Frames are sampled with `sample_indices` over the decoded frame count; padding frames (a clip shorter
    than `num_frames`) are zeros with mask False. Raises `VideoError` (a ValueError) for an empty, corrupt or
    unreadable container, one without a video stream or without frames.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"read_video: num_frames must be a positive int, got {num_frames!r}")
    num_frames = int(num_frames)
    av = _av()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "video"
        if not data:
            raise VideoError(f"{name}: empty file, not a video")

        def open_container():
            return av.open(io.BytesIO(data), mode="r")

    else:
        path = os.fspath(source)
        name = name or path
        if not os.path.isfile(path):
            raise VideoError(f"{name}: video file not found")
        if os.path.getsize(path) == 0:
            raise VideoError(f"{name}: empty file, not a video")

        def open_container():
            return av.open(path, mode="r")

    def sampled(n: int) -> set[int]:
        if n <= 0:
            return set()
        idx, mask = sample_indices(n, num_frames)
        return {int(i) for i in idx[mask]}

    # Pass 1 keeps the frames that the stated frame count samples; if the count decoded differs (or none is stated),
    # pass 2 decodes again and keeps the right ones.
    count, kept = _decode_pass(av, open_container, name, sampled)
    if count == 0:
        raise VideoError(f"{name}: the video stream has no decodable frame")
    idx, mask = sample_indices(count, num_frames)
    wanted = sampled(count)
    if not wanted <= kept.keys():
        again, kept = _decode_pass(av, open_container, name, lambda _: wanted)
        if again != count or not wanted <= kept.keys():
            raise VideoError(f"{name}: decoding the video twice gave {count} then {again} frames")
    chosen = [kept[int(i)] for i in idx[mask]]
    first = chosen[0]
    if any(f.shape != first.shape for f in chosen):
        chosen = list(stack_frames(chosen, first.shape[:2]))
    frames = np.zeros((num_frames, *first.shape), np.uint8)
    frames[: len(chosen)] = np.stack(chosen)  # the real frames come first (sample_indices pads at the end)
    return frames, mask
