"""CIFAR-10: the official python batches, from the extracted folder or the archive, and its download.

``cifar10`` is the official python version, either the extracted
``<dir>/cifar-10-batches-py/`` folder or the archive ``<dir>/cifar-10-python.tar.gz``
(read in place, never extracted). The archive's md5 is checked against the module
constant :data:`CIFAR10_MD5` on every load, and ``download=True`` fetches
:data:`CIFAR10_URL`; both are read at call time, so tests that build their own small
archive monkeypatch ``pni.data.cifar10.CIFAR10_MD5`` / ``CIFAR10_URL``. Pickles are read with an unpickler that only resolves the numpy globals an
array needs, and a member is read only up to :data:`CIFAR_MEMBER_BYTES`.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import torch

from ..progress import progress_bar
from .dataset import DataError, Dataset
from .stats import NORMALIZATION

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR_MEMBER_BYTES = 64 << 20      # a CIFAR-10 batch pickle is about 31 MB

_PICKLE_ALLOWED = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR-10 batch needs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        for candidate in _numpy_module_aliases(module):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


def _numpy_module_aliases(module: str) -> list[str]:
    """numpy 2 moved numpy.core to numpy._core; try the current name first."""
    if module.startswith("numpy.core."):
        return ["numpy._core." + module[len("numpy.core."):], module]
    if module.startswith("numpy._core."):
        return [module, "numpy.core." + module[len("numpy._core."):]]
    return [module]


def _unpickle(stream: IO[bytes], source: str) -> dict[Any, Any]:
    try:
        obj = _ArrayUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, OSError, zlib.error) as err:
        raise DataError(
            f"{source}: malformed CIFAR-10 pickle ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _get_key(batch: dict[Any, Any], key: str, source: str) -> Any:
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise DataError(f"{source}: CIFAR-10 pickle has no {key!r} entry (keys: "
                    f"{sorted(str(k) for k in batch)})")


def _cifar_batch(batch: dict[Any, Any], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels from one batch dict."""
    data = np.asarray(_get_key(batch, "data", source))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: 'data' must be an N x 3072 uint8 array, got {data.dtype} "
                        f"{data.shape}")
    try:
        labels = np.asarray(_get_key(batch, "labels", source), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: 'labels' must be a list of ints ({err})") from err
    if labels.shape != (data.shape[0],):
        raise DataError(f"{source}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_classes(meta: dict[Any, Any], source: str) -> list[str]:
    names = _get_key(meta, "label_names", source)
    try:
        classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as err:
        raise DataError(f"{source}: 'label_names' must be a list of strings ({err})") from err
    if len(classes) != 10:
        raise DataError(f"{source}: expected 10 label_names, got {len(classes)}")
    return classes


def _cifar_members(split: str) -> list[str]:
    batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return [*batches, "batches.meta"]


def _cifar_dataset(split: str, parts: dict[str, dict[Any, Any]], where: str) -> Dataset:
    members = _cifar_members(split)
    arrays = [_cifar_batch(parts[m], f"{where}/{m}") for m in members[:-1]]
    images = torch.from_numpy(np.concatenate([a for a, _ in arrays])).contiguous()
    labels = torch.from_numpy(np.concatenate([b for _, b in arrays]))
    classes = _cifar_classes(parts["batches.meta"], f"{where}/batches.meta")
    mean, std = NORMALIZATION["cifar10"]
    return Dataset("cifar10", split, images, labels, classes, mean, std)


def _read_cifar_folder(folder: Path, split: str) -> Dataset:
    parts = {}
    for member in _cifar_members(split):
        path = folder / member
        if not path.is_file():
            raise DataError(f"{folder}: missing {member}; expected data_batch_1..5, test_batch "
                            "and batches.meta (the official cifar-10-python layout)")
        _check_cifar_member(path.stat().st_size, str(path))
        with path.open("rb") as stream:
            parts[member] = _unpickle(stream, str(path))
    return _cifar_dataset(split, parts, str(folder))


def _read_cifar_archive(archive: Path, split: str) -> Dataset:
    """Read the needed members in one sequential pass over the .tar.gz."""
    wanted = {f"{CIFAR10_FOLDER}/{m}": m for m in _cifar_members(split)}
    parts: dict[str, dict[Any, Any]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                member = wanted.get(info.name.removeprefix("./"))
                if member is None or not info.isfile():
                    continue
                _check_cifar_member(info.size, f"{archive}:{info.name}")
                stream = tar.extractfile(info)
                assert stream is not None
                parts[member] = _unpickle(stream, f"{archive}:{info.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: cannot read the tar.gz archive ({err})") from err
    missing = [name for name, m in wanted.items() if m not in parts]
    if missing:
        raise DataError(f"{archive}: missing member(s) {', '.join(missing)}; expected the "
                        f"official layout {CIFAR10_FOLDER}/data_batch_1..5, test_batch, "
                        "batches.meta")
    return _cifar_dataset(split, parts, f"{archive}:{CIFAR10_FOLDER}")


def _check_cifar_member(size: int, source: str) -> None:
    """Refuse a member larger than a CIFAR-10 batch can be, before it is inflated."""
    if size > CIFAR_MEMBER_BYTES:
        raise DataError(f"{source}: {size} bytes, above the limit of {CIFAR_MEMBER_BYTES} bytes "
                        "for one CIFAR-10 batch (10,000 images are about 31 MB)")


def _md5_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    actual = _md5_file(path)
    if actual != expected.lower():
        raise DataError(f"{path}: md5 {actual} does not match the expected {expected}; the "
                        "file is corrupt or incomplete. Delete it and load again with "
                        "download=True (--download) to fetch a fresh copy.")


def _find_cifar(root: Path) -> tuple[str, Path] | None:
    """("folder" | "archive", path) of local CIFAR-10 data under ``root``."""
    for base in (root, root / "cifar10", root / "cifar-10"):
        if (base / CIFAR10_FOLDER).is_dir():
            return "folder", base / CIFAR10_FOLDER
    if (root / "batches.meta").is_file():
        return "folder", root
    for base in (root, root / "cifar10", root / "cifar-10"):
        if (base / CIFAR10_ARCHIVE).is_file():
            return "archive", base / CIFAR10_ARCHIVE
    return None


def _load_cifar10(root: Path, split: str, download: bool) -> Dataset:
    found = _find_cifar(root)
    if found is None:
        if not download:
            raise DataError(
                f"CIFAR-10 not found: looked for {root / CIFAR10_FOLDER}/ and "
                f"{root / CIFAR10_ARCHIVE} (also under {root / 'cifar10'}). Pass download=True "
                f"(--download) to fetch {CIFAR10_URL}, or put the official archive there."
            )
        archive = download_cifar10(root, url=CIFAR10_URL, md5=CIFAR10_MD5)
        return _read_cifar_archive(archive, split)
    kind, path = found
    if kind == "folder":
        return _read_cifar_folder(path, split)
    _check_md5(path, CIFAR10_MD5)
    return _read_cifar_archive(path, split)


def download_cifar10(
    root: Path,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    progress: bool = True,
) -> Path:
    """Download the CIFAR-10 python archive into ``root`` and verify its md5.

    Streams to a temporary ``.part`` file in ``root`` and renames it only once the
    md5 matches; on any failure nothing is left behind. Returns the archive path.
    """
    root = Path(root)
    target = root / CIFAR10_ARCHIVE
    if target.is_file() and _md5_file(target) == md5.lower():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{CIFAR10_ARCHIVE}.", suffix=".part")
    except OSError as err:
        raise DataError(f"cannot write to download folder {root} ({err})") from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, progress)
        if actual != md5.lower():
            raise DataError(f"download of {url} has md5 {actual}, expected {md5}; the download "
                            "is corrupt or the file changed, nothing was kept")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _fetch(url: str, out: BinaryIO, progress: bool, desc: str = CIFAR10_ARCHIVE) -> str:
    """Stream ``url`` into ``out``; return the md5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar(total, desc, "B", enabled=progress, unit_scale=True, unit_divisor=1024) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DataError(f"could not download {url}: {err}") from err
    return digest.hexdigest()
