r"""Answers a prompt about images with a checkpoint: `python -m tools.predict`.

    python -m tools.predict --checkpoint paligemma-3b-mix-224.npz --tokenizer paligemma_tokenizer.model \
        --image cat.jpg dog.jpg --prompt "caption en"
    python -m tools.predict ... --image street.jpg --prompt "detect car ; person" --draw boxes.png
    python -m tools.predict ... --image street.jpg --prompt "segment car" --draw masks.png --vqvae vae-oid.npz
    python -m tools.predict ... --image frame0.png frame1.png --multi_image --prompt "answer en what changed?"
    python -m tools.predict ... --video clip.mp4 --frames 8 --prompt "caption en" --draw sheet.png
    python -m tools.predict ... --image cat.jpg --prompt "caption en" --quantize int8   # or int4: weight-only

Each image is decoded to the pixels the training pipeline's pp op `decode` gives (`datasets.images`: 16-bit PNGs,
palette, alpha, CMYK, EXIF orientation and the size limit alike), resized as the pp op `resize` does (bilinear,
antialiased; the same uint8 pixels but for one level in ~0.2% of them on some sizes, see `datasets.images.resize`) to
the model's resolution (`--res` resamples the checkpoint's position embedding to another one) and scaled to [-1, 1] as
`value_range(-1, 1)` does; the prompt is laid out as `<bos> prompt "\n"` (`datasets/pp/layout.py`'s `prompt_layout`) and
decoded with `paligemma.decode.generate`. One line per image is printed: `path: answer` (loc/seg tokens are printed as
text, a newline inside an answer as `\n`). With `--multi_image` all images are the frames of one example (`[1, F, H, W,
3]`, frame_mask all 1) and one answer is printed (`--image` may be repeated: `--image a.png --image b.png` is `--image
a.png b.png`). `--video clip.mp4` is one example of `--frames` (default 16) frames sampled as training samples them
(`datasets.video.read_video`: uniform, deterministic; a shorter clip is padded with frames marked 0 in its frame_mask),
each resized and scaled like an image; it needs PyAV (`pip install av`).

`--draw out.png` parses the `<loc>` boxes (and `<seg>` masks, decoded with the VQ-VAE given by `--vqvae`) of each
answer and draws them, labelled, on the original image; with several images the files are `out_0.png`,
`out_1.png`, ... With the frames of one example (`--multi_image`, `--video`) `--draw out.png` is one contact sheet
of the frames used (padding left out; `tools.draw.frames_grid`), each with the answer's boxes and masks when it has
any, and the answer as its caption. `--quantize int8|int4` (optionally `--quantize_tile N`) decodes with weight-only
quantized weights (`paligemma.quantization`). This tool does not import TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image

from datasets import (
    images,  # numpy/PIL only: the training pipeline's image semantics without TensorFlow
    video,  # numpy (PyAV once a video is read): the pp frame ops' sampling without TensorFlow
)
from datasets.pp import layout  # numpy only: importing it does not import TensorFlow
from paligemma import cli, decode, host_memory, paths, quantization, siglip, vqvae
from paligemma import model as model_lib
from paligemma.checkpoints import CheckpointError, training
from paligemma.checkpoints.formats import step_folder
from paligemma.errors import UserError
from paligemma.tokenizer import Tokenizer, parse_segmentations
from tools import draw


class PredictError(UserError, ValueError):
    """A usage or input problem, reported as `error: ...` with exit status 2."""


DEFAULT_FRAMES = 16  # --frames: frames sampled from a --video


def load_image(path: str):
    """Reads `path` as an RGB PIL image with the training pipeline's pixels (`datasets.images.decode`).

    16-bit PNGs, palette, alpha (dropped), CMYK JPEGs and EXIF orientation (ignored) are read exactly as the pp op
    `decode` reads them. PredictError for a missing, unreadable or too large (`images.MAX_PIXELS`) file.
    """
    if not paths.isfile(path):
        raise PredictError(f"image file not found: {path}")
    try:
        with paths.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PredictError(f"cannot read image {path}: {e}") from e
    try:
        return Image.fromarray(images.decode(data, name=path))
    except images.ImageError as e:
        raise PredictError(f"cannot read image {e}") from None


def load_video(path: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """`(frames uint8 [F, H, W, 3], frame_mask bool [F])` of the video `path`, sampled as training samples them.

    `datasets.video.read_video` (uniform, deterministic; padding frames are zeros with mask 0). PredictError for a
    missing or unreadable file (one line naming it), or when PyAV is not installed.
    """
    if not paths.isfile(path):
        raise PredictError(f"video file not found: {path}")
    try:
        if paths.is_remote(path):
            with paths.open(path, "rb") as f:
                source = f.read()
        else:
            source = path  # read by PyAV from the file, not loaded whole
        frames, mask = video.read_video(source, num_frames, name=path)
    except ImportError as e:
        raise PredictError(f"--video {path}: {e}") from None
    except OSError as e:
        raise PredictError(f"cannot read video {path}: {e}") from None
    except ValueError as e:  # datasets.video.VideoError names the file
        text = " ".join(str(e).split())  # one line
        raise PredictError(text if path in text else f"cannot read video {path}: {text}") from None
    return np.asarray(frames, np.uint8), np.asarray(mask, bool)


def preprocess(image, size: tuple[int, int]) -> np.ndarray:
    """RGB image (PIL or uint8 `[H, W, 3]`) -> float32 `[H, W, 3]` in [-1, 1] at `size` = (height, width).

    The pixels of the pp ops `resize(size)|value_range(-1, 1)` (bilinear, antialiased: `datasets.images.resize`).
    """
    pixels = images.resize(np.asarray(image, np.uint8), tuple(size))
    return pixels.astype(np.float32) / np.float32(255) * np.float32(2) + np.float32(-1)


def build_batch(
    images: Sequence[np.ndarray],
    prompt_ids: Sequence[int],
    *,
    bos_id: int,
    sep_id: int,
    pad_id: int,
    multi_image: bool,
    frame_mask: Sequence[bool] | None = None,
) -> dict[str, np.ndarray]:
    """The eval-prompt batch: image `[N, H, W, 3]`, text/mask_ar/mask_input int32 `[B, T]`.

    With `multi_image` the N images are the frames of one example: image `[1, N, H, W, 3]` and frame_mask int32
    `[1, N]` (`frame_mask`, 1 = a real frame; default all 1).
    """
    row = layout.prompt_layout(prompt_ids, len(prompt_ids) + 2, bos_id=bos_id, sep_id=sep_id, pad_id=pad_id)
    pixels = np.stack(images)[None] if multi_image else np.stack(images)
    b = pixels.shape[0]
    tile = lambda x: np.tile(x[None], (b, 1)).astype(np.int32)  # noqa: E731
    batch = {
        "image": pixels,
        "text": tile(row["text"]),
        "mask_ar": tile(row["mask_ar"]),
        "mask_input": tile(row["mask_input"]),
    }
    if multi_image:
        mask = np.ones(len(images), np.int32) if frame_mask is None else np.asarray(frame_mask).astype(np.int32)
        if mask.shape != (len(images),):
            raise ValueError(f"frame_mask must have one value per image ({len(images)}), got shape {mask.shape}")
        batch["frame_mask"] = mask[None]
    elif frame_mask is not None:
        raise ValueError("frame_mask is for the frames of one example (multi_image=True)")
    return batch


def _out_paths(draw: str, n: int) -> list[str]:
    if n == 1:
        return [draw]
    stem, ext = os.path.splitext(draw)
    return [f"{stem}_{i}{ext or '.png'}" for i in range(n)]


def _save_png(img, out_path: str) -> None:
    folder = paths.dirname(out_path)
    if folder:
        paths.makedirs(folder)
    paths.atomic_write(out_path, lambda f: img.save(f, format="PNG"))  # local or gs://


def annotate(image, text: str, vqvae_params: Any = None):
    """The PIL `image` with the boxes (and masks) of the answer `text` drawn on it, or None when it has no boxes.

    Masks are drawn when `vqvae_params` is given and an object has its 16 seg tokens.
    """
    objects = parse_segmentations(text)
    if not objects:
        return None
    img = image
    with_codes = [(box, codes, label) for box, codes, label in objects if codes is not None]
    if with_codes and vqvae_params is not None:
        logits = np.asarray(vqvae.decode_jit(vqvae_params, np.asarray([c for _, c, _ in with_codes], np.int32)))
        w, h = image.size
        masks = [draw.mask_in_box(m, box, h, w) for m, (box, _, _) in zip(logits, with_codes)]
        img = draw.draw_masks(img, masks, labels=[label for _, _, label in with_codes])
    return draw.draw_detections(img, [(box, label) for box, _, label in objects])


def draw_answer(image, text: str, out_path: str, vqvae_params: Any = None) -> bool:
    """Draws the boxes (and masks) of the answer `text` on the PIL `image` and saves a PNG at `out_path`.

    Masks are drawn when `vqvae_params` is given and an object has its 16 seg tokens. Returns False (nothing
    written) when the answer has no boxes.
    """
    img = annotate(image, text, vqvae_params)
    if img is None:
        return False
    _save_png(img, out_path)
    return True


def draw_frames(frames: Sequence[Any], text: str, out_path: str, vqvae_params: Any = None) -> None:
    """Saves a contact sheet of `frames` (PIL images or uint8 `[H, W, 3]`) at `out_path`: `tools.draw.frames_grid`.

    Each frame carries the boxes (and masks) of the answer `text` when it has any; `text` is the caption.
    """
    pil = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    tiles = [annotate(img, text, vqvae_params) or img for img in pil]
    _save_png(draw.frames_grid(tiles, caption=text), out_path)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command-line flags (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m tools.predict",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help=".npz, HF folder, paligemma.checkpoints.save folder, a training workdir (its latest readable step, or "
        "--step N) or one of its step folders (WORKDIR/checkpoints/N)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="SentencePiece .model (loc/seg tokens are added if missing); default: a training workdir's "
        "config.tokenizer file, or the tokenizer.model the run trained",
    )
    p.add_argument(
        "--image",
        action="extend",
        nargs="+",
        default=None,
        help="image file(s); repeatable: --image a.png --image b.png",
    )
    p.add_argument("--video", default=None, help="a video file: its frames are one example (needs PyAV)")
    p.add_argument(
        "--frames", type=int, default=None, help=f"with --video: frames sampled from it (default {DEFAULT_FRAMES})"
    )
    p.add_argument("--prompt", required=True, help='e.g. "caption en", "answer en what is this?", "detect cat"')
    p.add_argument("--sampler", default="greedy", help='greedy, "temperature(t=0.7)", "top_k(40)", "beam(n=4)", ...')
    p.add_argument("--max_decode_len", type=int, default=64)
    p.add_argument("--res", type=int, default=None, help="run at this resolution (default: the checkpoint's)")
    p.add_argument("--multi_image", action="store_true", help="feed all images as frames of one example")
    p.add_argument(
        "--draw",
        default=None,
        help="save boxes/masks of detect/segment answers to this PNG (frames of one example: a contact sheet)",
    )
    p.add_argument("--vqvae", default=None, help="vae-oid.npz, to draw segmentation masks")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic samplers")
    p.add_argument("--dtype", default=None, help="cast params while loading: float32, bfloat16, float16")
    p.add_argument("--step", type=int, default=None, help="a training workdir's step (default: the latest readable)")
    p.add_argument(
        "--quantize", default=None, help="weight-only quantized inference: int8 or int4 (paligemma.quantization)"
    )
    p.add_argument(
        "--quantize_tile",
        type=int,
        default=None,
        help="with --quantize: one scale per block of N weights along the contracted axis (default: per channel)",
    )
    return p.parse_args(list(argv))


def _run_dir(checkpoint: str) -> str:
    """The training workdir of `checkpoint` when it is a step folder (`{workdir}/checkpoints/{step}`), else itself."""
    folder = step_folder(checkpoint)
    return folder[0] if folder is not None else checkpoint


def _output_problem(flag: str, target: str) -> str | None:
    """Why the file `target` cannot be written (its folder is a file, or not writable), or None."""
    if paths.isdir(target):
        return f"{flag} {target} is a folder; pass a .png file name."
    if paths.is_remote(target):
        return None  # object stores have no folders to check; a write error is reported when it happens
    folder = os.path.dirname(os.path.abspath(target))
    while not os.path.exists(folder):  # the nearest existing folder: the missing ones below it are created
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"{flag} {target}: {folder} is a file, not a folder."
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{flag} {target}: the folder {folder} is not writable."
    return None


def check_inputs(args: argparse.Namespace) -> tuple[list[Any], np.ndarray | None, Tokenizer]:
    """Checks every input before any weights are read; returns `(images, frame_mask, tokenizer)`.

    `images`: the PIL images of `--image`, or the uint8 `[H, W, 3]` frames of `--video` (padding included);
    `frame_mask`: bool `[F]` for a `--video` (1 = a real frame), else None.

    Raises:
      PredictError: one line per problem (missing or unreadable checkpoint, step, tokenizer, images, video, --vqvae,
        a --draw file that cannot be written, bad --sampler, --max_decode_len, --frames or --quantize), all of them
        at once.
    """
    problems: list[str] = []
    if args.max_decode_len < 1:
        problems.append(f"--max_decode_len must be >= 1, got {args.max_decode_len}")
    problems += quantization.flag_problems(args.quantize, args.quantize_tile)
    try:
        decode.parse_sampler(args.sampler)
    except ValueError as e:
        problems.append(f"bad --sampler: {e}")
    if args.image and args.video:
        problems.append("pass --image or --video, not both")
    elif not args.image and not args.video:
        problems.append("pass --image FILE [FILE ...] or --video FILE: the input to answer about")
    if args.frames is not None and not args.video:
        problems.append("--frames is for --video (the frames sampled from the clip)")
    elif args.frames is not None and args.frames < 1:
        problems.append(f"--frames must be >= 1, got {args.frames}")
    originals, frame_mask = [], None
    for path in args.image or ():
        try:
            originals.append(load_image(path))
        except PredictError as e:
            problems.append(str(e))
    if args.video and not args.image and (args.frames is None or args.frames >= 1):
        try:
            frames, frame_mask = load_video(args.video, args.frames or DEFAULT_FRAMES)
            originals = list(frames)
        except PredictError as e:
            problems.append(str(e))
    run_config = None
    if not paths.exists(args.checkpoint):
        problems.append(
            f"checkpoint not found: {args.checkpoint} (pass a .npz file, a checkpoint folder or a training workdir)"
        )
    else:
        try:
            run_config = training.read_run_config(_run_dir(args.checkpoint))  # None unless a training run
            is_checkpoint = training.is_checkpoint_path(args.checkpoint)
        except CheckpointError as e:
            problems.append(f"cannot load --checkpoint: {e}")
            is_checkpoint = True
        if args.step is not None and is_checkpoint:
            problems.append(f"--step is for a training workdir; {args.checkpoint} is a checkpoint (one set of params)")
        elif args.step is not None and step_folder(args.checkpoint) is None:
            steps = training.checkpoint_steps(args.checkpoint)
            if args.step not in steps:
                problems.append(
                    f"--step {args.step}: {args.checkpoint} has no checkpoint of that step; available steps: {steps}"
                )
    tokenizer = args.tokenizer
    if tokenizer is None and run_config is not None:  # the run's tokenizer file, or the one it trained
        run_dir = _run_dir(args.checkpoint)
        for candidate in (run_config.get("tokenizer"), paths.join(run_dir, "tokenizer.model")):
            if isinstance(candidate, str) and paths.isfile(candidate):
                tokenizer = candidate
                break
    tok = None
    if tokenizer is None:
        problems.append("pass --tokenizer PATH (the SentencePiece .model the checkpoint was trained with)")
    elif not paths.isfile(tokenizer):
        problems.append(f"tokenizer file not found: {tokenizer}")
    else:
        try:
            tok = Tokenizer(tokenizer)
        except (FileNotFoundError, ValueError) as e:
            problems.append(f"bad --tokenizer: {e}")
    if args.vqvae and not paths.isfile(args.vqvae):
        problems.append(f"--vqvae file not found: {args.vqvae} (the released vae-oid.npz)")
    if args.draw and (problem := _output_problem("--draw", args.draw)):  # the folder of every --draw file
        problems.append(problem)
    if problems:
        raise PredictError(problems[0] if len(problems) == 1 else "\n".join(f"- {p}" for p in problems))
    return originals, frame_mask, tok


def predict(args: argparse.Namespace, out=None) -> list[str]:
    """Runs the tool; returns the answers (one per image, or one with --multi_image or --video)."""
    out = out if out is not None else sys.stdout  # read at call time: a test may have replaced sys.stdout
    originals, frame_mask, tok = check_inputs(args)  # every input problem at once, before anything is loaded
    try:  # a checkpoint, or a training workdir's latest (or --step) params with the model config of its run config
        cfg, params, _, _ = training.load_any(args.checkpoint, dtype=args.dtype, image_size=args.res, step=args.step)
    except (FileNotFoundError, CheckpointError) as e:
        raise PredictError(f"cannot load --checkpoint: {e}") from e
    try:
        tok.check_fits(
            cfg["llm"].get("vocab_size"), "pass the tokenizer this checkpoint was trained with (--tokenizer)."
        )
    except ValueError as e:
        raise PredictError(str(e)) from None
    vq = None
    if args.draw and args.vqvae:  # read before decoding: a bad file stops the run before the work
        try:
            vq = vqvae.load_params(args.vqvae, require_encoder=False)
        except (FileNotFoundError, ValueError) as e:
            raise PredictError(f"bad --vqvae: {e}") from None
    size = siglip.SiglipConfig(**{"num_classes": None, **dict(cfg["img"])}).image_hw
    one_example = args.multi_image or frame_mask is not None  # the images are the frames of one example
    pixels = [preprocess(img, tuple(size)) for img in originals]  # video frames too: the pp ops' resize, value_range
    batch = build_batch(
        pixels,
        tok.encode(args.prompt),
        bos_id=tok.bos_id,
        sep_id=tok.newline_id,
        pad_id=max(tok.pad_id, 0),
        multi_image=one_example,
        frame_mask=frame_mask,
    )
    model = model_lib.Model(**cfg)
    if args.quantize:
        try:
            model, params = quantization.quantize(model, params, args.quantize, args.quantize_tile)
        except ValueError as e:
            raise PredictError(f"--quantize {args.quantize}: {e}") from None
    result = decode.generate(
        model,
        jax.device_put(params),
        batch,
        max_decode_len=args.max_decode_len,
        eos_id=tok.eos_id,
        sampler=args.sampler,
        rng=jax.random.key(args.seed),
        pad_id=max(tok.pad_id, 0),
    )
    answers = decode.decode_texts(tok, result["tokens"], result["lengths"])
    names = [args.video] if args.video else [" + ".join(args.image)] if one_example else list(args.image)
    for name, answer in zip(names, answers):
        one_line = answer.replace("\n", "\\n")
        print(f"{name}: {one_line}", file=out)
    if args.draw and one_example:  # one contact sheet of the frames used
        real = originals if frame_mask is None else [f for f, m in zip(originals, frame_mask) if m]
        draw_frames(real, answers[0], args.draw, vq)
        print(f"drew {args.draw} ({len(real)} frames)", file=out)
    elif args.draw:
        for (img, answer), path in zip(zip(originals, answers), _out_paths(args.draw, len(originals))):
            if draw_answer(img, answer, path, vq):
                print(f"drew {path}", file=out)
            else:
                print(f"no <loc> boxes in the answer; nothing drawn for {path}", file=out)
    return answers


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the tool on `argv` (default: sys.argv); returns the exit status (2 after a usage or input problem)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        predict(args)
        return 0

    return cli.run_main(run)  # PredictError, CheckpointError, a missing file, ...: one line, exit status 2


if __name__ == "__main__":
    host_memory.reexec_with_huge_pages()
    sys.exit(main())
