"""Evaluators: every type end to end on a tiny random model, metric values with a deterministic predictor, `_mask`
padding, process sharding, scheduling, config errors, and `python -m evaluators.run` on a saved checkpoint."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from datasets.tokenizers import resolve_tokenizer
from evaluators import base, hosts, values
from evaluators import metrics as M
from evaluators.common import build_evaluators
from evaluators.registry import EvalConfigError
from paligemma import decode
from paligemma import model as model_lib
from paligemma.tokenizer import Tokenizer, parse_detections

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONFIG_FILE = os.path.join(FIXTURES, "configs", "eval_tiny.py")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CFG = _load("eval_tiny_config", CONFIG_FILE)
FIX = _load("eval_fixture", os.path.join(FIXTURES, "eval", "make_fixture.py"))
with open(CFG.FIXTURE) as f:
    ROWS = [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("evals"))


@pytest.fixture(scope="module")
def tok_path(workdir):
    return resolve_tokenizer(CFG.TOKENIZER, workdir)


@pytest.fixture(scope="module")
def tiny(tok_path, random_params):
    cfg = CFG.get_config().model.to_dict()
    assert cfg["llm"]["vocab_size"] == Tokenizer(tok_path).vocab_size
    params = random_params(cfg)  # seed 0, as tests/fixtures/eval/multiprocess_worker.py
    return model_lib.Model(**cfg), params, cfg


_PPL_RECORDS: list = []  # per-example NLLs of the single-process run (filled by the first test that needs them)


def _single_process_nll(model, params, tok_path):
    if not _PPL_RECORDS:
        ev = build_evaluators({"ppl": CFG.evals(batch_size=2)["ppl"]}, model=model, tokenizer_path=tok_path)["ppl"]
        ev.run(params)
        _PPL_RECORDS.extend(ev.last.records)
    return [r["nll"] for r in _PPL_RECORDS]


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------------------------------------
# The real model.


def test_every_type_on_a_random_model(tiny, tok_path, workdir):
    model, params, _ = tiny
    evaluators = build_evaluators(CFG.evals(batch_size=2), model=model, tokenizer_path=tok_path, workdir=workdir)
    assert sorted(evaluators) == ["cap", "det", "docvqa", "ppl", "seg", "vqa"]
    calls = []
    results = {name: ev.run(params, step=7, progress=lambda *a: calls.append(a)) for name, ev in evaluators.items()}
    for name, ev in evaluators.items():
        m = results[name]
        assert m["num_examples"] == 5.0, name  # 3 batches of 2, the last padded: each example once
        assert [c[1:3] for c in calls if c[0] == name] == [(1, 3), (2, 3), (3, 3)]
        assert all(isinstance(v, float) for v in m.values())
        files = ev.last.files
        assert files["predictions"].endswith(f"evals/{name}_predictions_step7.jsonl")
        records = _read_jsonl(files["predictions"])
        assert len(records) == 5
        with open(files["metrics"]) as f:
            assert json.load(f)["metrics"] == m
        _check_metrics_from_predictions(name, m, records)

    # Perplexity: the same per-example NLL as a direct forward pass over the 5 examples (no padding).
    ppl = _read_jsonl(evaluators["ppl"].last.files["predictions"])
    _PPL_RECORDS[:] = ppl
    assert [r["id"] for r in ppl] == [r["question_id"] for r in ROWS]
    batch = _unpadded_batch(evaluators["ppl"], tok_path)
    logits, _ = model.apply(
        {"params": params},
        batch["image"],
        batch["text"][:, :-1],
        batch["mask_ar"][:, :-1],
        input_mask=batch["mask_input"][:, :-1].astype(bool),
    )
    direct = np.asarray(M.per_example_nll(logits, batch["text"][:, 1:], batch["mask_loss"][:, 1:]))
    np.testing.assert_allclose([r["nll"] for r in ppl], direct, rtol=1e-5)
    # VQA / DocVQA submission files in the benchmarks' formats.
    with open(evaluators["vqa"].last.files["submission"]) as f:
        sub = json.load(f)
    assert [s["question_id"] for s in sub] == [100, 101, 102, 103, 104] and all(
        set(s) == {"question_id", "answer"} for s in sub
    )
    with open(evaluators["docvqa"].last.files["submission"]) as f:
        assert [set(s) for s in json.load(f)] == [{"questionId", "answer"}] * 5


def _unpadded_batch(evaluator, tok_path):
    from datasets import pipeline

    it = pipeline.make_eval_iterator(
        evaluator.config["data"],
        evaluator.config["pp"],
        batch_size=5,
        process_index=0,
        process_count=1,
        tokenizer=tok_path,
    )
    batch = next(iter(it))
    assert batch["_mask"].tolist() == [1] * 5
    return batch


def _check_metrics_from_predictions(name, m, records):
    """The reported metrics equal the metric functions applied to the written predictions."""
    if name == "ppl":
        nll = [r["nll"] for r in records]
        assert m["nll"] == pytest.approx(np.mean(nll)) and m["perplexity"] == pytest.approx(M.perplexity(nll))
    elif name == "vqa":
        scores = [M.vqa_accuracy(r["prediction"], r["answers"]) for r in records]
        agg = M.vqa_aggregate(scores, [r["answer_type"] for r in records])
        assert m["accuracy"] == pytest.approx(agg["overall"])
        assert m["accuracy_yes_no"] == pytest.approx(agg["per_answer_type"]["yes/no"])
        assert [r["answers"] for r in records] == [row["answers"] for row in ROWS]
    elif name == "docvqa":
        assert m["anls"] == pytest.approx(np.mean([M.anls(r["prediction"], r["answers"]) for r in records]))
    elif name == "cap":
        preds, refs = [r["prediction"] for r in records], [r["references"] for r in records]
        assert refs == [row["captions"] for row in ROWS]
        assert m["cider"] == pytest.approx(M.cider(preds, refs)[0])
        assert m["bleu4"] == pytest.approx(M.bleu4(preds, refs)[0])
        assert m["rouge_l"] == pytest.approx(M.rouge_l(preds, refs)[0])
    elif name == "det":
        res = M.detection_metrics([r["prediction"] for r in records], [parse_detections(row["target"]) for row in ROWS])
        assert (m["map"], m["f1"]) == (pytest.approx(res["map"]), pytest.approx(res["f1"]))
    elif name == "seg":
        from evaluators.tasks import load_vqvae

        res = M.refcoco_metrics(
            [r["seg_ids"] for r in records],
            [np.asarray(row["mask"]) for row in ROWS],
            [row["bbox"] for row in ROWS],
            vqvae_params=load_vqvae("init:0"),
        )
        assert m["miou"] == pytest.approx(res["miou"])
        assert m["boxacc@0.5"] == pytest.approx(res["boxacc@0.5"])
        assert m["invalid"] == pytest.approx(res["invalid"] / res["total"])


# ----------------------------------------------------------------------------------------------------------
# Several frames per example.


def _frames_config(batch_size: int):
    """The tiny config's ppl and vqa evaluators with each example's image as frame 0 of 3 (`frames_from_images`: the
    image, then 2 padded frames with frame_mask 0), batches `[B, 3, 32, 32, 3]` and frame_mask `[B, 3]`."""
    config = CFG.get_config(f"batch_size={batch_size}")
    frames = 'frames_from_images(inkey="image", num_frames=3, size=32)|value_range(-1, 1)'
    for name in ("ppl", "vqa"):
        pp = config.evals[name].pp.replace(CFG.IMG, frames).replace('keep("image", ', 'keep("image", "frame_mask", ')
        assert pp.startswith("frames_from_images") and '"frame_mask"' in pp
        config.evals[name].pp = pp
    config.evals = {k: config.evals[k] for k in ("ppl", "vqa")}
    return config


def test_multi_frame_config_through_evaluators_run(tiny, tok_path, tmp_path):
    """`evaluators.run` on a multi-frame config (pp frames_from_images), split data parallel over 8 devices: frames
    and frame_mask rows go to the devices like any batch, perplexity and VQA reach the metrics of the same examples as
    single images (padded frames count for nothing: the model's frame_mask contract)."""
    from evaluators import run
    from paligemma import checkpoints

    model, params, cfg = tiny
    put_params, put_batch, _ = run.make_placement([8])
    placed = put_batch(dict(image=np.zeros((8, 3, 32, 32, 3), np.float32), frame_mask=np.ones((8, 3), np.int32)))
    for value in placed.values():  # rows split over the 8 devices
        assert len(value.sharding.device_set) == 8 and value.addressable_shards[0].data.shape[0] == 1
    ckpt, out_dir = str(tmp_path / "ckpt"), str(tmp_path / "out")
    checkpoints.save(ckpt, cfg, params)
    os.makedirs(out_dir)
    os.link(tok_path, os.path.join(out_dir, "tokenizer.model"))  # the config's trained tokenizer, already there
    result = run.evaluate(_frames_config(batch_size=8), checkpoint=ckpt, workdir=out_dir)
    assert result["metrics"]["vqa"]["num_examples"] == result["metrics"]["ppl"]["num_examples"] == 5.0
    single = build_evaluators({"vqa": CFG.evals(batch_size=2)["vqa"]}, model=model, tokenizer_path=tok_path)["vqa"]
    assert result["metrics"]["vqa"] == single.run(params)
    vqa = _read_jsonl(os.path.join(out_dir, "evals", "vqa_predictions_stepfinal.jsonl"))
    assert [r["prediction"] for r in vqa] == [r["prediction"] for r in single.last.records]
    ppl = _read_jsonl(os.path.join(out_dir, "evals", "ppl_predictions_stepfinal.jsonl"))
    np.testing.assert_allclose([r["nll"] for r in ppl], _single_process_nll(model, params, tok_path), rtol=1e-5)
    for name, records in (("ppl", ppl), ("vqa", vqa)):
        _check_metrics_from_predictions(name, result["metrics"][name], records)


def test_frame_mask_must_match_the_frames(tiny, tok_path):
    model, _, _ = tiny
    ev = build_evaluators({"vqa": CFG.evals()["vqa"]}, model=model, tokenizer_path=tok_path)["vqa"]
    batch = dict(image=np.zeros((2, 32, 32, 3), np.float32), text=np.zeros((2, 4), np.int32))
    batch.update(mask_ar=batch["text"], mask_input=batch["text"], frame_mask=np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"frame_mask \(2, 3\) must be \[B, F\] for the batch's image"):
        ev._model_inputs(batch)
    batch["image"] = np.zeros((2, 3, 32, 32, 3), np.float32)
    assert sorted(ev._model_inputs(batch)) == ["frame_mask", "image", "mask_ar", "mask_input", "text"]


# ----------------------------------------------------------------------------------------------------------
# A deterministic predictor: the answer for each picture, found by its box colour.


def _picture_index(image: np.ndarray) -> int | None:
    pixels = (np.asarray(image).reshape(-1, 3) + 1.0) * 127.5
    fg = pixels[np.abs(pixels - 20.0).max(axis=1) > 40]
    if not len(fg):
        return None  # a padding row (all zeros)
    colour = fg.mean(axis=0)
    return int(np.argmin([np.abs(colour - np.asarray(rgb)).sum() for _, rgb, _, _ in FIX.ROWS]))


def _fake_generate(tok, answer_for):
    def generate(model, params, batch, *, max_decode_len, eos_id, sampler="greedy", rng=None, pad_id=0):
        tokens, lengths = [], []
        for image in np.asarray(batch["image"]):
            i = _picture_index(image)
            ids = ((tok.encode(answer_for(i)) if i is not None else []) + [eos_id])[:max_decode_len]
            lengths.append(len(ids))
            tokens.append(ids + [pad_id] * (max_decode_len - len(ids)))
        return {
            "tokens": jnp.asarray(tokens, jnp.int32),
            "lengths": jnp.asarray(lengths, jnp.int32),
            "logprob": jnp.zeros([len(tokens)], jnp.float32),
        }

    return generate


def _answers(i):
    colour = FIX.ROWS[i][0]
    return {
        "vqa": colour,
        "docvqa": "rex" if colour == "red" else f"light {colour}",
        "cap": ROWS[i]["captions"][0],
        "det": ROWS[i]["target"] if i < 4 else ROWS[i]["target"].replace("white", "black"),
        "seg": ROWS[i]["target"].split(" ")[0] + "".join(f"<seg{c:03d}>" for c in range(16)),
    }


def test_metric_values_with_a_deterministic_predictor(tiny, tok_path, tmp_path, monkeypatch):
    model, params, _ = tiny
    tok = Tokenizer(tok_path)
    cfgs = {k: v for k, v in CFG.evals(batch_size=4).items() if k != "ppl"}
    evaluators = build_evaluators(cfgs, model=model, tokenizer_path=tok_path, workdir=str(tmp_path))
    out = {}
    for name, ev in evaluators.items():
        monkeypatch.setattr(decode, "generate", _fake_generate(tok, lambda i, n=name: _answers(i)[n]))
        out[name] = ev.run(params)
        records = _read_jsonl(ev.last.files["predictions"])
        assert ev.last.files["predictions"].endswith(f"{name}_predictions_stepfinal.jsonl")
        assert [r["prediction"] for r in records] == [_answers(i)[name] for i in range(5)]
        _check_metrics_from_predictions(name, out[name], records)
    # Hand-computed values. VQA: answers (c, c, "light c") and prediction c: leave-one-out (1/3 + 1/3 + 2/3) / 3.
    assert out["vqa"]["accuracy"] == pytest.approx(4 / 9)
    # ANLS: "rex" vs "red" has NL 1/3 -> 2/3; "light c" is an exact answer -> 1.
    assert out["docvqa"]["anls"] == pytest.approx((2 / 3 + 4) / 5)
    # Captions equal to a reference: BLEU-4 1, CIDEr well above 0.
    assert out["cap"]["bleu4"] == pytest.approx(1.0, abs=1e-6) and out["cap"]["cider"] > 1.0
    # Detection: 4 of 5 boxes with the right label: P = R = F1 = 0.8; 5 classes with one box each, 4 found -> 0.8.
    assert out["det"]["f1"] == pytest.approx(0.8) and out["det"]["map"] == pytest.approx(0.8)
    # Segmentation: the ground-truth boxes as loc tokens: every box is a hit, nothing invalid.
    assert out["seg"]["boxacc@0.75"] == 1.0 and out["seg"]["invalid"] == 0.0
    seg = _read_jsonl(evaluators["seg"].last.files["predictions"])
    assert all(r["valid"] and len(r["seg_ids"]) == 20 for r in seg)


def test_processes_see_each_example_once(tiny, tok_path, monkeypatch):
    """Two processes simulated one after the other: blocks [0, 2) and [2, 5), padded to the same number of batches;
    the records gathered in process order are the split in order, each example once."""
    model, params, _ = tiny
    tok = Tokenizer(tok_path)
    monkeypatch.setattr(decode, "generate", _fake_generate(tok, lambda i: FIX.ROWS[i][0]))
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    per_process, batches = [], []
    for index in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        monkeypatch.setattr(base, "gather_records", lambda obj: per_process.append(obj) or [obj])
        ev = build_evaluators({"vqa": CFG.evals(batch_size=2)["vqa"]}, model=model, tokenizer_path=tok_path)["vqa"]
        assert ev.per_process_batch_size() == 1
        ev.run(params, progress=lambda name, done, total, n, index=index: batches.append((index, done, total, n)))
    ids = [[r["id"] for r in p["records"]] for p in per_process]
    assert ids == [[100, 101], [102, 103, 104]]
    assert [b for b in batches if b[0] == 0] == [(0, 1, 3, 1), (0, 2, 3, 2), (0, 3, 3, 2)]  # last batch: padding
    assert [r["prediction"] for p in per_process for r in p["records"]] == [r[0] for r in FIX.ROWS]


def test_local_rows_and_gather_with_one_process():
    x = jnp.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(hosts.local_rows(x, 4), np.arange(12).reshape(4, 3))
    with pytest.raises(ValueError, match="expected this process's 3"):
        hosts.local_rows(x, 3)
    assert hosts.gather_records([{"a": 1}]) == [[{"a": 1}]]


def test_field_helpers():
    assert values.as_text_list(np.array([b"a", b"", b"b c"], dtype=object)) == ["a", "b c"]
    assert values.as_text_list(np.array(b'["x", "y"]', dtype=object)) == ["x", "y"]
    assert values.as_text_list(b"single") == ["single"]
    assert values.as_scalar(np.int64(7)) == 7 and values.as_scalar(b"q1") == "q1"
    import base64
    import io

    from PIL import Image

    from evaluators.tasks import decode_mask

    mask = np.zeros((5, 4), np.uint8)
    mask[1:3, 2] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_mask(np.array(buf.getvalue(), dtype=object)) > 0, mask > 0)
    np.testing.assert_array_equal(decode_mask(base64.b64encode(buf.getvalue())) > 0, mask > 0)
    np.testing.assert_array_equal(decode_mask(b"[[0, 1], [1, 0]]"), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="must be an array, encoded PNG"):
        decode_mask(b"not a mask!")


# ----------------------------------------------------------------------------------------------------------
# Scheduling and configuration.


def _one(**kw):
    cfg = dict(type="vqa", data=dict(name="jsonl", path=CFG.FIXTURE), pp="keep('image')", batch_size=2, **kw)
    return build_evaluators({"e": cfg}, model=None, tokenizer_path=None)["e"]


def test_should_run():
    end_only = _one()
    assert [s for s in range(0, 11) if end_only.should_run(s, 10)] == [10]
    periodic = _one(log_steps=4)
    assert [s for s in range(0, 11) if periodic.should_run(s, 10)] == [1, 4, 8, 10]
    assert [s for s in range(0, 11) if _one(log_steps=4, skip_first=True).should_run(s, 10)] == [4, 8, 10]
    assert [s for s in range(0, 101) if _one(log_percent=0.25, skip_first=True).should_run(s, 100)] == [25, 50, 75, 100]


@pytest.mark.parametrize(
    "cfg, match",
    [
        (
            dict(type="vqaa"),
            r"unknown evaluator type 'vqaa'; known types: \['anls', 'caption', 'chartqa', 'detection', 'mmvp', "
            r"'multiple_choice', 'perplexity', 'pope', 'refcoco_seg', 'rsvqa', 'scienceqa', 'tallyqa', 'vqa'\]",
        ),
        (dict(type="vqa", answer_key="a"), r"unknown key\(s\) \['answer_key'\]; known keys: \[.*'answers_key'"),
        (dict(type="vqa", batch_size=None), r"missing required key\(s\) \['batch_size'\]"),
        (dict(type="vqa", log_steps=10, log_percent=0.1), "log_steps or log_percent, not both"),
        (dict(type="vqa", log_percent=10), r"fraction of the run in \(0, 1\]"),
        (dict(type="vqa", sampler="beam(q=2)"), "bad sampler"),
        (dict(type="vqa", normalize="textvqa"), "normalize must be"),
        (dict(type="refcoco_seg", vqvae_checkpoint="init:0", max_decode_len=8), "max_decode_len must be >= 20"),
        (dict(type="refcoco_seg"), "vqvae_checkpoint is required"),
        (dict(type="perplexity", batch_size=0), "batch_size must be a positive int"),
    ],
)
def test_config_errors(cfg, match):
    full = dict(dict(data=dict(name="jsonl", path=CFG.FIXTURE), pp="keep('image')", batch_size=2), **cfg)
    with pytest.raises(EvalConfigError, match=match):
        build_evaluators({"e": full}, model=None, tokenizer_path=None)


def test_missing_field_error(tiny, tok_path):
    model, params, _ = tiny
    cfg = dict(CFG.evals()["vqa"], answers_key="solutions")
    ev = build_evaluators({"vqa": cfg}, model=model, tokenizer_path=tok_path)["vqa"]
    with pytest.raises(KeyError, match=r"no field 'solutions' \(available: .*'answers'.*keep it in the pp string"):
        ev.run(params)


def test_core_does_not_import_tensorflow():
    code = (
        "import sys, evaluators.common as c, evaluators.tasks, evaluators.run; "
        "c.build_evaluators({'e': dict(type='vqa', data={}, pp='x', batch_size=1)}, model=None, "
        "tokenizer_path=None); "
        "assert 'tensorflow' not in sys.modules, 'TF imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# python -m evaluators.run


def test_run_cli_end_to_end(tiny, tok_path, workdir, tmp_path):
    from paligemma import checkpoints

    _, params, cfg = tiny
    ckpt = str(tmp_path / "ckpt")
    checkpoints.save(ckpt, cfg, params)
    out_dir = str(tmp_path / "out")
    os.makedirs(out_dir)
    os.link(tok_path, os.path.join(out_dir, "tokenizer.model"))  # the config's trained tokenizer, already there
    cmd = [
        sys.executable,
        "-m",
        "evaluators.run",
        f"--config={CONFIG_FILE}:batch_size=4",
        f"--checkpoint={ckpt}",
        f"--workdir={out_dir}",
        "--evals=ppl,vqa",
        "--config.evals.vqa.max_decode_len=20",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vqa: batch 2/2" in res.stderr and "ex/s" in res.stderr and "ETA" in res.stderr
    assert "perplexity" in res.stdout and "accuracy" in res.stdout and "eval_metrics.json" in res.stdout
    with open(os.path.join(out_dir, "eval_metrics.json")) as f:
        result = json.load(f)
    assert sorted(result["metrics"]) == ["ppl", "vqa"]
    assert result["metrics"]["vqa"]["num_examples"] == 5.0
    # Same params as the in-process run (batches of 2 there): the same per-example NLLs.
    cli = _read_jsonl(os.path.join(out_dir, "evals", "ppl_predictions_stepfinal.jsonl"))
    np.testing.assert_allclose([r["nll"] for r in cli], _single_process_nll(tiny[0], params, tok_path), rtol=1e-5)
    assert result["metrics"]["ppl"]["nll"] == pytest.approx(np.mean([r["nll"] for r in cli]))
    assert len(_read_jsonl(os.path.join(out_dir, "evals", "vqa_predictions_stepfinal.jsonl"))) == 5
    assert os.path.isfile(os.path.join(out_dir, "evals", "vqa_submission_stepfinal.json"))


def test_run_errors(tmp_path):
    from evaluators import run

    config = CFG.get_config()
    with pytest.raises(run.RunError, match="No checkpoint: pass --checkpoint"):
        run.evaluate(config, checkpoint=None, workdir=None)
    with pytest.raises(run.RunError, match="does not exist"):
        run.evaluate(config, checkpoint=str(tmp_path / "missing.npz"), workdir=str(tmp_path))
    with pytest.raises(run.RunError, match="No config: pass --config"):
        run.evaluate(None, checkpoint=None, workdir=None)
    with pytest.raises(run.RunError, match=r"--evals \['nope'\] not in config.evals"):
        run.evaluate(config, checkpoint=str(tmp_path), workdir=None, evals=["nope"])
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(run.RunError, match="training workdir"):
        run.evaluate(config, checkpoint=str(empty), workdir=str(tmp_path))
    missing = str(tmp_path / "missing")
    with pytest.raises(run.RunError, match=r"--workdir '.*missing' does not exist \(no such folder\)"):
        run.evaluate(config, checkpoint=None, workdir=missing)
    with pytest.raises(run.RunError) as e:  # every problem at once, one "- " line each
        run.evaluate(None, checkpoint=None, workdir=missing)
    problems = str(e.value).split("\n")
    assert len(problems) == 2 and problems[0].startswith("- --workdir") and problems[1].startswith("- No config")


# ----------------------------------------------------------------------------------------------------------
# Two real processes.


@pytest.mark.slow
def test_two_processes(tiny, tok_path, tmp_path):
    """2 processes x 4 CPU devices, batches as global arrays: each example once, the same numbers as one process,
    identical metrics on both processes, files from process 0 only."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    worker = os.path.join(FIXTURES, "eval", "multiprocess_worker.py")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(i), port, tok_path, str(tmp_path / "wd")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:]))
    assert outs[0]["ppl"] == outs[1]["ppl"] and outs[0]["ppl"]["num_examples"] == 5.0
    assert outs[0]["gathered"] == [{"p": 0, "text": "é"}, {"p": 1, "text": "éé"}]
    assert outs[1]["files"] == {"ppl": {}} and os.path.isfile(outs[0]["files"]["ppl"]["predictions"])
    model, params, _ = tiny
    assert [r["id"] for r in outs[0]["records"]["ppl"]] == [100, 101, 102, 103, 104]
    np.testing.assert_allclose(
        [r["nll"] for r in outs[0]["records"]["ppl"]], _single_process_nll(model, params, tok_path), rtol=1e-5
    )


def test_run_on_a_training_workdir(tiny, tok_path, tmp_path):
    """A trainer's workdir: params from checkpoints.training.latest_params, the run config from its config.json."""
    from evaluators import run
    from paligemma.checkpoints import training as checkpointing

    model, params, _ = tiny
    wd = str(tmp_path / "train_run")
    ckpt = checkpointing.Checkpointer(wd, async_save=False)
    ckpt.save(5, params, {"count": np.zeros((), np.int32)}, {"step": 5})
    ckpt.close()
    config = CFG.get_config()
    with open(os.path.join(wd, "config.json"), "w") as f:
        json.dump(json.loads(json.dumps(config.to_dict())), f)  # as the trainer writes it (tuples -> lists)
    os.link(tok_path, os.path.join(wd, "tokenizer.model"))
    result = run.evaluate(None, checkpoint=None, workdir=wd, evals=["ppl"])
    assert result["step"] == 5 and "trainer step 5" in result["checkpoint"]
    records = _read_jsonl(os.path.join(wd, "evals", "ppl_predictions_step5.jsonl"))
    np.testing.assert_allclose([r["nll"] for r in records], _single_process_nll(model, params, tok_path), rtol=1e-5)
    with open(os.path.join(wd, "eval_metrics.json")) as f:
        assert json.load(f)["metrics"]["ppl"]["num_examples"] == 5.0
    with pytest.raises(run.RunError, match=r"--step 4: .* available steps: \[5\]"):  # before anything is loaded
        run.evaluate(None, checkpoint=None, workdir=wd, evals=["ppl"], step=4)
    result = run.evaluate(None, checkpoint=os.path.join(wd, "checkpoints", "5"), workdir=None, evals=["ppl"], step=5)
    assert result["step"] == 5 and result["workdir"] == wd  # a step folder: its run's config, outputs, tokenizer
    cmd = [sys.executable, "-m", "evaluators.run", f"--workdir={wd}", "--step=4", "--evals=ppl,nope"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "\n  - --step 4: " in res.stderr and "\n  - --evals ['nope']" in res.stderr
    for noise in ("orbax", "checkpoint_manager.py", "read_only", "Traceback"):  # orbax's read notes are filtered
        assert noise not in res.stderr, res.stderr


def test_a_split_without_answers_is_predicted_not_scored(tiny, tok_path, tmp_path, monkeypatch):
    """Test splits (VQAv2 test-dev, DocVQA test, NoCaps test) have no answers: predictions go to the submission
    file, and the metrics only count them."""
    model, params, _ = tiny
    fixture = os.path.dirname(CFG.FIXTURE)
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(dict(r, answers=[""], captions=[""])) + "\n" for r in ROWS))
    data = dict(name="jsonl", path=str(path), image_root=fixture)
    cfgs = {k: dict(v, data=data) for k, v in CFG.evals(batch_size=4).items() if k in ("vqa", "docvqa", "cap")}
    tok = Tokenizer(tok_path)
    for name, ev in build_evaluators(cfgs, model=model, tokenizer_path=tok_path, workdir=str(tmp_path)).items():
        monkeypatch.setattr(decode, "generate", _fake_generate(tok, lambda i, n=name: _answers(i)[n]))
        assert ev.run(params) == {"unscored": 5, "num_examples": 5}
        with open(ev.last.files["submission"]) as f:
            assert len(json.load(f)) == 5
