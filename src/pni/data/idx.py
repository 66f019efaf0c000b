"""MNIST / Fashion-MNIST: reading uint8 IDX files (gzipped or not) with bounded gzip inflation.

``mnist`` / ``fashion-mnist``: the four standard IDX files (gzipped or not), read from
``<dir>/mnist`` (``<dir>/fashion-mnist``), ``<dir>/MNIST/raw``, ..., then ``<dir>``. There
``download=True`` fetches the files that are missing into ``<dir>/<name>/`` from the standard
mirrors, checksum-verified (:mod:`pni.data.idx_download`). ``mnist-sample``: 6,000 MNIST test images
shipped with the package (5,000 train / 1,000 test), for tests and quick demos.
A gzipped stream is inflated only up to what its IDX header announces.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .dataset import DataError, Dataset
from .limits import ENV_MAX_INFLATED_BYTES, max_inflated_bytes
from .stats import NORMALIZATION

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_IDX_SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (or any mirror of it)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist",
}
_IDX_SUBDIRS = {
    "mnist": ("mnist", "MNIST", "MNIST/raw", "mnist/raw", "mnist/MNIST/raw"),
    "fashion-mnist": (
        "fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw",
        "fashion-mnist/raw", "fashion-mnist/FashionMNIST/raw",
    ),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SAMPLE_IMAGES = "mnist-sample-images-idx3-ubyte.gz"
SAMPLE_LABELS = "mnist-sample-labels-idx1-ubyte.gz"
SAMPLE_TRAIN = 5000  # sample images [0, 5000) are "train", the rest "test"


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (magic 0x0000080<ndim>, big-endian dims)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise DataError(f"IDX encoding supports uint8 arrays only, got {array.dtype} {array.shape}")
    header = np.array([0x0800 | array.ndim, *array.shape], dtype=">u4").tobytes()
    return header + array.tobytes()


def _idx_layout(head: bytes, source: str, expected_magic: int) -> tuple[int, tuple[int, ...], int]:
    """(header length, dims, total bytes) from the first bytes of an IDX file.

    ``head`` may stop after the magic: the header length is then known but dims are ``()``.
    """
    kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    if len(head) < 4:
        raise DataError(f"{source}: {len(head)} bytes is too short for an IDX header")
    magic = int.from_bytes(head[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{source}: bad IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
                        f"(uint8 {kind} file)")
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        return header_len, (), -1
    dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return header_len, dims, header_len + math.prod(dims)


def _decode_idx(raw: bytes, source: str, expected_magic: int) -> np.ndarray:
    """Parse uint8 IDX bytes; ``source`` names the file in error messages."""
    header_len, dims, expected = _idx_layout(raw, source, expected_magic)
    if expected < 0:
        raise DataError(f"{source}: truncated IDX header ({len(raw)} of {header_len} bytes)")
    if len(raw) < expected:
        raise DataError(f"{source}: truncated: header says {' x '.join(map(str, dims))} uint8 "
                        f"({expected} bytes with header), file has {len(raw)} bytes")
    if len(raw) > expected:
        raise DataError(f"{source}: {len(raw) - expected} unexpected extra bytes after the "
                        f"{' x '.join(map(str, dims))} data (expected {expected} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _idx_bytes(raw: bytes, source: str, gzipped: bool, expected_magic: int) -> bytes:
    """The IDX bytes of a file, gunzipped with a cap: what its own header announces.

    The header is inflated first; the data after it is inflated only up to the size the
    header announces (itself at most :func:`max_inflated_bytes`), so a gzip bomb stops there.
    """
    if not (gzipped or raw[:2] == b"\x1f\x8b"):
        return raw
    probe = _GzipStream(raw, source)
    head = probe.read(4)
    header_len, _, _ = _idx_layout(head, source, expected_magic)
    head += probe.read(header_len - len(head))
    _, dims, expected = _idx_layout(head, source, expected_magic)
    if expected < 0:
        raise DataError(f"{source}: truncated IDX header ({len(head)} of {header_len} bytes)")
    limit = max_inflated_bytes()
    if expected > limit:
        raise DataError(f"{source}: IDX header announces {' x '.join(map(str, dims))} uint8 "
                        f"({expected} bytes), above the limit of {limit} bytes "
                        f"(raise it with {ENV_MAX_INFLATED_BYTES})")
    stream = _GzipStream(raw, source)  # from the start again: header and data in one piece
    inflated = stream.read(expected)
    if stream.read(1):
        raise DataError(f"{source}: unexpected extra bytes: the gzip stream inflates to more than "
                        f"the {expected} bytes its IDX header announces (stopped there)")
    return inflated


class _GzipStream:
    """A gzip stream (one or more members) inflated piecewise: never more than asked for."""

    def __init__(self, raw: bytes, source: str) -> None:
        self._source = source
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = raw
        self._done = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` inflated bytes (fewer only at the end of the stream)."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < size and not self._done:
                if self._inflater.eof:
                    self._next_member()
                    continue
                chunk = self._inflater.decompress(self._pending, size - got)
                self._pending = self._inflater.unconsumed_tail
                if not chunk and not self._pending and not self._inflater.eof:
                    raise DataError(f"{self._source}: corrupt gzip file (the stream is truncated)")
                parts.append(chunk)
                got += len(chunk)
        except zlib.error as err:
            raise DataError(f"{self._source}: corrupt gzip file ({err})") from err
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _next_member(self) -> None:
        rest = self._inflater.unused_data.lstrip(b"\x00")  # gzip allows zero padding
        if not rest:
            self._done = True
            return
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = rest


def read_idx(path: str | os.PathLike[str], expected_magic: int) -> np.ndarray:
    """Read a (possibly gzipped) uint8 IDX file with the given magic number."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read IDX file ({err})") from err
    raw = _idx_bytes(raw, str(path), path.suffix == ".gz", expected_magic)
    return _decode_idx(raw, str(path), expected_magic)


def _idx_pair(
    images: np.ndarray, labels: np.ndarray, image_src: str, label_src: str
) -> tuple[Tensor, Tensor]:
    """Check an images/labels IDX pair and convert to (N,1,H,W) uint8, (N,) int64."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{image_src} holds {images.shape[0]} images but {label_src} holds "
                        f"{labels.shape[0]} labels; expected the same count")
    return torch.from_numpy(images).unsqueeze(1).contiguous(), torch.from_numpy(labels).long()


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate_idx(name: str, root: Path, split: str) -> tuple[Path, Path] | list[Path]:
    """The (images, labels) files, or the folders searched when not found."""
    image_stem, label_stem = _IDX_FILES[split]
    folders = [root / sub for sub in _IDX_SUBDIRS[name]] + [root]
    for folder in folders:
        images, labels = _find_file(folder, image_stem), _find_file(folder, label_stem)
        if images is not None and labels is not None:
            return images, labels
        present = images or labels
        if present is not None:
            missing = label_stem if labels is None else image_stem
            raise DataError(f"{folder}: found {present.name} but not {missing}[.gz]; "
                            f"expected both {image_stem}[.gz] and {label_stem}[.gz] there")
    return folders


def _load_idx_dataset(name: str, root: Path, split: str, download: bool) -> Dataset:
    found = _locate_idx(name, root, split)  # download=True: load_dataset fetched missing files first
    if isinstance(found, list):
        image_stem, label_stem = _IDX_FILES[split]
        raise DataError(
            f"{name} {split} files {image_stem}[.gz] and {label_stem}[.gz] not found; searched: "
            f"{', '.join(str(f) for f in found)}. Pass download=True (--download true) to fetch them, "
            f"or get the four IDX files from {_IDX_SOURCES[name]} and put them in {root / name} "
            f"(or pass data_dir / set PNI_DATA)."
        )
    image_path, label_path = found
    images, labels = _idx_pair(read_idx(image_path, IDX_IMAGES_MAGIC),
                               read_idx(label_path, IDX_LABELS_MAGIC),
                               str(image_path), str(label_path))
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    _check_label_range(labels, len(classes), str(label_path))
    mean, std = NORMALIZATION[name]
    return Dataset(name, split, images, labels, list(classes), mean, std)


def _check_label_range(labels: Tensor, n_classes: int, source: str) -> None:
    if labels.numel() and int(labels.max()) >= n_classes:
        raise DataError(f"{source}: label {int(labels.max())} out of range, expected "
                        f"0..{n_classes - 1}")


# --------------------------------------------------------------------------- mnist-sample


def _load_mnist_sample(split: str) -> Dataset:
    """The packaged MNIST sample (first 6,000 official test images)."""
    folder = importlib.resources.files("pni").joinpath("_sample")
    arrays = []
    for fname, magic in ((SAMPLE_IMAGES, IDX_IMAGES_MAGIC), (SAMPLE_LABELS, IDX_LABELS_MAGIC)):
        source = f"pni/_sample/{fname}"
        try:
            raw = folder.joinpath(fname).read_bytes()
        except OSError as err:
            raise DataError(f"packaged sample {source} is missing ({err}); reinstall pni or "
                            "regenerate it with scripts/make_sample.py") from err
        arrays.append(_decode_idx(_idx_bytes(raw, source, True, magic), source, magic))
    images, labels = _idx_pair(arrays[0], arrays[1], SAMPLE_IMAGES, SAMPLE_LABELS)
    part = slice(0, SAMPLE_TRAIN) if split == "train" else slice(SAMPLE_TRAIN, None)
    mean, std = NORMALIZATION["mnist"]
    return Dataset("mnist-sample", split, images[part].contiguous(), labels[part].clone(),
                   list(MNIST_CLASSES), mean, std)
