"""Datasets and batching for pni.

Everything is held in memory as uint8 ``(N, C, H, W)`` tensors; images are scaled to
float ``[0, 1]`` only per batch. Supported datasets (see :data:`DATASETS`):

* ``mnist`` / ``fashion-mnist``: the four standard IDX files (gzipped or not), read
  from ``<dir>/mnist`` (``<dir>/fashion-mnist``), ``<dir>/MNIST/raw``, ..., then ``<dir>``.
  There is no automatic download for these; ``download=True`` only matters when the
  files are missing (the error then says where to get them).
* ``cifar10``: the official python version, either the extracted
  ``<dir>/cifar-10-batches-py/`` folder or the archive ``<dir>/cifar-10-python.tar.gz``
  (read in place, never extracted). The archive's md5 is checked against the module
  constant :data:`CIFAR10_MD5` on every load, and ``download=True`` fetches
  :data:`CIFAR10_URL`; both are read at call time, so tests that build their own small
  archive monkeypatch ``pni.data.CIFAR10_MD5`` / ``pni.data.CIFAR10_URL``. Pickles are
  read with an unpickler that only resolves the numpy globals an array needs.
* ``imagefolder``: ``data_dir`` is a folder or ``.zip`` with ``<split>/<class>/*.png|jpg``
  (a zip may wrap that in one top-level folder). Classes are the sorted class folders;
  images come in a fixed order that does not group classes (round-robin over the
  classes, files in name order within a class).
  Decoded once and cached under ``default_data_dir()/cache`` (keyed by path, split,
  size and mtime -- of every file for a folder). ``mean``/``std`` are computed from the
  loaded split itself (so the test split carries test statistics).
* ``mnist-sample``: 6,000 MNIST test images shipped with the package (5,000 train /
  1,000 test), for tests and quick demos; it ignores ``data_dir``.

Data location: the ``data_dir`` argument, else ``$PNI_DATA``, else
``$XDG_CACHE_HOME/pni`` (``~/.cache/pni``).

Subsets: ``Dataset.subset(n, seed=0)`` (and every ``n`` / ``--n`` / ``train_subset`` /
``eval_subset`` of pni) is a deterministic class-stratified sample
(:func:`stratified_indices`): per-class counts within one of ``n / classes``, the same
for the same dataset, ``n`` and seed, recorded in ``Dataset.subset_info`` and in the
result JSON (:func:`subset_record`). Explicit index lists select exactly those items.

Bounded decoding: an image whose header says more than :func:`max_image_pixels`
(4096 x 4096; ``$PNI_MAX_IMAGE_PIXELS``) is refused before decoding; an image file or zip
member is read or inflated only up to the size such an image can have
(:func:`max_image_file_bytes`); a gzipped IDX stream only up to what its header announces
(at most :func:`max_inflated_bytes`, ``$PNI_MAX_INFLATED_BYTES``); a CIFAR-10 member only
up to :data:`CIFAR_MEMBER_BYTES`.

Every problem with the data on disk raises :class:`DataError` naming the file and
what was expected.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import importlib.resources
import io
import itertools
import math
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATASETS",
    "MAX_IMAGE_PIXELS",
    "MAX_INFLATED_BYTES",
    "SPLITS",
    "BatchLoader",
    "DataError",
    "Dataset",
    "as_tensors",
    "at_most",
    "channel_stats",
    "class_counts",
    "crop_flip",
    "default_data_dir",
    "download_cifar10",
    "encode_idx",
    "load_dataset",
    "max_image_pixels",
    "max_inflated_bytes",
    "missing_classes",
    "mix_seed",
    "read_idx",
    "stratified_indices",
    "subset_record",
    "subset_tensors",
    "warn_missing_classes",
]

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "imagefolder", "mnist-sample")
SPLITS: tuple[str, ...] = ("train", "test")
AUGMENTATIONS: tuple[str, ...] = ("none", "crop-flip", "auto")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
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

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_CACHE_VERSION = 2  # 2: image folders interleave their classes

# Bounded decoding: read at call time, so they can be changed on the module or by env.
MAX_IMAGE_PIXELS = 4096 * 4096     # an image with more pixels is refused before decoding
MAX_INFLATED_BYTES = 4 << 30       # the most one gzip stream may inflate to
ENV_MAX_IMAGE_PIXELS = "PNI_MAX_IMAGE_PIXELS"
ENV_MAX_INFLATED_BYTES = "PNI_MAX_INFLATED_BYTES"
CIFAR_MEMBER_BYTES = 64 << 20      # a CIFAR-10 batch pickle is about 31 MB


class DataError(ValueError):
    """A problem with the data: missing, malformed, or an unknown name."""


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env)
    if text is None or text == "":
        return int(default)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{env}={text!r}: expected a positive integer")
    return value


def max_image_pixels() -> int:
    """Width x height above which an image is refused before it is decoded.

    ``$PNI_MAX_IMAGE_PIXELS`` if set, else :data:`MAX_IMAGE_PIXELS` (4096 x 4096).
    """
    return _limit(ENV_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS)


def max_inflated_bytes() -> int:
    """The most bytes one gzip stream may announce and inflate to.

    ``$PNI_MAX_INFLATED_BYTES`` if set, else :data:`MAX_INFLATED_BYTES` (4 GiB).
    """
    return _limit(ENV_MAX_INFLATED_BYTES, MAX_INFLATED_BYTES)


def max_image_file_bytes() -> int:
    """The most bytes one encoded image file (or zip member) may hold: its raw pixels at
    8 bytes each (16-bit RGBA) for :func:`max_image_pixels` pixels, plus 1 MiB of headers."""
    return 8 * max_image_pixels() + (1 << 20)


# --------------------------------------------------------------------------- Dataset


@dataclass(repr=False, eq=False)
class Dataset:
    """An in-memory image classification split (uint8 images, int64 labels).

    ``subset_info``: set by :meth:`subset` -- which subset this is (see :func:`subset_record`);
    ``None`` for a whole split.
    """

    name: str
    split: str
    images: Tensor
    labels: Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    subset_info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_uint8_images(self.images, f"{self.name}/{self.split} images")
        self.labels = _check_labels(self.labels, self.images.shape[0], f"{self.name}/{self.split}")
        self.images = self.images.contiguous()
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"{self.name}/{self.split}: mean/std have {len(self.mean)}/{len(self.std)} "
                f"entries, expected one per channel ({channels})"
            )
        if self.labels.numel() and int(self.labels.max()) >= len(self.classes):
            raise DataError(
                f"{self.name}/{self.split}: label {int(self.labels.max())} out of range "
                f"for {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, classes={len(self.classes)})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def subset(self, n_or_indices: int | Sequence[int] | Tensor, seed: int = 0) -> Dataset:
        """A class-stratified sample of ``n`` items (int; :func:`stratified_indices` with
        ``seed``), or the items at the given indices / boolean mask, in that order.

        The result records what it is in ``subset_info`` (:func:`subset_record`).
        """
        what = f"{self.name}/{self.split}"
        if _is_count(n_or_indices):
            index = stratified_indices(self.labels, _check_count(n_or_indices, len(self), what), seed)
            method, used_seed = "stratified", int(seed)
        else:
            index = _subset_index(n_or_indices, len(self), what)
            method, used_seed = "indices", None
        labels = self.labels[index].clone()
        return Dataset(
            name=self.name,
            split=self.split,
            images=self.images[index].contiguous(),
            labels=labels,
            classes=list(self.classes),
            mean=self.mean,
            std=self.std,
            subset_info=subset_record(index, labels, self.classes, len(self), method, used_seed),
        )

    def tensors(self, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """Float32 images in ``[0, 1]`` and int64 labels on ``device``."""
        return as_tensors(self, device)


def _is_count(spec: Any) -> bool:
    return isinstance(spec, (int, np.integer)) and not isinstance(spec, bool)


def _check_count(count: Any, n: int, what: str) -> int:
    if not _is_count(count) or not 0 <= int(count) <= n:
        raise DataError(f"{what}: cannot draw {count!r} of {n} items (expected an integer "
                        f"in [0, {n}])")
    return int(count)


def _subset_index(spec: Sequence[int] | Tensor, n: int, what: str) -> Tensor:
    """Validate an index list or boolean mask and return an int64 index tensor."""
    index = torch.as_tensor(spec)
    if index.dtype == torch.bool:
        if index.shape != (n,):
            raise DataError(f"{what}: boolean mask has shape {tuple(index.shape)}, expected ({n},)")
        return index.nonzero().flatten()
    if index.ndim != 1 or (index.numel() and index.is_floating_point()):
        raise DataError(f"{what}: indices must be a 1-D sequence of ints, got shape "
                        f"{tuple(index.shape)} dtype {index.dtype}")
    index = index.long()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise DataError(f"{what}: indices must lie in [0, {n}), got "
                        f"[{int(index.min())}, {int(index.max())}]")
    return index


# --------------------------------------------------------------------------- subsets


def stratified_indices(labels: Tensor | Sequence[int], n: int, seed: int = 0) -> Tensor:
    """Indices (int64) of a deterministic, class-stratified sample of ``n`` of ``labels``.

    Each class present gets ``n // K`` or ``n // K + 1`` items (``K``: classes present);
    a class with fewer items gives all it has and the others share the rest, again
    within one of each other. Which items of a class, and which classes get the
    ``n % K`` extra ones, is a random draw seeded by ``seed`` alone: the same labels,
    ``n`` and ``seed`` always give the same indices. They come in round-robin order over
    the classes (one of each class, then the next round), so every prefix of the result
    is stratified too. The indices are on the CPU.
    """
    labels = _check_labels(labels, len(labels), "stratified_indices").cpu()
    total = int(labels.numel())
    n = _check_count(n, total, "stratified_indices")
    generator = torch.Generator().manual_seed(mix_seed(seed, _SUBSET_STREAM))
    shuffled = torch.randperm(total, generator=generator)
    present, position = torch.unique(labels, return_inverse=True)
    class_rank = torch.empty(len(present), dtype=torch.int64)
    class_rank[torch.randperm(len(present), generator=generator)] = torch.arange(len(present))
    cls = position[shuffled]
    by_class = torch.sort(cls, stable=True).indices
    cls = cls[by_class]
    counts = torch.bincount(cls, minlength=len(present))
    rank_in_class = torch.arange(total) - (torch.cumsum(counts, 0) - counts)[cls]
    key = rank_in_class * len(present) + class_rank[cls]  # unique: (round, class)
    return shuffled[by_class[torch.argsort(key)[:n]]]


_SUBSET_STREAM = 0x5B5E7  # keeps subset draws apart from other streams seeded by the same seed


def class_counts(labels: Tensor | Sequence[int], num_classes: int) -> list[int]:
    """Items per class ``0 .. num_classes - 1`` (labels outside that range are ignored)."""
    labels = torch.as_tensor(labels).long().flatten()
    labels = labels[(labels >= 0) & (labels < num_classes)]
    return torch.bincount(labels, minlength=num_classes).tolist()


def missing_classes(labels: Tensor | Sequence[int], num_classes: int) -> list[int]:
    """The classes ``0 .. num_classes - 1`` that no label names."""
    return [c for c, count in enumerate(class_counts(labels, num_classes)) if count == 0]


def warn_missing_classes(labels: Tensor | Sequence[int], num_classes: int, what: str,
                         names: Sequence[str] | None = None) -> list[int]:
    """Print one warning line to stderr when ``labels`` lack some of ``num_classes``
    classes (``what``: e.g. "evaluation subset"); returns the missing classes."""
    missing = missing_classes(labels, num_classes)
    if missing:
        shown = [f"{c} ({names[c]})" if names is not None and c < len(names) else str(c)
                 for c in missing[:20]]
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        print(f"pni: warning: {what} has no image of {len(missing)} of the {num_classes} "
              f"classes: {', '.join(shown)}{more}", file=sys.stderr, flush=True)
    return missing


def subset_record(index: Tensor, labels: Tensor, classes: Sequence[str] | int, of: int,
                  method: str = "stratified", seed: int | None = 0) -> dict[str, Any]:
    """What a subset is, for result JSON: ``n``, ``of`` (size of the set it was drawn
    from), ``method`` ("stratified" or "indices"), ``seed``, ``per_class`` counts (by class
    name) and ``indices_sha256`` (of the int64 indices: the exact subset, comparable)."""
    names = [str(c) for c in range(classes)] if isinstance(classes, int) else list(classes)
    counts = class_counts(labels, len(names))
    digest = hashlib.sha256(index.to(torch.int64).cpu().numpy().astype("<i8").tobytes())
    return {"n": int(index.numel()), "of": int(of), "method": method, "seed": seed,
            "per_class": dict(zip(names, counts, strict=True)),
            "indices_sha256": digest.hexdigest()[:16]}


def at_most(data: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """``data`` itself when ``n`` is None or covers it, else ``data.subset(n, seed)``."""
    if n is None or n >= len(data):
        return data
    return data.subset(n, seed)


def subset_tensors(data: Dataset | tuple[Tensor, Tensor], n: int | None, seed: int = 0,
                   num_classes: int | None = None) -> tuple[Tensor, Tensor, dict[str, Any] | None]:
    """Float images in ``[0, 1]``, labels and the subset record of a stratified sample of
    ``n`` items of ``data`` (all of it, and its own record, when ``n`` is None or covers it).

    ``num_classes`` names the classes of the record for an ``(images, labels)`` pair
    (default: the largest label + 1).
    """
    if isinstance(data, Dataset):
        picked = at_most(data, n, seed)
        return (*as_tensors(picked), picked.subset_info)
    images, labels = as_tensors(data)
    if n is None or n >= len(labels):
        return images, labels, None
    index = stratified_indices(labels, n, seed)
    classes = num_classes if num_classes is not None else int(labels.max()) + 1
    record = subset_record(index, labels[index], classes, len(labels), "stratified", int(seed))
    return images[index], labels[index], record


def _check_uint8_images(images: Any, what: str) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        desc = (f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if isinstance(images, Tensor) else type(images).__name__)
        raise DataError(f"{what}: expected a uint8 tensor (N, C, H, W), got {desc}")


def _check_labels(labels: Any, n: int, what: str) -> Tensor:
    """Labels as an int64 (N,) tensor, or DataError."""
    tensor = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    if tensor.ndim != 1 or tensor.is_floating_point() or tensor.dtype == torch.bool \
            or tensor.is_complex():
        raise DataError(f"{what}: labels must be a 1-D integer tensor, got {tensor.dtype} "
                        f"of shape {tuple(tensor.shape)}")
    if tensor.shape[0] != n:
        raise DataError(f"{what}: {tensor.shape[0]} labels for {n} images")
    tensor = tensor.long()
    if tensor.numel() and int(tensor.min()) < 0:
        raise DataError(f"{what}: negative label {int(tensor.min())}")
    return tensor


def as_tensors(
    data: Dataset | tuple[Tensor, Tensor], device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """Float32 images in ``[0, 1]`` (N, C, H, W) and int64 labels (N,) on ``device``.

    Accepts a :class:`Dataset` or an ``(images, labels)`` pair; uint8 images are divided
    by 255, float images must already lie in ``[0, 1]``.
    """
    images, labels = _validated_pair(data)
    images = images.to(device)
    images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    return images, labels.to(device)


def _validated_pair(data: Dataset | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """(images, labels) with checked shapes; images stay uint8 or float in [0, 1]."""
    if isinstance(data, Dataset):
        return data.images, data.labels
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError("expected a Dataset or an (images, labels) pair, got "
                        f"{type(data).__name__}")
    images, labels = data
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise DataError(f"images must be uint8 or floating point in [0, 1], got {images.dtype}")
        _check_unit_range(images)
    return images, _check_labels(labels, images.shape[0], "as_tensors")


def _check_unit_range(images: Tensor) -> None:
    if images.numel() == 0:
        return
    if bool(torch.isnan(images).any()):
        raise DataError("float images contain NaN; expected values in [0, 1]")
    low, high = torch.aminmax(images)
    if float(low) < 0.0 or float(high) > 1.0:
        raise DataError(
            f"float images must lie in [0, 1], got values in [{float(low):.4g}, {float(high):.4g}]"
            " (pass uint8 images or scale to [0, 1]; normalization belongs in the model)"
        )


# --------------------------------------------------------------------------- locations


def default_data_dir() -> Path:
    """``$PNI_DATA`` if set, else ``$XDG_CACHE_HOME/pni`` (default ``~/.cache/pni``)."""
    env = os.environ.get("PNI_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() \
        else Path.home() / ".cache"
    return base / "pni"


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Dataset:
    """Load one split of a dataset into memory (see the module docstring)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if name == "mnist-sample":
        return _load_mnist_sample(split)
    if name == "imagefolder":
        if data_dir is None:
            raise DataError("imagefolder needs data_dir: a folder or .zip holding "
                            "<split>/<class>/<image>.png|jpg")
        return _load_imagefolder(Path(data_dir).expanduser(), split)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if name == "cifar10":
        return _load_cifar10(root, split, download)
    return _load_idx_dataset(name, root, split, download)


# --------------------------------------------------------------------------- IDX


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
    found = _locate_idx(name, root, split)
    if isinstance(found, list):
        image_stem, label_stem = _IDX_FILES[split]
        note = ("download=True (--download) is not available for this dataset: automatic "
                "download is only supported for cifar10. " if download else "")
        raise DataError(
            f"{name} {split} files {image_stem}[.gz] and {label_stem}[.gz] not found; searched: "
            f"{', '.join(str(f) for f in found)}. {note}Get the four IDX files from "
            f"{_IDX_SOURCES[name]} and put them in {root / name} (or pass data_dir / set PNI_DATA)."
        )
    image_path, label_path = found
    images, labels = _idx_pair(read_idx(image_path, IDX_IMAGES_MAGIC),
                               read_idx(label_path, IDX_LABELS_MAGIC),
                               str(image_path), str(label_path))
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    _check_label_range(labels, len(classes), str(label_path))
    mean, std = _NORMALIZATION[name]
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
    mean, std = _NORMALIZATION["mnist"]
    return Dataset("mnist-sample", split, images[part].contiguous(), labels[part].clone(),
                   list(MNIST_CLASSES), mean, std)


# --------------------------------------------------------------------------- CIFAR-10

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
    mean, std = _NORMALIZATION["cifar10"]
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


def _fetch(url: str, out: BinaryIO, progress: bool) -> str:
    """Stream ``url`` into ``out``; return the md5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=CIFAR10_ARCHIVE, disable=not progress) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DataError(f"could not download {url}: {err}") from err
    return digest.hexdigest()


# --------------------------------------------------------------------------- imagefolder


@dataclass(frozen=True)
class _ImageSource:
    """Where the images of one imagefolder split live (a folder or a zip)."""

    path: Path                      # the folder or .zip given as data_dir (absolute)
    split: str
    classes: list[str]
    files: list[tuple[str, int]]    # (path inside folder/zip, label)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not _is_hidden(name)


def _layout_error(path: Path, split: str, top: Sequence[str]) -> DataError:
    found = ", ".join(sorted(top)[:20]) or "nothing"
    return DataError(f"{path}: expected the layout {split}/<class>/<image>.png|jpg|jpeg "
                     f"(optionally inside one top-level folder); found top-level entries: {found}")


def _collect(path: Path, split: str, entries: dict[str, dict[str, list[str]]]) -> _ImageSource:
    """Turn {split: {class: [files]}} into an _ImageSource for ``split``."""
    by_class = entries[split]
    classes = sorted(by_class)
    if not classes:
        raise DataError(f"{path}: {split}/ has no class folders; expected "
                        f"{split}/<class>/<image>.png|jpg|jpeg")
    for other, other_classes in entries.items():
        if other != split and other_classes and sorted(other_classes) != classes:
            raise DataError(f"{path}: class folders of {split}/ ({', '.join(classes)}) differ "
                            f"from those of {other}/ ({', '.join(sorted(other_classes))}); "
                            "labels would not match between splits")
    groups: list[list[tuple[str, int]]] = []
    for label, cls in enumerate(classes):
        names = sorted(by_class[cls])
        if not names:
            raise DataError(f"{path}: class folder {split}/{cls}/ holds no "
                            f"{'/'.join(IMAGE_SUFFIXES)} images")
        groups.append([(name, label) for name in names])
    return _ImageSource(path, split, classes, _interleave(groups))


def _interleave(groups: list[list[tuple[str, int]]]) -> list[tuple[str, int]]:
    """Round-robin over the groups: the first of each, then the second of each, ..."""
    rounds = itertools.zip_longest(*groups)
    return [item for one_round in rounds for item in one_round if item is not None]


def _scan_folder(path: Path, split: str) -> _ImageSource:
    top = [p.name for p in path.iterdir() if not _is_hidden(p.name)]
    base = path
    if not (path / split).is_dir():
        dirs = [p for p in path.iterdir() if p.is_dir() and not _is_hidden(p.name)]
        if len(dirs) != 1 or not (dirs[0] / split).is_dir():
            raise _layout_error(path, split, top)
        base = dirs[0]
    entries: dict[str, dict[str, list[str]]] = {}
    for sp in SPLITS:
        if (base / sp).is_dir():
            entries[sp] = {
                d.name: [str((d / f.name).relative_to(path)) for f in d.iterdir()
                         if f.is_file() and _is_image(f.name)]
                for d in (base / sp).iterdir() if d.is_dir() and not _is_hidden(d.name)
            }
    return _collect(path, split, entries)


def _scan_zip(path: Path, split: str, names: list[str]) -> _ImageSource:
    kept = [name for name in names if not _is_hidden(name.split("/")[0])]
    parts = [name.split("/") for name in kept]
    top = sorted({p[0] for p in parts if p[0]})
    prefix: list[str] = []
    if split not in top:
        if len(top) != 1 or not any(len(p) > 2 and p[1] == split for p in parts):
            raise _layout_error(path, split, top)
        prefix = [top[0]]
    depth = len(prefix)
    entries: dict[str, dict[str, list[str]]] = {}
    for p, name in zip(parts, kept, strict=True):
        rel = p[depth:]
        if p[:depth] != prefix or len(rel) < 3 or rel[0] not in SPLITS or not rel[1] \
                or _is_hidden(rel[1]):
            continue  # only <split>/<class>/... entries define classes
        files = entries.setdefault(rel[0], {}).setdefault(rel[1], [])
        if len(rel) == 3 and _is_image(rel[2]):
            files.append(name)
    if split not in entries:
        raise _layout_error(path, split, top)
    return _collect(path, split, entries)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path}: not a readable zip file ({err})") from err


def _cache_key(path: Path, split: str) -> str:
    """Hash of the source identity: path + size + mtime (every file for a folder)."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{path}|{split}".encode())
    if path.is_file():
        st = path.stat()
        digest.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            st = file.stat()
            digest.update(f"|{file.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _cache_path(path: Path, split: str) -> Path:
    return default_data_dir() / "cache" / f"imagefolder-{split}-{_cache_key(path, split)}.pt"


def _read_cache(cache: Path) -> Dataset | None:
    if not cache.is_file():
        return None
    try:
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("version") != _CACHE_VERSION:
            return None
        return Dataset("imagefolder", blob["split"], blob["images"], blob["labels"],
                       list(blob["classes"]), tuple(blob["mean"]), tuple(blob["std"]))
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, KeyError, TypeError,
            AttributeError, ValueError) as err:  # a damaged cache is only a lost shortcut
        warnings.warn(f"ignoring unreadable imagefolder cache {cache}: {err}", stacklevel=3)
        return None


def _write_cache(cache: Path, data: Dataset) -> None:
    blob = {"version": _CACHE_VERSION, "split": data.split, "images": data.images,
            "labels": data.labels, "classes": data.classes, "mean": list(data.mean),
            "std": list(data.std)}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                torch.save(blob, out)
            os.replace(tmp_name, cache)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"could not write imagefolder cache {cache}: {err}", stacklevel=3)


def _load_imagefolder(path: Path, split: str) -> Dataset:
    """Decode ``<split>/<class>/*`` from a folder or zip, with an on-disk cache.

    Order: fixed and not grouped by class -- round-robin over the sorted classes (the
    first file of each class, then the second of each, ...), files in name order within
    a class; so any prefix of the split is close to class-balanced.
    """
    path = path.resolve()
    if not path.exists():
        raise DataError(f"imagefolder: {path} does not exist; expected a folder or .zip "
                        f"with {split}/<class>/<image>.png|jpg")
    cache = _cache_path(path, split)
    cached = _read_cache(cache)
    if cached is not None and cached.split == split:
        return cached
    if path.is_dir():
        source = _scan_folder(path, split)
        images = _decode_images(source, lambda name: _read_image_file(path / name))
    else:
        with _open_zip(path) as zf:
            source = _scan_zip(path, split, zf.namelist())
            images = _decode_images(source, lambda name: _read_zip_member(zf, name, path))
    labels = torch.tensor([label for _, label in source.files], dtype=torch.int64)
    mean, std = channel_stats(images)
    data = Dataset("imagefolder", split, images, labels, source.classes, mean, std)
    _write_cache(cache, data)
    return data


def _read_image_file(path: Path) -> bytes:
    """The bytes of one image file, refused unread above :func:`max_image_file_bytes`."""
    limit = max_image_file_bytes()
    size = path.stat().st_size
    if size > limit:
        raise DataError(f"image {path} is {size} bytes, above the limit of {limit} bytes for "
                        f"one image file ({_pixel_limit_note()})")
    return path.read_bytes()


def _read_zip_member(zf: zipfile.ZipFile, name: str, archive: Path) -> bytes:
    """One member, inflated only if its header size fits :func:`max_image_file_bytes` and
    never beyond it (zipfile also stops at the header size and then checks the CRC)."""
    limit = max_image_file_bytes()
    info = zf.getinfo(name)
    too_big = DataError(f"image {archive}/{name} inflates to {info.file_size} bytes, above the "
                        f"limit of {limit} bytes for one image file ({_pixel_limit_note()})")
    if info.file_size > limit:
        raise too_big
    with zf.open(info) as member:
        blob = member.read(limit + 1)
    if len(blob) > limit:
        raise too_big
    return blob


def _pixel_limit_note() -> str:
    return (f"{max_image_pixels()} pixels at 8 bytes plus 1 MiB; raise it with "
            f"{ENV_MAX_IMAGE_PIXELS}")


def _check_pixels(width: int, height: int, name: str) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError(f"image {name} is {width}x{height} = {width * height} pixels, above the "
                        f"limit of {limit} pixels (refused before decoding; raise it with "
                        f"{ENV_MAX_IMAGE_PIXELS})")


def _decode_one(blob: bytes, name: str) -> tuple[np.ndarray, bool]:
    """(H, W) uint8 for grayscale images, else (H, W, 3) RGB; bool: grayscale.

    The size in the header is checked against :func:`max_image_pixels` before decoding.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # pni's own pixel limit applies, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(blob), formats=("PNG", "JPEG"))
        with image:
            _check_pixels(image.width, image.height, name)
            image.load()
            gray = image.mode in _GRAY_MODES
            mode = "L" if gray else "RGB"
            return np.asarray(image if image.mode == mode else image.convert(mode)), gray
    except DataError:
        raise
    except UnidentifiedImageError as err:
        raise DataError(f"cannot decode image {name}: not a PNG or JPEG file") from err
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode image {name}: {err}") from err


def _decode_images(source: _ImageSource, read: Callable[[str], bytes]) -> Tensor:
    """Decode every file of ``source`` into a uint8 (N, C, H, W) tensor.

    Single-threaded on purpose: for small images Pillow's per-call Python overhead
    dominates and a thread pool measured no faster (2-core machine).
    """
    out: np.ndarray | None = None
    all_gray = True
    with tqdm(source.files, desc=f"decoding {source.path.name} {source.split}", unit="img",
              disable=None, leave=False) as bar:
        for i, (name, _) in enumerate(bar):
            where = f"{source.path}/{name}"
            try:
                blob = read(name)
            except (OSError, KeyError, zipfile.BadZipFile, zlib.error) as err:
                raise DataError(f"cannot read image {where}: {err}") from err
            array, gray = _decode_one(blob, where)
            if out is None:
                out = _image_buffer(len(source.files), array.shape[:2], source)
            _check_size(array, out.shape[1:3], where)
            out[i] = array[..., None] if gray else array
            all_gray = all_gray and gray
    assert out is not None, "an image source always holds at least one file"
    tensor = torch.from_numpy(out).permute(0, 3, 1, 2)
    return (tensor[:, :1] if all_gray else tensor).contiguous()


def _image_buffer(count: int, size: tuple[int, ...], source: _ImageSource) -> np.ndarray:
    """The uint8 (N, H, W, 3) array the split is decoded into, or a DataError."""
    try:
        return np.empty((count, *size, 3), dtype=np.uint8)
    except MemoryError as err:
        raise DataError(f"{source.path} {source.split}: {count} images of {size[1]}x{size[0]} "
                        f"need {count * size[0] * size[1] * 3} bytes of memory, more than "
                        "can be allocated") from err


def _check_size(array: np.ndarray, size: tuple[int, ...], where: str) -> None:
    if array.shape[:2] != size:
        raise DataError(f"image {where} is {array.shape[1]}x{array.shape[0]} (WxH), but earlier "
                        f"images are {size[1]}x{size[0]}; all images must share one size")


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images scaled to [0, 1]."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].transpose(0, 1).reshape(channels, -1).double()
        total += block.sum(dim=1)
        total_sq += (block * block).sum(dim=1)
    count = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
    mean = total / count / 255.0
    var = (total_sq / count / 255.0**2 - mean**2).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


# --------------------------------------------------------------------------- batching


def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across processes and platforms."""
    text = ",".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def crop_flip(images: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Zero-pad by ``pad``, random-crop back to HxW and flip horizontally with p=0.5.

    Works on whole (B, C, H, W) batches (any dtype) with one gather; the random
    offsets and flips come from ``generator``, which lives on the images' device (a CUDA
    generator for GPU data: no host copy per batch).
    """
    b, c, h, w = images.shape
    device = images.device
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = images.new_zeros((b, c, hp, wp))
    padded[:, :, pad:pad + h, pad:pad + w] = images
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=device)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=device)
    flip = torch.rand((b, 1), generator=generator, device=device) < 0.5
    cols = torch.arange(w, device=device)
    cols = torch.where(flip, w - 1 - cols, cols) + ox                    # (B, W)
    rows = torch.arange(h, device=device) + oy                           # (B, H)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w)
    index = index.expand(b, c, h * w)
    return padded.view(b, c, hp * wp).gather(2, index).view(b, c, h, w)


class BatchLoader:
    """Batches from an in-memory dataset, sharded across ranks, with GPU-side augmentation.

    The data stays uint8 (or float in [0, 1]) and is moved to ``device`` once, on the
    first iteration; each batch is gathered there and scaled to float32 ``[0, 1]``.

    Order: ``shuffle`` draws a permutation seeded by ``(seed, epoch)`` -- identical on
    every rank; call :meth:`set_epoch` before each epoch. With ``world_size > 1``, rank
    ``r`` takes positions ``r::world_size`` of that order. With ``drop_last=False`` the
    order is padded by wrapping around (at most ``world_size - 1`` repeated samples) so
    every rank gets ``ceil(N / world_size)`` samples; with ``drop_last=True`` it is cut to
    ``world_size * (N // world_size)`` and each rank drops its incomplete last batch.
    ``batch_size`` is per rank, and every rank yields ``len(self)`` batches.

    ``augment``: ``None``/``"none"``, ``"crop-flip"`` (pad 4, random crop, horizontal
    flip), or ``"auto"`` (crop-flip for 3x32x32 images, none otherwise). Augmentation
    randomness is seeded by ``(seed, epoch, rank)``.
    """

    def __init__(
        self,
        data: Dataset | tuple[Tensor, Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: str | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        images, labels = _validated_pair(data)
        if images.shape[0] == 0:
            raise DataError("BatchLoader got an empty dataset")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}"
            )
        self._images, self._labels = images, labels
        self._on_device = False
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = _resolve_augment(augment, tuple(images.shape[1:]))
        self.seed = int(seed)
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (including wrap-around padding)."""
        n, ws = self._images.shape[0], self.world_size
        per_rank = n // ws if self.drop_last else _ceil_div(n, ws)
        if self.drop_last:
            return per_rank // self.batch_size * self.batch_size
        return per_rank

    def __len__(self) -> int:
        return _ceil_div(self.num_samples, self.batch_size)

    def _rank_indices(self) -> Tensor:
        """This rank's sample indices for the current epoch (CPU, int64)."""
        n, ws = self._images.shape[0], self.world_size
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if ws > 1:
            total = ws * (n // ws) if self.drop_last else ws * _ceil_div(n, ws)
            if total > n:
                order = order.repeat(_ceil_div(total, n))
            order = order[:total][self.rank::ws]
        return order[: self.num_samples]

    def _device_data(self) -> tuple[Tensor, Tensor]:
        if not self._on_device:
            self._images = self._images.to(self.device)
            self._labels = self._labels.to(self.device)
            self._on_device = True
        return self._images, self._labels

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self._device_data()
        indices = self._rank_indices()
        if self.device.type == "cuda":  # pinned: the copy does not wait for the GPU
            indices = indices.pin_memory().to(self.device, non_blocking=True)
        else:
            indices = indices.to(self.device)
        generator = torch.Generator(self.device).manual_seed(mix_seed(self.seed, self.epoch, self.rank, 1))
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for start in range(0, indices.shape[0], self.batch_size):
            batch = indices[start:start + self.batch_size]
            x = images.index_select(0, batch)
            if self.augment == "crop-flip":
                x = crop_flip(x, generator)
            if x.dtype == torch.uint8:
                x = x.to(dtype=torch.float32, memory_format=fmt).div_(255)
            else:
                x = x.to(dtype=torch.float32, memory_format=fmt)
            yield x, labels.index_select(0, batch)


def _resolve_augment(augment: str | None, image_shape: tuple[int, ...]) -> str:
    if augment is None or augment == "none":
        return "none"
    if augment == "crop-flip":
        return augment
    if augment == "auto":
        return "crop-flip" if tuple(image_shape) == (3, 32, 32) else "none"
    raise DataError(f"unknown augment {augment!r}; choose one of: {', '.join(AUGMENTATIONS)}")

