"""Regenerate the packaged MNIST sample (src/pni/_sample) from the official files.

The sample is the first 6,000 images of the official MNIST *test* set
(t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte, gzipped or not), stored as gzipped
IDX files. Output bytes are reproducible: gzip level 9, no file name, mtime 0.

    python scripts/make_sample.py --mnist-dir ../shared/data/mnist --out src/pni/_sample
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

from pni.data import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    SAMPLE_IMAGES,
    SAMPLE_LABELS,
    DataError,
    encode_idx,
    read_idx,
)

SAMPLE_SIZE = 6000


def _source(mnist_dir: Path, stem: str) -> Path:
    """The official file ``stem`` or ``stem.gz`` in ``mnist_dir``."""
    for path in (mnist_dir / stem, mnist_dir / f"{stem}.gz"):
        if path.is_file():
            return path
    raise DataError(f"{mnist_dir}: neither {stem} nor {stem}.gz found")


def _write(path: Path, payload: bytes) -> None:
    """Write gzip-compressed ``payload`` deterministically."""
    path.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    print(f"{path}: {path.stat().st_size:,} bytes, md5 {digest}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, required=True,
                        help="folder with the official t10k-*-idx*-ubyte[.gz] files")
    parser.add_argument("--out", type=Path, default=Path("src/pni/_sample"),
                        help="output folder (default: src/pni/_sample)")
    args = parser.parse_args(argv)

    images = read_idx(_source(args.mnist_dir, "t10k-images-idx3-ubyte"), IDX_IMAGES_MAGIC)
    labels = read_idx(_source(args.mnist_dir, "t10k-labels-idx1-ubyte"), IDX_LABELS_MAGIC)
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise DataError(f"expected the official MNIST test set (10000 x 28 x 28), got "
                        f"images {images.shape} and labels {labels.shape}")
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / SAMPLE_IMAGES, encode_idx(images[:SAMPLE_SIZE]))
    _write(args.out / SAMPLE_LABELS, encode_idx(labels[:SAMPLE_SIZE]))


if __name__ == "__main__":
    main()
