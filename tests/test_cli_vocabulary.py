"""One vocabulary across commands (issue 24, item 5): ``--num-images`` is images everywhere,
``--noise-samples`` certify's noise samples, the old spellings warn; ``pni train --help`` shows
the chosen preset's values; certify states its largest certifiable radius; mistyped names and
flags are refused early with the closest one."""
from __future__ import annotations

import types

import pytest

from pni.cli import main
from pni.cli import build_parser
from pni.reports.certify import certification_markdown, max_certifiable_radius


def _parse(argv: list[str]):
    return build_parser(argv).parse_args(argv)


def test_images_are_num_images_everywhere_and_the_old_spellings_warn(capsys) -> None:
    for argv in (["eval", "c.pt", "--num-images", "5"], ["audit", "c.pt", "--num-images", "5"],
                 ["transfer", "a.pt", "b.pt", "--num-images", "5"]):
        assert _parse(argv).n == 5
    assert _parse(["audit", "c.pt"]).n == 500 and _parse(["eval", "c.pt"]).n is None
    certify = _parse(["certify", "c.pt", "--sigma", "0.25", "--num-images", "5", "--noise-samples", "300"])
    assert (certify.subset, certify.n) == (5, 300)
    assert capsys.readouterr().err == ""
    assert _parse(["eval", "c.pt", "--n", "7"]).n == 7
    assert _parse(["transfer", "a.pt", "b.pt", "--n", "7"]).n == 7
    old = _parse(["certify", "c.pt", "--sigma", "0.25", "--subset", "5", "--n", "300"])
    assert (old.subset, old.n) == (5, 300)
    err = capsys.readouterr().err.splitlines()
    assert "pni eval: warning: --n is deprecated" in err[0] and "write --num-images" in err[0]
    assert "write --num-images" in err[2] and "write --noise-samples" in err[3] and len(err) == 4


def test_train_help_shows_the_chosen_presets_values(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--preset", "mnist-lenet", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "defaults shown: mnist-lenet at cpu scale" in text
    assert "(default 'lenet5')" in text and "(default 0.3)" in text and "(default 25)" in text   # epochs at cpu
    with pytest.raises(SystemExit):
        main(["train", "--preset", "mnist-lenet", "--scale=smoke", "--help"])
    assert "(default 'mnist-sample')" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default 'resnet20')" in " ".join(capsys.readouterr().out.split())


def test_certify_states_its_largest_certifiable_radius() -> None:
    assert max_certifiable_radius(0.25, 100, 0.001) == pytest.approx(0.25 * 1.5011, abs=1e-3)
    assert max_certifiable_radius(0.25, 10_000, 0.001) == pytest.approx(0.7996, abs=1e-3)  # < 1: r = 1 never
    result = types.SimpleNamespace(
        sigma=0.25, n=100, n0=10, alpha=0.001, labels=[0, 1], subset=None, time_per_image=0.1,
        summary=lambda: {"certified_accuracy_percent": {"0": 50.0, "0.25": 50.0, "0.5": 0.0, "0.75": 0.0,
                                                        "1": 0.0}, "abstain_percent": 0.0})
    text = certification_markdown(result)
    assert "Largest radius certifiable with n = 100 noise samples at alpha = 0.001: 0.375" in text
    assert "r = 0.5, 0.75, 1 lie beyond it" in text


def test_mistakes_are_refused_early_with_the_closest_name(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as stop:                     # at parsing: before any time estimate
        main(["eval", str(tmp_path / "missing.pt"), "--attacks", "pgd,eot-pdg"])
    assert stop.value.code == 2
    err = capsys.readouterr()
    assert "unknown attack 'eot-pdg' (did you mean 'eot-pgd'?)" in err.err and "estimate" not in err.out + err.err
    assert main(["train", "--epochz", "3", "--out", str(tmp_path / "r")]) == 2
    assert "--epochz (did you mean '--epochs'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["trian"])
    assert "(did you mean 'train'?)" in capsys.readouterr().err
    assert main(["train", "--preset", "mnist-lenett", "--out", str(tmp_path / "r")]) == 2
    assert "(did you mean 'mnist-lenet'?)" in capsys.readouterr().err
    assert main(["reproduce", "tabel2", "--dry-run"]) == 2
    assert "(did you mean 'table2'?)" in capsys.readouterr().err
