"""The pni command: train -> eval round trip, help texts, and clear errors for bad input."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pni.cli import app as cli
from pni.config import TrainConfig


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--preset", "mnist-lenet", "--scale", "smoke", "--out", str(out),
                     "--train-subset", "128", "--eval-subset", "32", "--progress", "false"])
    assert code == 0
    return out


def test_info_lists_models_locations_and_presets(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    for word in ("resnet20", "lenet5", "W+A-b", "mnist-sample", "cifar-resnet20", "smoke"):
        assert word in out


def test_train_help_explains_every_config_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in out


def test_train_then_eval_writes_checkpoint_log_and_results(trained_run, capsys, tmp_path):
    assert (trained_run / "checkpoint.pt").exists()
    log = [json.loads(x) for x in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1 and "conv0:W" in log[0]["alphas"] and "test_pgd_acc" in log[0]
    code, out, err = run(capsys, "eval", str(trained_run / "checkpoint.pt"), "--trials", "2",
                         "--num-images", "16", "--steps", "2", "--attacks", "clean,pgd,fgsm",
                         "--out", str(tmp_path / "ev"))
    assert code == 0, err
    assert "Test with PNI" in out and "Test without PNI" in out
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["trials"] == 2 and results["n"] == 16
    assert set(results["accuracy_percent"]) == {"with_noise", "without_noise"}
    assert results["attacks"]["pgd"]["steps"] == 2
    assert "| lenet5 (PNI-W) |" in (tmp_path / "ev" / "results.md").read_text()


def test_flags_override_preset_fields(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run(capsys, "train", "--preset", "mnist-lenet", "--scale", "smoke", "--out", str(out),
                       "--location", "none", "--adversarial", "false", "--epochs", "1",
                       "--train-subset", "64", "--eval-subset", "0", "--milestones", "",
                       "--eps", "8/255", "--progress", "false")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["location"] is None and config["adversarial"] is False
    assert config["eps"] == pytest.approx(8 / 255)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["model_meta"]["noise"] is None


# --- bad input: one test each ----------------------------------------------------------

@pytest.mark.parametrize("flag,value,match", [
    ("--eps", "0", "eps=0.0: expected a number in \\(0, 1\\]"),
    ("--eps", "1.5", "eps=1.5: expected a number in \\(0, 1\\]"),
    ("--steps", "-3", "steps=-3: expected an integer >= 0"),
])
def test_train_rejects_bad_attack_settings(capsys, tmp_path, flag, value, match):
    code, _, err = run(capsys, "train", "--preset", "mnist-lenet", "--scale", "smoke",
                       "--out", str(tmp_path), flag, value)
    assert code == 2
    assert pytest.importorskip("re").search(match, err), err


@pytest.mark.parametrize("flag,value,match", [
    ("--eps", "0", "eps must be in \\(0, 1\\]"),
    ("--eps", "2", "eps must be in \\(0, 1\\]"),
    ("--steps", "-1", "steps must be an integer >= 0"),
    ("--trials", "0", "trials must be an integer >= 1"),
    ("--trials", "-2", "trials must be an integer >= 1"),
])
def test_eval_rejects_bad_values(trained_run, capsys, tmp_path, flag, value, match):
    code, _, err = run(capsys, "eval", str(trained_run / "checkpoint.pt"), "--num-images", "8",
                       "--out", str(tmp_path), flag, value)
    assert code == 2
    assert pytest.importorskip("re").search(match, err), err


def test_eval_of_a_checkpoint_of_another_architecture_lists_mismatched_keys(trained_run, capsys, tmp_path):
    checkpoint = torch.load(trained_run / "checkpoint.pt", weights_only=True)
    checkpoint["model_meta"]["arch"] = "resnet20"
    checkpoint["model_meta"]["input_shape"] = [3, 32, 32]
    checkpoint["model_meta"]["normalize"] = None
    torch.save(checkpoint, tmp_path / "other.pt")
    code, _, err = run(capsys, "eval", str(tmp_path / "other.pt"), "--num-images", "8")
    assert code == 2
    assert "does not fit the model" in err
    assert "missing keys" in err and "bn0.running_mean" in err
    assert "unexpected keys" in err and "fc0" in err


def test_eval_of_an_unreadable_checkpoint_names_the_file(capsys, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    code, _, err = run(capsys, "eval", str(bad))
    assert code == 2
    assert "cannot read checkpoint" in err and "broken.pt" in err
    code, _, err = run(capsys, "eval", str(tmp_path / "missing.pt"))
    assert code == 2 and "missing.pt" in err and "does not exist" in err


def test_unknown_preset_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--preset", "imagenet-vit", "--out", str(tmp_path))
    assert code == 2 and "unknown preset 'imagenet-vit'" in err and "mnist-lenet" in err


def test_unknown_scale_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--preset", "mnist-lenet", "--scale", "huge", "--out", str(tmp_path))
    assert code == 2 and "unknown scale 'huge'" in err and "smoke" in err


def test_output_folder_with_another_run_is_refused_without_resume_or_overwrite(trained_run, capsys):
    before = (trained_run / "checkpoint.pt").read_bytes()
    code, _, err = run(capsys, "train", "--preset", "mnist-lenet", "--scale", "smoke",
                       "--out", str(trained_run))
    assert code == 2 and "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (trained_run / "checkpoint.pt").read_bytes() == before
