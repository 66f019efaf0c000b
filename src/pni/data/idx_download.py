"""Downloading MNIST and Fashion-MNIST: the four standard IDX ``.gz`` files, checksum-verified.

``download_idx(name, root)`` fetches the files of both splits that are missing from
``<root>/<name>/`` (``mnist``, ``fashion-mnist``), trying each mirror of
:data:`IDX_MIRRORS` in turn (the ones torchvision uses). Every file is checked against
:data:`IDX_MD5`, the md5 of the *uncompressed* IDX file (so a mirror that recompresses the
same bytes still verifies; the gzip stream is inflated only up to what its IDX header
announces), and also for its IDX magic number. A file is written through a ``.part`` file
and renamed only once verified; a failed download leaves nothing behind. Both tables are
read at call time: tests point them at a local server.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .cifar10 import _fetch
from .dataset import DataError

IDX_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
IDX_MD5 = {  # md5 of each uncompressed IDX file
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def _content_md5(path: Path, stem: str) -> str:
    """md5 of the uncompressed IDX content of ``path`` (bounded inflation, magic checked)."""
    from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, _idx_bytes

    magic = IDX_IMAGES_MAGIC if "images" in stem else IDX_LABELS_MAGIC
    raw = _idx_bytes(path.read_bytes(), str(path), path.suffix == ".gz", magic)
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def _verified(path: Path, stem: str, expected: str) -> bool:
    try:
        return _content_md5(path, stem) == expected.lower()
    except (DataError, OSError):
        return False


def download_idx(name: str, root: str | os.PathLike[str], progress: bool = True) -> Path:
    """Fetches the missing IDX files of ``name`` into ``<root>/<name>/`` and verifies each;
    returns that folder. Files already there that verify are kept; a download that does
    not verify on any mirror raises ``DataError`` naming the file and the checksums."""
    if name not in IDX_MD5:
        raise DataError(f"no download for {name!r}; downloadable IDX datasets: {', '.join(IDX_MD5)}")
    folder = Path(root).expanduser() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot write to download folder {folder} ({err})") from err
    for stem, expected in IDX_MD5[name].items():
        target = folder / f"{stem}.gz"
        if target.is_file() and _verified(target, stem, expected):
            continue
        failures = []
        for mirror in IDX_MIRRORS[name]:
            url = mirror + target.name
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
            tmp = Path(tmp_name).with_suffix(".gz")  # read back as gzip
            try:
                with os.fdopen(fd, "wb") as out:
                    _fetch(url, out, progress, desc=target.name)
                os.replace(tmp_name, tmp)
                actual = _content_md5(tmp, stem)
                if actual != expected.lower():
                    raise DataError(f"download of {url} has (uncompressed) md5 {actual}, expected {expected}")
                os.replace(tmp, target)
                break
            except DataError as err:
                failures.append(str(err))
            finally:
                Path(tmp_name).unlink(missing_ok=True)
                tmp.unlink(missing_ok=True)
        else:
            raise DataError(f"could not download {name} {target.name}, nothing was kept: " + "; ".join(failures))
    return folder
