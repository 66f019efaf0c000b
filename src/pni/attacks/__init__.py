"""Adversarial attacks on (possibly randomized) models; images and outputs in [0, 1]."""
from ._common import AttackError, input_gradient
from .gradient import fgsm, pgd

__all__ = ["AttackError", "fgsm", "input_gradient", "pgd"]
