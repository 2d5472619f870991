"""Helpers shared by this project's TFDS builders (`datasets/builders/<name>/`): reading the official files.

Every builder reads the files of an official release from a manual_dir and turns them into examples. The same few
steps recur, and each must fail with one clear error naming the file at fault rather than a bare `KeyError` or
`JSONDecodeError` deep in TFDS. Errors name the dataset first ("NLVR2: ..."); a missing file raises
`FileNotFoundError`, a file that is there but not what the release ships (bad JSON, wrong structure, a missing
field) raises `ValueError`.

  checked_manual_dir(dl_manager, dataset, missing_manual_files, instructions)
                                        the manual_dir of a build, after `check_manual_dir`: the first line of a
                                        builder's `_split_generators`
  split_files(manual_dir, splits, find=...)
                                        {split: path} of the splits whose file is there (any may be left out);
                                        `splits`: {split: file name, or a tuple (file name, ...)}
  split_generators(dataset, splits, missing_manual_files, find=...)
                                        the `_split_generators` method of a builder with one file per split,
                                        calling its `_generate_examples(manual_dir, split, path)`
  missing_files_and_folders(manual_dir, {split: (file, folder)})
                                        the same for splits of one file each and an image folder
  missing_files(manual_dir, names)      which of the required files ("a.json") / folders ("images/") are absent: the
                                        body of a builder's `missing_manual_files(manual_dir)`
  check_manual_dir(dataset, manual_dir, missing, instructions)
                                        raises the FileNotFoundError a builder's `_split_generators` raises when
                                        `missing` is not empty (the message ends with the download instructions)
  load_json(path, dataset, expect=..., what=...)
                                        one JSON document; `expect` = dict / list checks its top-level type, and
                                        `keys=` the keys a dict must have
  load_data(path, dataset, what=...)    the "data" list of a {"data": [{...}, ...]} question file (DocVQA,
                                        InfographicVQA, TextVQA, ST-VQA ship their questions so)
  load_records(path, dataset)           a list of JSON objects from a JSON array *or* JSON lines (one object a line,
                                        blank lines skipped): NLVR2's `train.json`, MaRVL's `marvl-id.jsonl`, ...
  field(record, key, path, dataset)     `record[key]`, or a ValueError naming the file, the record and the key
  read_bytes(path, dataset, what=..., context=...)
                                        a file's bytes (an image, a video), or FileNotFoundError "DATASET: image PATH
                                        of question 7 not found"
  find_in(folders, name)                the first `folder/name` that is a file (a release's files at the top of
                                        manual_dir or in its own subfolder), else None
  find_file(directory, stem, extensions)
                                        the first `directory/stem.ext` that exists (videos come as .mp4, .webm,
                                        .mkv, ...), else None
  present_videos(examples, find, dataset, split, folder)
                                        (index, example, path) of the examples whose video `find(video_id)` finds;
                                        logs the others once (`skip_missing_videos`)
  VideoReader                           `LastFileReader` for videos, each `check_video`ed the first time it comes
  LastFileReader                        reads a file's bytes once for consecutive examples that share it (questions
                                        of one image, captions of one video come in a row)
  EncodedVideo()                        the TFDS feature of a video file's bytes (mp4, webm, ... as stored): a scalar
                                        tf.string that the pp op `frames_from_video` decodes with PyAV. Use it, not
                                        `tfds.features.Video` (which needs an ffmpeg binary to build); mock data
                                        (`datasets/mock.py`) fills it with a small valid video
  check_video(path, dataset, context=...)
                                        ValueError naming the file unless PyAV opens it and decodes a first video
                                        frame (a truncated download, an HTML error page saved as .mp4)
  cut_video(path, start, end, dataset)  the frames of `path` between `start` and `end` seconds, re-encoded as one
                                        MP4 (H.264): one clip per annotated segment of a long video
  skip_missing_videos(dataset, split, videos, examples, total, folder)
                                        logs the videos (YouTube deletions) whose examples a split leaves out;
                                        FileNotFoundError when the split would be empty

Builders keep their own `MANUAL_DOWNLOAD_INSTRUCTIONS`, `missing_manual_files` (which `python -m datasets.build`
calls before building) and features; only the file handling lives here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging


def missing_files(manual_dir: str, names: Iterable[str]) -> list[str]:
    """The entries of `names` that are not in manual_dir: "x.json" must be a file, "images/" (trailing /) a folder."""
    missing = []
    for name in names:
        path = os.path.join(manual_dir, name.rstrip("/"))
        present = os.path.isdir(path) if name.endswith("/") else os.path.isfile(path)
        if not present and name not in missing:
            missing.append(name)
    return missing


def check_manual_dir(dataset: str, manual_dir: str, missing: Sequence[str], instructions: str) -> None:
    r"""Raises FileNotFoundError("DATASET: missing in manual_dir DIR: a, b\n" + instructions) if `missing`."""
    if missing:
        raise FileNotFoundError(f"{dataset}: missing in manual_dir {manual_dir}: {', '.join(missing)}\n{instructions}")


def checked_manual_dir(
    dl_manager, dataset: str, missing_manual_files: Callable[[str], Sequence[str]], instructions: str
) -> str:
    """`dl_manager.manual_dir` as a str; FileNotFoundError (`check_manual_dir`) when a required file is missing."""
    manual_dir = os.fspath(dl_manager.manual_dir)
    check_manual_dir(dataset, manual_dir, missing_manual_files(manual_dir), instructions)
    return manual_dir


def _file_name(spec: str | Sequence) -> str:
    return spec if isinstance(spec, str) else spec[0]


def split_files(
    manual_dir: str, splits: dict[str, str | Sequence], find: Callable[[str, str], str | None] | None = None
) -> dict[str, str]:
    """{split: path} for each `split: name` of `splits` whose file is there, in order.

    A value may also be a tuple whose first item is the file name (the others the builder's own: its image folder,
    ...). `find(manual_dir, name)` gives the path or None; by default `manual_dir/name` if it is a file.
    """
    if find is None:

        def find(directory, name):
            path = os.path.join(directory, name)
            return path if os.path.isfile(path) else None

    paths = {split: find(manual_dir, _file_name(spec)) for split, spec in splits.items()}
    return {split: path for split, path in paths.items() if path}


def missing_files_and_folders(manual_dir: str, splits: dict[str, tuple[str, str]]) -> list[str]:
    """What manual_dir lacks of `splits` = {split: (file, image folder)}: one file, and the folders of those there.

    At least one split's file is needed (else "a or b or c"), then the folder of each split whose file is there
    (TextVQA and TextCaps: a JSON file per split, its images in a folder); [] when ready to build.
    """
    present = [split for split, (name, _) in splits.items() if os.path.isfile(os.path.join(manual_dir, name))]
    if not present:
        return [" or ".join(name for name, _ in splits.values())]
    return missing_files(manual_dir, [splits[split][1] + "/" for split in present])


def split_generators(
    dataset: str,
    splits: dict[str, str | Sequence],
    missing_manual_files: Callable[[str], Sequence[str]],
    find: Callable[[str, str], str | None] | None = None,
) -> Callable:
    """The `_split_generators` method of a builder whose splits each come from one file of the manual_dir.

    In the class body: `_split_generators = common.split_generators(DATASET, {split: file name},
    missing_manual_files)`. It checks the manual_dir (`checked_manual_dir`, with the builder's
    `MANUAL_DOWNLOAD_INSTRUCTIONS`) and calls the builder's `_generate_examples(manual_dir, split, path)` for each
    split whose file `split_files(manual_dir, splits, find)` finds (any may be left out).
    """

    def _split_generators(builder, dl_manager):
        instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
        manual_dir = checked_manual_dir(dl_manager, dataset, missing_manual_files, instructions)
        found = split_files(manual_dir, splits, find)
        return {split: builder._generate_examples(manual_dir, split, path) for split, path in found.items()}

    return _split_generators


def _describe(value) -> str:
    return {dict: "a JSON object", list: "a JSON array"}.get(value, getattr(value, "__name__", str(value)))


def load_json(
    path: str,
    dataset: str,
    *,
    expect: type | None = None,
    keys: Sequence[str] = (),
    what: str = "",
) -> Any:
    """The JSON document in `path`.

    Raises FileNotFoundError when it is missing, ValueError naming the file when it is not valid JSON, not of type
    `expect` (dict or list) or, for a dict, lacks one of `keys`. `what` describes the expected file in the message
    ("an official MSR-VTT annotation file").
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{dataset}: {path} is not valid JSON ({e}); is it {what or 'the official file'}?") from None
    expected = what or "the official file"
    if expect is not None and not isinstance(content, expect):
        raise ValueError(f"{dataset}: {path} is not {expected} (expected {_describe(expect)} at the top level)")
    if keys and isinstance(content, dict):
        absent = [k for k in keys if k not in content]
        if absent:
            raise ValueError(f"{dataset}: {path} is not {expected} (no {', '.join(repr(k) for k in absent)} key)")
    return content


def load_data(path: str, dataset: str, *, what: str) -> list[dict]:
    """The `data` list of an official question file shaped `{"data": [{...}, ...], ...}`.

    DocVQA, InfographicVQA, TextVQA and ST-VQA ship their questions this way (the other top-level keys name the
    dataset, version and split). FileNotFoundError when the file is missing, ValueError naming it when it is not that
    shape; `what` describes the expected file ("an official TextVQA question file").
    """
    content = load_json(path, dataset, expect=dict, keys=("data",), what=what)
    data = content["data"]
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ValueError(f'{dataset}: {path} is not {what} (its "data" is not a list of JSON objects)')
    return data


def load_records(path: str, dataset: str, *, what: str = "") -> list[dict]:
    """The JSON objects of `path`: a JSON array of objects, or JSON lines (one object per line; blank lines skipped).

    Raises FileNotFoundError when it is missing, ValueError naming the file (and the line) when it is neither.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {path} not found")
    expected = what or "the official file"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{dataset}: {path} is not UTF-8 text ({e}); is it {expected}?") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{dataset}: {path} is not valid JSON ({e}); is it {expected}?") from None
        lines = [None] * len(records)
    else:
        records, lines = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{dataset}: {path} line {number} is not a JSON object ({e}); is it {expected} (JSON lines)?"
                ) from None
            lines.append(number)
    for record, number in zip(records, lines):
        if not isinstance(record, dict):
            where = f" line {number}" if number else ""
            raise ValueError(f"{dataset}: {path}{where} holds {type(record).__name__}, not a JSON object")
    return records


def field(record: dict, key: str, path: str, dataset: str) -> Any:
    """`record[key]`; a ValueError naming the file, the key and (part of) the record when it is absent."""
    try:
        return record[key]
    except (KeyError, TypeError):
        shown = json.dumps(record, ensure_ascii=False)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise ValueError(f"{dataset}: {path}: an entry has no {key!r} field: {shown}") from None


def read_bytes(path: str, dataset: str, *, what: str = "file", context: str = "") -> bytes:
    """The bytes of `path`; FileNotFoundError "DATASET: WHAT PATH CONTEXT not found" when it is not a file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {what} {path}{' ' + context if context else ''} not found")
    with open(path, "rb") as f:
        return f.read()


def find_in(folders: Iterable[str], name: str) -> str | None:
    """The first `folder/name` (folder in `folders`, in order) that is a file, or None."""
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def find_file(directory: str, stem: str, extensions: Sequence[str]) -> str | None:
    """The first of `directory/stem + ext` (ext in `extensions`, e.g. (".mp4", ".webm")) that is a file, or None."""
    for ext in extensions:
        path = os.path.join(directory, stem + ext)
        if os.path.isfile(path):
            return path
    return None


class LastFileReader:
    """`reader(path, ...)` = `read_bytes(path, ...)`, reusing the last file's bytes when `path` repeats.

    Examples that share a file (the questions of one image) usually come in a row; this reads it once per run of
    them without holding more than one file in memory.
    """

    def __init__(self, dataset: str):
        self.dataset = dataset
        self._path: str | None = None
        self._bytes: bytes = b""

    def __call__(self, path: str, *, what: str = "file", context: str = "") -> bytes:
        """The bytes of `path` (see `read_bytes`), from memory when it is the last path read."""
        if path != self._path:
            self._bytes = read_bytes(path, self.dataset, what=what, context=context)
            self._path = path
        return self._bytes


class VideoReader(LastFileReader):
    """`reader(path, context=...)`: a video's bytes, checked the first time `path` comes, then as `LastFileReader`.

    `check_video` makes a truncated or corrupt file one clear error at build time; the bytes are read once per run
    of examples that share the video.
    """

    def __init__(self, dataset: str):
        super().__init__(dataset)
        self._checked: set[str] = set()

    def __call__(self, path: str, *, context: str = "") -> bytes:
        """The bytes of the video `path`; FileNotFoundError / ValueError naming it (and `context`)."""
        if path not in self._checked:
            check_video(path, self.dataset, context=context)
            self._checked.add(path)
        return super().__call__(path, what="video", context=context)


class EncodedVideo(tfds.features.Tensor):
    """A video file's bytes, stored as-is (a scalar tf.string; decoded by the pp op `frames_from_video`).

    `tfds.features.Video` decodes every frame with an ffmpeg binary while building and stores the frames; this keeps
    the container (a few hundred KB per clip instead of megabytes of frames) and leaves decoding and frame sampling to
    the input pipeline. A subclass only so that mock data (`datasets/mock.py`) can tell a video from a text.
    """

    def __init__(self, *, doc=None, **kwargs):
        kwargs.pop("shape", None), kwargs.pop("dtype", None)  # fixed; passed when TFDS restores it from features.json
        super().__init__(shape=(), dtype=np.object_, doc=doc, **kwargs)


def skip_missing_videos(dataset: str, split: str, videos: set[str], examples: int, total: int, folder: str) -> None:
    """Logs that `examples` of the `total` examples of `split` are left out because `videos` are not in `folder`.

    Video datasets built from YouTube ids always miss some videos (deleted or private ones); their examples are left
    out with one warning per split naming how many and the first few, not silently. FileNotFoundError when every
    example of the split is left out (a wrong folder, more likely than a dataset gone entirely).
    """
    if not videos:
        return
    if examples >= total:
        raise FileNotFoundError(f"{dataset}: none of the videos of the {split} split is in {folder}")
    shown = ", ".join(sorted(videos)[:5]) + (", ..." if len(videos) > 5 else "")
    logging.warning(
        "%s: %d videos of the %s split are not in %s (%s); their %d of %d examples are left out.",
        *(dataset, len(videos), split, folder, shown, examples, total),
    )


def present_videos(
    examples: Sequence[dict],
    find: Callable[[str], str | None],
    dataset: str,
    split: str,
    folder: str,
    *,
    key: str = "video_id",
) -> Iterator[tuple[int, dict, str]]:
    """(index, example, video path) for each of `examples` whose video `find(example[key])` finds, in order.

    The others are left out and, once all are through, logged by `skip_missing_videos` (their videos named;
    FileNotFoundError when none of the split's videos is in `folder`).
    """
    missing, left_out = set(), 0
    for index, example in enumerate(examples):
        path = find(example[key])
        if path is None:
            missing.add(example[key])
            left_out += 1
            continue
        yield index, example, path
    skip_missing_videos(dataset, split, missing, left_out, len(examples), folder)


def _why(e: BaseException) -> str:
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip().rstrip(".")


def _av():
    import av  # noqa: PLC0415 (only video builders need PyAV)

    return av


def check_video(path: str, dataset: str, *, context: str = "") -> None:
    """Raises unless `path` is a video PyAV reads: FileNotFoundError when absent, else ValueError naming the file.

    Opens the container and decodes its first video frame (not the whole clip), so a truncated download or a saved
    error page is one error at build time instead of a failing input pipeline later.
    """
    where = f"{path}{' ' + context if context else ''}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: video {where} not found")
    av = _av()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            next(container.decode(container.streams.video[0]))
    except StopIteration:
        raise ValueError(f"{dataset}: video {where} has no decodable frame") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise ValueError(f"{dataset}: video {where} is not a readable video ({_why(e)})") from None


def cut_video(path: str, start: float, end: float, dataset: str, *, context: str = "") -> tuple[bytes, int]:
    """(MP4 bytes, frame count): the frames of `path` whose time lies in [start, end] seconds, re-encoded.

    Keeps the source's frame rate and size (rounded down to even numbers, as H.264's 4:2:0 needs), x264 at CRF 18
    (visually lossless). A window past the end of the video (annotations are sometimes longer than the file) keeps
    the frames there are; one that holds no frame at all keeps the video's last frame, so every segment has a clip.
    FileNotFoundError / ValueError name the file as `check_video`'s do.
    """
    import io  # noqa: PLC0415
    from fractions import Fraction  # noqa: PLC0415

    where = f"{path}{' ' + context if context else ''}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: video {where} not found")
    av = _av()
    buf, count = io.BytesIO(), 0
    try:
        with av.open(path) as src:
            if not src.streams.video:
                raise ValueError("no video stream")
            stream = src.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            with av.open(buf, "w", format="mp4") as dst:
                out, last = None, None

                def write(frame):
                    nonlocal out, count
                    if out is None:
                        out = dst.add_stream("libx264", rate=rate)
                        out.width, out.height = max(2, frame.width // 2 * 2), max(2, frame.height // 2 * 2)
                        out.pix_fmt = "yuv420p"
                        out.options = {"crf": "18", "preset": "veryfast"}
                    f = frame.reformat(width=out.width, height=out.height, format="yuv420p")
                    f.pts, f.time_base = count, 1 / Fraction(rate)
                    count += 1
                    for packet in out.encode(f):
                        dst.mux(packet)

                if start > 0 and stream.time_base:
                    src.seek(int(start / stream.time_base), stream=stream)  # the keyframe at or before `start`
                for frame in src.decode(stream):
                    t = frame.time
                    if t is not None and t > end:
                        break
                    if t is None or t >= start - 1e-6:
                        write(frame)
                    else:
                        last = frame
                if count == 0 and last is not None:
                    write(last)
                if out is not None:
                    for packet in out.encode():
                        dst.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise ValueError(f"{dataset}: video {where} is not a readable video ({_why(e)})") from None
    if count == 0:
        raise ValueError(f"{dataset}: video {where} has no decodable frame")
    return buf.getvalue(), count
