"""Issue 22: what pni reproduce reads back is checked (results_check). A results file that fails
its schema (out-of-range accuracies, strings or lists where numbers belong, per-image outcomes
that disagree with the stored mean or do not decode, n other than the subset's, a truncated
file) is not done: it is named in one line and the step reruns. timing.json is checked; Table
1's alphas come from the checkpoint; a killed write's temporary files go when the step reruns."""
from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pni.cli import app as cli
from pni.evaluation.per_image import encode
from pni.reproduce import Runner, get_plans, resolve, state
from pni.reproduce.results_check import ResultsFileError, check_values, read_checked, read_timing


@pytest.fixture(scope="module")
def vanilla(tmp_path_factory) -> tuple[Path, list]:
    """Table 2's vanilla row at smoke scale: a LeNet-5 run, its paper and honest evaluations."""
    out = tmp_path_factory.mktemp("reproduce")
    steps = [s for s in resolve(get_plans("table2"), "smoke", "vanilla") if "table2:vanilla" in s.rows]  # seed 0
    assert set(Runner(out, echo=lambda line: None).run(steps).values()) == {"ran"}
    return out, steps


@pytest.fixture()
def paper(vanilla) -> tuple[Path, dict, dict]:
    """The paper protocol's results.json: (path, its JSON, the step's settings)."""
    out, steps = vanilla
    step = steps[1]
    path = out / step.key / "results.json"
    return path, json.loads(path.read_text()), step.settings


def _refused(values: dict, path: Path, settings: dict) -> str:
    with pytest.raises(ResultsFileError) as caught:
        check_values(values, path, settings)
    return str(caught.value)


def test_the_files_a_run_writes_pass_and_unknown_keys_are_ignored(vanilla, paper):
    out, steps = vanilla
    path, values, settings = paper
    for step in steps[1:]:
        read_checked(out / step.key / "results.json", step.settings)
        assert read_timing(out / step.key / "timing.json")["seconds"] >= 0
    check_values({**values, "code": {"version": "0.9", "commit": "abc"}}, path, settings)


@pytest.mark.parametrize("value", [150, -20])
def test_an_accuracy_outside_0_100_is_refused(paper, value):
    path, values, settings = paper
    values["accuracy_percent"]["without_noise"]["pgd"]["mean"] = value
    assert _refused(values, path, settings) == (
        f"{path}: field 'accuracy_percent.without_noise.pgd.mean': expected a number in [0, 100], got {value}")


def test_a_mean_that_is_not_the_mean_of_its_trials_is_refused(paper):
    path, values, settings = paper
    trials = values["accuracy_per_trial"]["without_noise"]["pgd"]
    values["accuracy_percent"]["without_noise"]["pgd"]["mean"] = 99.0
    message = _refused(values, path, settings)
    assert message.startswith(f"{path}: field 'accuracy_percent.without_noise.pgd.mean': expected "
                              f"{100 * np.mean(trials):.4f}, the mean of accuracy_per_trial.without_noise.pgd, got 99")


def test_per_image_outcomes_that_disagree_with_the_mean_are_refused(paper):
    path, values, settings = paper
    n = values["n"]
    stored = values["accuracy_per_trial"]["without_noise"]["pgd"]
    assert stored[0] < 1
    values["per_image"]["outcomes"]["without_noise"]["pgd"] = [encode(np.ones(n)) for _ in stored]  # "all correct"
    assert _refused(values, path, settings) == (
        f"{path}: field 'per_image.outcomes.without_noise.pgd[0]': expected outcomes whose mean is the stored "
        f"accuracy {100 * stored[0]:.2f} % (their mean: 100.00 %)")


@pytest.mark.parametrize("case, field, expected", [
    ("string accuracy", "accuracy_per_trial.without_noise.clean[0]", 'expected a fraction in [0, 1], got "0.5"'),
    ("list n", "n", "expected an integer >= 1, got [32]"),
    ("zero trials", "trials", "expected an integer >= 1, got 0"),
    ("bad base64", "per_image.outcomes", "expected outcomes that decode (unreadable per-image outcomes: "),
    ("other n", "subset.n", "expected the file's n (16), at most subset.of, got 32"),
    ("string seed", "seeds", 'expected a list of integer seeds, got [0, "1"]'),
])
def test_strings_lists_and_bad_encodings_are_refused_naming_the_field(paper, case, field, expected):
    path, values, settings = paper
    if case == "string accuracy":
        values["accuracy_per_trial"]["without_noise"]["clean"][0] = "0.5"
    elif case == "list n":
        values["n"] = [values["n"]]
    elif case == "zero trials":
        values["trials"] = 0
    elif case == "bad base64":
        values["per_image"]["outcomes"]["without_noise"]["clean"][0] = "not base64!"
    elif case == "other n":
        values["n"] = 16
    else:
        values["seeds"] = [0, "1"]
    assert _refused(values, path, settings).startswith(f"{path}: field {field!r}: {expected}")


def test_n_must_be_the_steps_subset(paper):
    path, values, settings = paper
    values["n"] = values["subset"]["n"] = values["per_image"]["n"] = 31
    message = _refused(values, path, settings)
    assert message == f"{path}: field 'n': expected 32 images, the step's subset, got 31"


def test_a_corrupted_results_json_is_not_done_and_the_step_reruns(vanilla, capsys):
    out, steps = vanilla
    step = steps[1]
    path = out / step.key / "results.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated
    capsys.readouterr()
    assert state(step, out) == ("todo", "invalid output")
    err = capsys.readouterr().err
    assert err.startswith(f"pni: warning: {path}: not valid JSON (truncated?): ")
    assert err.rstrip().endswith("; the step counts as not done and is rerun") and err.count("\n") == 1
    assert cli.main(["reproduce", "table2", "--scale", "smoke", "--only", "vanilla", "--out", str(out),
                     "--dry-run"]) == 0
    assert f"[todo invalid output] eval {step.key}" in capsys.readouterr().out
    stale = path.with_name(".results.json.0123456789ab.tmp")  # a killed write's leftover
    stale.write_text("{")
    lines: list[str] = []
    outcome = Runner(out, echo=lines.append).run(steps)
    assert outcome == {steps[0].key: "reused", step.key: "ran", steps[2].key: "reused"}
    assert not stale.exists() and json.loads(path.read_text())["n"] == 32
    assert state(step, out) == ("done", "")
    # a finished step always has its timing: written before step.json marks it done
    folder = out / step.key
    assert (folder / "timing.json").stat().st_mtime_ns <= (folder / "step.json").stat().st_mtime_ns


def test_edited_per_image_outcomes_make_the_step_rerun(vanilla):
    out, steps = vanilla
    step = steps[2]  # honest: several votes per image (counts)
    path = out / step.key / "results.json"
    values = json.loads(path.read_text())
    block = values["per_image"]
    first = next(iter(block["outcomes"]["without_noise"]))
    counts = np.full(block["n"], block["votes"], dtype=np.uint8)
    import zlib

    block["outcomes"]["without_noise"][first] = [base64.b64encode(zlib.compress(counts.tobytes())).decode()
                                              for _ in block["outcomes"]["without_noise"][first]]
    if all(a == 1 for a in values["accuracy_per_trial"]["without_noise"][first]):
        pytest.skip("every image already correct: nothing to contradict")
    path.write_text(json.dumps(values))
    assert state(step, out)[0] == "todo"
    assert Runner(out, echo=lambda line: None).run(steps)[step.key] == "ran"
    assert state(step, out)[0] == "done"


def test_a_negative_timing_is_left_out_of_the_dry_run(vanilla, capsys):
    from pni.reproduce.estimate import spent_seconds

    out, steps = vanilla
    path = out / steps[1].key / "timing.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "seconds": -1e9}))
    try:
        capsys.readouterr()
        spent, timed = spent_seconds(steps, out)
        assert spent >= 0 and timed == len(steps) - 1
        assert capsys.readouterr().err == (f"pni: warning: {path}: field 'seconds': expected a number of "
                                           f"seconds >= 0, got -1000000000.0; the step's time is left out of "
                                           f"the estimates\n")
        assert cli.main(["reproduce", "table2", "--scale", "smoke", "--only", "vanilla", "--out", str(out),
                         "--dry-run"]) == 0
        assert "the whole plan: about -" not in capsys.readouterr().out
    finally:
        path.write_text(json.dumps(record))


def test_a_stale_temp_file_of_the_slimmed_checkpoint_goes_when_the_run_is_reused(vanilla):
    out, steps = vanilla
    stale = out / steps[0].key / ".checkpoint.pt.0123456789ab.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert Runner(out, echo=lambda line: None).run(steps[:1]) == {steps[0].key: "reused"}
    assert not stale.exists()


def test_table1_alphas_come_from_the_checkpoint_not_the_log(tmp_path, capsys):
    import pni
    from pni.reproduce.results import _final_alphas

    config = pni.TrainConfig(model="lenet5", location="W", dataset="mnist-sample", train_subset=64, epochs=1,
                             steps=1, batch_size=64, eval_subset=0, progress=False)
    data = pni.load_dataset("mnist-sample", "train").subset(64)
    from pni.training.trainer import build_model, fit

    fit(build_model(config, data), data, config, out_dir=tmp_path)
    log = tmp_path / "train_log.jsonl"
    record = json.loads(log.read_text())
    real = copy.deepcopy(record["alphas"])
    layer = next(iter(real))
    record["alphas"][layer] = 7.5
    log.write_text(json.dumps(record) + "\n")
    capsys.readouterr()
    final = _final_alphas(tmp_path, config.to_dict())
    assert final["alphas"] == pytest.approx(real) and final["alphas"][layer] != 7.5
    assert capsys.readouterr().err == (f"pni: warning: {log}: field 'alphas' of epoch 1: expected the alphas of "
                                       f"{tmp_path / 'checkpoint.pt'}, got other values; the report uses the "
                                       f"checkpoint's\n")


def test_a_finished_run_killed_before_its_timing_gets_one_when_reused(vanilla):
    out, steps = vanilla
    timing = out / steps[0].key / "timing.json"
    timing.unlink()
    assert Runner(out, echo=lambda line: None).run(steps[:1]) == {steps[0].key: "reused"}
    record = read_timing(timing)
    assert record is not None and record["seconds"] == record["train_seconds_logged"] > 0


def test_the_report_does_not_print_an_edited_accuracy(vanilla, tmp_path, capsys):
    out, steps = vanilla
    path = out / steps[1].key / "results.json"
    good = path.read_text()
    values = json.loads(good)
    values["accuracy_percent"]["without_noise"]["pgd"]["mean"] = 150.0
    path.write_text(json.dumps(values))
    try:
        capsys.readouterr()
        report = tmp_path / "RESULTS.md"
        assert cli.main(["reproduce", "table2", "--scale", "smoke", "--only", "vanilla", "--out", str(out),
                         "--report", "--report-out", str(report)]) == 0
        text = report.read_text().replace(str(out), "").replace(str(tmp_path), "")  # (pytest-150/ in a path)
        assert "150" not in text
        assert (f"pni: warning: {path}: field 'accuracy_percent.without_noise.pgd.mean': expected a number in "
                f"[0, 100], got 150.0; the step counts as not done and is rerun\n") in capsys.readouterr().err
    finally:
        path.write_text(good)
