"""scripts/gpu_step.py end to end on the CPU: a plan's training runs (Table 2 at smoke scale)
advanced within a time budget, reused by pni reproduce, exported as one tar per run; the
CIFAR-10 pack rebuilt as the zip the paper-scale plans name."""
from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pni.reproduce import Runner, get_plans, resolve, state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_step  # noqa: E402


def test_runs_are_the_plans_own_advanced_then_reused_and_exported(tmp_path, capsys):
    out, exported = tmp_path / "runs", tmp_path / "out"
    steps = [s for s in resolve(get_plans("table2"), "smoke") if s.kind == "train"]
    assert [s.key for s in gpu_step.train_steps("table2", "smoke", None, "cpu")] == [s.key for s in steps]
    stopped = Runner(out, "cpu", max_minutes=1e-4)
    assert stopped.run(steps) == {} and stopped.stopped_early  # no time: nothing starts
    assert gpu_step.main(["--plan", "table2", "--scale", "smoke", "--out", str(out), "--device", "cpu",
                          "--max-minutes", "5", "--export", str(exported)]) == 0
    text = capsys.readouterr().out
    assert "every training run is done" in text
    assert all(state(s, out)[0] == "done" for s in steps)
    with tarfile.open(exported / f"{steps[0].key}.tar") as archive:
        names = archive.getnames()
    assert {f"{steps[0].key}/{n}" for n in ("checkpoint.pt", "config.json", "train_log.jsonl")} <= set(names)
    assert gpu_step.main(["--plan", "table2", "--scale", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    assert "exported" not in capsys.readouterr().out  # nothing left to train: nothing touched
    gpu_step.main(["--plan", "table2", "--scale", "smoke", "--out", str(out), "--status"])
    assert f"{steps[0].key}" in capsys.readouterr().out


def test_paper_scale_with_a_data_dir_reads_the_jpeg_copy_and_names_it():
    steps = gpu_step.train_steps("table2", "paper", gpu_step.DATA, "cuda")
    assert len(steps) == 7
    assert all(s.config.dataset == "imagefolder" and s.config.data_dir == gpu_step.DATA for s in steps)
    assert all(s.config.epochs == 160 for s in steps)
    official = [s for s in resolve(get_plans("table2"), "paper") if s.kind == "train"]
    assert {s.key for s in steps}.isdisjoint(s.key for s in official)  # other data, other runs


def test_a_bad_plan_is_one_line(capsys):
    assert gpu_step.main(["--plan", "table9", "--status"]) == 2
    err = capsys.readouterr().err
    assert "table9" in err and len(err.strip().splitlines()) == 1


def test_pack_becomes_a_zip_once_that_pni_reads(tmp_path):
    import pni

    source = tmp_path / "src"
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = source / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    pack = tmp_path / "tiny.tar.xz"
    with tarfile.open(pack, "w:xz") as archive:
        archive.add(source / "train", arcname="train")
        archive.add(source / "test", arcname="test")
    target = gpu_step.zip_from_pack(pack, tmp_path / "data" / "tiny.zip")
    assert zipfile.ZipFile(target).testzip() is None
    data = pni.load_dataset("imagefolder", "train", str(target))
    assert len(data) == 4 and data.classes == ["cat", "dog"]
    stamp = target.stat().st_mtime_ns
    assert gpu_step.zip_from_pack(pack, target) == target and target.stat().st_mtime_ns == stamp


def test_tables_2_then_1_are_nine_runs_trained_together(tmp_path, capsys):
    """The default plans (Table 2, then Table 1's extra runs) are the 9 runs of Tables 1-2;
    ``--concurrent 3`` trains them three at a time, each as the plan's own run."""
    paper = gpu_step.train_steps("table2,table1", "paper", gpu_step.DATA, "cuda")
    assert len(paper) == 9
    assert paper[0].key == "resnet20-none-at-folder-fd203045"  # the float32 control, 74/160 epochs here
    out = tmp_path / "runs"
    steps = gpu_step.train_steps("table2,table1", "smoke", None, "cpu")
    assert gpu_step.main(["--scale", "smoke", "--out", str(out), "--device", "cpu", "--concurrent", "3",
                          "--max-minutes", "5"]) == 0
    text = capsys.readouterr().out
    assert text.count("together with 2 other run(s)") >= 3
    assert all(state(s, out)[0] == "done" for s in steps)
    assert gpu_step.main(["--status", "--concurrent", "x", "--max-minutes", "1", "--scale", "smoke",
                          "--out", str(out), "--device", "cpu"]) == 0  # --status: nothing trains
    assert gpu_step.main(["--concurrent", "0", "--scale", "smoke", "--out", str(out), "--device", "cpu"]) == 2
    assert "--concurrent must be a whole number >= 1 or auto" in capsys.readouterr().err
