"""Typed config validation: every field against its type hint, for presets, config.json,
from_dict and flags alike; errors name the field, the value and the expected type."""
from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import pytest

from pni.cli import app as cli
from pni.config import (
    ConfigError,
    TrainConfig,
    field_types,
    load_config,
    read_config,
    read_preset,
    replace,
)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name,value,expected", [
    ("adversarial", "false", "true or false"),
    ("nesterov", 0, "true or false"),
    ("download", "yes", "true or false"),
    ("milestones", "1", "a list of integers"),
    ("milestones", 80, "a list of integers"),
    ("milestones", [1.5], "a list of integers"),
    ("milestones", [True], "a list of integers"),
    ("lr", "0.1", "a finite number"),
    ("width", True, "a finite number"),
    ("weight_decay", math.nan, "a finite number"),
    ("eps", math.inf, "a finite number"),
    ("epochs", 2.0, "an integer"),
    ("steps", "7", "an integer"),
    ("train_subset", 64.0, "an integer or none"),
    ("location", 3, "a string or none"),
    ("model", None, "a string"),
    ("fixed_alpha", "none", "a finite number or none"),
])
def test_a_value_of_the_wrong_type_names_field_value_and_type(name, value, expected):
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({name: value})
    message = _one_line(error)
    assert f"config field {name}={value!r}: expected {expected}" in message


@pytest.mark.parametrize("name", sorted(field_types()))
def test_every_field_is_type_checked(name):
    """Driven by the type hints, so fields added later are covered too."""
    with pytest.raises(ConfigError, match=f"config field {name}="):
        TrainConfig.from_dict({name: {"not": "a value"}})
    hint = field_types()[name]
    if hint is bool:
        for wrong in ("false", 0, 1, None):
            with pytest.raises(ConfigError, match=f"{name}=.*true or false"):
                TrainConfig.from_dict({name: wrong})
    if float in (hint, *typing.get_args(hint)):
        for wrong in (math.nan, -math.inf, "0.5", False):
            with pytest.raises(ConfigError, match=f"{name}="):
                TrainConfig.from_dict({name: wrong})


@pytest.mark.parametrize("name,value,expected", [
    ("momentum", -0.9, "a number in \\[0, 1\\)"),
    ("momentum", 1.5, "a number in \\[0, 1\\)"),
    ("weight_decay", -1e-4, "a number >= 0"),
    ("lr", 0.0, "a positive number"),
    ("gamma", 0.0, "a positive number"),
    ("width", -1.0, "a positive number"),
    ("milestones", [120, 80], "increasing epoch numbers"),
    ("milestones", [0, 10], "increasing epoch numbers >= 1"),
    ("seed", -1, "an integer in \\[0, 2\\*\\*63\\)"),
    ("w_adv", -0.5, "a number >= 0"),
])
def test_values_out_of_range_are_refused(name, value, expected):
    with pytest.raises(ConfigError, match=f"config field {name}=.*: expected {expected}"):
        TrainConfig.from_dict({name: value})


def test_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match="nesterov=True: needs momentum > 0"):
        TrainConfig.from_dict({"momentum": 0.0})
    assert TrainConfig.from_dict({"momentum": 0.0, "nesterov": False}).momentum == 0.0


def test_integers_for_float_fields_become_floats():
    config = TrainConfig.from_dict({"lr": 1, "width": 2, "fixed_alpha": 0})
    assert (config.lr, config.width, config.fixed_alpha) == (1.0, 2.0, 0.0)
    assert all(type(v) is float for v in (config.lr, config.width, config.fixed_alpha))


def test_validate_and_replace_check_types_too():
    with pytest.raises(ConfigError, match="adversarial='no'"):
        TrainConfig(adversarial="no").validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="milestones='80'"):
        replace(TrainConfig(), milestones="80")
    with pytest.raises(ConfigError, match="unknown config field.*stepz"):
        replace(TrainConfig(), stepz=3)


# --- presets ---------------------------------------------------------------------------

def _preset(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def test_a_preset_file_with_a_string_for_a_bool_names_the_file_and_table(tmp_path):
    path = _preset(tmp_path, '[base]\nadversarial = "false"\n[scales.cpu]\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, "cpu")
    message = _one_line(error)
    assert path in message and "[base]" in message and "adversarial='false'" in message


def test_a_preset_scale_with_a_string_milestone_is_refused(tmp_path):
    path = _preset(tmp_path, '[base]\nepochs = 4\n[scales.smoke]\nmilestones = "1"\n')
    with pytest.raises(ConfigError, match=r"\[scales.smoke\]: config field milestones='1'"):
        load_config(path, "smoke")


@pytest.mark.parametrize("text,match", [
    ("[base\nepochs = 1\n", "malformed TOML.*line 1"),
    ("[base]\nepochs = \n", "malformed TOML.*line 2"),
    ("[base]\n[extras]\nx = 1\n", "unknown table.*extras"),
    ("base = 3\n[scales.cpu]\n", r"\[base\]: expected a table of config fields, got int"),
    ("[base]\nepoch = 3\n[scales.cpu]\n", "unknown config field.*epoch"),
])
def test_malformed_preset_files_name_the_file(tmp_path, text, match):
    path = _preset(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as error:
        read_preset(path)
    assert path in _one_line(error)


def test_a_missing_preset_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read preset.*No such file"):
        read_preset(str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="unknown preset 'absent'"):
        read_preset("absent")


def test_a_user_preset_file_loads(tmp_path):
    path = _preset(tmp_path, '[base]\nmodel = "lenet5"\nlocation = "none"\nlr = 1\n'
                             '[scales.cpu]\nmilestones = [2]\nepochs = 3\n')
    config = load_config(path, "cpu")
    assert (config.model, config.location, config.lr, config.milestones) == ("lenet5", None, 1.0, [2])


# --- config.json --------------------------------------------------------------------------

@pytest.mark.parametrize("content,match", [
    ({"adversarial": "false"}, "adversarial='false': expected true or false"),
    ({"milestones": "1"}, "milestones='1': expected a list of integers"),
    ({"momentum": -0.9}, "momentum=-0.9"),
    ([1, 2], "expected a table of config fields, got list"),
    ("NaN", "expected a table of config fields, got float"),
])
def test_config_json_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError, match=match) as error:
        read_config(path)
    assert _one_line(error).startswith(str(path))


def test_config_json_round_trips_and_malformed_json_is_named(tmp_path):
    path = tmp_path / "config.json"
    config = load_config("mnist-lenet", "smoke")
    path.write_text(json.dumps(config.to_dict()))
    assert read_config(path) == config
    path.write_text('{"lr": 0.1,')
    with pytest.raises(ConfigError, match="malformed JSON") as error:
        read_config(path)
    assert str(path) in _one_line(error)


# --- flags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value,match", [
    ("--momentum", "-0.9", "momentum=-0.9: expected a number in \\[0, 1\\)"),
    ("--weight-decay", "nan", "weight_decay=nan: expected a finite number"),
    ("--lr", "inf", "lr=inf: expected a finite number"),
    ("--milestones", "3,1", "milestones=\\[3, 1\\]: expected increasing epoch numbers"),
])
def test_flags_are_checked_like_presets(tmp_path, capsys, flag, value, match):
    code = cli.main(["train", "--preset", "mnist-lenet", "--scale", "smoke", "--out", str(tmp_path),
                     flag, value])
    err = capsys.readouterr().err
    assert code == 2
    assert "\n" not in err.strip() and pytest.importorskip("re").search(match, err), err


def test_a_bad_preset_file_on_the_command_line_is_one_line(tmp_path, capsys):
    path = _preset(tmp_path, '[base]\nadversarial = "false"\n[scales.cpu]\n')
    code = cli.main(["train", "--preset", path, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"pni train: error: preset {path} [base]: config field adversarial='false'")
