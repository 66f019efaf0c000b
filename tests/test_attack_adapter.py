"""Other libraries' attacks under pni's judging (``pni.attacks.foreign_attack``): votes,
trials and the per-image worst case apply to them as to pni's own; an attack that leaves
its threat is refused. torchattacks' PGD when it is installed."""
from __future__ import annotations

import pytest
import torch

import pni
from pni.attacks import AttackError, foreign_attack

EPS = 0.1


@pytest.fixture(scope="module")
def data():
    return pni.load_dataset("mnist-sample", "test").subset(16).tensors()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()


class FakeTorchattacksPGD:
    """The torchattacks calling convention (``atk = PGD(model, eps=...); atk(x, y)``), without torchattacks."""

    __module__ = "torchattacks.attacks.fake"

    def __init__(self, model, eps=EPS, steps=3):
        self.model, self.eps, self.steps = model, eps, steps

    def __call__(self, x, y):
        return pni.attacks.pgd(self.model, x, y, self.eps, 2.5 * self.eps / self.steps, self.steps)


def test_a_foreign_attack_gets_votes_trials_and_the_worst_case(model, data):
    attacks = {"clean": None, "pgd": lambda m, x, y: pni.attacks.pgd(m, x, y, EPS, 0.05, 3),
               "ta-pgd": foreign_attack(FakeTorchattacksPGD(model), eps=EPS)}
    ev = pni.evaluate(model, data, attacks, trials=2, votes=4, noise="on")
    assert ev.votes == 4 and ev.trials == 2 and ev.randomized
    assert ev.attacks["ta-pgd"] == {"library": "torchattacks", "attack": "FakeTorchattacksPGD", "eps": EPS,
                                    "steps": 3}
    assert ev.attacks["worst-case"]["over"] == "clean, pgd, ta-pgd"
    worst = ev.fractions["with_noise"]["worst-case"]
    assert torch.all(worst <= ev.fractions["with_noise"]["ta-pgd"])


def test_an_attack_leaving_its_threat_or_built_on_another_model_is_refused(model, data):
    x, y = data
    too_far = foreign_attack(lambda x, y: (x + 2 * EPS).clamp(0, 1), eps=EPS)
    with pytest.raises(AttackError, match="left its threat"):
        pni.evaluate(model, (x, y), {"far": too_far}, trials=1)
    other = foreign_attack(FakeTorchattacksPGD(pni.create_model("lenet5")), eps=EPS)
    with pytest.raises(AttackError, match="built on another model"):
        other(model, x, y)
    with pytest.raises(AttackError, match="cannot run a int"):
        foreign_attack(3)


def test_torchattacks_pgd_under_pnis_judging(model, data):
    torchattacks = pytest.importorskip("torchattacks")
    attack = foreign_attack(torchattacks.PGD(model, eps=EPS, alpha=0.05, steps=3), eps=EPS)
    ev = pni.evaluate(model, data, {"clean": None, "torchattacks-pgd": attack}, trials=2, votes=3, noise="on")
    assert ev.attacks["torchattacks-pgd"]["library"] == "torchattacks"
    assert ev.attacks["torchattacks-pgd"]["steps"] == 3
    acc = ev.summary()["with_noise"]
    assert acc["worst-case"]["mean"] <= min(acc["clean"]["mean"], acc["torchattacks-pgd"]["mean"])


def test_foolbox_pgd_under_pnis_judging(model, data):
    foolbox = pytest.importorskip("foolbox")
    attack = foreign_attack(foolbox.attacks.LinfPGD(steps=3), eps=EPS)
    ev = pni.evaluate(model, data, {"clean": None, "foolbox-pgd": attack}, trials=1, votes=3, noise="on")
    assert ev.attacks["foolbox-pgd"]["library"] == "foolbox" and ev.attacks["foolbox-pgd"]["eps"] == EPS
    acc = ev.summary()["with_noise"]
    assert acc["worst-case"]["mean"] <= min(acc["clean"]["mean"], acc["foolbox-pgd"]["mean"])
    with pytest.raises(AttackError, match="needs eps"):
        foreign_attack(foolbox.attacks.LinfPGD(steps=3))
