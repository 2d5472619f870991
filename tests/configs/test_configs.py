"""The benchmark configs: every variant resolves, a missing checkpoint/dataset fails at once saying what to get,
and `mode=mock` runs each config end to end (data -> training -> its evaluators) on this CPU."""

import importlib
import os

import pytest

from trainers import config as config_lib
from trainers.config import ConfigError
from trainers.train import train

TRANSFERS = ("vqav2", "cococap", "docvqa", "refcoco_seg")
MULTI_FRAME = ("nlvr2", "marvl", "msrvtt_cap", "msrvtt_qa")  # image pairs and videos: image [F, H, W, 3] + frame_mask
# Video transfers (frames_from_video): big_vision recipes with their own lr / epochs / batch, so resolved separately.
VIDEO_TRANSFERS = ("activitynet_cap", "activitynet_qa", "vatex_cap", "msvd_qa")
FAST = {"xla_backend_optimization_level": 0}


def _config(name, arg=None):
    module = importlib.import_module(f"configs.transfer.{name}")
    return module.get_config(arg)


@pytest.mark.parametrize("name", TRANSFERS)
@pytest.mark.parametrize("arg", ["", "res=448,final_split=true", "res=896,model=paligemma2-10b"])
def test_every_variant_resolves(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    res = int(arg.split("res=")[1].split(",")[0]) if "res=" in arg else None
    if res:
        assert cfg.model_name.endswith(f"-{res}") and cfg.model_init.endswith(f"-pt-{res}")
    assert cfg.evals and cfg.lr == 1e-5 and cfg.optax_name == "adam"


# name -> (evaluator prefix, frames, epochs, lr, wd, frozen image encoder, metric): big_vision's sweep_best
VIDEO_RECIPES = {
    "activitynet_cap": ("anet_cap", 16, 1, 1e-5, 1e-6, True, "cider"),
    "activitynet_qa": ("anet_qa", 16, 1, 1e-5, 1e-6, False, "accuracy"),
    "vatex_cap": ("vatex", 16, 10, 3e-6, 3e-7, False, "cider"),
    "msvd_qa": ("msvd_qa", 8, 1, 3e-6, 3e-7, False, "accuracy"),
}


@pytest.mark.parametrize("name", VIDEO_TRANSFERS)
@pytest.mark.parametrize("arg", ["", "final_split=true", "res=448,model=paligemma2-10b,num_frames=4"])
def test_video_configs_resolve_with_the_original_recipe(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    prefix, frames, epochs, lr, wd, frozen, metric = VIDEO_RECIPES[name]
    frames = 4 if "num_frames=4" in arg else frames
    assert (cfg.total_epochs, cfg.input.batch_size, cfg.lr, cfg.wd) == (epochs, 128, lr, wd)
    assert tuple(cfg.freeze) == (("^img/",) if frozen else ())
    res = 448 if "res=448" in arg else 224
    for pp in [cfg.input.pp] + [e.pp for e in cfg.evals.values()]:
        assert f'frames_from_video(inkey="video", outkey="image", num_frames={frames}, size={res})' in pp
        assert '"frame_mask"' in pp.split("keep(")[1]
    assert cfg.input.data.split == ("train+validation" if "final_split" in arg else "train")
    test = cfg.evals[f"{prefix}_test"]
    assert test.data.split == "test" and test.max_decode_len == 64 and test.get("log_percent") is None  # at the end
    assert (f"{prefix}_val" in cfg.evals) == ("final_split" not in arg)
    if metric == "cider":
        assert test.type == "caption" and test.score_scale == 100.0 and test.references_key == "captions"
    else:
        assert test.type == "vqa" and test.answers_key == "answers" and test.normalize == "vqav2"  # exact match
    assert cfg.accum_steps >= 1 and test.batch_size <= 256


def test_bad_argument_names_the_accepted_ones():
    with pytest.raises(ValueError, match="this config takes"):
        _config("vqav2", "resolution=224")
    with pytest.raises(ValueError, match="must be a int"):
        _config("vqav2", "res=big")


def test_missing_checkpoint_data_and_tokenizer_fail_at_once_saying_what_to_get(tmp_path, monkeypatch):
    monkeypatch.delenv("PALIGEMMA_CKPT_DIR", raising=False)
    cfg = _config("vqav2")
    cfg.input.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(ConfigError) as e:
        train(cfg, str(tmp_path / "run"))
    msg = str(e.value)
    assert "PALIGEMMA_CKPT_DIR" in msg and "--config.model_init" in msg
    assert "python -m datasets.build vqa" in msg and "tokenizer" in msg
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("name", TRANSFERS + VIDEO_TRANSFERS + MULTI_FRAME + ("mix",))
def test_mock_mode_trains_and_evaluates(name, tmp_path):
    cfg = _config(name, "mode=mock")
    result = train(cfg, str(tmp_path), compiler_options=FAST)
    assert result["step"] == result["total_steps"] == 3
    last = result["records"][-1]
    metrics = {k for k in last if "/" in k}
    expected = {
        "vqav2": "vqa/accuracy",
        "cococap": "coco/cider",
        "docvqa": "anls/anls",
        "refcoco_seg": "seg_refcocog_validation/miou",
        "nlvr2": "nlvr2_test/accuracy",
        "marvl": "marvl/mean_accuracy",
        "msrvtt_cap": "msrvtt_test/cider",
        "msrvtt_qa": "msrvtt_qa_test/accuracy",
        "activitynet_cap": "anet_cap_test/cider",
        "activitynet_qa": "anet_qa_test/accuracy",
        "vatex_cap": "vatex_test/cider",
        "msvd_qa": "msvd_qa_test/accuracy",
        "mix": "mmvp/paired_accuracy",
    }[name]
    assert expected in metrics, sorted(last)


@pytest.mark.parametrize("name", TRANSFERS + VIDEO_TRANSFERS + MULTI_FRAME)
def test_released_models_compute_in_bfloat16_with_float32_weights_and_remat(name):
    for arg in ("", "res=448,model=paligemma2-10b"):
        model = config_lib.model_config(config_lib.resolve(_config(name, arg)))
        for tower in ("img", "llm"):
            assert {k: model[tower][k] for k in ("dtype", "param_dtype", "remat_policy")} == dict(
                dtype="bfloat16", param_dtype="float32", remat_policy="full"
            ), (name, arg, tower)
    mock = config_lib.model_config(config_lib.resolve(_config(name, "mode=mock")))  # the tiny CPU model: float32
    for tower in ("img", "llm"):
        assert mock[tower].get("dtype", "float32") == "float32" and mock[tower].get("remat_policy", "none") == "none"


@pytest.mark.parametrize("name", MULTI_FRAME)
@pytest.mark.parametrize("arg", ["", "res=448", "res=896,model=paligemma2-10b"])
def test_multi_frame_variants_resolve_and_keep_the_frame_mask(name, arg):
    cfg = config_lib.resolve(_config(name, arg))
    assert cfg.evals and cfg.optax_name == "adam" and cfg.input.batch_size in (128, 256)
    for pp in [cfg.input.pp] + [ev.pp for ev in cfg.evals.values()]:
        assert "frames_from_" in pp and '"frame_mask"' in pp.split("keep(")[-1], pp


def test_multi_frame_recipes_follow_big_vision():
    """Recipe values of big_vision's paligemma transfers/{nlvr2,msrvtt_cap,msrvtt_qa}.py (their sweep_best)."""
    nlvr2 = config_lib.resolve(_config("nlvr2"))
    assert (nlvr2.total_epochs, nlvr2.input.batch_size, nlvr2.lr, nlvr2.wd) == (3, 256, 1e-5, 1e-6)
    assert "num_frames=2, size=224" in nlvr2.input.pp and "tok_paligemma(text_len=64)" in nlvr2.input.pp
    assert 'strfmt("answer en {question}"' in nlvr2.input.pp
    assert sorted(nlvr2.evals) == ["nlvr2_dev", "nlvr2_test"] and nlvr2.evals.nlvr2_test.normalize == "always"
    assert nlvr2.accum_steps == 2  # 2 x 224 px planned as 448 px: v5e-16, 8 examples per chip
    at448 = config_lib.resolve(_config("nlvr2", "res=448,final_split=true"))
    assert (at448.total_epochs, at448.lr, at448.wd) == (10, 3e-6, 3e-7)
    assert at448.input.data.split == "train+validation" and sorted(at448.evals) == ["nlvr2_test"]

    marvl = config_lib.resolve(_config("marvl"))
    assert sorted(marvl.evals) == ["marvl"] and marvl.input.pp == nlvr2.input.pp  # the NLVR2 run, MaRVL evaluated
    ev = marvl.evals.marvl
    assert ev.data.split == "test_id+test_sw+test_ta+test_tr+test_zh"
    assert ev.answer_type_key == "language" and ev.mean_over_types and '"language"' in ev.pp

    cap = config_lib.resolve(_config("msrvtt_cap"))
    assert (cap.total_epochs, cap.input.batch_size, cap.lr, cap.wd) == (20, 128, 1e-5, 0.0)
    assert tuple(cap.freeze) == (r"^img/",) and "num_frames=16, size=224" in cap.input.pp
    assert 'strfmt("caption en"' in cap.input.pp and "tok_paligemma(text_len=32)" in cap.input.pp
    assert cap.evals.msrvtt_test.score_scale == 100.0 and cap.evals.msrvtt_test.data.split == "test"
    assert cap.accum_steps == 4  # 16 x 224 px planned as 896 px: v5e-32, one example per chip
    qa = config_lib.resolve(_config("msrvtt_qa", "num_frames=8"))
    assert (qa.total_epochs, qa.input.batch_size, qa.lr, qa.wd) == (1, 128, 1e-5, 0.0)
    assert tuple(qa.freeze) == (r"^img/",) and "num_frames=8, size=224" in qa.input.pp
    assert "tok_paligemma(text_len=64)" in qa.input.pp and qa.evals.msrvtt_qa_test.normalize == "always"


def test_lora_configs_train_adapters_on_a_frozen_base():
    """vqav2_lora: one chip, bfloat16 frozen base, rank-16 adapters; easyvqa_lora: on a demo workdir or standalone."""
    cfg = config_lib.resolve(_config("vqav2_lora"))
    assert cfg.lora.rank == 16 and cfg.model_init.endswith("-pt-224") and cfg.lr == 2e-4
    assert cfg.mesh == [("data", -1)] and cfg.accum_steps * 8 == cfg.input.batch_size == 256
    assert {cfg.model[t]["param_dtype"] for t in ("img", "llm")} == {"bfloat16"}
    assert config_lib.resolve(_config("vqav2_lora", "rank=4,res=448")).lora.rank == 4

    fresh = config_lib.resolve(_config("easyvqa_lora"))
    assert fresh.model_init is None and fresh.lora.alpha == 32.0 and len(fresh.lora.targets) == 2
    on_demo = config_lib.resolve(_config("easyvqa_lora", "init=runs/easyvqa,steps=10"))
    assert on_demo.model_init == "runs/easyvqa" and on_demo.tokenizer == "runs/easyvqa/tokenizer.model"
    assert on_demo.total_steps == 10


@pytest.mark.slow
def test_lora_mock_mode_trains_the_adapters_and_evaluates(tmp_path):
    result = train(_config("vqav2_lora", "mode=mock"), str(tmp_path), compiler_options=FAST)
    assert result["step"] == 3 and "vqa/accuracy" in result["records"][-1]
    assert (tmp_path / "lora_base.json").exists()


def test_refcoco_trains_the_three_datasets_together_as_the_card():
    cfg = config_lib.resolve(_config("refcoco_seg", "res=224"))
    assert cfg.input.data.name == "refcoco/refcocox_combined" and cfg.input.data.split == "train"
    assert (cfg.total_epochs, cfg.lr, cfg.input.batch_size, cfg.label_smoothing) == (100, 3e-5, 256, 0.3)
    assert cfg.model.llm.dropout == 0.1
    assert sorted(cfg.evals) == ["seg_refcoco_validation", "seg_refcocog_validation", "seg_refcocoplus_validation"]
    final = config_lib.resolve(_config("refcoco_seg", "final_split=true"))
    assert final.input.data.split == "train" and len(final.evals) == 8  # never trains on a held-out image
    assert final.evals.seg_refcocog_test.data.to_dict() == dict(name="refcoco/refcocog_umd", split="test")
    single = config_lib.resolve(_config("refcoco_seg", "dataset=refcoco_unc,final_split=true"))
    assert single.input.data.split == "train+validation" and sorted(single.evals) == ["seg_testA", "seg_testB"]


def test_mix_trains_every_task_with_its_own_prompt_at_one_text_len():
    from configs.transfer import mix

    cfg = config_lib.resolve(_config("mix"))
    parts = cfg.input.data.mixture
    assert cfg.input.pp is None and len(parts) == len(mix.TASKS) and cfg.input.batch_size == 256
    names = [part["name"] for part, _ in parts]
    assert {"vqa", "textvqa", "refcoco/refcocox_combined", "coco_captions"} <= set(names)
    for part, weight in parts:
        assert weight == 1.0 and f"tok_paligemma(text_len={mix.TEXT_LEN})" in part["pp"], part
    assert 'strfmt("caption en"' in parts[names.index("textcaps")][0]["pp"]
    assert "segmentation_targets(" in parts[names.index("refcoco/refcocox_combined")][0]["pp"]
    assert {"mmvp", "pope_random", "pope_popular", "pope_adversarial", "textvqa_val"} <= set(cfg.evals)
    assert cfg.evals.vqa.log_percent == 0.1 and cfg.evals.mmvp.log_percent is None
