"""Pretrained models by name (``pni.pretrained``, ``hubconf.py``): each committed file is
checked against its registered sha256; a missing or altered file is a one-line error."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import pni
from pni.models import load_model
from pni.models.hub import REGISTRY, PretrainedError, card_path, earned_card, pretrained_entry, verified_path

ROOT = Path(__file__).resolve().parents[1]


def test_a_registered_checkpoint_loads_by_name():
    model = pni.pretrained("lenet5-pni-w", scale="cpu")
    assert pni.is_injected(model) and not model.training
    direct, _ = load_model(ROOT / pretrained_entry("lenet5-pni-w").path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), direct.state_dict().values()))


def test_pni_load_model_takes_a_registered_name_or_a_checkpoint_file(tmp_path):
    by_name = pni.load_model("lenet5-pni-w", scale="cpu")
    path = ROOT / pretrained_entry("lenet5-pni-w").path
    by_file = pni.load_model(path)
    assert not by_name.training and not by_file.training and pni.is_injected(by_file)
    assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), by_file.state_dict().values()))
    with pytest.raises(PretrainedError, match="'lenet7' is neither a pretrained name .* nor a checkpoint file"):
        pni.load_model("lenet7")
    with pytest.raises(PretrainedError, match="no 'paper' checkpoint"):
        pni.load_model("lenet5-pni-w", scale="paper")


def test_every_registered_file_is_present_and_matches_its_sha256():
    for name, scale in REGISTRY:
        assert verified_path(name, scale, ROOT).is_file()


def test_an_altered_or_missing_file_is_refused(tmp_path):
    entry = pretrained_entry("lenet5-vanilla-at")
    copy = tmp_path / entry.path
    copy.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / entry.path, copy)
    assert pni.pretrained("lenet5-vanilla-at", root=tmp_path) is not None
    with open(copy, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PretrainedError, match="sha256 .* not the registered .*altered"):
        pni.pretrained("lenet5-vanilla-at", root=tmp_path)
    copy.unlink()
    with pytest.raises(PretrainedError, match="is missing"):
        pni.pretrained("lenet5-vanilla-at", root=tmp_path)
    with pytest.raises(PretrainedError, match="unknown pretrained model 'lenet7'"):
        pni.pretrained("lenet7")
    with pytest.raises(PretrainedError, match="no 'paper' checkpoint"):
        pni.pretrained("lenet5-pni-w", scale="paper")


def test_torch_hub_entry_points():
    model = torch.hub.load(str(ROOT), "lenet5_pni_w", source="local", scale="cpu")
    assert pni.is_injected(model)
    import importlib.util

    spec = importlib.util.spec_from_file_location("pni_hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert callable(hubconf.resnet20_pni_w_a_a) and hubconf.dependencies == ["torch"]


def test_the_committed_cards_are_earned_by_the_registered_files():
    from pni.benchmark import read_card

    earned = {key: earned_card(*key) for key in REGISTRY}
    assert any(earned.values()), "no card committed"
    for (name, scale), path in earned.items():
        if path is not None:
            card = read_card(path)
            assert card["model"]["weights_sha256"] == REGISTRY[(name, scale)].sha256, name
            assert card["model"]["name"] == name and card["protocol"]["name"] == "pni-honest-v1"
    assert not set(p.name for p in (ROOT / "results" / "cards").glob("*-cpu.json")) - {
        p.name for p in earned.values() if p}, "a committed card names no registered checkpoint"


def test_a_card_of_other_weights_is_a_one_line_error(tmp_path):
    import json

    card = json.loads((ROOT / card_path("lenet5-pni-w")).read_text())
    card["model"]["weights_sha256"] = "0" * 64
    (tmp_path / "results" / "cards").mkdir(parents=True)
    (tmp_path / card_path("lenet5-pni-w")).write_text(json.dumps(card))
    with pytest.raises(PretrainedError, match="remake the card"):
        earned_card("lenet5-pni-w", root=tmp_path)
    assert earned_card("lenet5-pni-i", root=tmp_path) is None
