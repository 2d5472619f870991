"""tools.predict (CLI, without TensorFlow) and tools.draw (boxes, labels and masks in the right places)."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

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
