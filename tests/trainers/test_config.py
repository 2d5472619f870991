"""Run configs from the command line: `--config FILE --config.KEY=VALUE`, every SCHEMA key overridable (issue 17)."""

import os

import ml_collections
import pytest

from paligemma import cli
from trainers import config as config_lib
from trainers.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EASYVQA = os.path.join(REPO, "configs", "transfer", "easyvqa.py")


def _cli(*overrides: str, spec: str = EASYVQA) -> ml_collections.ConfigDict:
    _, pairs = cli.split_overrides([f"--config.{o}" for o in overrides])
    return config_lib.from_command_line(spec, pairs)


def test_keys_the_file_does_not_set_can_be_overridden():
    # Was: AttributeError "'accum_steps'" from ml_collections (easyvqa.py sets neither key).
    assert "accum_steps" not in config_lib.load(EASYVQA)
    config = _cli("accum_steps=2", "preemption_check_steps=5", "input.data_shards=4")
    assert config.accum_steps == 2 and config.preemption_check_steps == 5 and config.input.data_shards == 4
    resolved = config_lib.resolve(config)
    assert resolved.accum_steps == 2 and resolved.input.data_shards == 4
    # Every SCHEMA key is there; those the file leaves unset have their default.
    assert set(config_lib.SCHEMA) <= set(config) and config.export_dtype is None and config.sharding_rules is None


def test_lists_tuples_and_dicts_are_python_literals():
    # Was: "Type <class 'list'> of field config.mesh is not supported for overriding".
    config = _cli(
        "mesh=[('data', -1), ('fsdp', 1)]",
        "sharding_rules=[('llm/.*/attn/q_einsum/w', (None, 'tensor', None))]",
        "freeze=('img/.*',)",
        "input.data=dict(name='jsonl', path='x.jsonl', extra={'a': [1, 2]})",
        "optax.b2=0.95",
        "export_npz=True",
        "lr=1",
        "model_init=/ckpt/paligemma-3b-pt-224.npz",
        "optax_name=adamw",
    )
    assert config.mesh == [("data", -1), ("fsdp", 1)]
    assert config.sharding_rules == [("llm/.*/attn/q_einsum/w", (None, "tensor", None))]
    assert config.freeze == ("img/.*",)
    assert config.input.data.to_dict() == dict(name="jsonl", path="x.jsonl", extra={"a": [1, 2]})
    assert config.optax.b2 == 0.95 and config.export_npz is True
    assert config.lr == 1.0 and isinstance(config.lr, float)  # an int for a float field
    assert config.model_init == "/ckpt/paligemma-3b-pt-224.npz" and config.optax_name == "adamw"
    resolved = config_lib.resolve(config)
    assert resolved.export_npz is True and resolved.mesh == [("data", -1), ("fsdp", 1)]


def test_nested_keys_create_dicts_under_none_and_leaves_of_free_form_dicts(tmp_path):
    base = config_lib.load(EASYVQA)
    config = _cli("model.llm.dropout=0.1", "evals.test.max_decode_len=3", "schedule.warmup_steps=7")
    assert config.model.llm.dropout == 0.1 and config.model.llm.width == base.model.llm.width
    assert config.evals.test.max_decode_len == 3 and config.evals.test.type == base.evals.test.type
    assert config.schedule.warmup_steps == 7
    spec = tmp_path / "no_model.py"
    spec.write_text("def get_config():\n    return dict(model_name='paligemma-tiny', model=None)\n")
    assert _cli("model.llm.vocab_size=300", spec=str(spec)).model.to_dict() == {"llm": {"vocab_size": 300}}


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("accum_stepz=2", r"unknown key 'accum_stepz' .*did you mean 'accum_steps'\?"),
        ("input.batch_sise=8", r"unknown key 'input.batch_sise' .*did you mean 'input.batch_size'\?"),
        ("schedule.decay=linear", r"did you mean 'schedule.decay_type'\?"),
        ("evals.tset.batch_size=8", r"config.evals has no 'tset'.*did you mean 'evals.test'\?"),
        ("mesh=[('data', -1)", r"--config.mesh: .* is not a Python literal"),
        ("input.data=dict(name=jsonl)", r"--config.input.data: .* is not a Python literal"),
        ("mesh.0=1", r"config.mesh is a list, not a dict; set it whole"),
    ],
)
def test_unknown_keys_and_bad_values_are_one_line_config_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        _cli(override)
    assert "\n" not in str(info.value)


def test_values_are_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    config = _cli(f"model_init=__import__('pathlib').Path({str(marker)!r}).touch()")
    assert isinstance(config.model_init, str) and not marker.exists()
    with pytest.raises(ConfigError, match="not a Python literal"):
        _cli(f"mesh=[__import__('pathlib').Path({str(marker)!r}).touch()]")
    assert not marker.exists()


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        _cli(spec=str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no get_config"):
        _cli(spec=str(bad))
    args = tmp_path / "args.py"
    args.write_text("def get_config(arg=None):\n    return dict(seed=int(arg or 0))\n")
    assert _cli("lr=2e-5", spec=f"{args}:7").seed == 7 and _cli(spec=str(args)).lr == 1e-5
