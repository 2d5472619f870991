"""`--dry_run`: the run compiled for a TPU topology by libtpu on this CPU host; numbers checked against hand counts."""

import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import pytest

from paligemma import model as model_lib
from paligemma import sharding, tree
from trainers import dry_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason=f"libtpu is not installed (`pip install {dry_run.LIBTPU_PIN}`, in "
    f"requirements-dev.txt): the dry run compiles with TPU's compiler",
)

TEXT_LEN = 16
PP = f'decode|resize(64)|value_range(-1, 1)|tok_paligemma(text_len={TEXT_LEN})|keep("image", "text")'


def _config(**overrides):
    config = dict(
        model_name="paligemma-small",
        model=dict(llm=dict(vocab_size=2048)),
        input=dict(data=dict(name="never_opened"), pp=PP, batch_size=32),
        total_steps=100,
        mesh=[("data", -1)],
    )
    config.update(overrides)
    return config


def _small_flops_by_hand(batch: int) -> float:
    """Training FLOPs of paligemma-small (S/16 at 64 px: 16 tokens; Gemma 'small') = 3 x forward matmuls."""
    n, w, m, vit_depth, patch = 16, 384, 1536, 12, 16
    d, f, depth, heads, kv, hd, vocab = 256, 1024, 4, 4, 1, 64, 2048
    t = TEXT_LEN - 1  # the model reads text[:, :-1]
    s = n + t
    vit = vit_depth * 2 * n * (4 * w * w + 2 * n * w + 2 * w * m) + 2 * n * patch * patch * 3 * w + 2 * n * w * d
    llm = depth * 2 * s * (d * (heads + 2 * kv) * hd + 2 * s * heads * hd + heads * hd * d + 3 * d * f)
    return 3.0 * batch * (vit + llm + 2 * t * d * vocab)


@needs_libtpu
def test_small_model_on_v5e_2x2_matches_hand_counts():
    report = dry_run.plan(_config(), "v5e:2x2", evals=False)
    assert report["chips"] == 4 and report["chip"]["name"] == "v5e" and report["fits"]
    step = report["programs"][0]
    assert step["name"] == "train_step" and step["error"] is None

    # Parameter bytes per chip, exactly: float32; a parameter split over the 4 data shards holds a quarter.
    mesh = sharding.make_mesh([("data", -1)], dry_run.topology_devices("v5e:2x2"))
    shapes = tree.flatten(
        model_lib.param_shapes(
            model_lib.get_config("paligemma-small")
            | {"llm": dict(model_lib.get_config("paligemma-small")["llm"], vocab_size=2048)}
        )
    )
    specs = tree.flatten(sharding.param_specs(tree.unflatten(shapes), mesh))
    expected = sum(4 * math.prod(x.shape) // (4 if any(specs[k]) else 1) for k, x in shapes.items())
    assert step["args"]["params"] == expected
    assert model_lib.count_params(tree.unflatten(shapes)) == report["params"]
    # Adam: mu and nu in float32 (+ int32 step counters).
    assert 0 <= step["args"]["opt_state"] - 2 * expected < 64

    # FLOPs per chip: XLA's count with the scanned layers' iterations added back, against the hand count.
    by_hand = _small_flops_by_hand(32) / 4
    assert step["analytic_flops"] == pytest.approx(by_hand, rel=1e-9)
    assert step["flops"] == pytest.approx(by_hand, rel=0.15)
    assert step["loop_factor"] > 3  # XLA alone counts one layer of each scanned stack
    assert 0 < step["step_seconds"] and 0 < step["mfu"] <= 1
    assert step["total"] < report["chip"]["usable"]


@needs_libtpu
def test_impossible_config_fails_with_advice(tmp_path):
    config = tmp_path / "big.py"
    config.write_text(
        textwrap.dedent("""
        def get_config():
            return dict(model_name="paligemma-tiny", model=dict(img=dict(image_size=448)),
                        input=dict(data=dict(name="never_opened"), batch_size=4096,
                                   pp='tok_paligemma(text_len=64)'), total_epochs=1)
        """)
    )
    out = tmp_path / "plan.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.train",
            f"--config={config}",
            f"--workdir={tmp_path}/w",
            "--dry_run=v5e-4",
            f"--dry_run_json={out}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("Config error:")]
    assert len(error) == 1 and "does not fit v5e:2x2" in error[0], proc.stderr[-3000:]
    assert "remat_policy='full'" in error[0] and "accum_steps=2" in error[0] and "bfloat16" in error[0]
    assert "train_step" in proc.stdout and "NO" in proc.stdout
    assert out.exists()


def test_missing_libtpu_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "libtpu" else real(name, *a))
    with pytest.raises(dry_run.DryRunError, match=r"pip install libtpu==\d"):
        dry_run.topology_devices("v5e:2x2")


@needs_libtpu
def test_lora_on_one_v5e_chip_keeps_optimizer_state_for_the_adapters_only():
    """One chip (`v5e:1x1`, a topology smaller than libtpu's default 2x2 host) and a LoRA run: the optimizer state is
    Adam's two float32 moments of the adapters alone."""
    from paligemma import lora

    report = dry_run.plan(_config(lora=dict(rank=8, alpha=8)), "v5e:1x1", evals=False)
    assert report["chips"] == 1 and report["fits"]
    step = report["programs"][0]
    assert step["name"] == "train_step" and step["error"] is None
    model_config = model_lib.get_config("paligemma-small")
    model_config["llm"]["vocab_size"] = 2048
    adapters = lora.adapter_shapes(model_config, lora.LoraConfig(rank=8, alpha=8))
    adapter_bytes = sum(4 * math.prod(s.shape) for s in adapters.values())
    base_bytes = 4 * model_lib.count_params(model_lib.param_shapes(model_config))
    assert step["args"]["params"] == base_bytes + adapter_bytes
    assert 0 <= step["args"]["opt_state"] - 2 * adapter_bytes < 64


def test_topology_names():
    assert dry_run.topology_name("v5e-8") == "v5e:2x4"
    assert dry_run.topology_name("v5e-1") == "v5e:1x1"
    assert dry_run.topology_name("v5litepod-64") == "v5e:8x8"
    assert dry_run.topology_name("v5e:4x4") == "v5e:4x4"
    with pytest.raises(dry_run.DryRunError, match="chips"):
        dry_run.topology_name("v5e-6")


@needs_libtpu
def test_train_step_keeps_the_activations_split_over_the_batch():
    """XLA, left alone, splits the weights' dims and holds every row on every chip in ~40% of this step's matmuls;
    the model's batch constraints (under the trainer's mesh context) keep each chip to its own rows."""
    report = dry_run.plan(_config(), "v5e:2x2", evals=False)
    step = report["programs"][0]
    assert step["full_batch_matmuls"] < 0.25, step["full_batch_matmuls"]


@needs_libtpu
def test_a_video_config_compiles_with_its_frames():
    """A pp string that samples F frames (`frames_from_video(num_frames=4)`) plans [B, F, H, W, 3] images and a
    [B, F] frame mask; the analytic FLOPs grow with the F x 16 image tokens."""
    pp = (
        "frames_from_video(num_frames=4, size=64)|value_range(-1, 1)|"
        f'tok_paligemma(text_len={TEXT_LEN})|keep("image", "frame_mask", "text")'
    )
    video = dry_run.plan(
        _config(input=dict(data=dict(name="never_opened"), pp=pp, batch_size=8)), "v5e:2x2", evals=False
    )
    image = dry_run.plan(
        _config(input=dict(data=dict(name="never_opened"), pp=PP, batch_size=8)), "v5e:2x2", evals=False
    )
    step, single = video["programs"][0], image["programs"][0]
    assert step["error"] is None and video["fits"]
    # The batch: 4 frames of 64x64x3 float32 + the frame mask, per example (8 examples over 4 chips).
    assert step["args"]["batch"] - single["args"]["batch"] == 2 * (3 * 64 * 64 * 3 * 4 + 4 * 4)
    by_hand = dry_run.analytic_train_flops(model_lib.get_config("paligemma-small"), 8, TEXT_LEN - 1, frames=4)
    assert step["analytic_flops"] == pytest.approx(by_hand["hardware"] / 4)
    assert step["flops"] == pytest.approx(step["analytic_flops"], rel=0.15)
    assert step["analytic_flops"] > 3 * single["analytic_flops"]


def test_an_evaluator_that_does_not_fit_is_told_its_own_batch_size():
    """When the train step fits and an evaluator's program does not, the advice is that evaluator's batch size."""
    import types

    import ml_collections

    cfg = ml_collections.ConfigDict(dict(evals=dict(textcaps_val=dict(batch_size=256), vqa=dict(batch_size=64))))
    programs = [
        dict(name="train_step", fits=True),
        dict(name="textcaps_val (decode prefill)", fits=True),
        dict(name="textcaps_val (decode loop, 32 tokens)", fits=False),
        dict(name="vqa (decode loop, 16 tokens)", fits=True),
    ]
    advice = dry_run._eval_advice(types.SimpleNamespace(cfg=cfg), programs)
    assert len(advice) == 1 and "config.evals.textcaps_val.batch_size=128 (now 256" in advice[0]
