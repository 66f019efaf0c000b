"""The ``Example:`` of every long-signature public function runs as written (doctest).

Each example is small (a handful of packaged MNIST-sample images, a few steps); the global
random state is restored after each one, so the rest of the suite sees no difference.
"""
from __future__ import annotations

import doctest
import io

import pytest
import torch

import pni
from pni.attacks.autoattack import autoattack
from pni.attacks.cw import cw_l2
from pni.attacks.gradient import fgsm, pgd
from pni.attacks.square import square
from pni.attacks.zoo import zoo
from pni.auditing.run import audit
from pni.certification.smoothing import certify
from pni.evaluation.evaluator import evaluate
from pni.models.hub import load_model, pretrained
from pni.noise import inject
from pni.training.trainer import fit

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

FUNCTIONS = {
    "pni.inject": inject,
    "pni.attacks.fgsm": fgsm,
    "pni.attacks.pgd": pgd,
    "pni.attacks.cw_l2": cw_l2,
    "pni.attacks.zoo": zoo,
    "pni.attacks.autoattack": autoattack,
    "pni.evaluate": evaluate,
    "pni.certify": certify,
    "pni.audit": audit,
    "pni.fit": fit,
    "pni.attacks.square": square,
    "pni.pretrained": pretrained,
    "pni.load_model": load_model,
}


def test_the_public_names_are_these_functions():
    assert pni.inject is inject and pni.evaluate is evaluate and pni.certify is certify
    assert pni.audit is audit and pni.fit is fit
    assert pni.attacks.pgd is pgd and pni.attacks.fgsm is fgsm and pni.attacks.cw_l2 is cw_l2
    assert pni.attacks.zoo is zoo and pni.attacks.autoattack is autoattack


@pytest.mark.parametrize("name", FUNCTIONS)
def test_docstring_has_args_returns_and_example(name):
    doc = FUNCTIONS[name].__doc__ or ""
    for section in ("Args:", "Returns:", "Example:", ">>> "):
        assert section in doc, f"{name}: no {section!r} in its docstring"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_docstring_example_runs(name):
    tests = doctest.DocTestFinder(recurse=False).find(FUNCTIONS[name], name, globs={"pni": pni})
    assert sum(len(test.examples) for test in tests) >= 2
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    with torch.random.fork_rng():
        for test in tests:
            runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()
