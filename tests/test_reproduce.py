"""pni reproduce: every plan end to end at smoke scale, reuse after an interruption, the
paper-scale Table 2 plan, runs shared across tables trained once, the CLI's errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pni.reproduce import NAMES, PLANS, ReproduceError, Runner, get_plans, reproduce, resolve, state
from pni.cli.reproduce import add_reproduce_parser


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pni")
    add_reproduce_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_every_plan_runs_end_to_end_at_smoke_scale(smoke_all: tuple[Path, dict[str, str]]) -> None:
    out, outcome = smoke_all
    assert set(outcome.values()) == {"ran"}
    for name in PLANS:
        steps = resolve(get_plans(name), "smoke")
        assert steps, name
        assert all(state(s, out)[0] == "done" for s in steps), name
        kinds = {s.kind for s in steps}
        assert "train" in kinds and kinds & {"eval", "audit", "alphas"}, name
    key = resolve(get_plans("table2"), "smoke", only="pni-w")[0].key
    log = [json.loads(line) for line in (out / key / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["alphas"]  # Table 1's final alphas are in the log
    saved = __import__("torch").load(out / key / "checkpoint.pt", weights_only=True)
    assert "optimizer" not in saved and saved["epoch"] == 1  # a finished run keeps weights only
    evals = [s for s in resolve(get_plans("table2"), "smoke", only="pni-w") if s.kind == "eval"]
    results = json.loads((out / evals[0].key / "results.json").read_text())
    assert results["n"] == 32 and results["trials"] == 2
    transfer = [s for s in resolve(get_plans("table5"), "smoke") if s.kind == "transfer"]
    assert len(transfer) == 3 and all((out / s.key / "transfer.json").exists() for s in transfer)
    fig2 = [s for s in resolve(get_plans("fig2"), "smoke") if s.kind == "alphas"]
    assert all((out / s.key / "alphas.png").exists() for s in fig2)
    certificates = [s for s in resolve(get_plans("table6"), "smoke") if s.kind == "certify"]
    assert len(certificates) == 4
    for step in certificates:
        saved = json.loads((out / step.key / "certify.json").read_text())
        assert saved["images"] == 8 and "0.5" in saved["certified_accuracy_percent"]
        check = json.loads((out / step.key / "check.json").read_text())  # certificates vs attacks
        assert set(check["attacks"]) == {"cw", "pgd-l2"} and check["settings"]["pgd_steps"] == 2


def test_table6_trains_rse_style_and_smoothing_rows_and_certifies_all_four() -> None:
    steps = resolve(get_plans("table6"), "paper")
    runs = {s.key: s.config for s in steps if s.kind == "train"}
    assert len(runs) == 4 and all(c.model == "resnet20" and c.width == 4.0 for c in runs.values())
    rse = [c for c in runs.values() if c.fixed_alpha is not None]
    smooth = [c for c in runs.values() if c.input_noise]
    assert len(rse) == 1 and rse[0].location == "A-b" and not rse[0].adversarial
    assert len(smooth) == 1 and smooth[0].location is None and smooth[0].input_noise == 0.25
    certify = [s for s in steps if s.kind == "certify"]
    assert {s.needs[0] for s in certify} == set(runs) and all(s.settings["sigma"] == 0.25 for s in certify)


def test_shared_runs_are_trained_once(smoke_all: tuple[Path, dict[str, str]]) -> None:
    out, outcome = smoke_all
    steps = resolve(get_plans("all"), "smoke")
    assert len({s.key for s in steps}) == len(steps) == len(outcome)
    again = reproduce("table2", "smoke", str(out))
    assert set(again.values()) == {"reused"}
    paper = resolve(get_plans("all"), "paper")
    pni_w = [s for s in paper if s.kind == "train" and s.config.location == "W" and s.config.model == "resnet20"
             and s.config.width == 1 and s.config.adversarial and s.config.adv_noise]
    assert len(pni_w) == 1
    plans = {label.split(":")[0] for label in pni_w[0].rows}
    assert {"table1", "table2", "table3", "table7", "fig2"} <= plans


def test_interrupted_plan_skips_finished_run_and_completes(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(step: object) -> None:
        raise Stop

    steps = resolve(get_plans("table1"), "smoke")
    with pytest.raises(Stop):
        Runner(tmp_path, on_step_done=stop).run(steps)
    first = tmp_path / steps[0].key
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.iterdir() if p.is_file()}
    assert "checkpoint.pt" in stamps and state(steps[1], tmp_path)[0] == "todo"
    outcome = Runner(tmp_path).run(steps)
    assert outcome[steps[0].key] == "reused"
    assert all(outcome[s.key] == "ran" for s in steps[1:])
    assert stamps == {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.iterdir() if p.is_file()}


def test_table2_at_paper_scale_is_the_papers_seven_rows() -> None:
    plan = PLANS["table2"]
    assert [r.label for r in plan.rows] == ["Vanilla adv. train", "PNI-W", "PNI-I", "PNI-A-a", "PNI-A-b",
                                            "PNI-W+A-a", "PNI-W+A-b"]
    runs = [s for s in resolve([plan], "paper") if s.kind == "train"]
    assert [s.config.location for s in runs] == [None, "W", "I", "A-a", "A-b", "W+A-a", "W+A-b"]
    for step in runs:
        c = step.config
        assert (c.model, c.width, c.dataset, c.train_subset) == ("resnet20", 1.0, "cifar10", None)
        assert c.adversarial and c.adv_noise
        assert c.eps == pytest.approx(8 / 255) and c.steps == 7 and c.step_size == pytest.approx(0.01)
        assert (c.epochs, c.lr, c.gamma, c.milestones) == (160, pytest.approx(0.1), pytest.approx(0.1), [80, 120])
        assert c.batch_size == 128 and c.weight_decay == pytest.approx(3e-4)
    evals = [s for s in resolve([plan], "paper") if s.kind == "eval" and s.settings["protocol"] == "paper"]
    assert len(evals) == 7 and all(s.settings["trials"] == 5 and s.settings["n"] is None for s in evals)
    assert all(set(s.settings["attacks"]) == {"clean", "pgd", "fgsm"} for s in evals)


def test_cli_errors_are_one_line_and_dry_run_reports_status(
        smoke_all: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["reproduce", "table9", "--scale", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown plan 'table9'" in err
    assert _cli(["reproduce", "table2", "--scale", "smoke", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown row 'nope'" in err and "pni-w" in err
    out, _ = smoke_all
    assert _cli(["reproduce", "table7", "--scale", "smoke", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "[done" in text and "[todo" not in text and "2/2 steps done" in text
    assert "images/s" in text
    with pytest.raises(ReproduceError):
        get_plans("nope")
    assert NAMES[-1] == "all" and set(NAMES[:-1]) == set(PLANS)


def test_finished_steps_record_timing_and_estimates_use_it(smoke_all: tuple[Path, dict[str, str]],
                                                          tmp_path: Path) -> None:
    from pni.reproduce.estimate import (RateMeter, cpu_spent, finished_times, logged_rate, signature,
                                        spent_seconds, step_seconds)

    out, _ = smoke_all
    steps = resolve(get_plans("table2"), "smoke")
    runs = {s.key: s for s in steps if s.kind == "train"}
    evals = [s for s in steps if s.kind == "eval"]
    timing = json.loads((out / evals[0].key / "timing.json").read_text())
    assert timing["seconds"] > 0 and timing["device"] == "cpu" and 0 < timing["cpu_seconds"]
    train = json.loads((out / steps[0].key / "timing.json").read_text())
    assert train["train_seconds_logged"] > 0
    meter = RateMeter("cpu")
    meter.calibrate(steps, out)
    config = steps[0].config
    assert meter.logged[meter.key(config)] and logged_rate(out / steps[0].key, config, "gpu") is None
    assert meter.rate(config) == pytest.approx(__import__("statistics").median(meter.logged[meter.key(config)]))
    times = finished_times(steps, runs, meter, out)
    # a step like a finished one is estimated at the finished one's wall time
    assert step_seconds(evals[0], runs, meter, out, times) == pytest.approx(timing["seconds"])
    # a stopped one: only the share of its work its partial file does not hold is left
    from pni.evaluation.resume import save_partial
    from pni.reproduce.runner import state

    stopped = tmp_path / "stopped"
    (stopped / evals[0].key).mkdir(parents=True)
    save_partial(stopped / evals[0].key / "evaluation.partial.pt", "key", {}, {}, 0.25)
    assert step_seconds(evals[0], runs, meter, stopped, times) == pytest.approx(0.75 * timing["seconds"])
    assert state(evals[0], stopped) == ("partial", "the attacks and batches it finished before a stop "
                                                   "(25% of its work) are reused")
    # once it is far enough along, at the pace it kept: a quarter in 100 s, three quarters left
    save_partial(stopped / evals[0].key / "evaluation.partial.pt", "key", {}, {}, 0.25, 100.0)
    assert step_seconds(evals[0], runs, meter, stopped, times) == pytest.approx(300.0)
    # a step like a stopped one (none of its kind finished) is estimated at the pace that one kept
    twins = [s for s in evals if signature(s, runs, meter) == signature(evals[0], runs, meter)]
    assert len(twins) >= 2
    paced = tmp_path / "paced"
    (paced / twins[0].key).mkdir(parents=True)
    save_partial(paced / twins[0].key / "evaluation.partial.pt", "key", {}, {}, 0.25, 100.0)
    assert step_seconds(twins[1], runs, meter, paced, finished_times(steps, runs, meter, paced)) == pytest.approx(400.0)
    spent, timed = spent_seconds(steps, out)
    assert spent > 0 and timed == len(steps)
    cpu, wall, counted = cpu_spent(steps, out)
    assert counted == len(steps) and 0 < cpu and 0 < wall


def test_estimates_keep_activation_noise_apart_from_weight_noise() -> None:
    """A ZOO step of PNI-A-a is not estimated at PNI-W's pace: a draw per activation element
    costs about twice a PNI-W pass (Table 5's A-a steps took ~3x the W step's estimate)."""
    import dataclasses

    from pni.reproduce.estimate import RateMeter, noise_cost

    config = next(s.config for s in resolve(get_plans("table2"), "cpu") if s.kind == "train")
    meter = RateMeter("cpu")
    keys = {loc: meter.key(dataclasses.replace(config, location=loc)) for loc in (None, "W", "I", "A-a", "W+A-b")}
    assert keys["W"] == keys["I"] != keys["A-a"] == keys["W+A-b"] != keys[None] != keys["W"]
    assert [noise_cost(loc) for loc in (None, "W", "I", "A-a", "A-b", "W+A-a")] == [0, 1, 1, 2, 2, 2]


def test_data_dir_and_max_minutes_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["reproduce", "table2", "--scale", "smoke", "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data-dir" in err and "nope" in err
    assert _cli(["reproduce", "table2", "--scale", "smoke", "--max-minutes", "0"]) == 2
    assert "--max-minutes" in capsys.readouterr().err
    out = tmp_path / "out"
    assert _cli(["reproduce", "table1", "--scale", "smoke", "--out", str(out), "--max-minutes", "0.0001"]) == 0
    text = capsys.readouterr().out
    assert "stopped by --max-minutes" in text and not out.exists()
    assert _cli(["reproduce", "table2", "--scale", "paper", "--data-dir", str(tmp_path), "--dry-run",
                 "--only", "vanilla"]) == 0
    text = capsys.readouterr().out
    assert f"CIFAR-10 image folder {tmp_path}" in text and "-folder-" in text


def test_track_flag_runs_one_track_and_rejects_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["reproduce", "table2", "--scale", "cpu", "--track", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown track 'nope'" in err and "cifar10-jpeg" in err
    assert _cli(["reproduce", "table2", "--scale", "cpu", "--track", "mnist", "--dry-run", "--only", "vanilla",
                 "--out", "/nonexistent-out"]) == 0
    text = capsys.readouterr().out
    assert "(mnist)" in text and "(cifar10-jpeg)" not in text


def test_cpu_tracks_judge_the_honest_protocol_on_their_own_number_of_images() -> None:
    """The honest protocol's n is the track's (MNIST 1,000, CIFAR 500), the paper protocol's
    stays the scale's: each eval step's settings, and so its key, carry it."""
    steps = [s for s in resolve(get_plans("table2"), "cpu", "vanilla") if s.kind == "eval"]
    n = {(s.track, s.settings["protocol"]): s.settings["n"] for s in steps}
    assert n == {("mnist", "honest"): 1000, ("cifar10-jpeg", "honest"): 500,
                 ("mnist", "paper"): 1000, ("cifar10-jpeg", "paper"): 1000}


def test_dry_run_of_all_lists_folders_no_step_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pni.cli.reproduce import unplanned_folders

    steps = resolve(get_plans("all"), "smoke")
    run = next(s for s in steps if s.kind == "train").key
    (tmp_path / run / "eval-honest-00000000").mkdir(parents=True)
    (tmp_path / "lenet5-W-at-old-12345678").mkdir()
    (tmp_path / ".overwritten.x").mkdir()
    assert {p.relative_to(tmp_path).as_posix() for p in unplanned_folders(steps, tmp_path)} == {
        f"{run}/eval-honest-00000000", "lenet5-W-at-old-12345678"}
    assert _cli(["reproduce", "all", "--scale", "smoke", "--out", str(tmp_path), "--dry-run"]) == 0
    assert "2 folder(s) under" in capsys.readouterr().out


def test_an_eval_step_stopped_midway_resumes_its_finished_attacks(tmp_path: Path, attack_calls) -> None:
    from pni.evaluation.resume import partial_progress
    from pni.reproduce.estimate import spent_seconds
    from pni.runs import PARTIAL_EVALUATION

    class Stop(Exception):
        pass

    steps = resolve(get_plans("table1"), "smoke")
    train, evaluation = steps[0], next(s for s in steps if s.kind == "eval")
    Runner(tmp_path).run([train])
    attack_calls.kill_at(2, Stop)  # killed during the second attack: the first is in the partial file
    with pytest.raises(Stop):
        Runner(tmp_path).run([train, evaluation])
    partial = tmp_path / evaluation.key / PARTIAL_EVALUATION
    assert partial.exists() and state(evaluation, tmp_path)[0] == "partial"
    before = partial_progress(partial)[1]
    attack_calls.reset()
    assert Runner(tmp_path).run([train, evaluation])[evaluation.key] == "ran"
    attacks = len(evaluation.settings["attacks"]) * (2 if evaluation.settings.get("noise", True) else 1)
    assert attack_calls.calls == attacks - 1  # every attack but the finished one
    assert state(evaluation, tmp_path)[0] == "done" and not partial.exists()
    # its timing counts the wall seconds before the stop too, and the time spent on done steps with it
    timing = json.loads((tmp_path / evaluation.key / "timing.json").read_text())
    assert before > 0 and timing["seconds_before_resume"] == pytest.approx(before, abs=1e-3)
    assert spent_seconds([evaluation], tmp_path)[0] == pytest.approx(timing["seconds"] + before, abs=1e-3)


def test_an_eval_step_shows_its_progress_with_the_time_left(tmp_path: Path, monkeypatch, capsys) -> None:
    from pni import progress

    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    steps = resolve(get_plans("table1"), "smoke")
    train, evaluation = steps[0], next(s for s in steps if s.kind == "eval")
    Runner(tmp_path).run([train])
    capsys.readouterr()
    Runner(tmp_path).run([train, evaluation])
    err = capsys.readouterr().err
    assert any(line.startswith("eval: ") and "left" in line for line in err.splitlines())
