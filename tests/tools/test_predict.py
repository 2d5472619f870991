"""tools.predict (CLI, without TensorFlow) and tools.draw (boxes, labels and masks in the right places)."""

import os
import runpy
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

from paligemma import decode
from paligemma import model as model_lib
from paligemma.tokenizer import parse_detections
from tools import draw, predict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "eval", "images")
DRAW_OUT = os.environ.get("DRAW_TEST_OUTPUT")  # set to a folder to keep the drawn PNGs for a look

BOX_TEXT = "<loc0205><loc0205><loc0614><loc0716> blue car ; <loc0716><loc0051><loc0972><loc0307> dog"


def _scene() -> Image.Image:
    """240x320 light image with two painted rectangles matching the boxes of BOX_TEXT."""
    img = np.full((240, 320, 3), 235, np.uint8)
    img[48:144, 64:224] = (120, 160, 200)  # y 0.2-0.6, x 0.2-0.7
    img[168:228, 16:96] = (200, 140, 90)  # y 0.7-0.95, x 0.05-0.3
    return Image.fromarray(img)


def _keep(img: Image.Image, name: str, tmp_path) -> str:
    folder = DRAW_OUT or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    img.save(path)
    return path


# ----------------------------------------------------------------------------------------------------------
# Drawing.


def test_draw_detections_puts_boxes_and_labels_in_place(tmp_path):
    dets = parse_detections(BOX_TEXT)
    out = draw.draw_detections(_scene(), dets, line_width=2, font_size=12)
    _keep(out, "detections.png", tmp_path)
    arr = np.asarray(out)
    assert out.size == (320, 240)
    car, dog = draw.color_for("blue car"), draw.color_for("dog")
    # Outline of the car box: bins 205/716 of 1023 -> x 64..224, y 48..144 (pixels, rounded).
    x1, y1, x2, y2 = draw._pixel_box(dets[0][0], 320, 240)
    assert (x1, y1, x2, y2) == (64, 48, 224, 144)
    for y, x in [(100, x1), (100, x1 + 1), (100, x2 - 1), (y1, 150), (y2 - 1, 150)]:
        assert tuple(arr[y, x]) == car, (y, x)
    assert tuple(arr[100, 150]) == (120, 160, 200)  # interior untouched
    assert tuple(arr[100, x1 - 1]) == (235, 235, 235)  # nothing outside
    # The label tag sits right above the box's top-left corner, filled with the box colour.
    tag = arr[y1 - 14 : y1, x1 : x1 + 40].reshape(-1, 3)
    assert (tag == car).all(axis=1).mean() > 0.5 and (tag != car).any(axis=1).any()  # tag with text
    # Dog box (y 168..228, x 16..96).
    assert tuple(arr[200, 16]) == dog and tuple(arr[200, 95]) == dog and tuple(arr[167, 60]) != dog


def test_draw_detections_tag_moves_inside_at_the_top_edge():
    out = np.asarray(
        draw.draw_detections(
            np.zeros((100, 100, 3), np.uint8), [((0.0, 0.1, 0.5, 0.9), "top")], line_width=1, font_size=10
        )
    )
    color = draw.color_for("top")
    assert (out[2:8, 12:30].reshape(-1, 3) == color).all(axis=1).mean() > 0.3  # tag drawn inside the box
    with pytest.raises(ValueError, match="uint8"):
        draw.draw_detections(np.zeros((4, 4, 3), np.float32), [])


def test_masks_are_pasted_into_the_box(tmp_path):
    logits = -np.ones((64, 64), np.float32)
    logits[:, :32] = 1.0  # left half of the box is foreground
    mask = draw.mask_in_box(logits, (0.7, 0.05, 0.95, 0.3), 240, 320)
    assert mask.shape == (240, 320)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min()) == (168, 227, 16) and 52 <= xs.max() <= 57
    img = draw.draw_masks(draw.draw_detections(_scene(), parse_detections(BOX_TEXT)), [mask], labels=["dog"])
    _keep(img, "masks.png", tmp_path)
    arr = np.asarray(img).astype(int)
    dog = np.asarray(draw.color_for("dog"))
    np.testing.assert_allclose(arr[200, 30], np.round(0.5 * np.asarray((200, 140, 90)) + 0.5 * dog), atol=1)
    assert tuple(arr[200, 80]) == (200, 140, 90)  # right half of the box: not in the mask
    with pytest.raises(ValueError, match="differs from the image"):
        draw.draw_masks(_scene(), [np.ones((10, 10), bool)])


def test_draw_answer_writes_png_for_detect_and_segment_output(tmp_path):
    from paligemma import vqvae

    scene = _scene()
    assert predict.draw_answer(scene, BOX_TEXT, str(tmp_path / "det.png"))
    assert Image.open(tmp_path / "det.png").size == (320, 240)
    seg_text = "<loc0716><loc0051><loc0972><loc0307>" + "".join(f"<seg{i:03d}>" for i in range(16)) + " dog"
    params = vqvae.init_params(jax.random.key(0))
    assert predict.draw_answer(scene, seg_text, str(tmp_path / "seg.png"), params)
    assert not predict.draw_answer(scene, "a dog on grass", str(tmp_path / "none.png"))
    assert not os.path.exists(tmp_path / "none.png")


# ----------------------------------------------------------------------------------------------------------
# Prediction.


def test_prompt_batch_matches_the_pp_layout():
    from datasets.pp import layout  # the package path (imports TF); the tool loads the same file without it

    img = predict.preprocess(Image.open(os.path.join(IMAGES, "0.png")).convert("RGB"), (16, 24))
    assert img.shape == (16, 24, 3) and img.dtype == np.float32 and -1.0 <= img.min() and img.max() <= 1.0
    batch = predict.build_batch([img, img], [7, 8, 9], bos_id=2, sep_id=4, pad_id=0, multi_image=False)
    ref = layout.prompt_layout([7, 8, 9], 5, bos_id=2, sep_id=4, pad_id=0)
    assert batch["image"].shape == (2, 16, 24, 3)
    for k in ("text", "mask_ar", "mask_input"):
        np.testing.assert_array_equal(batch[k], np.stack([ref[k]] * 2))
    multi = predict.build_batch([img, img, img], [7], bos_id=2, sep_id=4, pad_id=0, multi_image=True)
    assert multi["image"].shape == (1, 3, 16, 24, 3) and multi["text"].tolist() == [[2, 7, 4]]


def test_bad_images_give_clear_errors(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    base = ["--checkpoint", str(tmp_path / "none"), "--tokenizer", "x.model", "--prompt", "caption en", "--image"]
    assert predict.main(base + [str(tmp_path / "missing.jpg")]) == 2
    assert "  - image file not found" in capsys.readouterr().err
    assert predict.main(base + [str(corrupt)]) == 2
    assert "  - cannot read image" in capsys.readouterr().err
    assert predict.main(base + [os.path.join(IMAGES, "0.png")]) == 2
    assert "  - checkpoint not found" in capsys.readouterr().err


def test_every_input_problem_at_once(tmp_path, capsys, monkeypatch):
    """Checkpoint, tokenizer, images, --vqvae, --draw folder, --sampler: all listed, before anything is loaded."""
    from paligemma.checkpoints import training

    monkeypatch.setattr(training, "load_any", lambda *a, **k: pytest.fail("loaded before the inputs were checked"))
    (tmp_path / "a_file").write_text("x")
    argv = ["--checkpoint", str(tmp_path / "none.npz"), "--tokenizer", str(tmp_path / "x.model"), "--prompt", "p"]
    argv += ["--image", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--vqvae", str(tmp_path / "vae.npz")]
    argv += ["--draw", str(tmp_path / "a_file" / "out.png"), "--sampler", "bogus", "--max_decode_len", "0"]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "error:" and all(line.startswith("  - ") for line in lines[1:]), err
    for expected in (
        "--max_decode_len must be >= 1",
        "bad --sampler",
        f"image file not found: {tmp_path / 'a.jpg'}",
        f"image file not found: {tmp_path / 'b.jpg'}",
        f"checkpoint not found: {tmp_path / 'none.npz'}",
        f"tokenizer file not found: {tmp_path / 'x.model'}",
        f"--vqvae file not found: {tmp_path / 'vae.npz'}",
        f"{tmp_path / 'a_file'} is a file, not a folder",
    ):
        assert sum(expected in line for line in lines) == 1, (expected, err)
    assert len(lines) == 9


@pytest.fixture(scope="module")
def training_run(tiny_model, tokenizer_path, tmp_path_factory):
    """A training workdir (steps 3 and 5, as the trainer saves them) whose config.json names the tokenizer."""
    import json

    from paligemma.checkpoints import training

    cfg, params = tiny_model
    wd = str(tmp_path_factory.mktemp("predict_run") / "run")
    ckpt = training.Checkpointer(wd, async_save=False)
    for step in (3, 5):
        ckpt.save(step, params, {"count": np.zeros((), np.int32)}, {"step": step})
    ckpt.close()
    with open(os.path.join(wd, "config.json"), "w") as f:
        json.dump({"model": cfg, "tokenizer": tokenizer_path}, f)
    return wd


def test_predict_on_a_training_workdir_step_quietly(training_run):
    """`--step` picks a checkpoint of a training workdir (a missing one lists those there); no orbax notes."""
    wd, img = training_run, os.path.join(IMAGES, "0.png")
    common = [sys.executable, "-m", "tools.predict", "--image", img, "--prompt", "caption en", "--max_decode_len", "3"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = lambda *a: subprocess.run(  # noqa: E731
        [*common, *a], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    ok = run("--checkpoint", wd, "--step", "3")
    assert ok.returncode == 0 and ok.stdout.startswith(f"{img}: "), ok.stderr[-3000:]
    for noise in ("read_only=True", "Given directory is read only", "Metadata file does not exist", "Sharding info"):
        assert noise not in ok.stderr, ok.stderr
    folder = run("--checkpoint", os.path.join(wd, "checkpoints", "5"))  # a step folder: the run's tokenizer too
    assert folder.returncode == 0 and folder.stdout.startswith(f"{img}: "), folder.stderr[-3000:]
    bad = run("--checkpoint", wd, "--step", "4")
    assert bad.returncode == 2 and "--step 4:" in bad.stderr and "available steps: [3, 5]" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_predict_cli_without_tensorflow(tokenizer, tokenizer_path, tiny_model, tmp_path):
    from paligemma import checkpoints

    tok, tok_path = tokenizer, tokenizer_path
    cfg, params = tiny_model  # sized to the tokenizer, random weights
    checkpoints.save(str(tmp_path / "ckpt"), cfg, params)
    small = {"img": cfg["img"], "llm": dict(cfg["llm"], vocab_size=tok.vocab_size - 8)}
    checkpoints.save(
        str(tmp_path / "small"),
        small,
        jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), model_lib.param_shapes(small)),
    )
    imgs = [os.path.join(IMAGES, f"{i}.png") for i in (0, 1)]
    code = textwrap.dedent(f"""
        import sys
        from tools import predict
        common = ["--checkpoint", {str(tmp_path / "ckpt")!r}, "--tokenizer", {tok_path!r}, "--max_decode_len", "6"]
        assert predict.main(common + ["--image", *{imgs!r}, "--prompt", "caption en"]) == 0
        assert predict.main(common + ["--image", *{imgs!r}, "--multi_image", "--prompt", "answer en what is it",
                                      "--sampler", "top_k(k=5)", "--res", "48"]) == 0
        assert predict.main(["--checkpoint", {str(tmp_path / "small")!r}, "--tokenizer", {tok_path!r},
                             "--image", {imgs[0]!r}, "--prompt", "caption en"]) == 2
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("NO_TF_OK")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith(imgs[0] + ": ") and lines[1].startswith(imgs[1] + ": ")
    assert lines[2].startswith(f"{imgs[0]} + {imgs[1]}: ")  # one answer for the frames of one example
    assert lines[3] == "NO_TF_OK"
    assert "pieces but the model's vocabulary is" in res.stderr and "--tokenizer" in res.stderr


# ----------------------------------------------------------------------------------------------------------
# Several images / video frames per example.


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def test_frames_grid_is_a_contact_sheet_with_a_caption(tmp_path):
    frames = [np.full((30, 40, 3), c, np.uint8) for c in COLOURS]
    sheet = draw.frames_grid(frames, caption="a long answer that wraps " * 4, gap=4, font_size=10)
    _keep(sheet, "frames_grid.png", tmp_path)
    arr = np.asarray(sheet)
    assert sheet.size[0] == 3 * 40 + 4 * 4 and sheet.size[1] > 2 * 30 + 3 * 4 + 2 * 10  # 3 columns, 2 rows, caption
    for i, colour in enumerate(COLOURS):  # frame i at row i // 3, column i % 3 (centre pixel: no number tag)
        r, c = divmod(i, 3)
        assert tuple(arr[4 + r * 34 + 20, 4 + c * 44 + 30]) == colour, i
        assert tuple(arr[4 + r * 34 + 2, 4 + c * 44 + 2]) != colour  # the frame's number tag, at its top-left
    assert tuple(arr[4 + 34 + 15, 4 + 2 * 44 + 20]) == (255, 255, 255)  # no sixth frame
    caption = arr[2 * 34 + 4 :]
    assert (caption < 100).any() and (caption < 100).any(axis=(1, 2)).sum() > 10  # several lines of dark text
    big = draw.frames_grid([np.zeros((600, 300, 3), np.uint8)], tile=100, gap=0)
    assert big.size == (50, 100)  # scaled down to fit the tile, aspect kept; no caption band
    with pytest.raises(ValueError, match="at least one frame"):
        draw.frames_grid([])


def test_one_image_and_f_copies_follow_the_frame_contract(tiny_model, tokenizer):
    """1 image, and F copies of it as the frames of one example (`--multi_image`): F x the image tokens, the image's
    tokens repeated; with F - 1 of the copies marked padding (frame_mask 0) the logits are the image's alone."""
    cfg, params = tiny_model
    model = model_lib.Model(**cfg)
    img = predict.preprocess(Image.open(os.path.join(IMAGES, "0.png")).convert("RGB"), (32, 32))
    kw = dict(bos_id=tokenizer.bos_id, sep_id=tokenizer.newline_id, pad_id=0)
    prompt = tokenizer.encode("caption en")
    one = predict.build_batch([img], prompt, multi_image=False, **kw)
    copies = predict.build_batch([img] * 3, prompt, multi_image=True, **kw)
    assert one["image"].shape == (1, 32, 32, 3) and "frame_mask" not in one
    assert copies["image"].shape == (1, 3, 32, 32, 3) and copies["frame_mask"].tolist() == [[1, 1, 1]]
    padded = predict.build_batch([img] * 3, prompt, multi_image=True, frame_mask=[0, 1, 0], **kw)
    assert padded["frame_mask"].tolist() == [[0, 1, 0]]

    @jax.jit
    def call(params, batch):
        keywords = {"frame_mask": batch["frame_mask"]} if "frame_mask" in batch else {}
        logits, aux = model.apply({"params": params}, batch["image"], batch["text"], batch["mask_ar"], **keywords)
        return logits, aux["img_tokens"]

    forward = lambda batch: [np.asarray(x) for x in call(params, batch)]  # noqa: E731

    logits, tokens = forward(one)
    padded_logits, repeated = forward(padded)
    n = tokens.shape[1]  # (32 / 8)^2 patches
    assert n == 16 and repeated.shape == (1, 3 * n, tokens.shape[2])
    for k in range(3):  # frame k's tokens: the image's (computed in one batch of 3, equal to the last bit)
        np.testing.assert_array_equal(repeated[:, k * n : (k + 1) * n], repeated[:, :n])
    np.testing.assert_allclose(repeated[:, :n], tokens, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(padded_logits, logits, rtol=1e-4, atol=1e-4)  # padded frames: attended by nothing
    with pytest.raises(ValueError, match="one value per image"):
        predict.build_batch([img] * 3, prompt, multi_image=True, frame_mask=[1, 0], **kw)
    args = predict.parse_args(["--checkpoint", "c", "--prompt", "p", "--image", "a.png", "--image", "b.png", "c.png"])
    assert args.image == ["a.png", "b.png", "c.png"]  # a repeated flag, or a list after one: the same images


def test_predict_video_samples_frames_as_training_and_draws_a_sheet(training_run, tmp_path, monkeypatch):
    """--video: read_video's frames (padding marked in frame_mask), resized as the pp ops do, one example of
    [1, F, H, W, 3] decoded with its frame_mask; --draw writes the contact sheet of the real frames."""
    import io

    from datasets import video

    helpers = runpy.run_path(os.path.join(ROOT, "tests", "fixtures", "video.py"))  # PyAV's test videos
    clip = str(tmp_path / "clip.mp4")
    with open(clip, "wb") as f:
        f.write(helpers["encode_video"](helpers["make_frames"](6)))  # 6 frames, 48 x 64
    batches = []
    generate = decode.generate
    monkeypatch.setattr(decode, "generate", lambda m, p, b, **k: batches.append(b) or generate(m, p, b, **k))
    sheet = str(tmp_path / "out" / "sheet.png")
    argv = ["--checkpoint", training_run, "--prompt", "caption en", "--max_decode_len", "4", "--video", clip]
    out = io.StringIO()
    answers = predict.predict(predict.parse_args(argv + ["--frames", "8", "--draw", sheet]), out=out)
    lines = out.getvalue().splitlines()
    assert len(answers) == 1 and lines[0].startswith(f"{clip}: ") and lines[1] == f"drew {sheet} (6 frames)"
    frames, mask = video.read_video(clip, 8, name=clip)
    assert mask.tolist() == [True] * 6 + [False] * 2
    batch = batches[0]
    assert batch["image"].shape == (1, 8, 32, 32, 3) and batch["frame_mask"].tolist() == [[1] * 6 + [0] * 2]
    pixels = video.stack_frames(frames, 32).astype(np.float32) / np.float32(255) * np.float32(2) + np.float32(-1)
    np.testing.assert_array_equal(batch["image"][0], pixels)  # the pp ops' resize(32)|value_range(-1, 1)
    drawn = np.asarray(Image.open(sheet))
    assert drawn.shape[1] == 3 * 64 + 4 * 4 and drawn.shape[0] > 2 * 48 + 3 * 4  # 6 frames: 3 x 2, caption below
    for i in range(6):  # frame i in its cell (its background, below the number tag and beside the yellow square)
        r, c = divmod(i, 3)
        np.testing.assert_allclose(drawn[4 + r * 52 + 40, 4 + c * 68 + 60], frames[i][40, 60], atol=0)


def test_bad_video_gives_one_clear_line(training_run, tmp_path, capsys):
    common = ["--checkpoint", training_run, "--prompt", "caption en"]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    assert predict.main(common + ["--video", str(tmp_path / "missing.mp4")]) == 2
    assert capsys.readouterr().err == f"error: video file not found: {tmp_path / 'missing.mp4'}\n"
    assert predict.main(common + ["--video", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(corrupt) in err and err.count("\n") == 1 and "Traceback" not in err
    img = os.path.join(IMAGES, "0.png")
    assert predict.main(common + ["--video", str(corrupt), "--image", img, "--frames", "0"]) == 2
    err = capsys.readouterr().err
    assert "  - pass --image or --video, not both" in err and "  - --frames must be >= 1, got 0" in err
    assert predict.main(common + ["--image", img, "--frames", "4"]) == 2
    assert capsys.readouterr().err == "error: --frames is for --video (the frames sampled from the clip)\n"
    assert predict.main(common) == 2
    assert "pass --image FILE [FILE ...] or --video FILE" in capsys.readouterr().err
