"""The contract every registered attack keeps, so that a new attack inherits the whole of it:
NaN pixels are refused, the examples stay in [0, 1] (and within eps for an L-inf threat),
every module's train/eval mode is restored, and the same seed gives the same images."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

import pni
from pni.attacks import AttackError
from pni.attacks.registry import LINF_THREAT, attack_names, build_attacks, get_attack

EPS = 0.1
CHEAP = {"aa": {"n_iter": 2, "eot_iter": 2, "votes": 2}, "zoo": {"steps": 2, "coords": 8, "votes": 2},
         "cw": {"steps": 3, "binary_search_steps": 1, "votes": 2}, "eot": 2,
         "square": {"n_queries": 10, "eot": 2}}
ATTACKS = [name for name in attack_names() if name != "clean"]


def _examples(out: object) -> Tensor:
    return out if isinstance(out, Tensor) else out.x_adv  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def model_and_data() -> tuple[torch.nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.3)
    x, y = pni.load_dataset("mnist-sample", "test").subset(6).tensors()
    return model, x, y


def _attack(name: str):  # noqa: ANN202
    spec = get_attack(name)
    options = {k: v for k, v in CHEAP.items() if k in spec.options}
    table, _ = build_attacks([name], eps=EPS, steps=2, **options)
    return table[name]


@pytest.mark.parametrize("name", ATTACKS)
def test_nan_pixels_are_refused(name: str, model_and_data) -> None:
    model, x, y = model_and_data
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(AttackError, match="NaN|finite"):
        _attack(name)(model.eval(), bad, y)


@pytest.mark.parametrize("name", ATTACKS)
def test_examples_stay_in_the_image_range_and_the_threat(name: str, model_and_data) -> None:
    model, x, y = model_and_data
    torch.manual_seed(1)
    x_adv = _examples(_attack(name)(model.eval(), x, y))
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if get_attack(name).threat == LINF_THREAT:
        assert (x_adv - x).abs().max() <= EPS + 1e-5


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("training", [False, True])
def test_every_module_keeps_its_mode(name: str, training: bool, model_and_data) -> None:
    model, x, y = model_and_data
    model.train(training)
    children = [m for m in model.modules() if m is not model]
    children[0].train(not training)        # a mixed state must come back exactly as it was
    before = [m.training for m in model.modules()]
    try:
        _attack(name)(model, x, y)
        assert [m.training for m in model.modules()] == before
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


@pytest.mark.parametrize("name", ATTACKS)
def test_the_same_seed_gives_the_same_images(name: str, model_and_data) -> None:
    model, x, y = model_and_data
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        outputs.append(_examples(_attack(name)(model.eval(), x, y)))
    assert torch.equal(outputs[0], outputs[1])
