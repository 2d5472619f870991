"""PaliGemma targets of datasets.pp: token layout, masks, truncation, prompts, detection/loc tokens."""

import numpy as np
import pytest
import tensorflow as tf

from datasets import pp
from datasets.pp import layout
from paligemma.tokenizer import box_to_loc_tokens

BOS, EOS, PAD = 2, 1, 0


@pytest.fixture(scope="module")
def tk_path(tokenizer_path):
    return tokenizer_path  # the shared test tokenizer (tests/conftest.py)


@pytest.fixture(scope="module")
def tk(tokenizer):
    return tokenizer


def run_ds(pp_string, data, **kw):
    ds = tf.data.Dataset.from_tensors(data).map(pp.get_preprocess_fn(pp_string, **kw))
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


# ------------------------------------------------------------------------------------------------ pure layout


def L(**kw):
    return layout.train_layout(bos_id=BOS, eos_id=EOS, sep_id=9, pad_id=PAD, **kw)


def test_layout_fits():
    out = L(prefix_ids=[20, 21], suffix_ids=[30], text_len=8)
    assert out["text"].tolist() == [2, 20, 21, 9, 30, 1, 0, 0]
    assert out["mask_ar"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert out["mask_loss"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert out["mask_input"].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert out["truncated"] == 0
    out = L(prefix_ids=[20, 21], suffix_ids=[30], text_len=6)  # exactly full: not truncated, no pad
    assert out["text"].tolist() == [2, 20, 21, 9, 30, 1] and out["truncated"] == 0
    out = L(prefix_ids=[20], suffix_ids=[30, 31], text_len=6)
    assert out["text"].tolist() == [2, 20, 9, 30, 31, 1] and out["truncated"] == 0
    assert out["mask_loss"].tolist() == [0, 0, 0, 1, 1, 1]


def test_layout_long_prefix_keeps_suffix_and_eos():
    out = L(prefix_ids=list(range(20, 40)), suffix_ids=[30, 31], text_len=10)
    # budget 8: suffix part (2 + eos = 3) is the shorter and fits in half -> kept whole; prefix gets 5.
    assert out["text"].tolist() == [2, 20, 21, 22, 23, 24, 9, 30, 31, 1]
    assert out["mask_ar"].tolist() == [0] * 7 + [1] * 3
    assert out["mask_loss"].tolist() == [0] * 7 + [1] * 3
    assert out["mask_input"].tolist() == [1] * 10
    assert out["truncated"] == layout.TRUNC_PREFIX


def test_layout_long_suffix_keeps_eos_and_flags():
    out = L(prefix_ids=[20], suffix_ids=list(range(50, 70)), text_len=8)
    assert out["text"].tolist() == [2, 20, 9, 50, 51, 52, 53, 1]  # eos kept as the last kept token
    assert out["mask_loss"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert out["truncated"] == layout.TRUNC_SUFFIX
    out = L(prefix_ids=[20], suffix_ids=list(range(50, 70)), text_len=8, keep_eos=False)
    assert out["text"].tolist() == [2, 20, 9, 50, 51, 52, 53, 54]  # no eos, but counted
    assert out["mask_loss"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert out["truncated"] == layout.TRUNC_SUFFIX


def test_layout_both_long_and_policies():
    p, s = list(range(20, 30)), list(range(50, 60))
    out = L(prefix_ids=p, suffix_ids=s, text_len=9)  # budget 7: prefix 3, suffix part 4 (suffix gets odd one)
    assert out["text"].tolist() == [2, 20, 21, 22, 9, 50, 51, 52, 1]
    assert out["truncated"] == layout.TRUNC_PREFIX | layout.TRUNC_SUFFIX == 3
    out = L(prefix_ids=p, suffix_ids=[50], text_len=9, truncate="suffix")  # prefix kept up to budget - 1
    assert out["text"].tolist() == [2, 20, 21, 22, 23, 24, 25, 9, 1]
    assert out["truncated"] == 3 and out["mask_loss"].tolist() == [0] * 8 + [1]
    out = L(prefix_ids=p, suffix_ids=[50, 51], text_len=9, truncate="prefix")
    assert out["text"].tolist() == [2, 20, 21, 22, 23, 9, 50, 51, 1]
    assert out["truncated"] == layout.TRUNC_PREFIX
    out = L(prefix_ids=[], suffix_ids=[], text_len=4)
    assert out["text"].tolist() == [2, 9, 1, 0] and out["mask_loss"].tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError):
        L(prefix_ids=[], suffix_ids=[], text_len=2)


def test_split_budget_invariants():
    for policy in layout.TRUNCATE_POLICIES:
        for lp in range(0, 12):
            for lt in range(1, 12):
                for a in range(1, 12):
                    p, t = layout.split_budget(lp, lt, a, policy)
                    assert 0 <= p <= lp and 1 <= t <= lt and p + t <= a
                    if lp + lt <= a:
                        assert (p, t) == (lp, lt)
                    else:
                        assert p + t == a


def test_prompt_layout():
    out = layout.prompt_layout([20, 21], 6, bos_id=BOS, sep_id=9, pad_id=PAD)
    assert out["text"].tolist() == [2, 20, 21, 9, 0, 0]
    assert out["mask_ar"].tolist() == [0] * 6 and out["mask_loss"].tolist() == [0] * 6
    assert out["mask_input"].tolist() == [1, 1, 1, 1, 0, 0] and out["truncated"] == 0
    out = layout.prompt_layout(list(range(20, 30)), 5, bos_id=BOS, sep_id=9, pad_id=PAD)
    assert out["text"].tolist() == [2, 20, 21, 22, 9] and out["truncated"] == 1


# ------------------------------------------------------------------------------------------------ ops with a tokenizer


def test_tok_paligemma_layout(tk, tk_path):
    data = {"question": tf.constant("what is the color of the car?"), "answers": tf.constant(["the car is red."])}
    s = (
        'strfmt("answer en {question}", outkey="prefix")|choice(inkey="answers", outkey="suffix")'
        '|tok_paligemma(text_len=40)|keep("text", "mask_ar", "mask_loss", "mask_input", "text_truncated")'
    )
    out = run_ds(s, data, tokenizer=tk_path)
    P = tk.encode("answer en what is the color of the car?")
    S = tk.encode("the car is red.")
    n_pad = 40 - (1 + len(P) + 1 + len(S) + 1)
    assert n_pad > 0
    assert out["text"].tolist() == [tk.bos_id] + P + [tk.newline_id] + S + [tk.eos_id] + [tk.pad_id] * n_pad
    assert out["mask_ar"].tolist() == [0] * (len(P) + 2) + [1] * (len(S) + 1 + n_pad)
    assert out["mask_loss"].tolist() == [0] * (len(P) + 2) + [1] * (len(S) + 1) + [0] * n_pad
    assert out["mask_input"].tolist() == [1] * (len(P) + len(S) + 3) + [0] * n_pad
    assert out["text_truncated"] == 0
    assert out["text"].dtype == np.int32 and out["mask_ar"].dtype == np.int32
    assert tk.decode(out["text"]) == "answer en what is the color of the car?\nthe car is red."
    assert sorted(out) == ["mask_ar", "mask_input", "mask_loss", "text", "text_truncated"]


def test_tok_paligemma_truncation(tk, tk_path):
    long_q = "what is the color of the " + " ".join(["big red car"] * 10) + "?"
    data = {"prefix": tf.constant(long_q), "suffix": tf.constant("red.")}
    out = run_ds("tok_paligemma(text_len=16)", data, tokenizer=tk_path)
    S = tk.encode("red.")
    assert out["text"][-len(S) - 1 :].tolist() == S + [tk.eos_id]  # answer and eos survive a long question
    assert out["mask_loss"].sum() == len(S) + 1 and out["text_truncated"] == 1
    assert out["text"][0] == tk.bos_id and out["text"][16 - len(S) - 2] == tk.newline_id

    long_caption = "a red car next to a big house. " * 6
    data = {"prefix": tf.constant("caption en"), "suffix": tf.constant(long_caption)}
    out = run_ds("tok_paligemma(text_len=16)", data, tokenizer=tk_path)
    P = tk.encode("caption en")
    assert out["text"][: len(P) + 2].tolist() == [tk.bos_id] + P + [tk.newline_id]  # prompt never cut
    assert out["text"][-1] == tk.eos_id and out["text_truncated"] == 2  # eos kept, truncation counted
    assert out["mask_loss"].tolist() == [0] * (len(P) + 2) + [1] * (16 - len(P) - 2)
    out = run_ds("tok_paligemma(text_len=16, keep_eos=False)", data, tokenizer=tk_path)
    assert tk.eos_id not in out["text"].tolist() and out["text_truncated"] == 2
    assert out["text"][len(P) + 2 :].tolist() == tk.encode(long_caption)[: 16 - len(P) - 2]


def test_tok_paligemma_errors(tk_path):
    with pytest.raises(ValueError, match="no tokenizer"):
        pp.get_preprocess_fn("tok_paligemma(text_len=8)")
    with pytest.raises(ValueError, match=r"missing a required argument: 'text_len'.*signature: tok_paligemma\("):
        pp.get_preprocess_fn("tok_paligemma", tokenizer=tk_path)
    with pytest.raises(ValueError, match="truncate must be one of"):
        pp.get_preprocess_fn("tok_paligemma(text_len=8, truncate='middle')", tokenizer=tk_path)
    fn = pp.get_preprocess_fn("tok_paligemma(text_len=8)", tokenizer=tk_path)
    with pytest.raises(ValueError, match="scalar string"):
        fn({"prefix": tf.constant("a"), "suffix": tf.constant(["a", "b"])})


def test_tok_paligemma_prompt(tk, tk_path):
    data = {"question": tf.constant("what is the color of the dog?"), "answers": tf.constant(["white", "red"])}
    s = 'strfmt("answer en {question}", outkey="prefix")|tok_paligemma_prompt(text_len=24)'
    out = run_ds(s, data, tokenizer=tk_path)
    P = tk.encode("answer en what is the color of the dog?")
    n = len(P) + 2
    assert out["text"].tolist() == [tk.bos_id] + P + [tk.newline_id] + [tk.pad_id] * (24 - n)
    assert out["mask_ar"].tolist() == [0] * 24 and out["mask_loss"].tolist() == [0] * 24
    assert out["mask_input"].tolist() == [1] * n + [0] * (24 - n)
    assert out["answers"].tolist() == [b"white", b"red"] and out["text_truncated"] == 0
    out = run_ds(s.replace("24", "5"), data, tokenizer=tk_path)
    assert out["text"].tolist() == [tk.bos_id] + P[:3] + [tk.newline_id] and out["text_truncated"] == 1


def test_tok_and_masked_concat_match_tok_paligemma(tk, tk_path):
    data = {"prefix": tf.constant("caption en"), "suffix": tf.constant("a red dog."), "sep": tf.constant("\n")}
    s = (
        'tok(key="prefix", bos=True)|tok(key="sep")|tok(key="suffix", eos=True)'
        '|masked_concat(["prefix", "sep", "suffix"], length=20, mask_ar=[0, 0, 1], mask_loss=[0, 0, 1],'
        " mask_input=[1, 1, 1])"
    )
    a = run_ds(s, data, tokenizer=tk_path)
    b = run_ds("tok_paligemma(text_len=20)", data, tokenizer=tk_path)
    np.testing.assert_array_equal(a["text"], b["text"])
    np.testing.assert_array_equal(a["mask_loss"], b["mask_loss"])
    np.testing.assert_array_equal(a["mask_input"], b["mask_input"])
    n = int(b["mask_input"].sum())
    np.testing.assert_array_equal(a["mask_ar"][:n], b["mask_ar"][:n])  # pads: 0 here, 1 in tok_paligemma
    assert a["text_truncated"] == 0
    out = run_ds('tok(inkey="suffix", outkey="ids", eos=True, length=3)', data, tokenizer=tk_path)
    assert out["ids"].tolist() == tk.encode("a red dog.")[:2] + [tk.eos_id] and out["ids_truncated"] == 1
    out = run_ds('tok(inkey="suffix", outkey="ids")', data, tokenizer=tk_path)
    assert out["ids"].tolist() == tk.encode("a red dog.")


# ------------------------------------------------------------------------------------------------ loc / detection


def test_loc_strings_match_tokenizer():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-0.1, 1.1, (50, 4)).astype(np.float32)
    boxes[0] = [0, 0.5 / 1023, 1.5 / 1023, 1]  # rounding ties
    out = run_ds("loc_tokens", {"objects/bbox": tf.constant(boxes)})
    assert [s.decode() for s in out["loc"]] == [box_to_loc_tokens(b) for b in boxes]
    out = run_ds('loc_tokens(inkey="box", outkey="loc")', {"box": tf.constant([0.0, 0.25, 0.5, 1.0])})
    assert out["loc"].decode() == "<loc0000><loc0256><loc0512><loc1023>"


def test_detection_targets():
    data = {
        "objects/bbox": tf.constant(
            [[0.0, 0.25, 0.5, 1.0], [0.1, 0.1, 0.1, 0.2], [0.5, 0.5, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]]
        ),
        "objects/label": tf.constant(["cat", "dog", "dog", "cat"]),
    }
    out = run_ds("detection_targets", data)
    # The zero-height box (#1) is skipped; prompt lists distinct labels in order.
    assert out["suffix"].decode() == (
        "<loc0000><loc0256><loc0512><loc1023> cat ; "
        "<loc0512><loc0512><loc1023><loc1023> dog ; "
        "<loc0205><loc0205><loc0409><loc0409> cat"
    )
    assert out["prefix"].decode() == "detect cat ; dog"
    data["objects/label"] = tf.constant([1, 0, 0, 1])
    out = run_ds("detection_targets(label_names=['dog', 'cat'], max_objects=1, prompt_key=None)", data)
    assert out["suffix"].decode() == "<loc0000><loc0256><loc0512><loc1023> cat" and "prefix" not in out
    out = run_ds("detection_targets(label_names=['dog', 'cat'], shuffle=True)", dict(data, rng=tf.constant([3, 4])))
    assert sorted(out["suffix"].decode().split(" ; ")) == sorted(
        [
            "<loc0000><loc0256><loc0512><loc1023> cat",
            "<loc0512><loc0512><loc1023><loc1023> dog",
            "<loc0205><loc0205><loc0409><loc0409> cat",
        ]
    )


def _rect_image(h, w, box_px):
    img = np.zeros((h, w, 3), np.uint8)
    y1, x1, y2, x2 = box_px
    img[y1:y2, x1:x2] = 255
    mask = (img[..., 0] > 0).astype(np.uint8)[None]
    box = np.array([[y1 / h, x1 / w, y2 / h, x2 / w]], np.float32)
    return img, mask, box


def _pixel_box(img):
    ys, xs = np.nonzero(img[..., 0] > 127)
    h, w = img.shape[:2]
    return np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])


@pytest.mark.parametrize(
    "ops",
    [
        "resize((96, 64))",
        "flip_lr(prob=1.0)",
        "central_crop((40, 48))",
        "pad_to_square|resize(64)",
        "pad_to_square|resize(80)|flip_lr|random_crop(56)",
        "resize_small(50)|flip_lr(prob=1.0)|central_crop(44)",
    ],
)
def test_loc_tokens_follow_geometry(ops):
    img, mask, box = _rect_image(60, 80, (12, 20, 36, 52))
    data = {
        "image": tf.io.encode_png(img),
        "objects/mask": tf.constant(mask),
        "objects/bbox": tf.constant(box),
        "objects/label": tf.constant(["square"]),
        "rng": tf.constant([5, 6]),
    }
    out = run_ds(f"decode|{ops}|loc_tokens|detection_targets", data)
    im = out["image"]
    got = _pixel_box(im)
    want = out["objects/bbox"][0]
    px = 1.0 / min(im.shape[:2])
    np.testing.assert_allclose(want, got, atol=1.5 * px)  # the box still frames the object in the image
    np.testing.assert_allclose(
        _pixel_box(np.repeat(out["objects/mask"][0][..., None] * 255, 3, -1)), got, atol=1.5 * px
    )
    loc = out["loc"][0].decode()
    assert loc == box_to_loc_tokens(want) and out["suffix"].decode() == loc + " square"
    bins = np.array([int(loc[i + 4 : i + 8]) for i in range(0, 36, 9)])
    np.testing.assert_allclose(bins / 1023, got, atol=1.5 * px + 1 / 1023)


# ------------------------------------------------------------------------------------------------ segmentation


def _small_vae_npz(path, seed=0):
    """A tiny random VQ-VAE in the released PyTorch-named layout (widths 4/8 instead of 16..128/512)."""
    rng = np.random.default_rng(seed)
    c, d, h = 4, 8, 8
    shapes = {
        "_vq_vae._embedding": (128, d),
        "encoder.0.weight": (c, 1, 3, 3),
        "encoder.10.weight": (d, c, 1, 1),
        "decoder.0.weight": (h, d, 1, 1),
        "decoder.4.weight": (h, c, 4, 4),
        "decoder.12.weight": (1, c, 1, 1),
    }
    for i in (2, 4, 6):
        shapes[f"encoder.{i}.weight"] = (c, c, 3, 3)
    for i in (6, 8, 10):
        shapes[f"decoder.{i}.weight"] = (c, c, 4, 4)
    for part, w in (("encoder", c), ("decoder", h)):
        for b in (8, 9) if part == "encoder" else (2, 3):
            shapes.update(
                {
                    f"{part}.{b}.net.0.weight": (w, w, 3, 3),
                    f"{part}.{b}.net.2.weight": (w, w, 3, 3),
                    f"{part}.{b}.net.4.weight": (w, w, 1, 1),
                }
            )
    state = {}
    for k, s in shapes.items():
        state[k] = rng.normal(0, 0.5, s).astype(np.float32)
        if k.endswith(".weight"):
            out = (
                s[1] if k in ("decoder.4.weight", "decoder.6.weight", "decoder.8.weight", "decoder.10.weight") else s[0]
            )
            state[k[: -len("weight")] + "bias"] = rng.normal(0, 0.1, (out,)).astype(np.float32)
    np.savez(path, **state)
    return str(path)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    from paligemma import vqvae

    path = _small_vae_npz(tmp_path_factory.mktemp("vae") / "vae.npz")
    params = vqvae.load_params(path)
    return path, (lambda m: np.asarray(vqvae.encode(params, np.asarray(m, np.float32))))


def _seg_str(codes):
    return "".join(f"<seg{int(c):03d}>" for c in codes)


def test_segmentation_targets(vae):
    path, encode = vae
    # 64x64 image; object box rows 16..48, cols 8..40 (32x32 px); the mask fills the box's left half.
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 8:24] = 1
    box = np.array([[16 / 64, 8 / 64, 48 / 64, 40 / 64]], np.float32)
    left = -np.ones((64, 64), np.float32)
    left[:, :32] = 1  # the 32x32 crop upsampled x2 (bilinear) and thresholded: exactly the left half
    right = left[:, ::-1]
    codes_l, codes_r = encode(np.stack([left, right]))
    assert codes_l.tolist() != codes_r.tolist()  # the tiny random VAE tells them apart
    data = {
        "image": tf.zeros([64, 64, 3], tf.uint8),
        "objects/mask": tf.constant(mask[None]),
        "objects/bbox": tf.constant(box),
        "objects/label": tf.constant(["cat"]),
    }
    s = f'segmentation_targets(vae_checkpoint="{path}", labels_key="objects/label", prompt_key="prefix")'
    out = run_ds(s, data)
    loc = "<loc0256><loc0128><loc0767><loc0639>"
    assert loc == box_to_loc_tokens(box[0])
    assert out["suffix"].decode() == loc + _seg_str(codes_l) + " cat"
    assert out["prefix"].decode() == "segment cat"
    # Flipped image: the box and the mask follow, so the seg tokens are those of the right-half mask.
    out = run_ds(f'flip_lr(prob=1.0)|segmentation_targets(vae_checkpoint="{path}")', data)
    assert out["suffix"].decode() == box_to_loc_tokens([16 / 64, 24 / 64, 48 / 64, 56 / 64]) + _seg_str(codes_r)
    # Without boxes: the tight box of the mask (the left half only, whose crop is all foreground).
    out = run_ds(f'segmentation_targets(vae_checkpoint="{path}", boxes_key=None)', data)
    assert out["suffix"].decode() == (
        box_to_loc_tokens([16 / 64, 8 / 64, 48 / 64, 24 / 64]) + _seg_str(encode(np.ones((1, 64, 64)))[0])
    )
    # Two objects, one cropped away (degenerate box): skipped; joined with " ; ".
    two = {
        "objects/mask": tf.constant(np.stack([mask, mask])),
        "objects/bbox": tf.constant(np.concatenate([box, [[0.5, 0.5, 0.5, 0.9]]])),
    }
    out = run_ds(f'segmentation_targets(vae_checkpoint="{path}")', two)
    assert out["suffix"].decode() == loc + _seg_str(codes_l)
    with pytest.raises(ValueError, match="vae_checkpoint"):
        pp.get_preprocess_fn("segmentation_targets")


def test_full_vqa_pp_string_in_tf_data(tk, tk_path, caplog):
    imgs = [tf.io.encode_jpeg(np.full((20, 30, 3), v, np.uint8)) for v in (0, 255)]
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": tf.stack(imgs),
            "question": tf.constant(["what is the color of the car?", "what is the dog?"]),
            "answers": tf.constant([["red", "red"], ["white", "white"]]),
            "question_id": tf.constant([1, 2]),
        }
    )
    s = (
        'decode|resize(16, antialias=True)|value_range(-1, 1)|strfmt("answer en {question}", outkey="prefix")'
        '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len=24)'
        '|keep("image", "text", "mask_ar", "mask_loss", "mask_input", "text_truncated")'
    )
    with caplog.at_level("INFO", logger="datasets.pp.registry"):
        fn = pp.get_preprocess_fn(s, tokenizer=tk_path, log_summary=True)
        batch = next(iter(ds.map(fn, num_parallel_calls=2).batch(2)))
    assert "after #5 tok_paligemma" in caplog.text and "text: int32[24]" in caplog.text
    assert batch["image"].shape == (2, 16, 16, 3) and batch["image"].dtype == tf.float32
    np.testing.assert_allclose(batch["image"][0], -1) and np.testing.assert_allclose(batch["image"][1], 1)
    assert batch["text"].shape == (2, 24) and batch["text_truncated"].numpy().tolist() == [0, 0]
    assert tk.decode(batch["text"][1].numpy()) == "answer en what is the dog?\nwhite"
    for row in range(2):
        text, loss = batch["text"][row].numpy(), batch["mask_loss"][row].numpy()
        assert tk.decode(text[loss == 1]) == ["red", "white"][row]
        assert text[loss == 1][-1] == tk.eos_id


def test_missing_tokenizer_file_names_op():
    with pytest.raises(FileNotFoundError, match=r"op #0 'tok_paligemma'.*nope.model"):
        pp.get_preprocess_fn("tok_paligemma(text_len=8)", tokenizer="/nonexistent/nope.model")
