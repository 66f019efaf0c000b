"""Adding an attack is one file plus its test: a toy attack defined and registered here
runs through ``pni.evaluate``, the report and the ``pni eval`` flags, nothing else edited."""
from __future__ import annotations

from typing import Any

import pytest
import torch

import pni
from pni.cli import app as cli
from pni.attacks import AttackError, AttackSpec, register_attack
from pni.attacks.registry import (
    LINF_THREAT,
    MIN_NORM_THREAT,
    AttackFlag,
    attack_names,
    attack_options,
    build_attacks,
    get_attack,
    unregister_attack,
)
from pni.cli.args import attack_options_from_args
from pni.reports.evaluation import attack_title, evaluation_markdown

EPS = 0.25


# --- the toy attack's file: the attack, its builder, its registration -----------------

def toy_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               scale: float = 1.0) -> torch.Tensor:
    """Moves every pixel ``scale * eps`` away from its nearer end of [0, 1]."""
    return (x + scale * eps * (1 - 2 * x.round())).clamp(0, 1)


def _build_toy(eps: float, steps: int | None, step_size: float | None,
               toy_scale: float | None = None) -> tuple[Any, dict[str, Any]]:
    scale = 1.0 if toy_scale is None else toy_scale
    return (lambda m, x, y: toy_attack(m, x, y, eps, scale)), {"eps": eps, "scale": scale}


def _build_toy_unbounded(eps: float, **_: Any) -> tuple[Any, dict[str, Any]]:
    return (lambda m, x, y: toy_attack(m, x, y, 1.0)), {"threat": MIN_NORM_THREAT}


TOY_SPECS = (
    AttackSpec("toy", "Toy L-inf", LINF_THREAT, _build_toy, options=("toy_scale",),
               flags=(AttackFlag("--toy-scale", "toy_scale", "toy: multiple of eps", type=float),)),
    AttackSpec("toy-unbounded", "Toy unbounded", MIN_NORM_THREAT, _build_toy_unbounded),
)


@pytest.fixture
def toy():
    for spec in TOY_SPECS:
        register_attack(spec)
    yield
    for spec in TOY_SPECS:
        unregister_attack(spec.name)


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = pni.create_model("lenet5").eval()
    return model, pni.load_dataset("mnist-sample", "test").subset(48).tensors()


# --- the tests ---------------------------------------------------------------------------

def test_a_registered_toy_attack_runs_through_evaluate_and_the_report(toy, model_and_data):
    model, (x, y) = model_and_data
    assert attack_names()[-2:] == ["toy", "toy-unbounded"] and "toy_scale" in attack_options()
    ev = pni.evaluate(model, (x, y), attacks=["clean", "toy", "toy-unbounded"], trials=1, eps=EPS,
                      attack_options={"toy_scale": 0.5})
    assert ev.attacks["toy"] == {"eps": EPS, "scale": 0.5}
    with torch.no_grad():
        expected = (model(toy_attack(model, x, y, EPS, 0.5)).argmax(1) == y).float().mean().item()
    assert ev.accuracies["without_noise"]["toy"] == pytest.approx([expected])
    # the unbounded toy stays out of the per-sample worst case, as C&W does
    assert ev.attacks["worst-case"] == {"over": "clean, toy"}
    text = evaluation_markdown(ev, "toy model")
    assert "| Toy L-inf |" in text and "| Toy unbounded |" in text
    assert "- **Toy L-inf**: eps=0.25, scale=0.5" in text
    assert attack_title("toy") == "Toy L-inf"


def test_the_toy_attack_brings_its_pni_eval_flag(toy):
    args = cli.build_parser().parse_args(["eval", "run/checkpoint.pt", "--attacks", "toy",
                                          "--toy-scale", "0.25"])
    options = attack_options_from_args(args)
    assert options == {"toy_scale": 0.25, "cw_profile": "paper"}
    _, params = build_attacks(args.attacks, eps=EPS, **options)
    assert params == {"toy": {"eps": EPS, "scale": 0.25}}


def test_unregistered_the_toy_is_an_unknown_attack_and_a_name_is_taken_once(toy):
    with pytest.raises(AttackError, match="already registered"):
        register_attack(TOY_SPECS[0])
    unregister_attack("toy")
    with pytest.raises(AttackError, match="unknown attack 'toy'"):
        build_attacks(["toy"])
    with pytest.raises(AttackError, match="unknown attack option.*toy_scale"):
        build_attacks(["pgd"], toy_scale=2.0)


def test_every_attack_file_registers_its_attacks_on_import():
    assert attack_names() == ["clean", "fgsm", "pgd", "eot-pgd", "cw", "zoo", "eot-zoo", "aa-rand",
                              "aa-standard", "square"]
    assert attack_options() == ("eot", "eot_batch", "cw_profile", "cw", "zoo", "aa", "square")
    assert {get_attack(n).__class__ for n in attack_names()} == {AttackSpec}
    assert [n for n in attack_names() if not get_attack(n).in_worst_case] == ["cw"]
    assert {get_attack(n).build.__module__ for n in attack_names()} == {
        "pni.attacks.registry", "pni.attacks.gradient", "pni.attacks.cw", "pni.attacks.zoo",
        "pni.attacks.autoattack", "pni.attacks.square"}
    from pni.evaluation.protocols import EVAL_ATTACKS, PROTOCOLS

    assert all(name in attack_names() for p in PROTOCOLS.values() for name in p.attacks)
    assert all(name in attack_names() for names in EVAL_ATTACKS.values() for name in names)
