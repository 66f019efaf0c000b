"""Every table and figure of ``pni reproduce all --report`` from the smoke-scale results
(the shared ``smoke_all`` run): Table 1's alphas, Table 3's parameter counts, Table 4's C&W
claims, Table 5's substitute attack, Table 6's certificates and literature rows, the audit's
figures; the alpha rules on hand-made training logs; the README's verdict block."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from pni.reproduce import get_plans, resolve
from pni.reproduce.claims import judge_claims
from pni.reproduce.claims_alpha import INIT_ALPHA, runaway_verdict, vanishing_verdict
from pni.cli.reproduce import add_reproduce_parser
from pni.reproduce import paper_numbers as paper
from pni.reproduce.report import README_END, README_START, NOT_RUN, update_readme, write_results
from pni.reproduce.results import Results
from pni.reproduce.verdicts import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_JUDGED


def _table_lines(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


@pytest.fixture(scope="module")
def report(smoke_all: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out, _ = smoke_all
    path = write_results(get_plans("all"), "smoke", out, tmp_path_factory.mktemp("docs") / "RESULTS.md")
    return path, path.read_text()


def test_every_table_renders_its_new_columns_with_numbers(report: tuple[Path, str]) -> None:
    path, text = report
    assert NOT_RUN not in text                      # every plan ran at smoke scale
    # Table 1: |alpha| per layer of each run, with the paper's summary on the LeNet-5 track
    header = next(line for line in text.splitlines() if line.startswith("| Layer |"))
    assert header.count("ours (epoch 1/1)") == 3 and "AT, no PNI in x-hat: paper" in header
    conv0 = _table_lines(text, "Conv0")[0]
    assert all(float(cell) >= 0 for cell in conv0[2::2])
    largest = _table_lines(text, "*largest*")[0]
    assert largest[1::2] == ["0.009", "5.856", "0.771"]        # the paper's, from paper_numbers
    assert "ResNet-20's" in text
    # Table 3: the paper's capacity next to ours, counted from the model (alphas excluded)
    from pni import count_parameters, create_model
    net20 = _table_lines(text, "Net20")[0]
    assert net20 == ["Net20", "269,722", "lenet5", f"{count_parameters(create_model('lenet5')):,}", "+5"]
    assert _table_lines(text, "Net20(4x)")[0][1] == "4,286,026"
    # Table 4: every row filled in (a number or "none fooled"), success rates numbers
    for line in _table_lines(text, "ResNet-18: PNI-W"):
        assert line[2] != NOT_RUN and (line[3] == "undefined" or float(line[3]) >= 0)
    # Table 5: the substitute attack's agreement and transferred accuracies
    substitute = _table_lines(text, "B: PNI-W")[-1]              # the second table of Table 5
    assert int(substitute[1].replace(",", "")) > 0 and 0 <= float(substitute[2]) <= 100
    assert all(0 <= float(c) <= 100 for c in substitute[3:6]) and substitute[6] == "32"
    # Table 6: certified accuracy at both radii, and the literature rows quoted, not run
    pni_w = [line for line in _table_lines(text, "PNI-W (this work)") if line[1] == "with noise"][0]
    assert len(pni_w) == 10 and all(0 <= float(c) <= 100 for c in pni_w[-2:])
    dp = _table_lines(text, paper.TABLE6_LITERATURE[0][0])[0]
    assert dp[1] == "quoted from the paper, not run" and dp[2] == "87.00" and dp[4] == "25.00"
    assert "radius 0.25:" in text and "n=8" in text
    # no table wider than 10 columns
    assert max(line.count(" | ") + 1 for line in text.splitlines() if line.startswith("| ")) <= 10
    # Table 7 / Fig. 3 / Fig. 2: images linked relative to the report's folder, and there
    links = [part.split(")")[0] for part in text.split("](")[1:]]
    assert any(link.endswith("fig3.png") for link in links) and any(link.endswith("eot.png") for link in links)
    assert any(link.endswith("alphas.png") for link in links)
    assert all((path.parent / link).exists() for link in links)


WORST_SMOKE = ("PNI-W beats vanilla AT under the worst case at a reduced budget (per image, EOT-PGD or AA-rand; "
               "eot-pgd EOT 2; aa-rand 2 it x 2 draws)")
# the smoke scale's C&W and ZOO run below their profiles' / defaults' budgets: the claims name them
CW_PAPER_SMOKE = "paper profile, 10 steps x 2 searches (reduced)"
CW_STRONG_SMOKE = "strong profile, 5 steps x 2 searches (reduced)"


def test_new_claims_have_verdicts(report: tuple[Path, str]) -> None:
    _, text = report
    verdicts = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    for claim in ("Without adversarial training the alphas go to ~0",
                  "Adversarial training (vanilla, PNI-W) needs a larger C&W L2 than no defense "
                  f"(ResNet-20 (4x), {CW_PAPER_SMOKE})",   # LeNet-5 stands in for both Table 4 models: judged once
                  f"PNI-W needs a larger C&W L2 than vanilla AT (ResNet-20 (4x), {CW_STRONG_SMOKE})",
                  "PNI-W resists ZOO, 2 it x 8 coords (reduced), better than vanilla AT (lower success rate)",
                  "PNI-W beats PGD AT under PGD",
                  "FGSM (one step) does not beat PGD (iterative) on PNI-W",
                  "Black-box attacks (transfer, ZOO) do not beat white-box ones on PNI-W",
                  WORST_SMOKE):
        assert any(f"*{v}*" in verdicts[claim] for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)), claim
    assert not any("ResNet-18" in claim for claim in verdicts if "C&W" in claim)
    assert "the ResNet-18 rows are the same runs" in verdicts["PNI-W needs a larger C&W L2 than vanilla AT "
                                                              f"(ResNet-20 (4x), {CW_STRONG_SMOKE})"]
    worst = verdicts[WORST_SMOKE]      # the smoke scale's reduced budget is in the claim and its numbers' labels
    assert "PNI-W worst case (reduced: " in worst and "vanilla AT worst case (reduced: " in worst and "paired" in worst
    assert not any("honest worst case" in claim for claim in verdicts)
    audit = verdicts["FGSM (one step) does not beat PGD (iterative) on PNI-W"]
    assert "audit item 1 pass" in audit or "audit item 1 FAIL" in audit      # the audit's own verdict


def _checkpoint_with_alphas(folder: Path, alphas: dict[str, float], epoch: int, config: dict) -> None:
    """A LeNet-5 PNI-W checkpoint whose alphas are ``alphas`` (the report takes Table 1's from it)."""
    import pni
    from pni.checkpoint import FORMAT, VERSION, atomic_save
    from pni.models import model_meta
    from pni.noise import alphas as alpha_parameters

    model = pni.inject(pni.create_model("lenet5"), "W")
    with torch.no_grad():
        for key, alpha in alpha_parameters(model).items():
            alpha.fill_(alphas[key])
    atomic_save({"format": FORMAT, "version": VERSION, "epoch": epoch, "model": model.state_dict(),
                 "model_meta": model_meta(model), "config": config}, folder / "checkpoint.pt")


def _hand_made(out: Path, alphas: dict[str, dict[str, float]], epoch_of: dict[str, int] | None = None) -> Results:
    """Table 1's three runs with hand-written config.json, train_log.jsonl and a checkpoint
    holding those alphas (row -> alphas)."""
    for step in resolve(get_plans("table1"), "smoke"):
        if step.kind != "train":
            continue
        row = step.rows[0].split(":")[1]
        folder = out / step.key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(step.config.to_dict()))
        epoch = (epoch_of or {}).get(row, step.config.epochs)
        (folder / "train_log.jsonl").write_text(json.dumps({"epoch": epoch, "alphas": alphas[row]}) + "\n")
        _checkpoint_with_alphas(folder, alphas[row], epoch, step.config.to_dict())
    return Results(get_plans("table1"), "smoke", out)


def _layers(values: list[float]) -> dict[str, float]:
    return {f"{name}:W": v for name, v in zip(("conv0", "conv1", "fc0", "fc1", "fc2"), values)}


def test_alpha_rules_on_hand_made_training_logs(tmp_path: Path) -> None:
    moderate, runaway = _layers([0.3, -0.2, 0.1, 0.05, 0.02]), _layers([0.01, -5.9, 0.003, 0.002, 0.001])
    fallen = _hand_made(tmp_path / "a", {"vanilla-training": _layers([0.001, -0.001, 0.001, 0.0005, 0.001]),
                                         "at-xnoise-off": runaway, "at-xnoise-on": moderate})
    vanish, run = judge_claims(fallen, "mnist-sample", {"table1"})[:2]
    assert vanish.verdict == HOLDS and "largest |alpha| 0.001" in vanish.evidence
    assert run.verdict == HOLDS and "5.9 (Conv1)" in run.evidence and "0.3 (Conv0)" in run.evidence
    kept = _hand_made(tmp_path / "b", {"vanilla-training": _layers([0.2] * 5), "at-xnoise-off": moderate,
                                       "at-xnoise-on": runaway})
    vanish, run = judge_claims(kept, "mnist-sample", {"table1"})[:2]
    assert vanish.verdict == DOES_NOT_HOLD and "0.2" in vanish.evidence
    assert run.verdict == DOES_NOT_HOLD
    middle = _hand_made(tmp_path / "c", {"vanilla-training": _layers([0.05] * 5), "at-xnoise-off": runaway,
                                         "at-xnoise-on": runaway}, epoch_of={"at-xnoise-on": 0})
    vanish, run = judge_claims(middle, "mnist-sample", {"table1"})[:2]
    assert vanish.verdict == INCONCLUSIVE
    assert run.verdict == NOT_JUDGED and "still training" in run.evidence
    # the rules give the paper's own verdicts on the paper's own alphas
    table = {row: dict(zip(paper.TABLE1_LAYERS, values)) for row, values in paper.TABLE1_ALPHAS.items()}
    assert vanishing_verdict(table["vanilla-training"], INIT_ALPHA).verdict == HOLDS
    assert runaway_verdict(table["at-xnoise-off"], table["at-xnoise-on"], INIT_ALPHA).verdict == HOLDS


def test_mean_l2_standard_error_is_recorded() -> None:
    from pni.evaluation.result import _trial_metrics

    l2 = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    success = torch.tensor([[True, True, True, False]])
    metrics = _trial_metrics({"success": success, "initially_correct": torch.ones_like(success), "l2": l2})
    assert metrics["mean_l2"] == [2.0] and metrics["mean_l2_stderr"][0] == pytest.approx(1 / 3 ** 0.5)


def test_readme_block_is_replaced_between_the_markers_only(smoke_all: tuple[Path, dict[str, str]],
                                                           tmp_path: Path) -> None:
    before, after = "# Project\n\nText above.\n\n", "\n\n## Next section\n\nText below.\n"
    readme = tmp_path / "README.md"
    readme.write_text(f"{before}{README_START}\nold summary\n{README_END}{after}")
    parser = argparse.ArgumentParser(prog="pni")
    add_reproduce_parser(parser.add_subparsers(dest="command"))
    out, _ = smoke_all
    args = parser.parse_args(["reproduce", "all", "--scale", "smoke", "--out", str(out), "--report",
                              "--report-out", str(tmp_path / "docs" / "RESULTS.md"), "--readme", str(readme)])
    assert args.func(args) == 0
    text = readme.read_text()
    assert text.startswith(before + README_START + "\n") and text.endswith(README_END + after)
    block = text[len(before) + len(README_START): -len(README_END + after)]
    assert "old summary" not in block and "[docs/RESULTS.md](docs/RESULTS.md)" in block
    line = next(line for line in block.splitlines() if line.startswith("- PNI-W beats vanilla AT under PGD (Table 2)"))
    assert "mnist-sample: *" in line
    assert len([line for line in block.splitlines() if line.startswith("- ")]) == len(
        judge_claims(Results(get_plans("all"), "smoke", out), "mnist-sample", {p.name for p in get_plans("all")}))
    # without markers: left alone, said in one line
    plain = tmp_path / "PLAIN.md"
    plain.write_text("# No markers\n")
    stamp = os.stat(plain).st_mtime_ns
    message = update_readme(plain, "- a line\n")
    assert "left alone" in message and "\n" not in message
    assert plain.read_text() == "# No markers\n" and os.stat(plain).st_mtime_ns == stamp


def test_certified_accuracy_is_compared_image_by_image_on_the_same_images() -> None:
    from pni.reproduce.report_tables import certified
    from pni.reproduce.verdicts import judge

    labels = [i % 10 for i in range(200)]

    def found(correct: set[int], indices: str = "abc") -> dict:
        radius = [0.6 if i in correct else 0.0 for i in range(200)]
        prediction = [y if i in correct else -1 for i, y in enumerate(labels)]
        share = 100 * len(correct) / 200
        return {"images": 200, "certified_accuracy_percent": {"0.25": share, "0.5": share},
                "subset": {"indices_sha256": indices},
                "per_image": {"label": labels, "prediction": prediction, "radius": radius}}

    a, b = found(set(range(60))), found(set(range(50)))     # b's certified images are a's, minus 10
    paired = judge("", "", ("a", certified(a, "0.25")), ("b", certified(b, "0.25")))
    assert certified(a, "0.5").mean == 30.0 and sum(certified(a, "0.5").per_image) / 200 == 30.0
    assert "paired over the same 200 images" in paired.evidence and paired.verdict == "holds"
    other = judge("", "", ("a", certified(a, "0.25")), ("b", certified(found(set(range(50)), "xyz"), "0.25")))
    assert "unpaired" in other.evidence and other.verdict == "inconclusive"


def test_every_location_is_judged_against_vanilla_and_a_gain_against_the_honest_attacks(report) -> None:
    _, text = report
    claims = [line.split("**")[1] for line in text.splitlines() if line.startswith("- **")]
    for name in ("PNI-I", "PNI-A-a", "PNI-A-b", "PNI-W+A-a", "PNI-W+A-b"):
        assert f"{name} beats vanilla AT under PGD" in claims
    for claim in claims:   # an erasure is judged only where the PGD gain holds
        if claim.startswith("EOT-PGD erases PNI-") and "PNI-W's" not in claim:
            name = claim.removeprefix("EOT-PGD erases ").split("'s gain")[0]
            line = next(line for line in text.splitlines() if f"**{name} beats vanilla AT under PGD**" in line)
            assert "*holds*" in line


def test_the_cw_table_names_the_draws_it_judged_over_when_one_profile_has_run() -> None:
    from pni.reproduce.report_tables import cw_table

    class OnlyPaperProfile:  # the strong profile's steps not run yet
        def get(self, plan: str, row: str, track: str, protocol: str) -> dict | None:
            return {"attacks": {"clean": {}, "cw": {"votes": 10}}, "votes": 10} if protocol == "cw-paper" else None

    text = cw_table(OnlyPaperProfile(), get_plans("table4")[0], "cifar10-jpeg")
    assert "the majority vote over 10 fresh draws" in text and "the protocol's" not in text


def test_the_cw_table_names_the_noisy_rows_run_before_the_same_image_rule() -> None:
    from pni.reproduce.report_tables import SAME_IMAGE_RULE, cw_table

    class Rows:  # PNI-W's rows ran before the rule; the deterministic ones need none
        def get(self, plan: str, row: str, track: str, protocol: str) -> dict | None:
            cw = {"votes": 10} if "pni" in row else {"votes": 10, "same_image_linf": 0.002}
            return {"attacks": {"clean": {}, "cw": cw}, "votes": 10, "randomized": "pni" in row}

    plan = get_plans("table4")[0]
    noisy = [row.label for row in plan.rows if "pni" in row.id]
    assert noisy
    text = cw_table(Rows(), plan, "cifar10-jpeg")
    assert SAME_IMAGE_RULE in text
    assert "Run before that rule (a success there may be such a zero-distance flip): " + ", ".join(noisy) + "." in text

    class Current(Rows):
        def get(self, *args: str) -> dict | None:
            found = super().get(*args)
            found["attacks"]["cw"]["same_image_linf"] = 0.002
            return found

    assert "Run before that rule" not in cw_table(Current(), plan, "cifar10-jpeg")


def test_zoo_and_cw_below_their_full_budget_are_named_in_the_columns_and_claims() -> None:
    from pni.reproduce.claims import table4_claims, table5_claims
    from pni.reproduce.report_tables import blackbox_table, cw_table

    class Reduced:  # ZOO at 50 iterations, C&W's strong profile at 200 steps: the cpu scale's budgets
        def get(self, plan: str, row: str, track: str, protocol: str) -> dict | None:
            noisy = "pni" in row or row.startswith("b-")
            zoo = {"steps": 50, "coords": 128, "votes": 10}
            attacks = {"zoo": zoo | {"eot": 1}, "eot-zoo": zoo | {"eot": 10 if noisy else 1},
                       "cw": {"profile": protocol.removeprefix("cw-"), "steps": 200 if protocol == "cw-strong" else 10,
                              "binary_search_steps": 9, "eot": 5, "votes": 10}}
            return {"attacks": attacks, "votes": 10, "randomized": noisy}

        def key(self, plan: str, row: str, track: str, protocol: str) -> str:
            return f"{row}-{protocol}"

    t5 = blackbox_table(Reduced(), get_plans("table5")[0], "cifar10-jpeg")
    assert "| ZOO, 50 it x 128 coords (reduced) success %: ours | EOT-ZOO, 50 it x 128 coords (reduced) success %: ours |" in t5
    assert "every query's scores averaged over 10 noise draws on a noisy model" in t5   # EOT-ZOO's full draws
    claims = [v.claim for v in table5_claims(Reduced(), "cifar10-jpeg")]
    assert "PNI-W resists ZOO, 50 it x 128 coords (reduced), better than vanilla AT (lower success rate)" in claims
    assert "PNI-W resists EOT-ZOO, 50 it x 128 coords (reduced), better than vanilla AT (lower success rate)" in claims
    t4 = cw_table(Reduced(), get_plans("table4")[0], "cifar10-jpeg")
    assert "| Mean L2: ours, paper profile | Success %: paper profile |" in t4
    assert "| Mean L2: ours, strong profile, 200 steps x 9 searches (reduced) |" in t4
    claims4 = [v.claim for v in table4_claims(Reduced(), "cifar10-jpeg")]
    assert "PNI-W needs a larger C&W L2 than vanilla AT (ResNet-20 (4x), paper profile)" in claims4
    assert ("PNI-W needs a larger C&W L2 than vanilla AT (ResNet-20 (4x), strong profile, 200 steps x 9 searches "
            "(reduced))") in claims4
