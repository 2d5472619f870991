r"""Answers a prompt about images with a checkpoint: `python -m tools.predict`.

    python -m tools.predict --checkpoint paligemma-3b-mix-224.npz --tokenizer paligemma_tokenizer.model \
        --image cat.jpg dog.jpg --prompt "caption en"
    python -m tools.predict ... --image street.jpg --prompt "detect car ; person" --draw boxes.png
    python -m tools.predict ... --image street.jpg --prompt "segment car" --draw masks.png --vqvae vae-oid.npz
    python -m tools.predict ... --image frame0.png frame1.png --multi_image --prompt "answer en what changed?"
    python -m tools.predict ... --image cat.jpg --prompt "caption en" --quantize int8   # or int4: weight-only

Each image is decoded to the pixels the training pipeline's pp op `decode` gives (`datasets.images`: 16-bit PNGs,
palette, alpha, CMYK, EXIF orientation and the size limit alike), resized as the pp op `resize` does (bilinear,
antialiased; the same uint8 pixels) to the model's resolution (`--res` resamples the checkpoint's position
embedding to another one) and scaled to [-1, 1] as `value_range(-1, 1)` does; the prompt is laid out as
`<bos> prompt "\n"` (`datasets/pp/layout.py`'s `prompt_layout`) and decoded with `paligemma.decode.generate`.
One line per image is printed: `path: answer` (loc/seg tokens are printed as text, a newline inside an answer as
`\n`). With `--multi_image` all images are the frames of one example (`[1, F, H, W, 3]`) and one answer is printed.

`--draw out.png` parses the `<loc>` boxes (and `<seg>` masks, decoded with the VQ-VAE given by `--vqvae`) of each
answer and draws them, labelled, on the original image; with several images the files are `out_0.png`,
`out_1.png`, ... `--quantize int8|int4` (optionally `--quantize_tile N`) decodes with weight-only quantized weights
(`paligemma.quantization`). This tool does not import TensorFlow.
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

from datasets import images  # numpy/PIL only: the training pipeline's image semantics without TensorFlow
from datasets.pp import layout  # numpy only: importing it does not import TensorFlow
from paligemma import cli, decode, paths, quantization, siglip, vqvae
from paligemma import model as model_lib
from paligemma.checkpoints import CheckpointError, training
from paligemma.checkpoints.formats import step_folder
from paligemma.errors import UserError
from paligemma.tokenizer import Tokenizer, parse_segmentations
from tools import draw


class PredictError(UserError, ValueError):
    """A usage or input problem, reported as `error: ...` with exit status 2."""


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


def preprocess(image, size: tuple[int, int]) -> np.ndarray:
    """RGB image (PIL or uint8 `[H, W, 3]`) -> float32 `[H, W, 3]` in [-1, 1] at `size` = (height, width).

    The pixels of the pp ops `resize(size)|value_range(-1, 1)` (bilinear, antialiased: `datasets.images.resize`).
    """
    pixels = images.resize(np.asarray(image, np.uint8), tuple(size))
    return pixels.astype(np.float32) / np.float32(255) * np.float32(2) + np.float32(-1)


def build_batch(
    images: Sequence[np.ndarray], prompt_ids: Sequence[int], *, bos_id: int, sep_id: int, pad_id: int, multi_image: bool
) -> dict[str, np.ndarray]:
    """The eval-prompt batch: image `[N, H, W, 3]` (or `[1, N, H, W, 3]`), text/mask_ar/mask_input int32 `[B, T]`."""
    row = layout.prompt_layout(prompt_ids, len(prompt_ids) + 2, bos_id=bos_id, sep_id=sep_id, pad_id=pad_id)
    pixels = np.stack(images)[None] if multi_image else np.stack(images)
    b = pixels.shape[0]
    tile = lambda x: np.tile(x[None], (b, 1)).astype(np.int32)  # noqa: E731
    return {
        "image": pixels,
        "text": tile(row["text"]),
        "mask_ar": tile(row["mask_ar"]),
        "mask_input": tile(row["mask_input"]),
    }


def _out_paths(draw: str, n: int) -> list[str]:
    if n == 1:
        return [draw]
    stem, ext = os.path.splitext(draw)
    return [f"{stem}_{i}{ext or '.png'}" for i in range(n)]


def draw_answer(image, text: str, out_path: str, vqvae_params: Any = None) -> bool:
    """Draws the boxes (and masks) of the answer `text` on the PIL `image` and saves a PNG at `out_path`.

    Masks are drawn when `vqvae_params` is given and an object has its 16 seg tokens. Returns False (nothing
    written) when the answer has no boxes.
    """
    objects = parse_segmentations(text)
    if not objects:
        return False
    img = image
    with_codes = [(box, codes, label) for box, codes, label in objects if codes is not None]
    if with_codes and vqvae_params is not None:
        logits = np.asarray(vqvae.decode_jit(vqvae_params, np.asarray([c for _, c, _ in with_codes], np.int32)))
        w, h = image.size
        masks = [draw.mask_in_box(m, box, h, w) for m, (box, _, _) in zip(logits, with_codes)]
        img = draw.draw_masks(img, masks, labels=[label for _, _, label in with_codes])
    img = draw.draw_detections(img, [(box, label) for box, _, label in objects])
    folder = paths.dirname(out_path)
    if folder:
        paths.makedirs(folder)
    paths.atomic_write(out_path, lambda f: img.save(f, format="PNG"))  # local or gs://
    return True


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
    p.add_argument("--image", required=True, nargs="+", help="image file(s)")
    p.add_argument("--prompt", required=True, help='e.g. "caption en", "answer en what is this?", "detect cat"')
    p.add_argument("--sampler", default="greedy", help='greedy, "temperature(t=0.7)", "top_k(40)", "beam(n=4)", ...')
    p.add_argument("--max_decode_len", type=int, default=64)
    p.add_argument("--res", type=int, default=None, help="run at this resolution (default: the checkpoint's)")
    p.add_argument("--multi_image", action="store_true", help="feed all images as frames of one example")
    p.add_argument("--draw", default=None, help="save boxes/masks of detect/segment answers to this PNG")
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


def check_inputs(args: argparse.Namespace) -> tuple[list[Any], Tokenizer]:
    """Checks every input before any weights are read; returns `(images, tokenizer)`.

    Raises:
      PredictError: one line per problem (missing or unreadable checkpoint, step, tokenizer, images, --vqvae, a
        --draw file that cannot be written, bad --sampler, --max_decode_len or --quantize), all of them at once.
    """
    problems: list[str] = []
    if args.max_decode_len < 1:
        problems.append(f"--max_decode_len must be >= 1, got {args.max_decode_len}")
    problems += quantization.flag_problems(args.quantize, args.quantize_tile)
    try:
        decode.parse_sampler(args.sampler)
    except ValueError as e:
        problems.append(f"bad --sampler: {e}")
    originals = []
    for path in args.image:
        try:
            originals.append(load_image(path))
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
    return originals, tok


def predict(args: argparse.Namespace, out=sys.stdout) -> list[str]:
    """Runs the tool; returns the answers (one per image, or one with --multi_image)."""
    originals, tok = check_inputs(args)  # every input problem at once, before anything is loaded
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
    pixels = [preprocess(img, tuple(size)) for img in originals]
    batch = build_batch(
        pixels,
        tok.encode(args.prompt),
        bos_id=tok.bos_id,
        sep_id=tok.newline_id,
        pad_id=max(tok.pad_id, 0),
        multi_image=args.multi_image,
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
    names = [" + ".join(args.image)] if args.multi_image else list(args.image)
    for name, answer in zip(names, answers):
        one_line = answer.replace("\n", "\\n")
        print(f"{name}: {one_line}", file=out)
    if args.draw:
        targets = [(img, answers[0]) for img in originals] if args.multi_image else list(zip(originals, answers))
        for (img, answer), path in zip(targets, _out_paths(args.draw, len(targets))):
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
    sys.exit(main())
