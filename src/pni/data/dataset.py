"""The in-memory Dataset type: validation of images/labels, class-stratified subsets, data location.

Everything is held as uint8 ``(N, C, H, W)`` images and int64 ``(N,)`` labels; images are
scaled to float ``[0, 1]`` only when asked (:func:`as_tensors`, the batch loader).
Library functions that take data accept a :class:`Dataset` or an ``(images, labels)``
pair (:func:`as_tensors`, :func:`subset_tensors`).

Subsets: ``Dataset.subset(n, seed=0)`` (and every ``n`` / ``--n`` / ``train_subset`` /
``eval_subset`` of pni) is a deterministic class-stratified sample
(:func:`stratified_indices`): per-class counts within one of ``n / classes``, the same
for the same dataset, ``n`` and seed, recorded in ``Dataset.subset_info`` and in the
result JSON (:func:`subset_record`). Explicit index lists select exactly those items.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..seeding import mix_seed
from ..errors import PNIError

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "imagefolder", "mnist-sample")
SPLITS: tuple[str, ...] = ("train", "test")


class DataError(PNIError):
    """A problem with the data: missing, malformed, or an unknown name."""


# Seeds subset draws (here) and batch order / augmentation (loader).
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
