"""Tests for pni.data: file formats, error messages, caching, downloads and batching."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.util
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pni import data
from pni.data import BatchLoader, DataError, Dataset, as_tensors, load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point PNI_DATA (default data dir and imagefolder cache) into tmp_path."""
    home = tmp_path / "pni-home"
    monkeypatch.setenv("PNI_DATA", str(home))
    return home


# --------------------------------------------------------------------------- helpers


def idx(array: np.ndarray) -> bytes:
    """Independent IDX encoder: 0x00 0x00 0x08 ndim, big-endian dims, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist(folder: Path, gz: bool = True, n_train: int = 12, n_test: int = 7,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four IDX files with random content; return the arrays per split."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write(folder / f"{prefix}-images-idx3-ubyte", idx(images), gz)
        write(folder / f"{prefix}-labels-idx1-ubyte", idx(labels), gz)
        out[split] = (images, labels)
    return out


def cifar_members(
    seed: int = 0, per_batch: int = 3
) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Pickled members of a tiny official-layout CIFAR-10 (bytes keys, protocol 2)."""
    rng = np.random.default_rng(seed)
    members, arrays = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": pixels,
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        members[name] = pickle.dumps(batch, protocol=2)
        arrays[name] = pixels
        arrays[name + ".labels"] = np.array(labels)
    meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
            b"label_names": [n.encode() for n in CIFAR_NAMES]}
    members["batches.meta"] = pickle.dumps(meta, protocol=2)
    return members, arrays


def expected_cifar(arrays: dict[str, np.ndarray], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images = np.concatenate([arrays[n] for n in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([arrays[n + ".labels"] for n in names])
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def write_cifar_folder(root: Path, members: dict[str, bytes]) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, payload in members.items():
        (folder / name).write_bytes(payload)
    return folder


def cifar_archive_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def imagefolder_files(seed: int = 0, size: int = 6, gray: bool = False
                      ) -> tuple[dict[str, bytes], dict[str, list[np.ndarray]]]:
    """{relative path: PNG bytes} for train/test with classes 'cat', 'ant' (unsorted)."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    arrays: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, per_class in (("train", 3), ("test", 2)):
        for cls in ("ant", "cat"):  # sorted order: label 0 = ant, 1 = cat
            for i in range(per_class):
                shape = (size, size) if gray else (size, size, 3)
                array = rng.integers(0, 256, shape, dtype=np.uint8)
                files[f"{split}/{cls}/{i:03d}.png"] = png(array)
                arrays[split].append(array)
    return files, arrays


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, payload in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return root


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, payload in files.items():
            zf.writestr(prefix + rel, payload)
    return path


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        ds = load_dataset("mnist", split, data_dir=tmp_path)
        images, labels = arrays[split]
        assert ds.name == "mnist" and ds.split == split and len(ds) == len(labels)
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(labels), 1, 28, 28)
        assert ds.images.is_contiguous() and ds.labels.dtype == torch.int64
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels).long())
        assert ds.classes == [str(d) for d in range(10)]
        assert ds.mean == (0.1307,) and ds.std == (0.3081,) and ds.image_shape == (1, 28, 28)


@pytest.mark.parametrize("sub", ["", "mnist", "MNIST/raw"])
def test_idx_folder_layouts(tmp_path: Path, sub: str) -> None:
    arrays = write_mnist(tmp_path / sub if sub else tmp_path)
    ds = load_dataset("mnist", "test", data_dir=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))


def test_fashion_mnist_prefers_its_own_folder(tmp_path: Path) -> None:
    write_mnist(tmp_path, seed=1)  # MNIST files at the top level must not be picked up
    arrays = write_mnist(tmp_path / "fashion-mnist", seed=2)
    ds = load_dataset("fashion-mnist", "train", data_dir=str(tmp_path))
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    assert ds.mean == (0.2860,) and ds.std == (0.3530,)


def test_encode_idx_matches_reader(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert data.encode_idx(array) == idx(array)
    path = write(tmp_path / "x-idx3-ubyte", idx(array), gz=True)
    assert np.array_equal(data.read_idx(path, data.IDX_IMAGES_MAGIC), array)


def _break_images(path: Path, how: str) -> None:
    raw = gzip.decompress(path.read_bytes())
    if how == "bad-magic":
        raw = bytes([0, 0, 8, 2]) + raw[4:]
    elif how == "truncated":
        raw = raw[:-5]
    elif how == "extra-bytes":
        raw = raw + b"\x00\x01\x02"
    elif how == "count-mismatch":
        raw = idx(np.zeros((3, 28, 28), dtype=np.uint8))
    elif how == "corrupt-gzip":
        path.write_bytes(path.read_bytes()[:40] + b"garbage" * 10)
        return
    path.write_bytes(gzip.compress(raw))


@pytest.mark.parametrize("how, words", [
    ("bad-magic", "magic"),
    ("truncated", "truncated"),
    ("extra-bytes", "extra bytes"),
    ("count-mismatch", "labels"),
    ("corrupt-gzip", "gzip"),
])
def test_idx_errors_name_the_file(tmp_path: Path, how: str, words: str) -> None:
    write_mnist(tmp_path)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    _break_images(target, how)
    with pytest.raises(DataError, match=words) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_idx_plain_file_truncated_header(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0]))
    with pytest.raises(DataError, match="truncated IDX header") as info:
        load_dataset("mnist", "train", data_dir=tmp_path)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx(np.full(7, 10, np.uint8)), gz=True)
    with pytest.raises(DataError, match="out of range"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_idx_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "mnist") in message and "searched" in message
    assert "download=True" in message                      # the way to fetch them (tests/test_data_download.py)


def test_idx_half_pair_missing(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PNI_DATA", str(tmp_path / "d"))
    assert data.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("PNI_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "pni"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_data_dir() == Path.home() / ".cache" / "pni"


def test_env_data_dir_is_used(tmp_path: Path, _isolated_data_dir: Path) -> None:
    arrays = write_mnist(_isolated_data_dir / "mnist")
    ds = load_dataset("mnist", "train")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train"][0]))


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_folder(tmp_path: Path) -> None:
    members, arrays = cifar_members()
    write_cifar_folder(tmp_path, members)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, data_dir=tmp_path)
        images, labels = expected_cifar(arrays, split)
        assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
        assert ds.classes == CIFAR_NAMES and ds.image_shape == (3, 32, 32)
        assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    assert len(load_dataset("cifar10", "train", data_dir=tmp_path)) == 15


def test_cifar_pixel_layout(tmp_path: Path) -> None:
    """Row of 3072 values = R plane, G plane, B plane, each 32x32 row-major."""
    members, arrays = cifar_members()
    write_cifar_folder(tmp_path, members)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    row = arrays["test_batch"][1]
    assert ds.images[1, 1, 2, 5] == row[1024 + 2 * 32 + 5]
    assert ds.images[1, 2, 31, 31] == row[3071]


def test_cifar_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members, arrays = cifar_members()
    payload = cifar_archive_bytes(members)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(payload)
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(payload))
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, data_dir=tmp_path)
        images, labels = expected_cifar(arrays, split)
        assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
        assert ds.classes == CIFAR_NAMES
    assert not (tmp_path / "cifar-10-batches-py").exists()  # read in place


def test_cifar_archive_md5_mismatch(tmp_path: Path) -> None:
    payload = cifar_archive_bytes(cifar_members()[0])
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(payload)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "train", data_dir=tmp_path)
    message = str(info.value)
    assert data.cifar10.CIFAR10_MD5 in message and md5(payload) in message and str(archive) in message


def test_cifar_archive_missing_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = cifar_members()[0]
    del members["data_batch_3"]
    payload = cifar_archive_bytes(members)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(payload)
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(payload))
    assert len(load_dataset("cifar10", "test", data_dir=tmp_path)) == 3
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", "train", data_dir=tmp_path)


def test_cifar_folder_missing_batch(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path, cifar_members()[0])
    (folder / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"batches\.meta"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [
    b"not a pickle at all",
    pickle.dumps([1, 2, 3], protocol=2),
    pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2),
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, protocol=2),
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2),
    pickle.dumps(_Evil(), protocol=2),
], ids=["garbage", "not-dict", "bad-shape", "bad-label", "no-labels", "foreign-global"])
def test_cifar_malformed_pickle(tmp_path: Path, payload: bytes) -> None:
    folder = write_cifar_folder(tmp_path, cifar_members()[0])
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert "test_batch" in str(info.value)
    if b"system" in payload:
        assert "refusing to load global" in str(info.value)


def test_cifar_accepts_str_keys(tmp_path: Path) -> None:
    members, arrays = cifar_members()
    batch = {"data": arrays["test_batch"], "labels": list(arrays["test_batch.labels"])}
    members["test_batch"] = pickle.dumps(batch, protocol=4)
    write_cifar_folder(tmp_path, members)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert torch.equal(ds.images, expected_cifar(arrays, "test")[0])


def test_cifar_numpy1_style_pickles(tmp_path: Path) -> None:
    """The official files were pickled by numpy 1 (numpy.core.multiarray globals)."""
    members, arrays = cifar_members()
    legacy = {name: payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
              for name, payload in members.items()}
    assert b"numpy.core.multiarray\n_reconstruct" in legacy["test_batch"]
    write_cifar_folder(tmp_path, legacy)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert torch.equal(ds.images, expected_cifar(arrays, "test")[0])


def test_cifar_missing_mentions_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download=True"):
        load_dataset("cifar10", "train", data_dir=tmp_path)


# --------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving files from a temp folder."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_cifar10(tmp_path: Path, http_site: tuple[Path, str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    members, arrays = cifar_members()
    payload = cifar_archive_bytes(members)
    www, base = http_site
    (www / "cifar.tar.gz").write_bytes(payload)
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", f"{base}/cifar.tar.gz")
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(payload))
    root = tmp_path / "data"
    ds = load_dataset("cifar10", "train", data_dir=root, download=True)
    images, labels = expected_cifar(arrays, "train")
    assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert (root / "cifar-10-python.tar.gz").read_bytes() == payload
    (www / "cifar.tar.gz").unlink()  # already present: no second download
    assert len(load_dataset("cifar10", "test", data_dir=root, download=True)) == 3


def test_download_corrupted_is_rejected(tmp_path: Path, http_site: tuple[Path, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    payload = cifar_archive_bytes(cifar_members()[0])
    www, base = http_site
    (www / "cifar.tar.gz").write_bytes(payload[:-10] + b"0123456789")
    url = f"{base}/cifar.tar.gz"
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", url)
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(payload))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="md5") as info:
        load_dataset("cifar10", "train", data_dir=root, download=True)
    assert url in str(info.value) and md5(payload) in str(info.value)
    assert list(root.iterdir()) == []


def test_download_network_error(tmp_path: Path, http_site: tuple[Path, str]) -> None:
    _, base = http_site
    root = tmp_path / "data"
    with pytest.raises(DataError, match="could not download") as info:
        data.download_cifar10(root, url=f"{base}/missing.tar.gz", progress=False)
    assert f"{base}/missing.tar.gz" in str(info.value)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar.tar.gz"
    with pytest.raises(DataError, match="could not download") as info:
        data.download_cifar10(root, url=url, progress=False)
    assert url in str(info.value)
    assert list(root.iterdir()) == []


# --------------------------------------------------------------------------- imagefolder


def _stack(arrays: list[np.ndarray], classes: int = 2) -> torch.Tensor:
    """The images of ``imagefolder_files`` (grouped by class) in the loader's order:
    round-robin over the classes."""
    per_class = len(arrays) // classes
    order = [arrays[k * per_class + i] for i in range(per_class) for k in range(classes)]
    stacked = torch.from_numpy(np.stack(order))
    return stacked.unsqueeze(1) if stacked.ndim == 3 else stacked.permute(0, 3, 1, 2)


def test_imagefolder_from_folder(tmp_path: Path) -> None:
    files, arrays = imagefolder_files()
    root = write_tree(tmp_path / "imgs", files)
    (root / "train" / "ant" / "notes.txt").write_text("ignored")
    for split in ("train", "test"):
        ds = load_dataset("imagefolder", split, data_dir=root)
        assert ds.name == "imagefolder" and ds.classes == ["ant", "cat"]
        assert torch.equal(ds.images, _stack(arrays[split]))
        per_class = len(arrays[split]) // 2
        assert ds.labels.tolist() == [0, 1] * per_class  # classes interleaved, not grouped
        expected = ds.images.double().div(255)
        assert ds.mean == pytest.approx(expected.mean(dim=(0, 2, 3)).tolist())
        assert ds.std == pytest.approx(expected.std(dim=(0, 2, 3), unbiased=False).tolist())


@pytest.mark.parametrize("prefix", ["", "wrapped/"])
def test_imagefolder_from_zip(tmp_path: Path, prefix: str) -> None:
    files, arrays = imagefolder_files(gray=True)
    archive = write_zip(tmp_path / "imgs.zip", files, prefix)
    ds = load_dataset("imagefolder", "test", data_dir=archive)
    assert ds.image_shape == (1, 6, 6) and len(ds.mean) == 1
    assert torch.equal(ds.images, _stack(arrays["test"]))


def test_imagefolder_mixed_gray_and_jpeg(tmp_path: Path) -> None:
    rgb = np.full((4, 4, 3), (10, 200, 30), np.uint8)
    gray = np.full((4, 4), 77, np.uint8)
    files = {"train/a/0.png": png(rgb), "train/a/1.PNG": png(gray),
             "train/b/2.jpg": png(rgb, "JPEG")}
    ds = load_dataset("imagefolder", "train", data_dir=write_tree(tmp_path / "f", files))
    assert ds.image_shape == (3, 4, 4)
    assert torch.equal(ds.images[0], torch.tensor([10, 200, 30], dtype=torch.uint8)[:, None, None]
                       .expand(3, 4, 4))
    # order: a/0, b/2, a/1 (round-robin over the classes)
    assert bool((ds.images[2] == 77).all())
    assert (ds.images[1].int() - ds.images[0].int()).abs().max() <= 8  # JPEG is lossy


def test_imagefolder_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           _isolated_data_dir: Path) -> None:
    files, _ = imagefolder_files()
    archive = write_zip(tmp_path / "imgs.zip", files)
    first = load_dataset("imagefolder", "train", data_dir=archive)
    assert len(list((_isolated_data_dir / "cache").glob("*.pt"))) == 1

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data.imagefolder, "_decode_images", no_decode)
    second = load_dataset("imagefolder", "train", data_dir=archive)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert (first.classes, first.mean, first.std) == (second.classes, second.mean, second.std)
    with pytest.raises(AssertionError, match="decoded again"):  # other split: not cached
        load_dataset("imagefolder", "test", data_dir=archive)
    monkeypatch.undo()
    monkeypatch.setenv("PNI_DATA", str(_isolated_data_dir))
    write_zip(archive, imagefolder_files(seed=1)[0])  # content changed: cache invalid
    os.utime(archive, ns=(1, 1))
    third = load_dataset("imagefolder", "train", data_dir=archive)
    assert not torch.equal(first.images, third.images)


def test_imagefolder_corrupt_cache_is_ignored(tmp_path: Path, _isolated_data_dir: Path) -> None:
    files, arrays = imagefolder_files()
    root = write_tree(tmp_path / "imgs", files)
    load_dataset("imagefolder", "test", data_dir=root)
    (cache,) = (_isolated_data_dir / "cache").glob("*.pt")
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="cache"):
        ds = load_dataset("imagefolder", "test", data_dir=root)
    assert torch.equal(ds.images, _stack(arrays["test"]))


def test_imagefolder_zip_without_class_folders(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "flat.zip", {"a.png": png(np.zeros((2, 2), np.uint8)),
                                                 "b.png": png(np.zeros((2, 2), np.uint8))})
    with pytest.raises(DataError, match=r"train/<class>/") as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    assert "a.png" in str(info.value) and "flat.zip" in str(info.value)


def test_imagefolder_mixed_sizes(tmp_path: Path) -> None:
    files = {"train/a/0.png": png(np.zeros((4, 4), np.uint8)),
             "train/b/1.png": png(np.zeros((5, 4), np.uint8))}
    archive = write_zip(tmp_path / "sizes.zip", files)
    with pytest.raises(DataError, match="4x5") as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    assert "train/b/1.png" in str(info.value) and "4x4" in str(info.value)


def test_imagefolder_unreadable_image(tmp_path: Path) -> None:
    files = {"train/a/0.png": png(np.zeros((4, 4), np.uint8)), "train/a/1.png": b"broken"}
    with pytest.raises(DataError, match=r"1\.png"):
        load_dataset("imagefolder", "train", data_dir=write_tree(tmp_path / "f", files))


def test_imagefolder_empty_class(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "f", {"train/a/0.png": png(np.zeros((4, 4), np.uint8))})
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_dataset("imagefolder", "train", data_dir=root)


def test_imagefolder_split_class_mismatch(tmp_path: Path) -> None:
    image = png(np.zeros((4, 4), np.uint8))
    root = write_tree(tmp_path / "f", {"train/a/0.png": image, "train/b/0.png": image,
                                       "test/b/0.png": image})
    with pytest.raises(DataError, match="differ"):
        load_dataset("imagefolder", "test", data_dir=root)


def test_imagefolder_needs_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data_dir"):
        load_dataset("imagefolder", "train")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", "train", data_dir=tmp_path / "nope.zip")


# --------------------------------------------------------------------------- mnist-sample


def test_mnist_sample() -> None:
    train, test = load_dataset("mnist-sample", "train"), load_dataset("mnist-sample", "test")
    assert (len(train), len(test)) == (5000, 1000)
    for ds in (train, test):
        assert ds.image_shape == (1, 28, 28) and ds.classes == [str(d) for d in range(10)]
        assert set(ds.labels.tolist()) == set(range(10)) and ds.mean == (0.1307,)
    assert load_dataset("mnist-sample", "test", data_dir="/nonexistent").labels.equal(test.labels)
    official = SHARED / "mnist"
    if not official.is_dir():
        pytest.skip(f"{official} not available for the pixel comparison")
    images = data.read_idx(official / "t10k-images-idx3-ubyte.gz", data.IDX_IMAGES_MAGIC)
    labels = data.read_idx(official / "t10k-labels-idx1-ubyte.gz", data.IDX_LABELS_MAGIC)
    both = torch.cat([train.images, test.images])
    assert torch.equal(both[:, 0], torch.from_numpy(images[:6000]))
    both_labels = torch.cat([train.labels, test.labels])
    assert torch.equal(both_labels, torch.from_numpy(labels[:6000]).long())


def test_make_sample_is_reproducible(tmp_path: Path) -> None:
    if not (SHARED / "mnist").is_dir():
        pytest.skip("official MNIST files not available")
    script = REPO / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--mnist-dir", str(SHARED / "mnist"), "--out", str(tmp_path)])
    packaged = REPO / "src" / "pni" / "_sample"
    for name in (data.SAMPLE_IMAGES, data.SAMPLE_LABELS):
        assert (tmp_path / name).read_bytes() == (packaged / name).read_bytes()
    assert sum((packaged / n).stat().st_size for n in (data.SAMPLE_IMAGES, data.SAMPLE_LABELS)) \
        < 2_000_000


# --------------------------------------------------------------------------- names, tensors


def test_unknown_name_and_split() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("imagenet", "train")
    assert all(name in str(info.value) for name in data.DATASETS)
    with pytest.raises(DataError, match="train, test"):
        load_dataset("mnist-sample", "val")


def test_as_tensors() -> None:
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(5)
    x, y = as_tensors((images, labels))
    assert x.dtype == torch.float32 and torch.equal(x, images.float() / 255)
    assert y.dtype == torch.int64 and torch.equal(y, labels)
    floats = torch.rand(5, 3, 4, 4)
    assert torch.equal(as_tensors((floats, labels.int()))[0], floats)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        as_tensors((floats * 2, labels))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        as_tensors((floats - 0.5, labels))
    with pytest.raises(DataError, match="NaN"):
        as_tensors((torch.full((5, 3, 4, 4), float("nan")), labels))
    with pytest.raises(DataError, match="labels for 5 images"):
        as_tensors((images, labels[:4]))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        as_tensors((images[0], labels))
    with pytest.raises(DataError, match="integer"):
        as_tensors((images, labels.float()))


def test_dataset_subset_and_tensors() -> None:
    ds = load_dataset("mnist-sample", "test")
    ten = ds.subset(10)  # class-stratified: one image of each digit
    assert sorted(ten.labels.tolist()) == list(range(10))
    assert ten.subset_info is not None and ten.subset_info["method"] == "stratified"
    picked = ds.subset([5, 1, 5])
    assert torch.equal(picked.labels, ds.labels[[5, 1, 5]]) and picked.classes == ds.classes
    assert picked.subset_info is not None and picked.subset_info["method"] == "indices"
    assert torch.equal(ds.subset(torch.tensor([3])).images, ds.images[3:4])
    with pytest.raises(DataError, match="cannot draw 2000 of 1000"):
        ds.subset(2000)
    with pytest.raises(DataError, match=r"\[0, 1000\)"):
        ds.subset([1000])
    x, _ = ds.subset(4).tensors()
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and float(x.max()) <= 1.0
    assert "n=1000" in repr(ds)
    with pytest.raises(DataError, match="uint8"):
        Dataset("x", "train", torch.zeros(2, 1, 2, 2), torch.zeros(2), ["a"], (0.0,), (1.0,))


# --------------------------------------------------------------------------- BatchLoader


def _toy(n: int = 50, shape: tuple[int, int, int] = (3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # identify samples by one pixel
    return images, torch.arange(n)


def _ids(loader: BatchLoader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


def test_loader_shapes_and_order() -> None:
    images, labels = _toy(50)
    loader = BatchLoader((images, labels), 16)
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.dtype == torch.int64 and torch.equal(x, images[:16].float() / 255)
    assert _ids(loader) == list(range(50))
    assert len(BatchLoader((images, labels), 16, drop_last=True)) == 3


def test_loader_from_dataset_channels_last() -> None:
    ds = load_dataset("mnist-sample", "test").subset(64)
    loader = BatchLoader(ds, 32, channels_last=True, augment="auto")
    assert loader.augment == "none"
    x, y = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, ds.images[:32].float() / 255) and torch.equal(y, ds.labels[:32])


def test_loader_shuffle_determinism() -> None:
    data_ = _toy(50)
    a = BatchLoader(data_, 8, shuffle=True, augment="crop-flip", seed=3)
    b = BatchLoader(data_, 8, shuffle=True, augment="crop-flip", seed=3)
    for loader in (a, b):
        loader.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(_ids(a)) == list(range(50)) and _ids(a) != list(range(50))
    first = _ids(a)
    a.set_epoch(3)
    assert _ids(a) != first
    other_seed = BatchLoader(data_, 8, shuffle=True, seed=4)
    assert _ids(other_seed) != _ids(BatchLoader(data_, 8, shuffle=True, seed=3))


@pytest.mark.parametrize("n, drop_last", [(48, False), (50, False), (50, True), (3, False)])
def test_loader_shards(n: int, drop_last: bool) -> None:
    data_ = _toy(n)
    shards = [BatchLoader(data_, 5, shuffle=True, seed=1, rank=r, world_size=2, drop_last=drop_last)
              for r in range(2)]
    for loader in shards:
        loader.set_epoch(7)
    ids = [_ids(loader) for loader in shards]
    assert len(shards[0]) == len(shards[1]) == len(list(shards[0]))
    assert len(ids[0]) == len(ids[1])
    if drop_last:
        assert not set(ids[0]) & set(ids[1]) and len(ids[0]) % 5 == 0
    elif n % 2 == 0:
        assert not set(ids[0]) & set(ids[1]) and sorted(ids[0] + ids[1]) == list(range(n))
    else:  # padded by wrap-around: everything covered, at most world_size - 1 repeats
        assert set(ids[0]) | set(ids[1]) == set(range(n)) and len(ids[0]) + len(ids[1]) == n + 1


def _position_images(n: int) -> torch.Tensor:
    """Channel 0 = row + 1, channel 1 = column + 1, channel 2 = 255 (padding shows as 0)."""
    rows = torch.arange(1, 33, dtype=torch.uint8)[:, None].expand(32, 32)
    cols = torch.arange(1, 33, dtype=torch.uint8)[None, :].expand(32, 32)
    one = torch.stack([rows, cols, torch.full((32, 32), 255, dtype=torch.uint8)])
    return one.expand(n, 3, 32, 32).contiguous()


def _find_transform(image: torch.Tensor, source: torch.Tensor) -> tuple[int, int, bool]:
    """The unique (dy, dx, flip) with image == crop of the 4-padded source."""
    padded = torch.nn.functional.pad(source, (4, 4, 4, 4))
    matches = []
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flip in (False, True):
                if torch.equal(image, crop.flip(-1) if flip else crop):
                    matches.append((dy, dx, flip))
    assert len(matches) == 1, matches
    return matches[0]


def test_crop_flip_moves_content() -> None:
    images = _position_images(64)
    loader = BatchLoader((images, torch.zeros(64, dtype=torch.long)), 64, augment="auto", seed=5)
    assert loader.augment == "crop-flip"
    (x, _), = list(loader)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    found = [_find_transform((xi * 255).round().to(torch.uint8), images[0]) for xi in x]
    assert {f for _, _, f in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 10
    assert any(dy != 4 or dx != 4 for dy, dx, _ in found)
    loader.set_epoch(1)
    (x2, _), = list(loader)
    assert not torch.equal(x, x2)


def test_crop_flip_on_float_and_ranks_differ() -> None:
    images = _position_images(16).float() / 255
    g = torch.Generator().manual_seed(0)
    out = data.crop_flip(images, g)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    pair = (_position_images(32), torch.zeros(32, dtype=torch.long))
    r0 = next(iter(BatchLoader(pair, 16, augment="crop-flip", rank=0, world_size=2)))[0]
    r1 = next(iter(BatchLoader(pair, 16, augment="crop-flip", rank=1, world_size=2)))[0]
    assert not torch.equal(r0, r1)


def test_loader_float_input_and_errors() -> None:
    images = torch.rand(10, 1, 4, 4)
    x, _ = next(iter(BatchLoader((images, torch.zeros(10, dtype=torch.long)), 10)))
    assert torch.equal(x, images)
    with pytest.raises(DataError, match="augment"):
        BatchLoader((images, torch.zeros(10, dtype=torch.long)), 4, augment="mixup")
    with pytest.raises(ValueError, match="rank"):
        BatchLoader((images, torch.zeros(10, dtype=torch.long)), 4, rank=2, world_size=2)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        BatchLoader((images * 255, torch.zeros(10, dtype=torch.long)), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_cuda() -> None:
    images, labels = _toy(40, (3, 32, 32))
    loader = BatchLoader((images, labels), 16, shuffle=True, augment="crop-flip",
                         device="cuda", channels_last=True)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    cpu = BatchLoader((images, labels), 16, shuffle=True, augment="crop-flip")
    xc, yc = next(iter(cpu))
    assert torch.equal(x.cpu(), xc) and torch.equal(y.cpu(), yc)


# --------------------------------------------------------------------------- slow: real data


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_datasets(name: str) -> None:
    _shared(name)
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_dataset(name, split, data_dir=SHARED)
        assert len(ds) == n and ds.image_shape == (1, 28, 28) and len(ds.classes) == 10
        if name == "fashion-mnist":
            assert ds.labels.bincount().tolist() == [n // 10] * 10


@pytest.mark.slow
def test_real_cifar_jpeg_zip() -> None:
    archive = _shared("cifar10-jpeg.zip")
    for split, n in (("train", 50000), ("test", 10000)):
        ds = load_dataset("imagefolder", split, data_dir=archive)
        assert len(ds) == n and ds.image_shape == (3, 32, 32) and ds.classes == CIFAR_NAMES
        assert ds.labels.bincount().tolist() == [n // 10] * 10
        assert ds.mean == pytest.approx((0.49, 0.48, 0.45), abs=0.01)
        cached = load_dataset("imagefolder", split, data_dir=archive)
        assert torch.equal(ds.images, cached.images)
