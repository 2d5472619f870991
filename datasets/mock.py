"""Mock TFDS data: random examples that follow a TFDS builder's feature spec, read through the real decoding path.

    get_source(dict(name="vqa", split="train", mock=64))          # 64 random VQAv2-shaped examples, nothing built

For running a whole config (data, preprocessing, training, evaluation) on a machine that has none of the data: the
builder's `info.features` (defined in code, stock TFDS or `datasets/builders`) gives the structure; every example is
generated in Python, encoded and serialized with TFDS's own `serialize_example`, and deserialized exactly as
`TfdsSource` reads prepared files (images stay encoded bytes). Values are valid for their feature: images are small
random PNG/JPEG pictures (all images of one example share their size, so masks match images), boxes have min <= max,
class labels are in range, texts are short sentences over a small vocabulary (so a tokenizer can be trained on them),
videos (`EncodedVideo`) are small valid MPEG-4 files of 4 random frames, variable-length sequences hold
`SEQUENCE_LENGTH` items (in a real split such lists usually have one length, e.g. VQAv2's 10 answers, and evaluation
batches rely on it). Same (name, split, seed) -> same examples.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import builders
from datasets.base import AUTOTUNE, Source, shard_bounds
from datasets.builders.common import EncodedVideo
from datasets.tfds_source import skip_image_decoders

SEQUENCE_LENGTH = 3  # items in a variable-length Sequence; fixed, so that list fields batch like real splits do
WORDS = (
    "red blue green yellow cat dog shape circle square triangle what is the color of a on in two three yes no "
    "left right man woman table car tree sky water house people small large white black"
).split()


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))


def _video(rng: np.random.Generator, size: tuple[int, int], num_frames: int = 4) -> bytes:
    """A small valid MPEG-4 video (mp4 container) of `num_frames` random frames, about `size` (even sides)."""
    import av  # PyAV: only mock video datasets need it here

    h, w = max(2, size[0] // 2 * 2), max(2, size[1] // 2 * 2)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(num_frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


class _Generator:
    """Random values for one example of a tfds FeaturesDict (the input format of `encode_example`)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.size = (int(rng.integers(24, 65)), int(rng.integers(24, 65)))  # (H, W), shared by the example's images

    def value(self, feature):
        f, rng = tfds.features, self.rng
        if isinstance(feature, f.FeaturesDict):
            return {k: self.value(v) for k, v in feature.items()}
        if isinstance(feature, f.Sequence):
            n = feature._length if feature._length is not None else SEQUENCE_LENGTH
            items = [self.value(feature.feature) for _ in range(n)]
            if isinstance(feature.feature, f.FeaturesDict):  # a sequence of dicts is encoded as a dict of lists
                return {k: [item[k] for item in items] for k in feature.feature.keys()}
            return items
        if isinstance(feature, f.Image):
            channels = feature.shape[-1] or 3
            shape = tuple(s if s is not None else d for s, d in zip(feature.shape[:2], self.size)) + (channels,)
            if channels == 1:  # masks: a random rectangle
                img = np.zeros(shape, np.uint8)
                y0, x0 = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
                img[y0 : y0 + shape[0] // 2, x0 : x0 + shape[1] // 2] = 1
                return img
            return rng.integers(0, 256, size=shape, dtype=np.uint8)
        if isinstance(feature, EncodedVideo):  # before Tensor: a video file's bytes, not a text
            return _video(rng, self.size)
        if isinstance(feature, f.BBoxFeature):
            y = np.sort(rng.uniform(0, 1, 2))
            x = np.sort(rng.uniform(0, 1, 2))
            return f.BBox(ymin=float(y[0]), xmin=float(x[0]), ymax=float(y[1]), xmax=float(x[1]))
        if isinstance(feature, f.ClassLabel):
            return int(rng.integers(0, feature.num_classes))
        if isinstance(feature, f.Text):
            return _text(rng)
        if isinstance(feature, f.Tensor):
            shape = tuple(s if s is not None else int(rng.integers(1, 4)) for s in feature.shape)
            dtype = np.dtype(feature.np_dtype)
            if dtype.kind in "OSU":
                return (
                    np.array([_text(rng) for _ in range(int(np.prod(shape)))], object).reshape(shape)
                    if shape
                    else _text(rng)
                )
            if dtype.kind == "b":
                return rng.integers(0, 2, size=shape).astype(bool)
            if dtype.kind in "iu":
                return rng.integers(0, 100, size=shape).astype(dtype)
            return rng.uniform(0, 1, size=shape).astype(dtype)
        raise NotImplementedError(f"mock data: no generator for the TFDS feature {type(feature).__name__}")


class MockTfdsSource(Source):
    """`num_examples` random examples with the feature spec of the TFDS dataset `name` (nothing needs to be built)."""

    def __init__(self, name: str, split: str, num_examples: int = 32, seed: int = 0):
        builders.register_all()
        if num_examples < 1:
            raise ValueError(f"mock data needs num_examples >= 1, got {num_examples}")
        self.name, self.split, self.num_examples = name, split, int(num_examples)
        self.features = tfds.builder(name).info.features
        rng = np.random.default_rng([seed, zlib.crc32(f"{name}/{split}".encode())])
        self._serialized = [
            self.features.serialize_example(_Generator(rng).value(self.features)) for _ in range(self.num_examples)
        ]
        self._decoders = skip_image_decoders(self.features)

    def describe(self) -> str:
        """A one-line description (kind, name, size) for logs."""
        return f"mock:{self.name}[{self.split}] ({self.num_examples} random examples)"

    def shard_num_examples(self, process_index: int = 0, process_count: int = 1) -> int:
        """Examples in the shard of process `process_index` of `process_count`."""
        start, end = shard_bounds(self.num_examples, process_index, process_count)
        return end - start

    def get_tfdata(
        self, *, process_index: int = 0, process_count: int = 1, ordered: bool = False, seed=None
    ) -> tf.data.Dataset:
        """This process's shard as a `tf.data.Dataset` (see `datasets.base`)."""
        start, end = shard_bounds(self.num_examples, process_index, process_count)
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(self._serialized[start:end], tf.string))
        if not ordered:
            ds = ds.shuffle(max(end - start, 1), seed=seed, reshuffle_each_iteration=False)
        features, decoders = self.features, self._decoders
        return ds.map(
            lambda x: features.deserialize_example(x, decoders=decoders),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
