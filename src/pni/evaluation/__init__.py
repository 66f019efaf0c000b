"""Evaluation (Tables 1-3): accuracy under attack over trials, noise on and off, judged over
noise draws, with the per-image worst case and the AutoAttack-style cascade (``evaluate``); its
settings (``settings``); per-image outcomes for paired verdicts (``per_image``); the
up-front time estimates (``estimate``); and what a stopped evaluation finished (``partial``)."""
from .evaluator import evaluate, evaluate_checkpoint
from .partial import PartialEvaluation, partial_evaluation
from .result import Evaluation, EvaluationError
from .settings import EvalSettings, TransferSettings

__all__ = ["EvalSettings", "Evaluation", "EvaluationError", "PartialEvaluation", "TransferSettings", "evaluate",
           "evaluate_checkpoint", "partial_evaluation"]
