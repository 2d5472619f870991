"""Loading and exporting a training run: `checkpoints.load` and `tools.convert_checkpoint` on a training workdir
(its latest readable step, or `step=`) and on one orbax step folder (`{workdir}/checkpoints/{step}`)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from paligemma import checkpoints, tree
from tools import convert_checkpoint


def _assert_trees_equal(a, b, rtol=0.0):
    fa, fb = tree.flatten(a), tree.flatten(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        np.testing.assert_allclose(np.asarray(fa[k], np.float32), np.asarray(fb[k], np.float32), rtol, err_msg=k)


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    """`(workdir, cfg, params_by_step)`: a training workdir with steps 3 and 5 and its config.json, as the trainer
    writes them (a Checkpointer saving synchronously; random params, step 3's scaled by 2)."""
    from paligemma.checkpoints import training

    cfg, params = tiny_model
    wd = str(tmp_path_factory.mktemp("runs") / "easyvqa")
    by_step = {3: jax.tree.map(lambda x: x * 2, params), 5: params}
    ckpt = training.Checkpointer(wd, async_save=False)
    for step in (3, 5):
        ckpt.save(step, by_step[step], {"count": np.zeros((), np.int32)}, {"step": step})
    ckpt.close()
    with open(os.path.join(wd, "config.json"), "w") as f:
        json.dump({"model": cfg, "tokenizer": "tokenizer.model", "total_steps": 5}, f)
    return wd, cfg, by_step


def test_load_a_training_workdir(run):
    wd, cfg, by_step = run
    config, params = checkpoints.load(wd)  # the latest step, the model config of the run's config.json
    assert all(config[s][k] == v for s in ("img", "llm") for k, v in cfg[s].items())
    _assert_trees_equal(params, by_step[5])
    _, params = checkpoints.load(wd, step=3, dtype="bfloat16")
    assert params["llm"]["final_norm"]["scale"].dtype.name == "bfloat16"
    _assert_trees_equal(params, by_step[3], rtol=1e-2)
    assert checkpoints.detect_format(wd) == "run"
    with pytest.raises(checkpoints.CheckpointError, match=r"no checkpoint of step 4; available steps: \[3, 5\]"):
        checkpoints.load(wd, step=4)


def test_load_a_step_folder(run):
    wd, _, by_step = run
    for folder in (os.path.join(wd, "checkpoints", "3"), os.path.join(wd, "checkpoints", "3") + os.sep):
        assert checkpoints.detect_format(folder) == "run"
        _, params = checkpoints.load(folder)
        _assert_trees_equal(params, by_step[3])
    _, params = checkpoints.load(os.path.join(wd, "checkpoints", "3"), step=3)
    with pytest.raises(checkpoints.CheckpointError, match="is the folder of step 3.*step=5"):
        checkpoints.load(os.path.join(wd, "checkpoints", "3"), step=5)


def test_a_checkpoint_takes_no_step(tmp_path, tiny_model):
    cfg, params = tiny_model
    own = str(tmp_path / "own")
    checkpoints.save(own, cfg, params)
    with pytest.raises(checkpoints.CheckpointError, match="step= is for training workdirs"):
        checkpoints.load(own, step=5)


def test_a_folder_that_is_neither(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="training workdir"):
        checkpoints.load(str(empty))


def test_convert_a_run_to_hf_and_npz(run, tmp_path, capsys):
    wd, _, by_step = run
    hf = str(tmp_path / "hf")
    assert convert_checkpoint.main([wd, hf, "--to", "hf"]) == 0
    out = capsys.readouterr().out
    assert f"read run checkpoint {wd} (trainer step 5)" in out and f"wrote hf checkpoint {hf}" in out
    _, params = checkpoints.load(hf)
    _assert_trees_equal(params, by_step[5])

    npz = str(tmp_path / "step3.npz")
    assert convert_checkpoint.main([wd, npz, "--step", "3"]) == 0  # --to npz from the suffix
    _, params = checkpoints.load(npz)
    _assert_trees_equal(params, by_step[3])

    folder = str(tmp_path / "from_folder.npz")
    assert convert_checkpoint.main([os.path.join(wd, "checkpoints", "5"), folder]) == 0
    _assert_trees_equal(checkpoints.load(folder)[1], by_step[5])

    assert convert_checkpoint.main([wd, str(tmp_path / "x.npz"), "--step", "4"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint of step 4; available steps: [3, 5]" in err and "Traceback" not in err


def test_latest_readable_step(run, tmp_path):
    wd, _, by_step = run
    copy = str(tmp_path / "copy")
    shutil.copytree(wd, copy)
    shutil.rmtree(os.path.join(copy, "checkpoints", "5", "params"))  # damaged: the older step is read
    _, params = checkpoints.load(copy)
    _assert_trees_equal(params, by_step[3])
