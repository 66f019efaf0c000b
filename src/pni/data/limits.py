"""Bounded decoding: the size limits every format reader checks before it inflates or decodes.

An image whose header says more than :func:`max_image_pixels` (4096 x 4096;
``$PNI_MAX_IMAGE_PIXELS``) is refused before decoding; an image file or zip member is read
or inflated only up to the size such an image can have (:func:`max_image_file_bytes`); a
gzipped IDX stream only up to what its header announces (at most
:func:`max_inflated_bytes`, ``$PNI_MAX_INFLATED_BYTES``); a whole decoded image folder or
zip only up to :func:`max_dataset_bytes` (4 GiB of uint8 pixels, ``$PNI_MAX_DATASET_BYTES``),
checked from the first image's size before the split's buffer is allocated, so a tiny
archive of huge images cannot claim the machine's memory. The module constants are read at
call time, so they can be changed on this module (or on ``pni.data``) or by environment.
"""

from __future__ import annotations

import os

from .dataset import DataError

# Bounded decoding: read at call time, so they can be changed on the module or by env.
MAX_IMAGE_PIXELS = 4096 * 4096     # an image with more pixels is refused before decoding
MAX_INFLATED_BYTES = 4 << 30       # the most one gzip stream may inflate to
MAX_DATASET_BYTES = 4 << 30        # the most decoded pixel bytes one image-folder split may hold
ENV_MAX_IMAGE_PIXELS = "PNI_MAX_IMAGE_PIXELS"
ENV_MAX_INFLATED_BYTES = "PNI_MAX_INFLATED_BYTES"
ENV_MAX_DATASET_BYTES = "PNI_MAX_DATASET_BYTES"


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


def max_dataset_bytes() -> int:
    """The most bytes of decoded uint8 pixels (N x 3 x H x W) one image-folder split may hold.

    ``$PNI_MAX_DATASET_BYTES`` if set, else :data:`MAX_DATASET_BYTES` (4 GiB).
    """
    return _limit(ENV_MAX_DATASET_BYTES, MAX_DATASET_BYTES)


def max_image_file_bytes() -> int:
    """The most bytes one encoded image file (or zip member) may hold: its raw pixels at
    8 bytes each (16-bit RGBA) for :func:`max_image_pixels` pixels, plus 1 MiB of headers."""
    return 8 * max_image_pixels() + (1 << 20)
