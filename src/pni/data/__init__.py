"""pni's datasets: load_dataset() dispatching to one module per format, and every public data name.

Everything is held in memory as uint8 ``(N, C, H, W)`` tensors; images are scaled to
float ``[0, 1]`` only per batch. Supported datasets (see :data:`DATASETS`), one module each:

* ``mnist`` / ``fashion-mnist`` (:mod:`pni.data.idx`): the four standard IDX files,
  read from ``<dir>/mnist`` (``<dir>/fashion-mnist``), ``<dir>/MNIST/raw``, ..., then
  ``<dir>``; ``download=True`` fetches the missing ones into ``<dir>/<name>``, md5-checked
  (:mod:`pni.data.idx_download`).
* ``cifar10`` (:mod:`pni.data.cifar10`): the official python version, the extracted
  folder or the archive read in place; md5-checked, ``download=True`` fetches it.
* ``imagefolder`` (:mod:`pni.data.imagefolder`): a folder or ``.zip`` holding
  ``<split>/<class>/*.png|jpg``, decoded once and cached under ``default_data_dir()/cache``.
* ``mnist-sample`` (:mod:`pni.data.idx`): 6,000 MNIST test images shipped with the
  package (5,000 train / 1,000 test), for tests and quick demos; it ignores ``data_dir``.

The rest: :mod:`pni.data.dataset` (the :class:`Dataset` type, validation, stratified
subsets, data location), :mod:`pni.data.loader` (:class:`BatchLoader`, :func:`crop_flip`),
:mod:`pni.data.limits` (bounded decoding), :mod:`pni.data.stats` (normalization constants).

Data location: the ``data_dir`` argument, else ``$PNI_DATA``, else
``$XDG_CACHE_HOME/pni`` (``~/.cache/pni``).

The tunable constants live in the module that reads them at call time:
``pni.data.cifar10`` (``CIFAR10_URL``, ``CIFAR10_MD5``, ``CIFAR_MEMBER_BYTES``) and
``pni.data.limits`` (``MAX_IMAGE_PIXELS``, ``MAX_INFLATED_BYTES``).

Every problem with the data on disk raises :class:`DataError` naming the file and
what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import cifar10, limits
from .cifar10 import _load_cifar10, download_cifar10
from .dataset import (
    DATASETS,
    SPLITS,
    DataError,
    Dataset,
    as_tensors,
    at_most,
    class_counts,
    default_data_dir,
    missing_classes,
    mix_seed,
    stratified_indices,
    subset_record,
    subset_tensors,
    warn_missing_classes,
)
from .idx import _load_idx_dataset, _load_mnist_sample, _locate_idx, encode_idx, read_idx
from .idx_download import download_idx
from .imagefolder import _load_imagefolder, channel_stats
from .limits import max_dataset_bytes, max_image_pixels, max_inflated_bytes
from .loader import BatchLoader, crop_flip

# Also importable from here, beyond __all__ (scripts and tests use them).
from .cifar10 import CIFAR10_ARCHIVE, CIFAR10_FOLDER  # noqa: F401
from .idx import FASHION_CLASSES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, MNIST_CLASSES  # noqa: F401
from .idx import SAMPLE_IMAGES, SAMPLE_LABELS, SAMPLE_TRAIN  # noqa: F401
from .imagefolder import IMAGE_SUFFIXES  # noqa: F401
from .limits import ENV_MAX_DATASET_BYTES, ENV_MAX_IMAGE_PIXELS, ENV_MAX_INFLATED_BYTES  # noqa: F401
from .limits import max_image_file_bytes  # noqa: F401
from .loader import AUGMENTATIONS  # noqa: F401
from .stats import NORMALIZATION  # noqa: F401

__all__ = [
    "DATASETS",
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
    "download_idx",
    "encode_idx",
    "load_dataset",
    "max_dataset_bytes",
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
    if download and isinstance(_locate_idx(name, root, split), list):
        download_idx(name, root)  # the missing IDX files, md5-checked
    return _load_idx_dataset(name, root, split, download)
