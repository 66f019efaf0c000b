"""Subsets are deterministic and class-stratified everywhere (issue 14), image folders do not
group their classes, a missing class is one warning line, and the top-level API exists."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pni
from pni.cli import app as cli
from pni.data import (
    DataError,
    at_most,
    class_counts,
    load_dataset,
    missing_classes,
    stratified_indices,
    subset_tensors,
    warn_missing_classes,
)
from pni.evaluation.evaluator import evaluate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASSES = [f"c{k}" for k in range(10)]


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNI_DATA", str(tmp_path / "pni-home"))  # imagefolder cache


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def class_sorted_folder(root: Path, per_class: dict[str, int], size: int = 4) -> Path:
    """<split>/<class>/<i>.png for train and test; pixel value = class index * 20 + i."""
    for split in ("train", "test"):
        for k, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class[split]):
                value = np.full((size, size), (k * 20 + i) % 256, np.uint8)
                (folder / f"{i:03d}.png").write_bytes(_png(value))
    return root


def _within_one(counts: list[int], n: int) -> bool:
    return all(abs(c - n / len(counts)) < 1 for c in counts)


# --- stratified_indices ----------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 10, 95, 333, 1000])
def test_stratified_indices_on_class_sorted_labels(n: int) -> None:
    labels = torch.arange(10).repeat_interleave(100)  # 100 of class 0, then 100 of class 1, ...
    index = stratified_indices(labels, n)
    assert index.dtype == torch.int64 and len(index) == n and len(set(index.tolist())) == n
    assert _within_one(class_counts(labels[index], 10), n)
    for prefix in (1, 3, 10, 25):  # the order is round-robin: every prefix is stratified too
        if prefix <= n:
            assert _within_one(class_counts(labels[index[:prefix]], 10), prefix)
    assert torch.equal(index, stratified_indices(labels.tolist(), n, seed=0))


def test_stratified_indices_seed_changes_the_draw_not_the_balance() -> None:
    labels = torch.arange(5).repeat_interleave(40)
    a, b = stratified_indices(labels, 50, seed=0), stratified_indices(labels, 50, seed=1)
    assert not torch.equal(a.sort().values, b.sort().values)
    assert class_counts(labels[a], 5) == class_counts(labels[b], 5) == [10] * 5


def test_stratified_indices_small_class_gives_all_it_has() -> None:
    labels = torch.tensor([0] * 2 + [1] * 50 + [2] * 50 + [3] * 7)
    counts = class_counts(labels[stratified_indices(labels, 40, seed=3)], 4)
    assert counts[0] == 2 and counts[3] == 7 and sorted(counts[1:3]) == [15, 16]
    assert class_counts(labels[stratified_indices(labels, len(labels))], 4) == [2, 50, 50, 7]


def test_stratified_indices_rejects_bad_counts() -> None:
    labels = torch.zeros(5, dtype=torch.int64)
    for bad in (6, -1, 2.5, True):
        with pytest.raises(DataError, match="cannot draw"):
            stratified_indices(labels, bad)
    with pytest.raises(DataError, match="negative label"):
        stratified_indices(torch.tensor([0, -1]), 1)


# --- image folders and Dataset.subset ------------------------------------------------

def test_subset_of_a_class_sorted_image_folder_has_every_class(tmp_path: Path) -> None:
    root = class_sorted_folder(tmp_path / "f", {"train": 9, "test": 5})
    train = load_dataset("imagefolder", "train", data_dir=root)
    assert train.labels[:10].tolist() != [0] * 10  # the folder does not come class by class
    assert sorted(train.labels[:10].tolist()) == list(range(10))
    for n in (10, 20, 37, 90):
        part = train.subset(n)
        counts = class_counts(part.labels, 10)
        assert _within_one(counts, n), (n, counts)
        info = part.subset_info
        assert info is not None and info["n"] == n and info["of"] == 90 and info["seed"] == 0
        assert info["method"] == "stratified" and list(info["per_class"].values()) == counts
        assert list(info["per_class"]) == CLASSES


def test_same_dataset_n_seed_give_the_same_subset(tmp_path: Path) -> None:
    root = class_sorted_folder(tmp_path / "f", {"train": 6, "test": 4})
    first = load_dataset("imagefolder", "test", data_dir=root).subset(20, seed=5)
    again = load_dataset("imagefolder", "test", data_dir=root).subset(20, seed=5)  # from the cache
    other = load_dataset("imagefolder", "test", data_dir=root).subset(20, seed=6)
    assert torch.equal(first.images, again.images) and first.subset_info == again.subset_info
    assert first.subset_info["indices_sha256"] != other.subset_info["indices_sha256"]
    assert first.subset_info["per_class"] == other.subset_info["per_class"] == dict.fromkeys(CLASSES, 2)


def test_explicit_indices_select_exactly_those_items() -> None:
    ds = load_dataset("mnist-sample", "test")
    picked = ds.subset([7, 3, 3, 0])
    assert torch.equal(picked.images, ds.images[[7, 3, 3, 0]])
    assert picked.subset_info["method"] == "indices" and picked.subset_info["seed"] is None
    mask = torch.zeros(len(ds), dtype=torch.bool)
    mask[[2, 9]] = True
    assert torch.equal(ds.subset(mask).labels, ds.labels[[2, 9]])


def test_at_most_and_subset_tensors() -> None:
    ds = load_dataset("mnist-sample", "test")
    assert at_most(ds, None) is ds and at_most(ds, 5000) is ds
    assert at_most(ds, 30).subset_info["per_class"] == {str(c): 3 for c in range(10)}
    x, y, record = subset_tensors(ds, 20)
    assert x.dtype == torch.float32 and class_counts(y, 10) == [2] * 10 and record["n"] == 20
    sorted_pair = (ds.images[ds.labels.argsort()], ds.labels.sort().values)
    x, y, record = subset_tensors(sorted_pair, 40, seed=2)
    assert class_counts(y, 10) == [4] * 10 and record["seed"] == 2 and record["of"] == 1000
    assert subset_tensors(sorted_pair, None)[2] is None


# --- missing classes -------------------------------------------------------------------

def test_missing_classes_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    labels = torch.tensor([0, 0, 2, 4])
    assert missing_classes(labels, 5) == [1, 3] and missing_classes(labels, 3) == [1]
    assert warn_missing_classes(labels, 5, "the test data", ["a", "b", "c", "d", "e"]) == [1, 3]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "1 (b), 3 (d)" in err and "the test data" in err
    assert warn_missing_classes(torch.arange(5), 5, "full") == []
    assert capsys.readouterr().err == ""


def test_evaluate_records_the_subset_and_warns_on_a_missing_class(capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_dataset("mnist-sample", "test")
    model = pni.create_model("lenet5", num_classes=10)
    result = evaluate(model, ds.subset(20), ["clean"], trials=1)
    assert result.to_json()["subset"]["per_class"] == {str(c): 2 for c in range(10)}
    assert "warning" not in capsys.readouterr().err
    only = torch.nonzero(ds.labels < 3).flatten()[:9]
    result = evaluate(model, ds.subset(only), ["clean"], trials=1)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "3 (3), 4 (4)" in err and "7 of the 10 classes" in err
    assert result.subset["method"] == "indices"
    x, y = ds.subset(only).tensors()
    evaluate(model, (x, y), ["clean"], trials=1)  # plain tensors: the model's num_classes
    assert "7 of the 10 classes" in capsys.readouterr().err
    assert pni.Evaluation.from_json(result.to_json()).subset == result.subset


# --- the CLI and the checkpoint paths -------------------------------------------------

@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-class, class-sorted 28x28 image folder and a LeNet-5 trained on it by the CLI."""
    tmp = tmp_path_factory.mktemp("folder-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNI_DATA", str(tmp / "pni-home"))
        root = class_sorted_folder(tmp / "f", {"train": 4, "test": 6}, size=28)
        code = cli.main(["train", "--preset", "mnist-lenet", "--scale", "smoke", "--dataset", "imagefolder",
                         "--data-dir", str(root), "--out", str(tmp / "run"), "--train-subset", "20",
                         "--eval-subset", "0", "--epochs", "1", "--adversarial", "false",
                         "--location", "none", "--milestones", "", "--progress", "false"])
    assert code == 0
    return root, tmp / "run" / "checkpoint.pt"


def test_cli_eval_n_20_on_a_10_class_folder_takes_two_of_each(folder_run, capsys, tmp_path) -> None:
    _, checkpoint = folder_run
    code = cli.main(["eval", str(checkpoint), "--num-images", "20", "--attacks", "clean", "--trials", "1",
                     "--protocol", "paper", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning" not in err
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["n"] == 20
    assert results["subset"]["per_class"] == dict.fromkeys(CLASSES, 2)
    assert results["subset"]["of"] == 60 and results["subset"]["seed"] == 0


def test_audit_and_transfer_record_their_subset(folder_run) -> None:
    from pni.attacks.transfer import transfer_checkpoints
    from pni.auditing import audit_checkpoint
    from pni.reports.audit import audit_markdown

    _, checkpoint = folder_run
    report = audit_checkpoint(checkpoint, n=30, items=[1], steps=2, train_surrogate_model=False)
    assert report.to_json()["subset"]["per_class"] == dict.fromkeys(CLASSES, 3)
    assert "class-stratified sample of 60" in audit_markdown(report)
    matrix = transfer_checkpoints([str(checkpoint), str(checkpoint)], n=10, trials=1, steps=1)
    assert matrix.to_json()["subset"]["per_class"] == dict.fromkeys(CLASSES, 1)


# --- the top-level API -----------------------------------------------------------------

def test_top_level_api() -> None:
    from pni.config import TrainConfig
    from pni.evaluation.evaluator import EvaluationError
    from pni.evaluation.evaluator import evaluate as evaluate_function
    from pni.training.trainer import fit

    assert pni.fit is fit and pni.TrainConfig is TrainConfig and pni.evaluate is evaluate_function
    assert callable(pni.attacks.pgd) and pni.EvaluationError is EvaluationError
    for name in ("fit", "evaluate", "TrainConfig", "attacks", "stratified_indices", "missing_classes"):
        assert name in pni.__all__


# --- slow: the real CIFAR-10 JPEG copy -------------------------------------------------

@pytest.mark.slow
def test_subset_of_the_cifar10_jpeg_zip_has_every_class() -> None:
    archive = SHARED / "cifar10-jpeg.zip"
    if not archive.exists():
        pytest.skip(f"{archive} not available")
    for split in ("train", "test"):
        ds = load_dataset("imagefolder", split, data_dir=archive)
        part = ds.subset(1000)
        assert class_counts(part.labels, 10) == [100] * 10
        assert torch.equal(part.images, ds.subset(1000).images)
        assert class_counts(ds.labels[:500], 10) == [50] * 10  # the loaded order mixes classes
