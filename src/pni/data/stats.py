"""Per-channel normalization statistics (mean, std in [0, 1] pixel units) of the standard datasets.

The one place these numbers live: the loaders attach them to each :class:`~pni.data.Dataset`
and the model registry uses them as each architecture's default ``Normalize`` layer.
This module imports nothing (the models import it; it must never import them back).
"""

from __future__ import annotations

Stats = tuple[tuple[float, ...], tuple[float, ...]]

MNIST_STATS: Stats = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS: Stats = ((0.2860,), (0.3530,))
CIFAR10_STATS: Stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

# dataset name -> (mean, std); mnist-sample uses the mnist entry, imagefolder computes its own.
NORMALIZATION: dict[str, Stats] = {
    "mnist": MNIST_STATS,
    "fashion-mnist": FASHION_MNIST_STATS,
    "cifar10": CIFAR10_STATS,
}
