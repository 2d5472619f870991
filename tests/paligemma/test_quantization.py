"""paligemma.quantization: weight-only int8/int4 through Qwix's PTQ (logits, greedy decodes, weight memory) and the
`--quantize` flags of tools.predict and evaluators.run.

Bounds are set a little outside what this 2-core CPU measured on the tiny random model (noted next to each)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from paligemma import checkpoints, decode, quantization
from paligemma import model as model_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "eval", "images")
PROMPTS = [
    "caption en",
    "answer en what is the color of the car?",
    "answer en how many dogs are there?",
    "detect cat",
    "answer en what is the color of the tree?",
    "answer en how many birds are there?",
    "detect person",
    "caption en",
]


def _batch(tok, image_size: int, copies: int = 1) -> dict[str, np.ndarray]:
    """Each prompt `copies` times, each with its own random image; prompts left-aligned in `[B, 16]`."""
    prompts = PROMPTS * copies
    rng = np.random.default_rng(0)
    text, mask_input = np.zeros((len(prompts), 16), np.int32), np.zeros((len(prompts), 16), np.int32)
    for i, prompt in enumerate(prompts):
        ids = [tok.bos_id] + tok.encode(prompt) + [tok.newline_id]
        text[i, : len(ids)], mask_input[i, : len(ids)] = ids, 1
    image = rng.uniform(-1, 1, (len(prompts), image_size, image_size, 3)).astype(np.float32)
    return {"image": image, "text": text, "mask_ar": np.zeros_like(text), "mask_input": mask_input}


@pytest.fixture(scope="module")
def quantized(tiny_model):
    """`qtype -> (qmodel, qparams)` of the tiny model (per-channel scales), and the float model."""
    cfg, params = tiny_model
    model = model_lib.Model(**cfg)
    return model, {q: quantization.quantize(model, params, q) for q in quantization.QTYPES}


def _is_q(x) -> bool:
    return isinstance(x, quantization.qwix_ptq.WithAux)


def test_validation_and_rules():
    with pytest.raises(ValueError, match=r"unknown weight quantization 'int3'; choose one of int8, int4"):
        quantization.check_qtype("int3")
    with pytest.raises(ValueError, match="tile size must be an integer >= 1"):
        quantization.check_tile_size(0)
    assert quantization.flag_problems("int8", 64) == []
    assert quantization.flag_problems("int3", None) == [
        "--quantize 'int3': choose one of int8, int4 (weight-only quantization)"
    ]
    assert "pass --quantize" in quantization.flag_problems(None, 64)[0]
    embedder, weights = quantization.rules("int4", tile_size=32)
    assert embedder.module_path == "llm/embedder" and embedder.weight_qtype is None  # first match wins
    assert weights.module_path == ".*" and str(np.dtype(weights.weight_qtype)) == "int4" and weights.tile_size == 32
    assert weights.act_qtype is None and set(weights.op_names) == {"einsum", "dot_general"}


def test_quantized_tree_layout_and_cache(tiny_model, quantized):
    cfg, params = tiny_model
    model, by_qtype = quantized
    qmodel, qparams = by_qtype["int8"]
    assert quantization.quantize(model_lib.Model(**cfg), params, "int8")[0] is qmodel  # cached wrapper
    assert qmodel != model and quantization.quantized_model(model, "int4") is by_qtype["int4"][0]
    q = qparams["llm"]["layers"]["attn"]["q_einsum"]["w"]  # [L, N, D, H], scanned: quantized per layer
    assert (
        _is_q(q)
        and q.array.qvalue.dtype == np.int8
        and q.array.qvalue.shape == params["llm"]["layers"]["attn"]["q_einsum"]["w"].shape
    )
    assert q.array.scale.shape == (2, 4, 1, 16)  # one scale per layer, head and output channel
    scale = np.asarray(q.array.scale)
    error = np.asarray(q.array.qvalue, np.float32) * scale - params["llm"]["layers"]["attn"]["q_einsum"]["w"]
    # Steps of absmax / 127.5 (qwix's int8 bound), rounded to the nearest; the largest values clip to 127.
    assert np.all(np.abs(error) <= scale * (1 + 1e-5)) and np.mean(np.abs(error) <= scale / 2 * (1 + 1e-5)) > 0.99
    assert _is_q(qparams["img"]["Transformer"]["encoderblock"]["MlpBlock_0"]["Dense_0"]["kernel"])
    assert _is_q(qparams["img"]["head"]["kernel"])
    # Kept as stored: the token table (also a jnp.take lookup), the patch-embedding convolution, norms and biases.
    for path in (
        ("llm", "embedder", "input_embedding"),
        ("img", "embedding", "kernel"),
        ("llm", "final_norm", "scale"),
    ):
        kept, orig = qparams, params
        for key in path:
            kept, orig = kept[key], orig[key]
        assert not _is_q(kept)
        np.testing.assert_array_equal(kept, orig)


def test_int8_and_int4_logits_close_to_float(tokenizer, tiny_model, quantized):
    cfg, params = tiny_model
    model, by_qtype = quantized
    batch = _batch(tokenizer, 32)
    args = (batch["image"], batch["text"], batch["mask_ar"], batch["mask_input"].astype(bool))
    ref = np.asarray(model.apply({"params": params}, *args)[0])[batch["mask_input"].astype(bool)]
    # Measured: relative error of the logits (Frobenius, valid positions) 0.0106 (int8), 0.150 (int4); top-1 of
    # the next token at every prompt position equal for int8, 98.3% for int4.
    for qtype, max_rel, min_top1 in (("int8", 0.015, 1.0), ("int4", 0.2, 0.95)):
        qmodel, qparams = by_qtype[qtype]
        out = np.asarray(qmodel.apply({"params": qparams}, *args)[0])[batch["mask_input"].astype(bool)]
        rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        assert 0 < rel < max_rel, (qtype, rel)
        assert np.mean(out.argmax(-1) == ref.argmax(-1)) >= min_top1, qtype


def test_weight_bytes_shrink(tiny_model, quantized):
    cfg, params = tiny_model
    _, by_qtype = quantized
    assert quantization.weight_bytes(params) == 4 * model_lib.count_params(params)  # float32
    ratios = {}
    for qtype, (_, qparams) in by_qtype.items():
        quantized_leaves = [x for x in jax.tree.leaves(qparams, is_leaf=_is_q) if _is_q(x)]
        float_bytes = 4 * sum(x.array.qvalue.size for x in quantized_leaves)
        values = quantization.weight_bytes([x.array.qvalue for x in quantized_leaves])
        scales = quantization.weight_bytes([x.array.scale for x in quantized_leaves])
        assert float_bytes == {"int8": 4, "int4": 8}[qtype] * values  # 1 byte / half a byte per value
        ratios[qtype] = float_bytes / (values + scales)
        assert quantization.weight_bytes(qparams) < quantization.weight_bytes(params)
    # Measured with the float32 per-channel scales: 3.79x (int8), 7.21x (int4) on the quantized weights.
    assert ratios["int8"] > 3.5 and ratios["int4"] > 6.5, ratios
    int4 = by_qtype["int4"][1]
    assert quantization.weight_bytes(int4, packed_int4=False) == quantization.weight_bytes(by_qtype["int8"][1])


def test_greedy_decodes_mostly_agree(tokenizer, tiny_model, random_params):
    # Weights N(0, 0.2^2): at the fixture's 0.1 every greedy decode of the random model repeats the prompt's last
    # token (agreement would be trivial); at 0.2 its 16 x 12 tokens hold 26 distinct ones.
    cfg = tiny_model[0]
    params = random_params(cfg, seed=0, scale=0.2)
    model = model_lib.Model(**cfg)
    batch = _batch(tokenizer, 32, copies=2)
    kwargs = dict(max_decode_len=12, eos_id=tokenizer.eos_id)
    ref = np.asarray(decode.generate(model, params, batch, **kwargs)["tokens"])
    qmodel, qparams = quantization.quantize(model, params, "int8")
    out = np.asarray(decode.generate(qmodel, qparams, batch, **kwargs)["tokens"])
    # Measured (int8): 84.4% of the tokens, 12 of 16 decodes identical (int4: 35% and 2 of 16: a random model's
    # argmax margins are thin; its logits are still within the bound above).
    assert np.mean(out == ref) >= 0.75 and np.sum(np.all(out == ref, axis=1)) >= 10
    hits = decode._prefill_program.cache_info().hits
    decode.generate(*quantization.quantize(model, params, "int8"), batch, **kwargs)  # the compiled programs again
    assert decode._prefill_program.cache_info().hits == hits + 1


def test_tile_size_that_does_not_divide_is_a_clear_error(tiny_model):
    cfg, params = tiny_model
    with pytest.raises(ValueError, match="tile size 48 does not divide"):
        quantization.quantize(model_lib.Model(**cfg), params, "int8", tile_size=48)


def test_predict_cli_quantize(tokenizer_path, tiny_model, tmp_path, capsys):
    from tools import predict

    cfg, params = tiny_model
    checkpoints.save(str(tmp_path / "ckpt"), cfg, params)
    img = os.path.join(IMAGES, "0.png")
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--tokenizer", tokenizer_path, "--image", img]
    common += ["--prompt", "caption en", "--max_decode_len", "3"]
    assert predict.main(common + ["--quantize", "int8", "--quantize_tile", "16"]) == 0
    assert capsys.readouterr().out.startswith(f"{img}: ")
    assert predict.main(common + ["--quantize", "int3"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --quantize 'int3': choose one of int8, int4 (weight-only quantization)\n", err
    assert predict.main(common + ["--quantize_tile", "16"]) == 2
    assert "--quantize_tile is for quantized inference" in capsys.readouterr().err


def test_evaluators_run_cli_quantize(random_params, tmp_path):
    from evaluators import run
    from paligemma import cli

    config_file = os.path.join(ROOT, "tests", "fixtures", "configs", "eval_tiny.py")  # as tests/evaluators use it
    config = cli.load_config_file(config_file)
    cfg = config.model.to_dict()
    checkpoints.save(str(tmp_path / "ckpt"), cfg, random_params(cfg))
    with pytest.raises(run.RunError, match=r"^--quantize 'int3': choose one of int8, int4"):
        run.evaluate(config, checkpoint=str(tmp_path / "ckpt"), workdir=str(tmp_path / "out"), quantize="int3")
    cmd = [sys.executable, "-m", "evaluators.run", f"--config={config_file}:batch_size=8"]
    cmd += [f"--checkpoint={tmp_path / 'ckpt'}", f"--workdir={tmp_path / 'out'}", "--evals=ppl,vqa"]
    cmd += ["--config.evals.vqa.max_decode_len=4", "--quantize=int8"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "out" / "eval_metrics.json") as f:
        result = json.load(f)
    assert result["quantize"] == {"qtype": "int8", "tile_size": None}
    assert result["metrics"]["vqa"]["num_examples"] == 5.0 and np.isfinite(result["metrics"]["ppl"]["nll"])
