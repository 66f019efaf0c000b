"""Adversarial attacks on (possibly randomized) models; images and outputs in [0, 1]."""
from ._common import AttackError, input_gradient, is_randomized
from .autoattack import AutoAttackResult, autoattack
from .cw import CW_PROFILES, CWResult, cw_l2, cw_l2_profile
from .gradient import fgsm, pgd
from .l2 import SmoothedSoftmax, pgd_l2, project_l2
from .random_search import random_search
from .transfer import TransferResult, transfer
from .votes import expected_accuracy, majority_vote, majority_vote_accuracy, predict_votes, vote_correctness
from .zoo import ZooResult, zoo

__all__ = ["AttackError", "AutoAttackResult", "CWResult", "CW_PROFILES", "SmoothedSoftmax", "TransferResult",
           "ZooResult", "pgd_l2", "project_l2",
           "autoattack", "cw_l2", "cw_l2_profile", "expected_accuracy", "fgsm", "input_gradient",
           "is_randomized", "majority_vote", "majority_vote_accuracy", "pgd", "predict_votes",
           "random_search", "transfer", "vote_correctness", "zoo"]
