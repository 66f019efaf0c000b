"""scripts/gpu_step.py end to end on the CPU: a queue of smoke runs advanced step by step,
resumed across calls, exported as one tar per run."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_step  # noqa: E402

QUEUE = """# two smoke runs
first   mnist-lenet  smoke  epochs=2  progress=false
second  mnist-lenet  smoke  location=none  progress=false   # vanilla
"""


@pytest.fixture
def queue(tmp_path) -> Path:
    path = tmp_path / "runs" / "QUEUE"
    path.parent.mkdir()
    path.write_text(QUEUE)
    return path


def test_queue_lines_parse_into_typed_fields(queue):
    runs = gpu_step.read_queue(queue)
    assert [r.name for r in runs] == ["first", "second"]
    assert runs[0].fields == {"epochs": 2, "progress": False}
    assert runs[1].config("cpu").location is None


def test_a_short_step_trains_one_epoch_and_the_next_step_resumes_and_finishes(queue, tmp_path, capsys):
    runs = gpu_step.read_queue(queue)
    done, planned = gpu_step.train_for(runs[0], queue.parent, "cpu", minutes=1e-6)
    assert (done, planned) == (1, 2)
    out = tmp_path / "out"
    assert gpu_step.main(["--queue", str(queue), "--device", "cpu", "--max-minutes", "5",
                          "--export", str(out)]) == 0
    text = capsys.readouterr().out
    assert "resuming at epoch 1" in text and "first: 2 / 2 epochs" in text and "second: 1 / 1" in text
    with tarfile.open(out / "first.tar") as archive:
        assert sorted(archive.getnames()) == ["first/checkpoint.pt", "first/config.json",
                                              "first/train_log.jsonl"]
    assert (out / "second.tar").exists()
    assert gpu_step.main(["--queue", str(queue), "--device", "cpu"]) == 0
    assert "queue finished" in capsys.readouterr().out
    gpu_step.main(["--queue", str(queue), "--status"])
    assert "first" in capsys.readouterr().out


def test_a_malformed_queue_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "QUEUE"
    bad.write_text("run mnist-lenet smoke epochs=two\n")
    assert gpu_step.main(["--queue", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1" in err and len(err.strip().splitlines()) == 1


def test_unpack_extracts_a_data_pack_once(tmp_path):
    source = tmp_path / "src" / "train" / "cat"
    source.mkdir(parents=True)
    (source / "0.png").write_bytes(b"png")
    pack = tmp_path / "tiny.tar.xz"
    with tarfile.open(pack, "w:xz") as archive:
        archive.add(tmp_path / "src" / "train", arcname="train")
    target = gpu_step.unpack(pack, tmp_path / "data")
    assert target == tmp_path / "data" / "tiny" and (target / "train" / "cat" / "0.png").exists()
    assert gpu_step.unpack(pack, tmp_path / "data") == target  # already there: nothing to do
