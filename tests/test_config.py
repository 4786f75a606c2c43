"""params.yaml validation: unknown, missing and mistyped keys fail naming the key."""
import pytest
import yaml

from mlpapers.config import ConfigError, from_dict, load_section
from mlpapers.experiment import EXPERIMENTS, get_experiment, load_config
from mlpapers.papers.dropout.experiments import ToyConfig

from conftest import ROOT


def toy_params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())["dropout_toy"]


def test_every_section_of_the_real_params_is_valid():
    for name in EXPERIMENTS:
        load_config(get_experiment(name), ROOT / "params.yaml")


def test_unknown_key_is_named():
    p = toy_params()
    p["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"dropout_toy\.train\.learning_rate: unknown key"):
        from_dict(ToyConfig, p, "dropout_toy")


def test_missing_key_is_named():
    p = toy_params()
    del p["models"]["dropout"]["p_hidden"]
    with pytest.raises(ConfigError, match=r"dropout_toy\.models\.dropout\.p_hidden: missing key"):
        from_dict(ToyConfig, p, "dropout_toy")


@pytest.mark.parametrize("key,value,msg", [
    ("steps", "many", "expected int"),
    ("steps", 1.5, "expected int"),
    ("lr", "fast", "expected float"),
    ("optimizer", "adam", "expected one of"),
    ("grad_clip", True, "expected float"),
])
def test_wrong_type_is_named(key, value, msg):
    p = toy_params()
    p["train"][key] = value
    with pytest.raises(ConfigError, match=rf"dropout_toy\.train\.{key}: {msg}"):
        from_dict(ToyConfig, p, "dropout_toy")


def test_range_check_runs_before_training():
    p = toy_params()
    p["models"]["dropout"]["p_hidden"] = 1.0
    with pytest.raises(ConfigError, match=r"dropout_toy\.models\.dropout\.p_hidden must be in \[0, 1\)"):
        from_dict(ToyConfig, p, "dropout_toy")


def test_int_is_accepted_for_float_and_lists_become_tuples():
    p = toy_params()
    p["train"]["lr"] = 1
    cfg = from_dict(ToyConfig, p, "dropout_toy")
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert isinstance(cfg.seeds, tuple)
    with pytest.raises(Exception):
        cfg.train.lr = 2.0  # frozen


def test_missing_section_and_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("other: {}\n")
    with pytest.raises(ConfigError, match="section 'dropout_toy' is missing"):
        load_section(ToyConfig, "dropout_toy", f)
    with pytest.raises(ConfigError, match="not found"):
        load_section(ToyConfig, "dropout_toy", tmp_path / "nope.yaml")


def test_cli_reports_bad_params_without_traceback(tmp_path, capsys):
    from mlpapers.cli import main

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["dropout_toy"]["train"]["lr"] = "fast"
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(p))
    assert main(["train", "dropout_toy", "plain", "--params", str(f), "--root", str(tmp_path)]) == 2
    assert "dropout_toy.train.lr: expected float" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()  # failed before any work
