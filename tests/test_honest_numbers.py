"""Honest numbers at full strength: AutoAttack-rand at pyautoattack's published budget and a
label on any reduced one, the cascade equal to running every attack on every image, C&W's
successes judged over fresh noise draws, training seeds, and the code version in results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import pni
from pni.attacks import cw_l2, zoo
from pni.attacks.budget import is_reduced, label
from pni.attacks.gradient import pgd
from pni.attacks.registry import build_attacks
from pni.attacks.votes import predict_votes, vote_correctness
from pni.evaluation.evaluator import EvaluationError, evaluate


def test_aa_rand_defaults_are_pyautoattacks_rand_version() -> None:
    from pyautoattack import AutoAttack

    reference = AutoAttack(nn.Identity(), eps=8 / 255, version="rand", device="cpu")
    _, params = build_attacks(["aa-rand"], eps=8 / 255)
    assert params["aa-rand"]["n_iter"] == reference.apgd.n_iter
    assert params["aa-rand"]["eot_iter"] == reference.apgd.eot_iter
    assert params["aa-rand"]["n_restarts"] == reference.apgd.n_restarts
    assert params["aa-rand"]["attacks"] == ",".join(reference.attacks_to_run)
    assert not is_reduced("aa-rand", params["aa-rand"])
    _, eot = build_attacks(["eot-pgd"], eps=8 / 255)
    assert not is_reduced("eot-pgd", eot["eot-pgd"])


def test_every_scale_but_smoke_runs_the_published_budget() -> None:
    from pni.reproduce.scales import EVAL_PROTOCOLS

    for scale in ("cpu", "paper"):
        honest = EVAL_PROTOCOLS[scale]["honest"]
        _, params = build_attacks(honest["attacks"][1:], eps=8 / 255, **honest.get("attack_options", {}))
        assert not any(is_reduced(name, p) for name, p in params.items()), scale
        assert honest["cascade"] == ["eot-pgd", "aa-rand"]


def test_a_reduced_budget_is_named_in_the_table_header_and_the_verdicts() -> None:
    from pni.reproduce.claims import honest_attacks
    from pni.reproduce.report_tables import honest_columns

    reduced = {"attacks": {"aa-rand": {"n_iter": 10, "eot_iter": 10}, "eot-pgd": {"eot": 10}},
               "cascade": ["clean", "eot-pgd", "aa-rand"]}
    titles = honest_columns([reduced])
    assert titles["aa-rand"].startswith("AA-rand, 10 it x 10 draws (reduced)")
    assert titles["eot-pgd"] == "EOT-PGD, EOT 10 (reduced)"
    assert "cumulative" in titles["aa-rand"]
    names = dict((a, t) for a, t, _ in honest_attacks(reduced))
    assert names["aa-rand"] == "AutoAttack-rand, 10 it x 10 draws (reduced)"
    assert "honest worst case" not in names["worst-case"] and "reduced" in names["worst-case"]
    published = {"attacks": {"aa-rand": {"n_iter": 100, "eot_iter": 20}, "eot-pgd": {"eot": 20}}}
    assert honest_columns([published]) == {"eot-pgd": "EOT-PGD", "aa-rand": "AA-rand"}
    assert label("aa-rand", "AA-rand", {"n_iter": 100, "eot_iter": 20}) == "AA-rand"


def _mean_classifier() -> nn.Module:
    """A deterministic nearest-class-mean classifier of the MNIST sample (clean accuracy ~80 %)."""
    x, y = pni.load_dataset("mnist-sample", "train").subset(600).tensors()
    means = torch.stack([x[y == c].flatten(1).mean(0) for c in range(10)])
    model = nn.Linear(784, 10)
    with torch.no_grad():
        model.weight.copy_(2 * means)
        model.bias.copy_(-(means ** 2).sum(1))
    return nn.Sequential(nn.Flatten(), model).eval()


class _Flippy(nn.Module):
    """The nearest-class-mean classifier with logit noise large enough to flip many predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.base = _mean_classifier()
        self.num_classes = 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        return logits + 3.0 * torch.randn_like(logits)


def test_cw_success_is_judged_over_fresh_draws() -> None:
    model = _Flippy().eval()
    x, y = pni.load_dataset("mnist-sample", "test").subset(200).tensors()
    torch.manual_seed(1)
    result = cw_l2(model, x, y, lr=0.01, steps=10, binary_search_steps=2, votes=25, verify=False)
    torch.manual_seed(2)
    fooled = ~vote_correctness(predict_votes(model, result.x_adv, 25), y)[1]
    # a lucky single draw during the search is not a success: the vote over fresh draws decides
    attacked = result.initially_correct
    assert attacked.float().mean() > 0.5
    assert float(result.found[attacked].float().mean()) - result.success_rate > 0.1
    expected = float((result.found & fooled)[attacked].float().mean())
    assert abs(result.success_rate - expected) <= 0.1          # independent fresh draws, same rule
    assert result.params["votes"] == 25
    # verified: the search keeps a point only once the vote over other fresh draws is fooled too
    torch.manual_seed(1)
    verified = cw_l2(model, x, y, lr=0.01, steps=10, binary_search_steps=2, votes=25)
    gap = float(verified.found[attacked].float().mean()) - verified.success_rate
    assert verified.params["verify"] and gap < (float(result.found[attacked].float().mean()) - result.success_rate) / 2


def test_on_a_noisy_model_no_example_within_half_a_gray_level_of_its_image_is_a_success() -> None:
    from pni.attacks.votes import HALF_GRAY_LEVEL, judge_examples

    model = _Flippy().eval()
    x, y = pni.load_dataset("mnist-sample", "test").subset(200).tensors()
    # the same 8-bit image judged twice is judged once: its own vote, whatever the second says
    torch.manual_seed(3)
    initially, fooled = judge_examples(model, x, (x + 0.4 / 255).clamp(0, 1), y, votes=5)
    assert torch.equal(fooled, ~initially)
    torch.manual_seed(1)
    cw = cw_l2(model, x, y, lr=0.01, steps=10, binary_search_steps=2, votes=5)
    torch.manual_seed(1)
    zo = zoo(model, x[:40], y[:40], steps=3, coords=8, votes=5)
    for result, images in ((cw, x), (zo, x[:40])):
        moved = (result.x_adv - images).abs().flatten(1).amax(1)
        assert result.success.any() and (moved[result.success] >= HALF_GRAY_LEVEL).all()


def test_cw_verification_changes_nothing_on_a_deterministic_model() -> None:
    model = _mean_classifier()
    x, y = pni.load_dataset("mnist-sample", "test").subset(32).tensors()
    runs = [cw_l2(model, x, y, lr=0.01, steps=10, binary_search_steps=3, verify=v) for v in (True, False)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].success, runs[1].success)


def test_zoo_success_is_judged_over_fresh_draws_and_eot_zoo_averages_queries() -> None:
    model = _Flippy().eval()
    x, y = pni.load_dataset("mnist-sample", "test").subset(8).tensors()
    torch.manual_seed(0)
    single = zoo(model, x, y, steps=3, coords=8, eps=0.1, votes=5)
    assert (single.success <= single.found).all()
    runs = []
    for eot in (1, 4):  # (without early stopping every image runs every step: queries compare)
        torch.manual_seed(0)
        runs.append(zoo(model, x, y, steps=3, coords=8, eps=0.1, eot=eot, votes=5, early_stop=False))
    assert runs[1].params["eot"] == 4 and torch.equal(runs[1].queries, 4 * runs[0].queries)
    _, params = build_attacks(["zoo", "eot-zoo"], eps=0.1)
    assert params["zoo"]["eot"] == 1 and params["eot-zoo"]["eot"] > 1


def test_eot_zoo_queries_a_deterministic_model_once_per_point() -> None:
    torch.manual_seed(0)
    model = pni.create_model("lenet5").eval()
    x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
    torch.manual_seed(1)
    single = zoo(model, x, y, steps=3, coords=8, eps=0.1, votes=3)
    torch.manual_seed(1)
    eot = zoo(model, x, y, steps=3, coords=8, eps=0.1, eot=10, votes=3)
    assert eot.params["eot"] == 1 and torch.equal(eot.queries, single.queries)   # 10 equal draws: one
    assert torch.equal(eot.x_adv, single.x_adv) and torch.equal(eot.success, single.success)


def test_the_cascade_gives_the_per_image_worst_case_of_running_everything() -> None:
    model = _mean_classifier()
    x, y = pni.load_dataset("mnist-sample", "test").subset(60).tensors()
    attacks = {"clean": lambda m, a, b: a,
               "weak": lambda m, a, b: pgd(m, a, b, 0.05, 0.02, 3, random_start=False),
               "strong": lambda m, a, b: pgd(m, a, b, 0.15, 0.04, 6, random_start=False)}
    full = evaluate(model, (x, y), attacks, trials=2, votes=3)
    chained = evaluate(model, (x, y), attacks, trials=2, votes=3, cascade=("weak", "strong"))
    for key in ("fractions", "correct"):
        assert torch.equal(getattr(full, key)["without_noise"]["worst-case"],
                           getattr(chained, key)["without_noise"]["worst-case"])
    assert 0 < full.summary()["without_noise"]["worst-case"]["mean"] < full.summary()["without_noise"]["clean"]["mean"]
    # cumulative: the last chained attack's accuracy is the worst case
    assert chained.summary()["without_noise"]["strong"] == chained.summary()["without_noise"]["worst-case"]
    assert chained.to_json()["cascade"] == ["clean", "weak", "strong"]
    with pytest.raises(EvaluationError, match="cascade"):
        evaluate(model, (x, y), attacks, trials=1, cascade=("nope",))


def test_a_seeds_plan_trains_each_seed_once_and_judges_over_the_seeds(
        smoke_all: tuple[Path, dict[str, str]]) -> None:
    from pni.reproduce.claims import judge_claims
    from pni.reproduce.plans import get_plans, resolve
    from pni.reproduce.results import Results
    from pni.reproduce.verdicts import SEED_TEST

    steps = resolve(get_plans("table2"), "smoke")
    trains = [s for s in steps if s.kind == "train"]
    assert len({s.key for s in trains}) == len(trains)
    vanilla = [s for s in trains if any(r.startswith("table2:vanilla") for r in s.rows)]
    assert sorted(s.config.seed for s in vanilla) == [0, 1]
    out, outcome = smoke_all
    assert all(outcome[s.key] == "ran" for s in vanilla)
    results = Results(get_plans("table2"), "smoke", out)
    verdicts = [v for v in judge_claims(results, "mnist-sample", {"table2"}) if "over training seeds" in v.claim]
    assert verdicts and all(SEED_TEST in v.evidence for v in verdicts)


def test_results_record_the_code_and_steps_stay_reused(smoke_all: tuple[Path, dict[str, str]]) -> None:
    from pni.reproduce.plans import get_plans, resolve
    from pni.reproduce.runner import state

    out, _ = smoke_all
    step = next(s for s in resolve(get_plans("table2"), "smoke") if s.kind == "eval")
    for name in ("results.json", "step.json"):
        code = json.loads((out / step.key / name).read_text())["code"]
        assert code["pni"] == pni.__version__ and "commit" in code
    run = json.loads((out / step.needs[0] / "config.json").read_text())
    assert run["code"]["pni"] == pni.__version__
    assert state(step, out)[0] == "done"


def test_a_deterministic_models_single_draw_is_not_a_reduced_budget() -> None:
    from pni.reproduce.claims import honest_attacks
    from pni.reproduce.report_tables import honest_columns

    vanilla = {"randomized": False, "attacks": {"aa-rand": {"n_iter": 100, "eot_iter": 1}, "eot-pgd": {"eot": 1}}}
    assert honest_columns([vanilla]) == {"eot-pgd": "EOT-PGD", "aa-rand": "AA-rand"}
    assert "reduced" not in " ".join(t for _, t, _ in honest_attacks(vanilla))


def test_an_earlier_honest_evaluation_is_shown_marked_until_the_rerun_lands(
        smoke_all: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    import shutil

    from pni.reproduce.plans import get_plans, resolve
    from pni.reproduce.results import superseded_honest
    from pni.reproduce.report_tables import SUPERSEDED_MARK, _ours
    from pni.reproduce.verdicts import measure

    out, _ = smoke_all
    step = next(s for s in resolve(get_plans("table2"), "smoke", "vanilla")
                if s.kind == "eval" and s.settings["protocol"] == "honest" and "table2:vanilla" in s.rows)
    run = tmp_path / step.needs[0]
    shutil.copytree(out / step.key, run / "eval-honest-earlier0")
    found = superseded_honest(run, "eval-honest-current0")
    assert found is not None and found["superseded"] == "eval-honest-earlier0"
    assert _ours(measure(found, "without_noise", "aa-rand"), True, found).endswith(SUPERSEDED_MARK)
    assert superseded_honest(run, "eval-honest-earlier0") is None       # the step's own folder is not "earlier"
    (run / "eval-honest-earlier0" / "results.json").write_text("{}")     # a file that fails its check is not shown
    assert superseded_honest(run, "eval-honest-current0") is None


def test_the_code_note_names_each_training_seeds_code() -> None:
    from pni.reproduce.plans import get_plans, seeded_id
    from pni.reproduce.report_tables import code_note

    plan = get_plans("table2")[0]
    row = next(r for r in plan.rows if r.seed_count("cifar10-jpeg") > 1)
    commits = {seeded_id(row.id, 0): "a" * 40, seeded_id(row.id, 1): "b" * 40}

    class Found:
        def get(self, plan_name: str, row_id: str, track: str, what: str) -> object:
            commit = commits.get(row_id)
            return {"code": {"pni": "0", "commit": commit}} if commit and what == "honest" else None

        def seed_count(self, plan_name: str, row_id: str, track: str) -> int:
            return row.seed_count(track)

    note = code_note(Found(), plan, "cifar10-jpeg")
    assert f"- pni 0, commit {'a' * 10}: {row.label}\n" in note
    assert f"- pni 0, commit {'b' * 10}: {row.label} (training seed 1)\n" in note


def test_a_noisy_models_cw_rows_say_what_its_noise_off_shows() -> None:
    from pni.reproduce.claims import _cw_claim, cw_noise_off_note

    def found(on: float, off: float) -> dict:
        metrics = {s: {"cw": {"success_rate": {"mean": rate}, "mean_l2": {"mean": 0.8},
                              "mean_l2_stderr": {"mean": 0.1}}} for s, rate in (("with_noise", on), ("without_noise", off))}
        return {"attack_metrics": metrics, "trials": 1, "n": 100}

    note = cw_noise_off_note(found(2.22, 100.0), "PNI-W")
    assert note.startswith("PNI-W with its noise off is fooled on 100.00 % of the images (mean L2 0.800)")
    assert "no evidence of robustness" in note
    assert cw_noise_off_note(found(100.0, 100.0), "PNI-W") == ""            # nothing hidden by the vote
    vanilla = {"attack_metrics": {"without_noise": {"cw": {"success_rate": {"mean": 100.0}, "mean_l2": {"mean": 0.8},
                                                          "mean_l2_stderr": {"mean": 0.1}}}}, "trials": 1, "n": 100}
    assert cw_noise_off_note(vanilla, "vanilla AT") == ""                      # a deterministic model
    verdict = _cw_claim("PNI-W needs a larger C&W L2", found(2.22, 100.0), "PNI-W", vanilla, "vanilla AT")
    assert "PNI-W with its noise off is fooled" in verdict.note


def test_a_mean_l2_comparison_whose_smaller_side_was_fooled_less_often_is_inconclusive() -> None:
    from pni.reproduce.claims import _cw_claim

    def found(rate: float, l2: float) -> dict:
        cw = {"success_rate": {"mean": rate}, "mean_l2": {"mean": l2}, "mean_l2_stderr": {"mean": 0.01}}
        return {"attack_metrics": {"without_noise": {"cw": cw}}, "trials": 1, "n": 100}

    # b fooled on fewer images: its mean L2 is over its easiest ones, a's larger one is no evidence
    verdict = _cw_claim("a needs a larger C&W L2", found(90.0, 0.8), "a", found(30.0, 0.4), "b")
    assert verdict.verdict == "inconclusive"
    assert verdict.note.startswith("b is fooled on fewer images (30.00 % against 90.00 %)")
    # a fooled on fewer images and still larger: the conservative direction stands
    assert _cw_claim("a needs a larger C&W L2", found(30.0, 0.8), "a", found(90.0, 0.4), "b").verdict == "holds"
    # the other way round for a verdict that the claim does not hold
    assert _cw_claim("a needs a larger C&W L2", found(30.0, 0.4), "a", found(90.0, 0.8), "b").verdict \
        == "inconclusive"
    assert _cw_claim("a needs a larger C&W L2", found(90.0, 0.4), "a", found(30.0, 0.8), "b").verdict \
        == "does not hold at this scale"


def test_zoo_and_cw_full_budgets_are_the_attacks_own_defaults() -> None:
    import inspect

    from pni.attacks.budget import budget_text, published
    from pni.attacks.cw import CW_PROFILES

    defaults = inspect.signature(zoo).parameters
    assert published("zoo") == {"steps": defaults["steps"].default, "coords": defaults["coords"].default}
    _, params = build_attacks(["zoo", "eot-zoo"], eps=8 / 255)
    assert not is_reduced("zoo", params["zoo"]) and not is_reduced("eot-zoo", params["eot-zoo"])
    short = params["eot-zoo"] | {"eot": 5}
    assert is_reduced("eot-zoo", short) and not is_reduced("eot-zoo", short, randomized=False)
    assert budget_text("eot-zoo", short) == f"{defaults['steps'].default} it x {defaults['coords'].default} coords x 5 draws"
    assert label("zoo", "ZOO", params["zoo"] | {"steps": 50}) == "ZOO, 50 it x 128 coords (reduced)"
    for profile, settings in CW_PROFILES.items():
        full = {"profile": profile} | settings
        assert not is_reduced("cw", full)
        assert is_reduced("cw", full | {"steps": settings["steps"] - 1})
    assert not is_reduced("cw", {"steps": 1})     # no profile recorded: nothing to compare with
