"""One settings style: dataclass fields carry their help, flags are generated from them,
and ``votes`` is the one name for the noise draws a prediction is judged over."""
import argparse
import dataclasses

import pytest
import torch

from pni.auditing import Bench
from pni.auditing.settings import AuditSettings, make_settings
from pni.cli import build_parser
from pni.cli.args import add_dataclass_flags, flag_values
from pni.config import FIELD_HELP, TrainConfig
from pni.evaluation.settings import EvalSettings, TransferSettings
from pni.settings import option


def _flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_every_settings_field_has_help():
    for cls in (TrainConfig, AuditSettings, EvalSettings, TransferSettings):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), (cls.__name__, f.name)
    assert FIELD_HELP["model"].startswith("architecture")


def test_generated_flags_are_typed_and_only_given_values_come_back():
    @dataclasses.dataclass
    class Toy:
        ks: tuple[int, ...] = option((1, 2), "ks")
        eps: float | None = option(None, "radius")
        on: bool = option(False, "switch")
        hidden: int = option(3, "no flag", flag=False)

    parser = argparse.ArgumentParser()
    names = add_dataclass_flags(parser, Toy, "toy")
    assert names == ["ks", "eps", "on"]
    args = parser.parse_args(["--ks", "3,4", "--eps", "8/255", "--on", "yes"])
    assert flag_values(args, names) == {"ks": [3, 4], "eps": 8 / 255, "on": True}
    assert flag_values(parser.parse_args([]), names) == {}


def test_audit_and_eval_keep_their_flags():
    audit = {"--eps", "--num-images", "--n", "--items", "--steps", "--step-size", "--trials", "--eps-values",
             "--steps-values", "--eot-ks", "--max-eot-drop", "--random-samples", "--random-n",
             "--unbounded-steps", "--surrogate", "--no-surrogate", "--surrogate-epochs",
             "--surrogate-train-n", "--score-n", "--score-queries", "--dataset", "--data-dir",
             "--split", "--batch-size", "--seed", "--device", "--quiet", "--out", "-h", "--help", "--debug",
             "--model", "--weights", "--threat", "--name", "--threads"}  # any model (pni.cli.benchmark)
    assert _flags("audit") == audit   # --n: the deprecated spelling of --num-images
    assert {"--attacks", "--protocol", "--votes", "--n", "--num-images", "--trials", "--eps", "--steps",
            "--step-size", "--noise", "--dataset", "--data-dir", "--split", "--batch-size", "--seed",
            "--device", "--out"} <= _flags("eval")
    assert _flags("transfer") == {"--attack", "--trials", "--num-images", "--n", "--eps", "--steps", "--step-size", "--votes",
                                  "--dataset", "--data-dir", "--split", "--batch-size", "--seed", "--device",
                                  "--out", "-h", "--help", "--debug", "--threads"}
    parsed = build_parser().parse_args(["transfer", "a.pt", "b.pt", "--eps", "8/255", "--trials", "2"])
    assert flag_values(parsed, [f.name for f in dataclasses.fields(TransferSettings)]) == {
        "eps": 8 / 255, "trials": 2}


def test_the_old_draw_names_are_gone():
    with pytest.raises(Exception, match="prediction_draws"):
        make_settings(0.1, prediction_draws=4)
    x, y = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(TypeError):
        Bench(torch.nn.Flatten(), x, y, draws=3)


def test_one_integer_and_fraction_check_for_every_setting():
    import numpy as np

    from pni.settings import check_fraction, check_int, is_fraction, is_int

    assert is_int(3, 1) and is_int(np.int64(3), 1) and not is_int(True) and not is_int(2.0) and not is_int(0, 1)
    assert is_fraction(1) and is_fraction(0.5) and not is_fraction(0) and is_fraction(0, low_open=False)
    assert not is_fraction(float("nan")) and not is_fraction(1.01) and not is_fraction(True)
    with pytest.raises(KeyError, match=r"steps must be an integer >= 1, got 0"):
        check_int(0, "steps", 1, KeyError)
    with pytest.raises(ValueError, match=r"eps must be a number in \(0, 1\], got 2"):
        check_fraction(2, "eps")
    # the same rule behind the library's own errors
    from pni.attacks import AttackError
    from pni.attacks._common import check_positive_int
    from pni.certification.smoothing import CertifyError, check_count

    with pytest.raises(AttackError, match="steps must be an integer >= 1"):
        check_positive_int(True, "steps")
    with pytest.raises(CertifyError, match="n must be an integer >= 2"):
        check_count(1, "n", 2)
