"""JSONL data source: one JSON object per line, images as files next to it or inline base64.

    from datasets import sources
    src = sources.get_source(dict(name="jsonl", path="data/train.jsonl", image_root=None, skip_bad_rows=False))

    {"image": "images/0001.jpg", "question": "what is this?", "answers": ["a cat", "cat"], "id": 17}
    {"image_bytes": "iVBORw0KGgo...", "question": "and this?", "answers": ["a dog"], "id": 18}

`image` is the image's path relative to the JSONL file's folder (or to `image_root`); `image_bytes` holds the
base64-encoded file inline. The source yields `image` as the encoded file (a scalar tf.string; the pp op `decode`
decodes it). Every other field is kept: strings and lists of strings as tf.string, integers (and booleans) as int64,
floats as float32, lists of numbers likewise; anything else (objects, nested lists) as its JSON text. A field
missing from a row (or null) gets "" / 0 / an empty list; an int column that meets a float becomes float. Field
names starting with "_" are reserved. Blank lines are ignored.

Several images or a video per example (the model's `image [B, F, H, W, 3]` + `frame_mask`):

    {"images": ["frames/0001_a.jpg", "frames/0001_b.jpg"], "prefix": "caption en", "suffix": "...", "id": 1}
    {"video": "clips/0002.mp4", "prefix": "caption en", "suffix": "...", "id": 2}

`images` is a non-empty list of image paths (relative as `image`); the source yields `images`, tf.string `[N]`, the
N encoded files, and `images/filenames`, tf.string `[N]`, their paths; the pp op `frames_from_images(num_frames=F,
size=S)` samples and decodes F of them (all N files are read: for long frame sequences, prefer a video). `video` is
the path of a video file (MP4, WebM, MKV, AVI, ...: what FFmpeg reads); the source yields `video`, the container's
bytes (a scalar tf.string), and `video/filename`; `frames_from_video(num_frames=F, size=S)` decodes it. The ops name
the file when one cannot be decoded. Every row of a file has the same one of `image`/`image_bytes`, `images` or
`video` (a row with another is a bad row).

Bad rows -- malformed JSON, not an object, no image, a missing image or video file, an image or video path that
leaves the dataset's folder (`../`, absolute paths elsewhere; the check is on the path as written, so symlinks placed
inside the folder are followed), bad base64, an image that is empty or not an image file at all (its first bytes are
checked; a remote image when it is read), an empty video file, a field whose type differs from earlier rows -- raise
`DataError` (`datasets.base`; also `sources.DataError`) naming the file and line ("path/train.jsonl:12: image file
not found: ..."), or with `skip_bad_rows=True` are skipped, counted (`num_skipped`, `skipped` = [(line, reason), ...])
and reported with a warning.

The whole file is parsed and checked (every image and video path is stat-ed) when the source is created; images and
videos are read lazily by tf.data (a video's frames are checked when the pp op decodes it).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import posixpath

import numpy as np
import tensorflow as tf

from datasets.base import AUTOTUNE, DataError, Source, shard_bounds
from paligemma import paths

log = logging.getLogger(__name__)


_SCALAR_DEFAULT = {"str": "", "json": "", "int": 0, "float": 0.0}
_TF_DTYPE = {"str": tf.string, "json": tf.string, "int": tf.int64, "float": tf.float32}
_NP_DTYPE = {"str": object, "json": object, "int": np.int64, "float": np.float32}


def _kind(value) -> str | None:
    """Column kind of a JSON value; None for an empty list (compatible with any list kind)."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, bool) or isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        if not value:
            return None
        kinds = {_kind(v) if not isinstance(v, (list, dict)) and v is not None else "json" for v in value}
        if kinds == {"str"}:
            return "list:str"
        if kinds <= {"int", "float"}:
            return "list:float" if "float" in kinds else "list:int"
        return "json"
    return "json"


def _merge_kinds(old: str | None, new: str | None) -> str | None:
    """The kind of a column after a value of kind `new`; raises ValueError on a conflict."""
    if old is None or old == new:
        return new if old is None else old
    if new is None:  # empty list
        if old.startswith("list:"):
            return old
        raise ValueError("an empty list")
    if {old, new} == {"int", "float"}:
        return "float"
    if {old, new} == {"list:int", "list:float"}:
        return "list:float"
    raise ValueError(new)


_KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "json": "a JSON object/array",
    "list:str": "a list of strings",
    "list:int": "a list of integers",
    "list:float": "a list of numbers",
    None: "an empty list",
}


class JsonlSource(Source):
    """Examples from a JSONL file; images are files next to it (or inline base64)."""

    def __init__(self, path: str, image_root: str | None = None, skip_bad_rows: bool = False):
        self.path = os.fspath(path)
        if not paths.isfile(self.path):
            raise DataError(f"JSONL file not found: {self.path}")
        root = image_root if image_root is not None else paths.dirname(self.path) or "."
        self.remote = paths.is_remote(root)
        self.root = _normpath(root) if self.remote else os.path.abspath(root)
        # Remote images are checked against one listing of the folder, not one request per row.
        self._remote_files = set(paths.find(self.root)) if self.remote else None
        self.skip_bad_rows = skip_bad_rows
        self.skipped: list[tuple[int, str]] = []  # (line number, reason) of every skipped row
        self.num_lines = 0
        self.media: str | None = None  # "image", "images" or "video": what every row has (the first good row's)
        self._media_line = 0
        rows: list[tuple[int, dict, object, bytes]] = []  # line, fields, media path(s) ("" if inline), inline bytes
        kinds: dict[str, str | None] = {}
        kind_line: dict[str, int] = {}

        with paths.open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                self.num_lines = lineno
                if not raw.strip():
                    continue
                try:
                    row = self._parse_row(raw, kinds, kind_line, lineno)
                except DataError as e:
                    if not skip_bad_rows:
                        raise DataError(f"{self.path}:{lineno}: {e}") from None
                    self.skipped.append((lineno, str(e)))
                    continue
                rows.append(row)

        if self.skipped:
            first = "; ".join(f"line {n}: {r}" for n, r in self.skipped[:3])
            log.warning(
                "%s: skipped %d bad row(s) of %d (%s%s)",
                self.path,
                len(self.skipped),
                len(rows) + len(self.skipped),
                first,
                "; ..." if len(self.skipped) > 3 else "",
            )
        if not rows:
            raise DataError(
                f"{self.path}: no usable rows" + (f" ({len(self.skipped)} skipped)" if self.skipped else "")
            )
        self.num_examples = len(rows)
        self.kinds = {k: (v if v is not None else "list:str") for k, v in kinds.items()}
        self._columns = self._make_columns(rows)
        self._base_cache: dict[tuple[int, int], tf.data.Dataset] = {}

    @property
    def num_skipped(self) -> int:
        """Number of bad rows skipped (`skip_bad_rows=True`)."""
        return len(self.skipped)

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        s = f"jsonl:{self.path} ({self.num_examples} examples"
        return s + (f", {self.num_skipped} bad rows skipped)" if self.skipped else ")")

    def _parse_row(self, raw: bytes, kinds, kind_line, lineno):
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"malformed JSON ({e})") from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}")
        media = [k for k in _MEDIA_KEYS if obj.get(k) is not None]
        if "image" in media and "image_bytes" in media:
            raise DataError("has both `image` and `image_bytes`")
        if not media:
            raise DataError(
                "has no `image` (a path) or `image_bytes` (base64), `images` (a list of paths) or `video` (a path)"
            )
        if len(media) > 1:
            raise DataError(
                f"has both `{media[0]}` and `{media[1]}`: one of image/image_bytes, images or video per row"
            )
        kind = "image" if media[0] == "image_bytes" else media[0]
        if self.media is not None and kind != self.media:
            raise DataError(
                f"has `{media[0]}` but line {self._media_line} has `{self.media}`: every row of a file has the same "
                f"kind of input (image, images or video)"
            )
        image_path, image_bytes = "", b""
        if kind == "images":
            rels = obj["images"]
            if not isinstance(rels, list) or not rels:
                raise DataError(f"`images` must be a non-empty list of paths, got {rels!r}")
            image_path = [self._resolve(rel, "image", "`images` entries") for rel in rels]
        elif kind == "video":
            image_path = self._resolve(obj["video"], "video", "`video`")
        elif media[0] == "image":
            image_path = self._resolve(obj["image"], "image", "`image`")
        else:
            try:
                image_bytes = base64.b64decode(obj["image_bytes"], validate=True)
            except (binascii.Error, TypeError, ValueError) as e:
                raise DataError(f"`image_bytes` is not valid base64 ({e})") from None
            if not image_bytes:
                raise DataError("`image_bytes` is empty")
            if not _looks_like_image(image_bytes[:_HEAD_BYTES]):
                raise DataError(f"`image_bytes` {_not_an_image(image_bytes[:_HEAD_BYTES])}")
        fields = {}
        new_kinds = {}
        for key, value in obj.items():
            if key in _MEDIA_KEYS or value is None:
                continue
            if key.startswith("_"):
                raise DataError(f"field names starting with '_' are reserved: {key!r}")
            k = _kind(value)
            try:
                new_kinds[key] = _merge_kinds(new_kinds.get(key, kinds.get(key)), k)
            except ValueError:
                raise DataError(
                    f"field {key!r} is {_KIND_WORDS[k]} here but {_KIND_WORDS[kinds.get(key)]} on line "
                    f"{kind_line.get(key)}"
                ) from None
            fields[key] = json.dumps(value) if new_kinds[key] == "json" and not isinstance(value, str) else value
        # Only a good row may change the column kinds.
        for key, k in new_kinds.items():
            if kinds.get(key) != k:
                kinds[key] = k
                kind_line.setdefault(key, lineno)
        if self.media is None:
            self.media, self._media_line = kind, lineno
        return lineno, fields, image_path, image_bytes

    def _resolve(self, rel, what: str, field: str) -> str:
        """The checked full path of an image or video file named in a row (DataError naming the problem)."""
        if not isinstance(rel, str) or not rel:
            raise DataError(f"{field} must be a non-empty path string, got {rel!r}")
        if self.remote:
            full = _normpath(paths.join(self.root, rel))
            if not full.startswith(self.root.rstrip("/") + "/"):
                raise DataError(f"{what} path {rel!r} points outside the dataset folder {self.root}")
            if full not in self._remote_files:
                raise DataError(f"{what} file not found: {full}")
            return full
        full = os.path.normpath(os.path.join(self.root, rel))
        if os.path.commonpath([full, self.root]) != self.root:
            raise DataError(f"{what} path {rel!r} points outside the dataset folder {self.root}")
        if not os.path.isfile(full):
            raise DataError(f"{what} file not found: {full}")
        try:
            with open(full, "rb") as f:
                head = f.read(_HEAD_BYTES)
        except OSError as e:
            raise DataError(f"{what} file {full} cannot be read ({e})") from None
        if what == "video":
            if not head:
                raise DataError(f"video file {full} is empty; {_FIX}")
        elif not _looks_like_image(head):
            raise DataError(f"image file {full} {_not_an_image(head)}")
        return full

    def _make_columns(self, rows):
        cols = {"_line": np.array([r[0] for r in rows], dtype=np.int64)}
        if self.media == "images":  # ragged: the paths of each row
            flat = np.array([p for r in rows for p in r[2]], dtype=object)
            cols["_images"] = (flat, np.array([len(r[2]) for r in rows], np.int64), tf.string)
        elif self.media == "video":
            cols["_video_path"] = np.array([r[2] for r in rows], dtype=object)
        else:
            cols["_image_path"] = np.array([r[2] for r in rows], dtype=object)
            cols["_image_bytes"] = np.array([r[3] for r in rows], dtype=object)
        for key, kind in self.kinds.items():
            values = [r[1].get(key) for r in rows]
            if kind.startswith("list:"):
                base = kind[5:]
                lengths = np.array([len(v) if v else 0 for v in values], np.int64)
                flat = [x for v in values if v for x in v]
                if base == "str":
                    flat_np = np.array(flat, dtype=object)
                else:
                    flat_np = np.array(flat, dtype=_NP_DTYPE[base])
                cols[key] = (flat_np, lengths, _TF_DTYPE[base])
            else:
                default = _SCALAR_DEFAULT[kind]
                if kind == "json":
                    values = [v if isinstance(v, str) else (json.dumps(v) if v is not None else "") for v in values]
                cols[key] = np.array([default if v is None else v for v in values], dtype=_NP_DTYPE[kind])
        return cols

    def _base(self, process_index, process_count) -> tf.data.Dataset:
        key = (process_index, process_count)
        if key not in self._base_cache:
            with tf.init_scope():  # eager, even when called while tracing a function (e.g. inside `flat_map`)
                self._base_cache[key] = self._make_base(process_index, process_count)
        return self._base_cache[key]

    def _make_base(self, process_index, process_count) -> tf.data.Dataset:
        start, end = shard_bounds(self.num_examples, process_index, process_count)
        tensors = {}
        for name, col in self._columns.items():
            if isinstance(col, tuple):
                flat, lengths, dtype = col
                offsets = np.concatenate([[0], np.cumsum(lengths)])
                sub = flat[offsets[start] : offsets[end]]
                tensors[name] = tf.RaggedTensor.from_row_lengths(
                    tf.constant(sub, dtype=dtype, shape=[len(sub)]), tf.constant(lengths[start:end], tf.int64)
                )
            else:
                sub = col[start:end]
                tensors[name] = tf.constant(sub, dtype=tf.string if sub.dtype == object else None)
        return tf.data.Dataset.from_tensor_slices(tensors)

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        ds = self._base(process_index, process_count)
        n = self.shard_num_examples(process_index, process_count)
        if not ordered and n > 1:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=False)

        def read_image(line, path, inline=None):
            image = (
                read(path)
                if inline is None
                else tf.cond(tf.strings.length(path) > 0, lambda: read(path), lambda: inline)
            )
            # Checked at creation for local files; again here for remote ones and files changed since.
            where = tf.strings.join([self.path, ":", tf.strings.as_string(line), ": image ", path])
            check = tf.debugging.Assert(
                _tf_looks_like_image(image),
                [tf.strings.join([where, " is not an image file (empty or unknown format); ", _FIX])],
            )
            with tf.control_dependencies([check]):
                return tf.identity(image)

        def load(ex):
            ex = dict(ex)
            line = ex.pop("_line")
            if self.media == "images":
                files = ex.pop("_images")
                ex["images"] = tf.map_fn(
                    lambda p: read_image(line, p), files, fn_output_signature=tf.TensorSpec([], tf.string)
                )
                ex["images/filenames"] = files
            elif self.media == "video":
                path = ex.pop("_video_path")
                data = read(path)
                where = tf.strings.join([self.path, ":", tf.strings.as_string(line), ": video ", path])
                check = tf.debugging.Assert(
                    tf.strings.length(data) > 0, [tf.strings.join([where, " is an empty file; ", _FIX])]
                )
                with tf.control_dependencies([check]):
                    ex["video"] = tf.identity(data)
                ex["video/filename"] = path
            else:
                ex["image"] = read_image(line, ex.pop("_image_path"), ex.pop("_image_bytes"))
            return ex

        read = _read_remote if self.remote else tf.io.read_file

        return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)


_MEDIA_KEYS = ("image", "image_bytes", "images", "video")

# Leading bytes of the image formats a decoder may read (JPEG, PNG, GIF, BMP, WebP, TIFF, JPEG XL).
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"\xff\x0a")
_JXL_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_HEAD_BYTES = 16
_FIX = "replace or remove the file, or set skip_bad_rows=True to skip such rows"


def _looks_like_image(head: bytes) -> bool:
    """Whether `head` (the first bytes of a file) starts like an image file of a known format."""
    return head.startswith(_MAGIC) or head.startswith(_JXL_BOX) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _not_an_image(head: bytes) -> str:
    what = "is empty" if not head else f"is not an image (unknown format, starts with {head[:12]!r})"
    return f"{what}; {_FIX}"


def _tf_looks_like_image(b: tf.Tensor) -> tf.Tensor:
    """`_looks_like_image` in graph code, for a scalar tf.string."""
    head = tf.strings.join([tf.strings.substr(b, 0, _HEAD_BYTES), b"\x01" * _HEAD_BYTES])  # substr needs the length
    ok = tf.constant(False)
    for m in (*_MAGIC, _JXL_BOX):
        ok = tf.logical_or(ok, tf.equal(tf.strings.substr(head, 0, len(m)), m))
    webp = tf.logical_and(
        tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    )
    return tf.logical_or(ok, webp)


def _normpath(url: str) -> str:
    """posixpath.normpath of a URL's path part (gs://b/x/../y -> gs://b/y)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{posixpath.normpath(rest)}"


def _read_remote(path: tf.Tensor) -> tf.Tensor:
    """tf.io.read_file for URLs through the path layer (TensorFlow's own GCS client cannot reach an emulator)."""
    data = tf.numpy_function(lambda p: paths.read_bytes(p.decode("utf-8")), [path], tf.string, stateful=False)
    return tf.ensure_shape(data, [])
