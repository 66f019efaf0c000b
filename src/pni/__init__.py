"""pni: Parametric Noise Injection (He, Rakin, Fan, CVPR 2019) for PyTorch.

Trainable Gaussian noise on weights, activations or inputs (``inject``), learned with
PGD adversarial training (``fit``, ``TrainConfig``), and the attacks (``pni.attacks``)
and evaluation (``evaluate``, ``audit``) needed to judge such a randomized defense.

``pni.evaluate``, ``pni.audit`` and ``pni.certify`` are functions; the jobs' folders are
``pni.training``, ``pni.evaluation``, ``pni.auditing``, ``pni.certification``, ``pni.reports``,
``pni.reproduce`` (the paper's tables) and ``pni.cli`` (docs/ARCHITECTURE.md).
"""
from .threads import cli_wait_policy as _cli_wait_policy

_cli_wait_policy()  # the pni command only: OpenMP threads sleep, not spin, while they wait (before torch)

from . import attacks  # noqa: E402
from .allocator import keep_freed_memory
from .errors import PNIError
from .auditing import AuditReport, audit, sweep_eot, sweep_eps, sweep_steps
from .certification.smoothing import (
    Certification,
    CertifyError,
    SmoothedPrediction,
    certify,
    gaussian_augment,
    predict,
    rse_inject,
)
from .certification.check import CertificateCheck, cross_check_certificates
from .config import TrainConfig
from .data import (
    BatchLoader,
    DataError,
    Dataset,
    as_tensors,
    load_dataset,
    missing_classes,
    stratified_indices,
)
from .evaluation.evaluator import evaluate
from .evaluation.result import Evaluation, EvaluationError
from .models.hub import PretrainedError, load_model, pretrained
from .attacks.threat import ThreatError, parse_threat
from .models import MODELS, ModelError, count_parameters, create_model, layer_labels
from .noise import (
    GRANULARITIES,
    LOCATIONS,
    NoiseInjection,
    NoiseError,
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
from .reproduce import ReproduceError, Runner as ReproduceRunner
from .training import fit, train_run

from .provenance import __version__

__all__ = [
    "AuditReport", "audit", "sweep_eot", "sweep_eps", "sweep_steps",
    "CertificateCheck", "Certification", "CertifyError", "SmoothedPrediction", "certify",
    "cross_check_certificates", "gaussian_augment", "predict", "rse_inject",
    "ReproduceError", "ReproduceRunner",
    "BatchLoader", "DataError", "Dataset", "as_tensors", "load_dataset", "missing_classes",
    "stratified_indices",
    "Evaluation", "EvaluationError", "TrainConfig", "attacks", "evaluate", "fit", "train_run",
    "GRANULARITIES", "LOCATIONS", "MODELS", "ModelError", "NoiseError", "NoiseInjection", "PNIError",
    "alpha_parameters", "alpha_values", "alphas", "count_parameters", "create_model",
    "freeze_alphas", "inject", "injection_spec", "is_injected", "keep_freed_memory", "layer_labels",
    "noise_enabled", "noise_modules", "param_groups", "remove", "set_noise",
    "PretrainedError", "ThreatError", "load_model", "parse_threat", "pretrained",
]
