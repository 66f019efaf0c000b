"""Batching: BatchLoader (sharded, seeded order, device-side scaling) and crop_flip augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .dataset import DataError, Dataset, _validated_pair, mix_seed

AUGMENTATIONS: tuple[str, ...] = ("none", "crop-flip", "auto")


def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


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
