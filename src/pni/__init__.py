"""pni: Parametric Noise Injection (He, Rakin, Fan, CVPR 2019) for PyTorch.

Trainable Gaussian noise on weights, activations or inputs (``inject``), learned with
PGD adversarial training, and the attacks needed to evaluate such a randomized defense.
"""
from .audit import AuditReport, audit, sweep_eot, sweep_eps, sweep_steps
from .data import BatchLoader, DataError, Dataset, as_tensors, load_dataset
from .models import MODELS, ModelError, count_parameters, create_model, layer_labels
from .noise import (
    GRANULARITIES,
    LOCATIONS,
    NoiseInjection,
    PNIError,
    alpha_parameters,
    alpha_values,
    alphas,
    freeze_alphas,
    inject,
    injection_spec,
    is_injected,
    noise_enabled,
    noise_modules,
    param_groups,
    remove,
    set_noise,
)

__version__ = "0.1.0"

__all__ = [
    "AuditReport", "audit", "sweep_eot", "sweep_eps", "sweep_steps",
    "BatchLoader", "DataError", "Dataset", "as_tensors", "load_dataset",
    "GRANULARITIES", "LOCATIONS", "MODELS", "ModelError", "NoiseInjection", "PNIError",
    "alpha_parameters", "alpha_values", "alphas", "count_parameters", "create_model",
    "freeze_alphas", "inject", "injection_spec", "is_injected", "layer_labels",
    "noise_enabled", "noise_modules", "param_groups", "remove", "set_noise",
]
