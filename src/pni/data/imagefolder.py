"""Image folders: scanning a folder or .zip of <split>/<class>/*.png|jpg, bounded decoding, on-disk cache.

``data_dir`` is a folder or ``.zip`` with ``<split>/<class>/*.png|jpg`` (a zip may wrap
that in one top-level folder). Classes are the sorted class folders; images come in a
fixed order that does not group classes (round-robin over the classes, files in name order
within a class). Decoded once and cached under ``default_data_dir()/cache`` (keyed by
path, split, size and mtime -- of every file for a folder). ``mean``/``std`` are computed
from the loaded split itself (so the test split carries test statistics). Every image is
checked against :mod:`pni.data.limits` before it is read and before it is decoded.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import pickle
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..progress import counted, progress_bar
from .dataset import SPLITS, DataError, Dataset, default_data_dir
from .limits import (ENV_MAX_DATASET_BYTES, ENV_MAX_IMAGE_PIXELS, max_dataset_bytes, max_image_file_bytes,
                     max_image_pixels)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_CACHE_VERSION = 2  # 2: image folders interleave their classes


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
    try:
        if path.is_dir():
            source = _scan_folder(path, split)
            images = _decode_images(source, lambda name: _read_image_file(path / name))
        else:
            with _open_zip(path) as zf:
                source = _scan_zip(path, split, zf.namelist())
                images = _decode_images(source, lambda name: _read_zip_member(zf, name, path))
        labels = torch.tensor([label for _, label in source.files], dtype=torch.int64)
        mean, std = channel_stats(images)
    except (MemoryError, RuntimeError) as err:  # torch's allocator raises RuntimeError
        if not isinstance(err, MemoryError) and "alloc" not in str(err).lower():
            raise
        raise DataError(f"imagefolder {path} {split}: out of memory while decoding it; lower "
                        f"{ENV_MAX_DATASET_BYTES} (now {max_dataset_bytes()} bytes) to refuse such data "
                        f"up front, or free memory") from None
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
    if info.flag_bits & 0x1:
        raise DataError(f"cannot read image {archive}/{name}: the zip member is encrypted (pni reads "
                        f"unencrypted zips only; extract it, or zip it again without a password)")
    too_big = DataError(f"image {archive}/{name} inflates to {info.file_size} bytes, above the "
                        f"limit of {limit} bytes for one image file ({_pixel_limit_note()})")
    if info.file_size > limit:
        raise too_big
    try:
        with zf.open(info) as member:
            blob = member.read(limit + 1)
    except (NotImplementedError, RuntimeError) as err:  # an unknown compression method; a password
        raise DataError(f"cannot read image {archive}/{name}: zip member compressed with method "
                        f"{info.compress_type}, which cannot be read here ({err}); zip it again with "
                        f"deflate or no compression") from None
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
    with progress_bar(len(source.files), f"decoding {source.path.name} {source.split}", "img") as bar:
        for i, (name, _) in enumerate(counted(source.files, bar)):
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
    """The uint8 (N, H, W, 3) array the split is decoded into, or a DataError: above
    :func:`max_dataset_bytes` (from the first image's size) or more than can be allocated."""
    needed, limit = count * size[0] * size[1] * 3, max_dataset_bytes()
    if needed > limit:
        raise DataError(f"{source.path} {source.split}: {count} images of {size[1]}x{size[0]} decode to "
                        f"{needed} bytes, above the limit of {limit} bytes for one split (refused before "
                        f"decoding them; raise it with {ENV_MAX_DATASET_BYTES})")
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


def channel_stats(images: Tensor, chunk: int = 1 << 22) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images scaled to [0, 1].

    Streaming and exact: a histogram of the 256 pixel values per channel, counted ``chunk``
    pixels at a time (a few MiB of scratch memory, whatever the size of the images), then the
    moments of the 256 values. Float images (not pni's uint8) are summed in float32 chunks."""
    channels = images.shape[1]
    if images.dtype != torch.uint8:
        return _float_stats(images, chunk)
    counts = torch.zeros(channels, 256, dtype=torch.int64)
    for c, flat in _chunks(images, chunk):
        counts[c] += torch.bincount(flat.to(torch.int32), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(dim=1).clamp_min(1).double()
    mean = (counts.double() * values).sum(dim=1) / total
    var = ((counts.double() * values**2).sum(dim=1) / total - mean**2).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def _float_stats(images: Tensor, chunk: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``channel_stats`` of float images in [0, 1]: float32 sums per chunk, accumulated in float64."""
    channels = images.shape[1]
    total, total_sq = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    for c, flat in _chunks(images, chunk):
        block = flat.float()
        total[c] += float(block.sum())
        total_sq[c] += float((block * block).sum())
    count = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
    mean = total / count
    var = (total_sq / count - mean**2).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def _chunks(images: Tensor, chunk: int) -> Iterator[tuple[int, Tensor]]:
    """(channel, at most ``chunk`` of its pixels) over every image, a few images at a time."""
    per_image = max(images.shape[2] * images.shape[3], 1)
    step = max(1, chunk // per_image)
    for start in range(0, images.shape[0], step):
        block = images[start:start + step]
        for c in range(images.shape[1]):
            flat = block[:, c].reshape(-1)
            for first in range(0, flat.numel(), chunk):
                yield c, flat[first:first + chunk]
