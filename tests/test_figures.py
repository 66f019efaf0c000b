"""The paper's figures (Fig. 2, Fig. 3, the EOT curve), Table 1 and the multi-run report,
built from logs and results the tests write: the plotted series must equal the data."""
from __future__ import annotations

import json

import pytest
from PIL import Image

import pni
from pni.auditing import AuditItem, AuditReport, Sweep
from pni.checkpoint import FORMAT, atomic_save
from pni.models import model_meta
from pni.evaluation.evaluator import Evaluation
from pni.reports import (
    ReportError,
    alpha_table,
    alpha_table_from_checkpoints,
    plot_accuracy_curves,
    plot_alpha_history,
    plot_eot_curve,
    load_run,
    plot_alphas,
    plot_fig3,
    write_evaluation,
    write_runs_report,
)
from pni.files import write_json

LAYERS = ["conv0", "stage1.0.conv1", "stage1.0.conv2", "fc"]


def fake_history(epochs: int = 4) -> list[dict]:
    """A train log as `pni train` writes it: one record per epoch with the alphas."""
    return [{"epoch": e, "lr": 0.1, "test_clean_acc": 0.5 + 0.05 * e, "test_pgd_acc": 0.2 + 0.02 * e,
             "alphas": {f"{name}:W": round(0.25 + 0.01 * e * (i + 1), 4) for i, name in enumerate(LAYERS)}}
            for e in range(1, epochs + 1)]


def write_log(path, history) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in history))


def is_png(path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


def sweep(parameter, values, accuracy, label="") -> Sweep:
    return Sweep(parameter, list(values), list(accuracy), [0.0] * len(values), n=100, trials=1, label=label)


def test_fig2_plots_every_layers_alpha_over_epochs_from_the_log(tmp_path):
    history = fake_history()
    write_log(tmp_path / "train_log.jsonl", history)
    loaded = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    labels = pni.layer_labels(pni.create_model("resnet20"))
    series = plot_alpha_history(loaded, tmp_path / "fig2.png", labels)
    assert list(series) == ["Conv0", "Conv1.0", "Conv1.1", "FC"]
    for i, name in enumerate(LAYERS):
        label = labels[name]
        assert series[label]["x"] == [1, 2, 3, 4]
        assert series[label]["y"] == [r["alphas"][f"{name}:W"] for r in history]
    assert is_png(tmp_path / "fig2.png")
    # the older report.plot_alphas draws the same figure
    assert plot_alphas(loaded, tmp_path / "old.png", labels) == tmp_path / "old.png"
    assert is_png(tmp_path / "old.png")


def test_fig2_keeps_sites_apart_and_handles_a_log_without_noise(tmp_path):
    history = [{"epoch": 1, "alphas": {"conv0:W": 0.2, "conv0:A-a": 0.3}},
               {"epoch": 2, "alphas": {"conv0:W": 0.1, "conv0:A-a": 0.4}}]
    series = plot_alpha_history(history, tmp_path / "a.png", {"conv0": "Conv0"})
    assert series == {"Conv0 (W)": {"x": [1, 2], "y": [0.2, 0.1]},
                      "Conv0 (A-a)": {"x": [1, 2], "y": [0.3, 0.4]}}
    assert plot_alpha_history([{"epoch": 1, "alphas": {}}], tmp_path / "none.png") == {}
    assert is_png(tmp_path / "none.png")


def test_fig3_has_one_series_per_model_on_each_panel(tmp_path):
    eps_values = [0.0, 2 / 255, 4 / 255, 8 / 255]
    eps_curves = {"Vanilla adv. train": sweep("eps", eps_values, [0.84, 0.6, 0.5, 0.4]),
                  "PNI-W": sweep("eps", eps_values, [0.85, 0.7, 0.6, 0.45]).to_json()}  # JSON form too
    steps_curves = {"Vanilla adv. train": sweep("steps", [7, 20, 40, 100], [0.41, 0.40, 0.39, 0.39]),
                    "PNI-W": sweep("steps", [7, 20, 40, 100], [0.46, 0.45, 0.45, 0.45])}
    series = plot_fig3(eps_curves, steps_curves, tmp_path / "fig3.png")
    assert set(series) == {"eps", "steps"}
    assert list(series["eps"]) == ["Vanilla adv. train", "PNI-W"]
    assert series["eps"]["PNI-W"]["x"] == eps_values
    assert series["eps"]["PNI-W"]["y"] == pytest.approx([85, 70, 60, 45])
    assert series["steps"]["Vanilla adv. train"]["x"] == [7, 20, 40, 100]
    assert series["steps"]["Vanilla adv. train"]["y"] == pytest.approx([41, 40, 39, 39])
    assert is_png(tmp_path / "fig3.png")


def test_eot_curve_and_single_curves(tmp_path):
    curves = {"PNI-W": sweep("eot", [1, 2, 5, 10, 20, 30], [0.46, 0.40, 0.35, 0.33, 0.32, 0.32])}
    series = plot_eot_curve(curves, tmp_path / "eot.png")
    assert series["PNI-W"]["x"] == [1, 2, 5, 10, 20, 30]
    assert series["PNI-W"]["y"] == pytest.approx([46, 40, 35, 33, 32, 32])
    assert is_png(tmp_path / "eot.png")
    single = plot_accuracy_curves({"m": sweep("eps", [0.1, 0.2], [0.5, 0.25])}, tmp_path / "c.png", "eps")
    assert single == {"m": {"x": [0.1, 0.2], "y": pytest.approx([50, 25])}}


def test_table1_from_alphas_and_from_checkpoints(tmp_path):
    columns = {"Vanilla": {"conv0:W": 0.003, "fc:W": 0.002},
               "PNI-W": {"conv0:W": 0.146, "stage1.0.conv1:W": 0.081, "fc:W": 0.001}}
    labels = pni.layer_labels(pni.create_model("resnet20"))
    table = alpha_table(columns, labels, footer={"Clean": {"PNI-W": "84.89±0.11"}})
    lines = table.strip().splitlines()
    assert lines[0] == "| Layer | Vanilla | PNI-W |"
    assert "| Conv0 | 0.003 | 0.146 |" in lines
    assert "| Conv1.0 | - | 0.081 |" in lines
    assert "| FC | 0.002 | 0.001 |" in lines
    assert lines[-1] == "| **Clean** | - | 84.89±0.11 |"

    model = pni.inject(pni.create_model("lenet5"), "W")
    for i, alpha in enumerate(pni.alpha_parameters(model)):
        alpha.data.fill_(0.1 * (i + 1))
    path = tmp_path / "pni-w" / "checkpoint.pt"
    atomic_save({"format": FORMAT, "model": model.state_dict(), "model_meta": model_meta(model)}, path)
    table = alpha_table_from_checkpoints([path])
    assert table.splitlines()[0] == "| Layer | pni-w |"
    assert "| Conv0 | 0.100 |" in table and "| FC2 | 0.500 |" in table


def _evaluation(clean: float, pgd: float, with_noise: bool) -> Evaluation:
    settings = ["with_noise", "without_noise"] if with_noise else ["without_noise"]
    ev = Evaluation(attacks={"clean": {}, "pgd": {"eps": 0.3, "steps": 7}}, trials=2, seeds=[0, 1], n=100)
    for s in settings:
        ev.accuracies[s] = {"clean": [clean, clean], "pgd": [pgd, pgd + 0.02]}
    return ev


def _audit(label: str, fail_item: int | None) -> AuditReport:
    items = [AuditItem(n, f"item {n}", n != fail_item, {"x": n}, f"rule {n}", f"summary {n}")
             for n in (1, 3, 5, 6, 7)]
    sweeps = {"eps": sweep("eps", [0.0, 0.1, 0.3], [0.9, 0.5, 0.1], label),
              "steps": sweep("steps", [10, 20], [0.12, 0.1], label),
              "eot": sweep("eot", [1, 4], [0.1, 0.08], label)}
    return AuditReport(label, items, {"eps": 0.3, "z": 2.0, "tol_floor": 0.01}, 100, False, 0.9, sweeps)


def make_run(folder, location, clean, pgd, fail_item=None) -> None:
    folder.mkdir(parents=True)
    config = {"model": "resnet20", "dataset": "cifar10", "location": location, "eps": 8 / 255}
    (folder / "config.json").write_text(json.dumps(config))
    history = fake_history(3)
    if location is None:
        for record in history:
            record["alphas"] = {}
    write_log(folder / "train_log.jsonl", history)
    write_evaluation(_evaluation(clean, pgd, location is not None), folder / "eval", folder.name)
    write_json(_audit(folder.name, fail_item).to_json(), folder / "audit" / "audit.json")


def test_evaluation_json_round_trip(tmp_path):
    ev = _evaluation(0.8, 0.4, True)
    again = Evaluation.from_json(json.loads(json.dumps(ev.to_json())))
    assert again.summary() == ev.summary() and again.trials == 2 and again.n == 100
    with pytest.raises(ValueError, match="pni eval"):
        Evaluation.from_json({"n": 3})


def test_report_gathers_several_runs_like_the_paper(tmp_path):
    make_run(tmp_path / "vanilla", None, 0.84, 0.40)
    make_run(tmp_path / "pni-w", "W", 0.85, 0.45, fail_item=7)
    out = tmp_path / "report"
    paths = write_runs_report([tmp_path / "vanilla", tmp_path / "pni-w"], out, title="Two runs")
    text = paths["markdown"].read_text()
    assert text.startswith("# Two runs")
    # runs table, with the last epoch's metrics from the log
    assert "| vanilla | resnet20 | none | cifar10 | 3 | 0.03137 | 65.00 / 26.00 |" in text
    assert "| pni-w | resnet20 | PNI-W | cifar10 | 3 |" in text
    # Table 1: alphas of the last epoch under the paper's labels, accuracy rows below
    assert "| Layer | pni-w |" in text
    assert "| Conv0 | 0.280 |" in text and "| FC | 0.370 |" in text
    assert "| **PGD** | 46.00±1.00 |" in text
    # Table 2: both noise settings, the vanilla run only without noise
    with_noise, without_noise = text.split("**Test with PNI**")[1].split("**Test without PNI**")
    assert "| pni-w | 85.00±0.00 | 46.00±1.00 |" in with_noise and "| vanilla |" not in with_noise
    assert "| pni-w | 85.00±0.00 | 46.00±1.00 |" in without_noise.split("##")[0]
    assert "| vanilla | 84.00±0.00 | 41.00±1.00 |" in without_noise
    # Table 7 matrix: verdict per run, the rule of each item
    assert "| 7 | EOT samples | pass | **FAIL** |" in text
    assert "- Rule 3 (fails when): rule 3" in text
    assert "- 7. item 7: FAIL: summary 7" in text
    for name in ("fig2_pni-w.png", "fig3.png", "eot.png"):
        assert f"]({name})" in text and is_png(out / name)
    assert "fig2_vanilla.png" not in text  # no noise, no Fig. 2


def test_report_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="holds none of"):
        load_run(tmp_path / "empty")
    (tmp_path / "bad" / "audit").mkdir(parents=True)
    (tmp_path / "bad" / "audit" / "audit.json").write_text("{not json")
    with pytest.raises(ReportError, match="audit.json"):
        load_run(tmp_path / "bad")
    with pytest.raises(ReportError, match="no run folders"):
        write_runs_report([], tmp_path / "out")


def test_runs_with_the_same_folder_name_get_distinct_labels(tmp_path):
    make_run(tmp_path / "a" / "run", "W", 0.8, 0.4)
    make_run(tmp_path / "b" / "run", "W", 0.7, 0.3)
    text = write_runs_report([tmp_path / "a" / "run", tmp_path / "b" / "run"],
                             tmp_path / "out")["markdown"].read_text()
    assert "| Layer | run | run-2 |" in text
    assert "| 1 | One-step vs iterative attack | pass | pass |" in text
