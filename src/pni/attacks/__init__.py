"""Adversarial attacks on (possibly randomized) models; images and outputs in [0, 1].

Importing the package imports every attack file, and each registers its ``pni eval``
attacks (``registry.AttackSpec``) at its bottom, in this order: the order of
``registry.attack_names()``. A new attack file is imported here too.
"""
# isort: off
# the attack files, in registration order: fgsm, pgd, eot-pgd, cw, zoo, eot-zoo, aa-rand, aa-standard, square
from .gradient import fgsm, pgd
from .cw import CW_PROFILES, CWResult, cw_l2, cw_l2_profile
from .zoo import ZooResult, zoo
from .autoattack import AutoAttackResult, autoattack
from .square import SquareResult, square
# isort: on
from ._common import AttackError, input_gradient, is_randomized
from .adapter import ForeignAttack, foreign_attack
from .l2 import SmoothedSoftmax, pgd_l2, project_l2
from .random_search import random_search
from .registry import AttackSpec, register_attack
from .substitute import SubstituteRecord, SubstituteResult, substitute_attack, train_substitute
from .transfer import TransferResult, transfer
from .votes import expected_accuracy, majority_vote, majority_vote_accuracy, predict_votes, vote_correctness

__all__ = ["ForeignAttack", "foreign_attack", "AttackError", "AttackSpec", "AutoAttackResult", "CWResult", "CW_PROFILES", "SmoothedSoftmax",
           "SquareResult", "SubstituteRecord", "SubstituteResult",
           "TransferResult", "ZooResult", "pgd_l2", "project_l2",
           "autoattack", "cw_l2", "cw_l2_profile", "expected_accuracy", "fgsm", "input_gradient",
           "is_randomized", "majority_vote", "majority_vote_accuracy", "pgd", "predict_votes",
           "random_search", "register_attack", "square", "substitute_attack", "train_substitute", "transfer",
           "vote_correctness", "zoo"]
