"""Judging anyone's model: ``pni eval --model`` and ``--benchmark`` on models defined in
``tests/user_models.py`` (not in pni), the card's schema, the leaderboard, the threat rule
(no silent default radius) and the automatic one draw / one vote of a deterministic model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pni
from pni.cli import app as cli
from pni.benchmark import BenchmarkError, benchmark, read_card, validate_card
from pni.attacks.threat import ThreatError, parse_threat
from pni.evaluation.user_model import ModelLoadError, build_user_model

import user_models

DATA = ["--dataset", "mnist-sample", "--threat", "linf:0.1"]


class NoisyLinear(torch.nn.Module):
    """A randomized defense defined in this test file: a linear classifier whose logits get
    Gaussian noise at every pass."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))
        return logits + 0.5 * torch.randn_like(logits)


def noisy_linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return NoisyLinear()
SMOKE = ["--attacks", "clean,pgd,eot-pgd", "--trials", "1", "--steps", "2", "--eot", "2", "--n", "20"]


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_pni_eval_model_runs_a_user_factory_and_records_its_randomness(tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", "user_models:randomized", *DATA, *SMOKE, "--votes", "3",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["randomized"] is True and results["votes"] == 3
    assert results["attacks"]["eot-pgd"]["eot"] == 2 and results["n"] == 20
    assert "randomized: yes" in capsys.readouterr().out


def test_a_deterministic_model_gets_one_draw_and_one_vote_automatically(tmp_path):
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", "user_models:deterministic", *DATA, *SMOKE, "--votes", "5",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["randomized"] is False and results["votes"] == 1
    assert results["attacks"]["eot-pgd"]["eot"] == 1
    # the library call does the same
    x, y = pni.load_dataset("mnist-sample", "test").subset(8).tensors()
    ev = pni.evaluate(user_models.deterministic(), (x, y), ["clean", "eot-pgd"], trials=1, threat="linf:0.1",
                      steps=1, votes=7)
    assert ev.randomized is False and ev.votes == 1 and ev.attacks["eot-pgd"]["eot"] == 1


def test_model_files_and_weights_load_weights_only(tmp_path, capsys):
    model = user_models.deterministic()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = build_user_model("user_models:TinyNet", tmp_path / "w.pt")
    assert torch.equal(loaded.fc.weight, model.fc.weight) and not loaded.training
    file_spec = f"{user_models.__file__}:deterministic"
    assert isinstance(build_user_model(file_spec), torch.nn.Module)
    torch.save({"model": model, "note": "pickled module"}, tmp_path / "code.pt")
    for spec, weights, message in [
        ("user_models", None, "PKG.MODULE:FACTORY"),
        ("no_such_module_xyz:f", None, "no module 'no_such_module_xyz'"),
        ("user_models:missing", None, "has no 'missing'"),
        ("user_models:not_a_model", None, "returned str, not a torch.nn.Module"),
        ("user_models:broken", None, "failed: ValueError: this factory needs a GPU"),
        ("user_models:deterministic", tmp_path / "none.pt", "does not exist"),
        ("user_models:deterministic", tmp_path / "code.pt", "is refused"),
    ]:
        with pytest.raises(ModelLoadError, match=message):
            build_user_model(spec, weights)
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="does not fit the model"):
        build_user_model("user_models:deterministic", tmp_path / "bad.pt")
    # through the CLI: one line, status 2
    assert cli.main(["eval", "--model", "user_models:missing", *DATA]) == 2
    err = _last_error(capsys)
    assert len(err.splitlines()) == 1 and "has no 'missing'" in err


def test_no_silent_default_radius():
    x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
    with pytest.raises(ThreatError, match="a threat is required"):
        pni.evaluate(user_models.deterministic(), (x, y), ["clean", "pgd"], trials=1)
    with pytest.raises(ThreatError, match="disagree"):
        pni.evaluate(user_models.deterministic(), (x, y), ["clean", "pgd"], trials=1, eps=0.2, threat="linf:0.1")
    pni.evaluate(user_models.deterministic(), (x, y), ["clean"], trials=1)  # clean needs no radius
    assert parse_threat("linf:8/255").eps == 8 / 255
    for bad in ("8/255", "l2:0.5", "linf:2", "linf:x"):
        with pytest.raises(ThreatError):
            parse_threat(bad)


def test_model_without_threat_or_dataset_is_a_one_line_error(capsys):
    assert cli.main(["eval", "--model", "user_models:deterministic", "--dataset", "mnist-sample"]) == 2
    assert "--threat" in _last_error(capsys)
    assert cli.main(["eval", "--model", "user_models:deterministic", "--threat", "linf:0.1"]) == 2
    assert "--dataset" in _last_error(capsys)


def test_benchmark_card_validates_and_renders(tmp_path, capsys):
    out = tmp_path / "card"
    assert cli.main(["eval", "--model", "user_models:randomized", *DATA, "--benchmark", "pni-honest-v1",
                     "--budget", "smoke", "--name", "tiny-noisy", "--out", str(out)]) == 0
    card = read_card(out / "card.json")
    assert card["protocol"]["name"] == "pni-honest-v1" and card["protocol"]["budget"] == "smoke"
    assert card["model"] == {"name": "tiny-noisy", "source": "factory user_models:randomized",
                             "parameters": 4 * 25 + 4 + 4 * 144 * 10 + 10, "randomized": True,
                             "weights_sha256": None}
    assert card["data"]["n"] == 20 and card["threat"] == {"norm": "linf", "eps": 0.1}
    assert set(card["accuracy"]["per_attack"]) == {"clean", "pgd", "eot-pgd", "aa-rand", "square", "worst-case"}
    acc = card["accuracy"]
    assert acc["honest_worst_case"]["mean"] <= min(v["mean"] for v in acc["per_attack"].values()) + 1e-9
    assert card["gap"]["points"] == pytest.approx(acc["paper_pgd"]["mean"] - acc["honest_worst_case"]["mean"])
    assert card["audit"]["items"][0]["number"] == 1 and card["code"]["pni_version"] == pni.__version__
    assert card["attacks"]["square"]["eot"] == 2
    # a deterministic model, from Python; the leaderboard sorts both by the honest worst case
    det = benchmark(user_models.deterministic(), pni.load_dataset("mnist-sample", "test"), "linf:0.1",
                    name="tiny", budget="smoke")
    assert det["model"]["randomized"] is False and det["attacks"]["eot-pgd"]["eot"] == 1
    (tmp_path / "det.json").write_text(json.dumps(det))
    board = tmp_path / "board.md"
    assert cli.main(["leaderboard", str(out / "card.json"), str(tmp_path / "det.json"), "--out", str(board)]) == 0
    text = board.read_text()
    assert "tiny-noisy" in text and "| tiny |" in text and "reduced: smoke budget" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    worst = {c["model"]["name"]: c["accuracy"]["honest_worst_case"]["mean"] for c in (card, det)}
    first = max(worst, key=worst.get)
    assert f"| {first} |" in rows[0]


def test_the_card_runs_the_honest_attacks_in_a_cascade_and_says_how_long_first():
    from pni.benchmark.protocol import PNI_HONEST_V1
    from pni.benchmark.run import _estimate
    from pni.evaluation.estimate import attack_passes

    lines: list[str] = []
    card = benchmark(user_models.randomized(), pni.load_dataset("mnist-sample", "test"), "linf:0.1",
                     name="tiny-noisy", budget="smoke", say=lines.append)
    assert card["protocol"]["settings"]["cascade"] == ["eot-pgd", "aa-rand", "square"]
    assert "cascade: clean -> eot-pgd -> aa-rand -> square" in lines[0]
    acc = {name: value["mean"] for name, value in card["accuracy"]["per_attack"].items()}
    # the chained attacks' accuracies are cumulative: robust to each and to every one before it
    assert acc["clean"] >= acc["eot-pgd"] >= acc["aa-rand"] >= acc["square"] >= acc["worst-case"]
    assert acc["worst-case"] <= acc["pgd"]  # the paper-style PGD is not chained: every image
    # the estimate up front counts every attack on every image: an upper bound, said as one
    x = pni.load_dataset("mnist-sample", "test").tensors()[0][:16]
    model = user_models.randomized()
    line = _estimate(model, x, PNI_HONEST_V1, dict(PNI_HONEST_V1.attack_options), 10, True, 1000, 0.1)
    assert line is not None and line.startswith("at most about") and "only on the images still robust" in line
    assert "the audit" in line and "(200 images)" in line
    assert _estimate(model, x, PNI_HONEST_V1, dict(PNI_HONEST_V1.attack_options), 10, True, 1, 0.1) is None
    # a deterministic model: one draw per step and query, one k in the audit's EOT sweep
    det = _estimate(user_models.deterministic(), x, PNI_HONEST_V1, dict(PNI_HONEST_V1.attack_options), 1, False,
                    100000, 0.1)
    passes = lambda text: float(text.split(" images x ")[1].split(" ")[0].replace(",", ""))  # noqa: E731
    assert det is not None and passes(det) < passes(line) / 10
    # resumed with all but Square finished (its partial file): only Square and the audit are counted
    rest = _estimate(model, x, PNI_HONEST_V1, dict(PNI_HONEST_V1.attack_options), 10, True, 1000, 0.1,
                     reused=("clean", "pgd", "eot-pgd", "aa-rand"))
    square_only = attack_passes("square", {"votes": 10, "attack_options": PNI_HONEST_V1.attack_options}, 40)
    assert rest is not None and passes(rest) == pytest.approx(square_only, abs=1) and "the audit" in rest
    assert rest.endswith("clean, pgd, eot-pgd, aa-rand finished before the stop (reused)")


def test_a_card_that_breaks_the_schema_is_refused(tmp_path, capsys):
    card = benchmark(user_models.deterministic(), pni.load_dataset("mnist-sample", "test"), "linf:0.1",
                     budget="smoke", n=10)
    assert card["protocol"]["changes"]["n"] == 10
    broken = json.loads(json.dumps(card))
    del broken["accuracy"]["honest_worst_case"]
    with pytest.raises(BenchmarkError, match="accuracy.honest_worst_case is missing"):
        validate_card(broken)
    broken = json.loads(json.dumps(card))
    broken["model"]["parameters"] = "many"
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    assert cli.main(["leaderboard", str(tmp_path / "bad.json")]) == 2
    assert "model.parameters must be int" in _last_error(capsys)
    with pytest.raises(BenchmarkError, match="unknown benchmark protocol"):
        benchmark(user_models.deterministic(), pni.load_dataset("mnist-sample", "test"), "linf:0.1",
                  protocol="pni-honest-v0")


def test_pni_audit_model_runs_the_checklist_on_a_user_model(tmp_path):
    out = tmp_path / "audit"
    assert cli.main(["audit", "--model", "user_models:randomized", *DATA, "--n", "10", "--items", "1",
                     "--steps", "2", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["model"] == "user_models:randomized" and report["randomized"] is True
    assert [item["number"] for item in report["items"]] == [1]


def test_benchmark_of_a_pni_checkpoint_takes_its_eps_and_records_its_file(tmp_path):
    from pni.models.hub import pretrained_entry, default_root

    entry = pretrained_entry("lenet5-pni-w")
    out = tmp_path / "card"
    assert cli.main(["eval", str(default_root() / entry.path), "--benchmark", "pni-honest-v1", "--budget", "smoke",
                     "--dataset", "mnist-sample", "--out", str(out)]) == 0
    card = read_card(out / "card.json")
    assert card["threat"]["eps"] == pytest.approx(0.3) and card["model"]["weights_sha256"] == entry.sha256
    assert card["model"]["name"] == "lenet5 (PNI-W)" and card["model"]["randomized"] is True
    # a file below the current folder is named relative to it: a committed card names no machine's path
    assert card["model"]["source"] == f"pni checkpoint {entry.path}"


def test_a_checkpoints_eps_gives_way_to_threat(tmp_path):
    from pni.models.hub import pretrained_entry, default_root

    out = tmp_path / "eval"
    assert cli.main(["eval", str(default_root() / pretrained_entry("lenet5-pni-w").path), "--threat", "linf:0.2",
                     "--dataset", "mnist-sample", "--attacks", "clean,pgd", "--n", "10", "--trials", "1",
                     "--steps", "1", "--votes", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["attacks"]["pgd"]["eps"] == pytest.approx(0.2) and results["randomized"] is True


def test_benchmark_refuses_flags_it_fixes(capsys):
    assert cli.main(["eval", "--model", "user_models:deterministic", *DATA, "--benchmark", "pni-honest-v1",
                     "--attacks", "clean,pgd"]) == 2
    assert "fixes the attacks" in _last_error(capsys)


def test_benchmark_of_tensors_takes_a_stratified_sample_and_pni_info_lists_the_new_names(capsys):
    x, y = pni.load_dataset("mnist-sample", "test").tensors()
    card = benchmark(user_models.deterministic(), (x, y), pni.parse_threat("linf:0.1"), budget="smoke", n=10)
    assert card["data"]["dataset"] == "user tensors" and card["data"]["n"] == 10
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "lenet5-pni-w" in out and "pni-honest-v1" in out


def test_a_model_defined_in_this_test_file_gets_its_card(tmp_path):
    out = tmp_path / "card"
    assert cli.main(["eval", "--model", f"{__file__}:noisy_linear", *DATA, "--benchmark", "pni-honest-v1",
                     "--budget", "smoke", "--out", str(out)]) == 0
    card = read_card(out / "card.json")
    assert card["model"]["randomized"] is True and card["model"]["parameters"] == 28 * 28 * 10 + 10
    assert card["model"]["name"].endswith("test_benchmark.py:noisy_linear")


def test_a_stopped_benchmark_resumes_its_finished_attacks(tmp_path, attack_calls, capsys):
    from pni.evaluation.resume import partial_attacks
    from pni.runs import PARTIAL_EVALUATION

    out = tmp_path / "card"
    argv = ["eval", "--model", "user_models:randomized", *DATA, "--benchmark", "pni-honest-v1",
            "--budget", "smoke", "--name", "tiny-noisy", "--out", str(out)]
    attack_calls.kill_at(4)  # during AutoAttack-rand: clean, PGD and EOT-PGD are kept
    assert cli.main(argv) == 130
    assert "the same command resumes" in capsys.readouterr().err and (out / PARTIAL_EVALUATION).exists()
    assert partial_attacks(out / PARTIAL_EVALUATION) == ["clean", "pgd", "eot-pgd"]  # the estimate leaves them out
    attack_calls.reset()
    assert cli.main(argv) == 0
    assert "resuming" in capsys.readouterr().err and attack_calls.calls == 2  # AA-rand and Square only
    assert read_card(out / "card.json")["model"]["name"] == "tiny-noisy" and not (out / PARTIAL_EVALUATION).exists()


def test_the_leaderboard_never_ranks_cards_of_other_test_images_together():
    from pni.benchmark.leaderboard import leaderboard_markdown

    base = json.loads((Path(__file__).parents[1] / "results/cards/resnet20-plain-cpu.json").read_text())
    other = json.loads(json.dumps(base))
    other["model"]["name"], other["data"]["labels_sha256"] = "other-folder-model", "0" * 16
    text = leaderboard_markdown([base, other])
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(sections) == 2 and all("labels digest" in s for s in sections)
    assert sum(line.startswith("| 1 |") for line in text.splitlines()) == 2   # each ranked alone
    assert "labels digest" not in leaderboard_markdown([base, json.loads(json.dumps(base))])


def test_a_card_on_a_cpu_attacks_in_batches_of_32_and_records_the_batch(tmp_path, monkeypatch):
    """On a CPU a card's batch, the most a stop loses of a chained attack, is 32 images (not the
    256 that made Square-EOT one unsaved 76-minute chunk); --batch-size overrides it; the card
    records the batch it ran with."""
    import pni.evaluation.evaluator as evaluator
    from pni.benchmark.run import CPU_BATCH, card_batch_size

    sizes: list[int] = []
    real = evaluator.sample_outcomes

    def spied(model, x, y, attack=None, batch_size=256, *args, **kwargs):
        sizes.append(batch_size)
        return real(model, x, y, attack, batch_size, *args, **kwargs)

    monkeypatch.setattr(evaluator, "sample_outcomes", spied)
    card = benchmark(user_models.randomized(), pni.load_dataset("mnist-sample", "test"), "linf:0.1",
                     budget="smoke", n=40)
    assert CPU_BATCH == 32 and set(sizes) == {32} and card["attacks"]["_judging"]["batch_size"] == 32
    assert card_batch_size("cuda") == 256 and card_batch_size(None, user_models.randomized()) == 32
    sizes.clear()
    out = tmp_path / "card"
    assert cli.main(["eval", "--model", "user_models:randomized", *DATA, "--benchmark", "pni-honest-v1",
                     "--budget", "smoke", "--batch-size", "8", "--out", str(out)]) == 0
    assert set(sizes) == {8} and read_card(out / "card.json")["attacks"]["_judging"]["batch_size"] == 8
