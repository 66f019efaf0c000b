"""The results report of ``pni reproduce --report``: tables from a smoke results folder,
"not run yet" rows, and the verdict logic on hand-made numbers, paired (the same images,
compared image by image) and unpaired."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pni
from pni.evaluation.evaluator import evaluate
from pni.reports import write_evaluation
from pni.reproduce import get_plans, reproduce
from pni.cli.reproduce import add_reproduce_parser
from pni.reproduce.report import NOT_RUN, write_results
from pni.reproduce.verdicts import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_JUDGED, Measure, erased,
                                    judge, measure, paired_stderr)


@pytest.fixture(scope="module")
def smoke_table2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-smoke")
    for row in ("vanilla", "pni-w"):
        reproduce("table2", "smoke", str(out), only=row)
    return out


def test_report_renders_tables_not_run_rows_and_verdicts(smoke_table2: Path, tmp_path: Path) -> None:
    path = write_results(get_plans("table2"), "smoke", smoke_table2, tmp_path / "RESULTS.md")
    text = path.read_text()
    assert "# Reproduction results (smoke scale)" in text and "Track mnist-sample" in text
    assert "128 training images" in text          # the budget from the run's config.json
    lines = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines()
             if line.startswith("| ") and " | " in line}
    vanilla = lines["| Vanilla adv. train | without noise"]
    assert "83.84" in vanilla and "39.14±0.05" in vanilla and NOT_RUN not in vanilla
    pni_on = lines["| PNI-W | with noise"]
    assert "45.94±0.11" in pni_on and NOT_RUN not in pni_on
    cells = [c.strip() for c in pni_on.strip("|").split("|")]
    assert all(c not in ("", "-") for c in cells[-2:])      # EOT-PGD and AA-rand filled in
    assert "±" in cells[5]                                  # PGD: 2 trials -> mean±std
    assert NOT_RUN in lines["| PNI-I | with noise"] and NOT_RUN in lines["| PNI-A-b | without noise"]
    assert "**PNI-W beats vanilla AT under PGD** (Table 2): *" in text
    verdict_line = next(line for line in text.splitlines() if line.startswith("- **PNI-W beats vanilla AT under PGD"))
    assert any(f"*{v}*" in verdict_line for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE))
    assert "vs vanilla AT PGD" in verdict_line              # cites its numbers
    best = next(line for line in text.splitlines() if line.startswith("- **PNI-W is the best location"))
    assert NOT_JUDGED in best


def test_cli_report_writes_and_runs_nothing(smoke_table2: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="pni")
    add_reproduce_parser(parser.add_subparsers(dest="command"))
    before = sorted(p.name for p in smoke_table2.iterdir())
    target = tmp_path / "R.md"
    args = parser.parse_args(["reproduce", "table2", "--scale", "smoke", "--out", str(smoke_table2),
                              "--report", "--report-out", str(target)])
    assert args.func(args) == 0
    assert target.exists() and sorted(p.name for p in smoke_table2.iterdir()) == before
    empty = tmp_path / "empty"
    args = parser.parse_args(["reproduce", "table5", "--scale", "smoke", "--out", str(empty),
                              "--report", "--report-out", str(tmp_path / "T5.md")])
    assert args.func(args) == 0 and not empty.exists()
    t5 = (tmp_path / "T5.md").read_text()
    assert "75.13±0.17" in t5 and NOT_RUN in t5 and "resists ZOO" in t5


def test_verdict_boundaries_with_trials() -> None:
    # population std 0.2 over 4 trials: sample std 0.2309, SE 0.1155 each, difference's SE
    # 0.1633, two SE = 0.327
    a = Measure(45.0, 0.2, 4)
    assert judge("c", "T", ("a", Measure(45.33, 0.2, 4)), ("b", a)).verdict == HOLDS
    assert judge("c", "T", ("a", Measure(45.32, 0.2, 4)), ("b", a)).verdict == INCONCLUSIVE
    assert judge("c", "T", ("a", Measure(44.67, 0.2, 4)), ("b", a)).verdict == DOES_NOT_HOLD
    assert judge("c", "T", ("a", Measure(44.68, 0.2, 4)), ("b", a)).verdict == INCONCLUSIVE
    # lower is better (ZOO success rate)
    assert judge("c", "T", ("a", Measure(44.0, 0.2, 4)), ("b", a), higher_is_better=False).verdict == HOLDS
    assert judge("c", "T", ("a", None), ("b", a)).verdict == NOT_JUDGED


def test_verdict_binomial_error_with_one_trial() -> None:
    # p = 0.5 on 100 images: SE 5 points; p = 0.63: 4.83; two SE of the difference 13.9 > 13
    base = Measure(50.0, 0.0, 1, 100)
    assert judge("c", "T", ("a", Measure(63.0, 0.0, 1, 100)), ("b", base)).verdict == INCONCLUSIVE
    assert judge("c", "T", ("a", Measure(66.0, 0.0, 1, 100)), ("b", base)).verdict == HOLDS
    assert judge("c", "T", ("a", Measure(34.0, 0.0, 1, 100)), ("b", base)).verdict == DOES_NOT_HOLD
    v = judge("c", "T", ("a", Measure(66.0, 0.0, 1, 100)), ("b", base))
    assert "66.00" in v.evidence and "50.00" in v.evidence and "two standard errors 13.78" in v.evidence


def test_erased_says_so_plainly() -> None:
    gain = judge("c", "T", ("pni", Measure(46.0, 0.1, 5)), ("vanilla", Measure(39.0, 0.1, 5)))
    gone = judge("c", "T", ("pni", Measure(40.0, 0.0, 1, 1000)), ("vanilla", Measure(39.5, 0.0, 1, 1000)))
    kept = judge("c", "T", ("pni", Measure(46.0, 0.0, 1, 1000)), ("vanilla", Measure(39.0, 0.0, 1, 1000)))
    verdict = erased("EOT erases", "T", gain, gone, "EOT-PGD")
    assert verdict.verdict == HOLDS and "EOT-PGD erases PNI's gain" in verdict.line()
    assert erased("EOT erases", "T", gain, kept, "EOT-PGD").verdict == DOES_NOT_HOLD
    assert erased("EOT erases", "T", gain, judge("c", "T", ("a", None), ("b", None)), "EOT-PGD").verdict == NOT_JUDGED
    assert "a change of -6.50" in verdict.evidence


def test_erased_is_inconclusive_when_too_few_images_tell_a_lost_gain_from_a_kept_one() -> None:
    """+7 under PGD; +4 under EOT on 100 images (two standard errors about 13.9): no
    significant gain left, but +7 is as consistent with it as 0 is."""
    gain = judge("c", "T", ("pni", Measure(46.0, 0.1, 5)), ("vanilla", Measure(39.0, 0.1, 5)))
    vague = judge("c", "T", ("pni", Measure(43.0, 0.0, 1, 100)), ("vanilla", Measure(39.0, 0.0, 1, 100)))
    assert vague.verdict == INCONCLUSIVE
    verdict = erased("EOT erases", "T", gain, vague, "EOT-PGD")
    assert verdict.verdict == INCONCLUSIVE and "too few to tell" in verdict.line()


def _pair(n: int = 1000, trials: int = 1, images: str | None = "abc/def/n=1000",
          a_trials: tuple[float, ...] | None = None, b_trials: tuple[float, ...] | None = None
          ) -> tuple[Measure, Measure]:
    """Two models that agree on 95% of n images (half right) and differ on 5%, 4:1 in a's
    favour: a 3-point gap (53% vs 50%)."""
    b = np.zeros(n)
    b[: n // 2] = 100.0
    a = b.copy()
    a[n // 2: n // 2 + 4 * n // 100] = 100.0          # a right, b wrong
    a[: n // 100] = 0.0                                # b right, a wrong
    std = 0.5 if trials > 1 else 0.0
    return (Measure(float(a.mean()), std, trials, n, per_image=tuple(a), per_trial=a_trials, images=images),
            Measure(float(b.mean()), std, trials, n, per_image=tuple(b), per_trial=b_trials, images=images))


def test_paired_verdict_holds_where_unpaired_is_inconclusive() -> None:
    a, b = _pair()
    assert (a.mean, b.mean) == (53.0, 50.0)
    paired = judge("c", "T", ("a", a), ("b", b))
    # sd(a_i - b_i) = 22.17 over 1000 images: SE 0.70, two SE 1.40 < 3 (binomial, unpaired: 4.47)
    assert paired.verdict == HOLDS and "paired over the same 1000 images" in paired.evidence
    assert "two standard errors 1.40" in paired.evidence
    assert paired_stderr(a, b) == pytest.approx(0.7011, abs=1e-3)
    bare = [Measure(m.mean, m.std, m.trials, m.n) for m in (a, b)]
    unpaired = judge("c", "T", ("a", bare[0]), ("b", bare[1]))
    assert unpaired.verdict == INCONCLUSIVE and "(unpaired)" in unpaired.evidence
    assert "two standard errors 4.47" in unpaired.evidence


def test_paired_error_has_the_trials_error_of_the_difference_as_floor() -> None:
    steady = _pair(trials=5, a_trials=(53.0, 56.0, 50.0, 56.0, 50.0), b_trials=(50.0, 50.0, 50.0, 50.0, 50.0))
    # differences 3, 6, 0, 6, 0: std (ddof 1) 3.0, floor 3.0 / sqrt 5 = 1.34, two SE 2.68 < 3
    assert judge("c", "T", ("a", steady[0]), ("b", steady[1])).verdict == HOLDS
    noisy = _pair(trials=5, a_trials=(47.0, 59.0, 47.0, 59.0, 53.0), b_trials=(50.0,) * 5)
    v = judge("c", "T", ("a", noisy[0]), ("b", noisy[1]))
    assert v.verdict == INCONCLUSIVE and "two standard errors 5.37" in v.evidence    # 2 x std 6.0 / sqrt 5


def test_different_images_fall_back_to_the_unpaired_rule() -> None:
    a, _ = _pair(images="abc/def/n=1000")
    _, b = _pair(images="xyz/def/n=1000")
    v = judge("c", "T", ("a", a), ("b", b))
    assert paired_stderr(a, b) is None and v.verdict == INCONCLUSIVE and "(unpaired)" in v.evidence
    honest = Measure(53.0, 0.0, 1, 200, per_image=tuple([53.0] * 200), images="q/r/n=200")
    assert paired_stderr(honest, b) is None                                          # n=200 vs n=1000
    assert paired_stderr(a, Measure(50.0, 0.0, 1, 1000)) is None                     # no per-image outcomes


def test_measures_from_results_json_are_paired_on_the_same_subset(tmp_path: Path) -> None:
    data = pni.load_dataset("mnist-sample", "test")
    torch.manual_seed(0)
    noisy = pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()
    plain = pni.create_model("lenet5").eval()

    def saved(model: torch.nn.Module, subset_seed: int, name: str) -> dict:
        result = evaluate(model, data.subset(40, seed=subset_seed), ["clean", "fgsm"], trials=2, eps=0.1)
        write_evaluation(result, tmp_path / name, name)
        return json.loads((tmp_path / name / "results.json").read_text())

    a, b, other = saved(noisy, 0, "a"), saved(plain, 0, "b"), saved(plain, 1, "c")
    ma, mb = measure(a, "with_noise", "fgsm"), measure(b, "without_noise", "fgsm")
    assert ma.images == mb.images and len(ma.per_image) == 40 and len(ma.per_trial) == 2
    assert sum(ma.per_image) / 40 == pytest.approx(ma.mean) and ma.per_trial == pytest.approx(
        [100 * v for v in a["accuracy_per_trial"]["with_noise"]["fgsm"]])
    assert "paired over the same 40 images" in judge("c", "T", ("a", ma), ("b", mb)).evidence
    mc = measure(other, "without_noise", "fgsm")                     # another subset: unpaired
    assert mc.images != ma.images and "(unpaired)" in judge("c", "T", ("a", ma), ("c", mc)).evidence
    del b["per_image"]                                               # an older results.json
    old = measure(b, "without_noise", "fgsm")
    assert old.per_image is None and old.images is None
    v = judge("c", "T", ("a", ma), ("b", old))
    assert v.verdict in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE) and "(unpaired)" in v.evidence


class _ZooResults:
    """A report.Results stand-in holding only Table 5's ZOO success rates."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def get(self, plan: str, row: str, track: str, protocol: str) -> dict | None:
        if plan != "table5" or protocol != "zoo" or row not in self.rates:
            return None
        return {"trials": 1, "n": 100,
                "attack_metrics": {"with_noise": {"zoo": {"success_rate": {"mean": self.rates[row], "std": 0.0}}}}}


def test_zoo_claims_say_when_zoo_is_too_weak_to_rank_the_defenses() -> None:
    from pni.reproduce.claims import table5_claims

    weak = table5_claims(_ZooResults({"a-vanilla": 1.0, "b-w": 2.0, "b-a-a": 3.0, "b-w+a-a": 3.0}), "t")
    # ZOO and its honest counterpart EOT-ZOO (not run here: not judged), each for three locations
    assert len(weak) == 6 and all("ZOO fools only 1.0% of vanilla AT's images" in v.line() for v in weak)
    assert sum("EOT-ZOO" in v.claim for v in weak) == 3
    strong = table5_claims(_ZooResults({"a-vanilla": 60.0, "b-w": 20.0, "b-a-a": 55.0, "b-w+a-a": 58.0}), "t")
    assert strong[0].verdict == HOLDS and not any("too weak" in v.line() for v in strong)


def _stopped_zoo_step(folder: Path, fooled: int, n: int = 20) -> None:
    """A Table 5 ZOO step stopped during EOT-ZOO: clean and ZOO (noise on) finished, ``fooled``
    of its ``n`` images fooled by ZOO, written as ``evaluate`` writes its partial file."""
    from pni.evaluation.resume import save_partial

    ones = torch.ones(1, n)
    success = torch.zeros(1, n, dtype=torch.bool)
    success[0, :fooled] = True
    zoo = {"fraction": (~success).float(), "correct": ~success, "success": success,
           "initially_correct": torch.ones(1, n, dtype=torch.bool), "l2": torch.full((1, n), 0.5)}
    params = {"steps": 5, "coords": 8, "eot": 1, "votes": 3}
    head = {"attacks": {"clean": {}, "zoo": params, "eot-zoo": {**params, "eot": 3}},
            "order": ["clean", "zoo", "eot-zoo"], "settings": ["with_noise", "without_noise"], "trials": 1,
            "seeds": [0], "n": n, "votes": 3, "subset": None, "labels_sha256": None, "randomized": True,
            "worst_case_over": [], "chain": [], "code": {"pni": pni.__version__, "commit": None, "dirty": None}}
    folder.mkdir(parents=True)
    save_partial(folder / "evaluation.partial.pt", "key",
                 {"with_noise": {"clean": {"fraction": ones, "correct": ones > 0}, "zoo": zoo}}, {}, 0.3, 60.0, head)


def test_a_step_still_to_finish_shows_its_finished_attacks_marked_and_the_rest_running(tmp_path: Path) -> None:
    from pni.reproduce.results import Results

    plans = get_plans("table5")
    results = Results(plans, "smoke", tmp_path)
    for row, fooled in (("a-vanilla", 16), ("b-a-a", 2)):
        _stopped_zoo_step(results.folder("table5", row, "mnist-sample", "zoo"), fooled)
    text = write_results(plans, "smoke", tmp_path, tmp_path / "RESULTS.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| B: PNI-A-a"))
    assert "10.00†" in row and row.rstrip(" |").endswith("running")  # ZOO finished, EOT-ZOO running
    assert "Still to finish: A: vanilla adv. train (ZOO, substitute) (30 % of its work done), B: PNI-A-a" in text
    zoo = next(line for line in text.splitlines() if line.startswith("- **PNI-A-a resists ZOO"))
    assert f"*{HOLDS}*" in zoo and "10.00" in zoo and "80.00" in zoo  # a finished attack's numbers are judged
    assert "10.00 (1 trial, n=20, its step still to finish)" in zoo  # and say where they come from
    eot = next(line for line in text.splitlines() if line.startswith("- **PNI-A-a resists EOT-ZOO"))
    assert NOT_JUDGED in eot
    from pni.reproduce.report import verdict_summary

    block = verdict_summary(plans, "smoke", tmp_path, "RESULTS.md")
    zoo = next(line for line in block.splitlines() if line.startswith("- PNI-A-a resists ZOO"))
    assert zoo.endswith(f"mnist-sample: *{HOLDS}†*") and "† judged on the finished attacks" in block
    eot = next(line for line in block.splitlines() if line.startswith("- PNI-A-a resists EOT-ZOO"))
    assert "†" not in eot
