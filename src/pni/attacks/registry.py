"""Attacks by name, for ``pni eval``: each attack file registers its own ``AttackSpec``.

An attack is a callable ``(model, x, y)`` returning the adversarial images, or a result
object with ``x_adv`` and ``per_sample()`` (C&W, ZOO, AutoAttack) whose extra per-sample
figures (L2 norms, success flags, AutoAttack's own flags) the evaluation reports too.

The file that defines an attack registers it at its bottom (timm's ``@register_model``
habit); ``import pni.attacks`` imports every attack file, so the table is full once any
part of the package is imported. This module imports no attack file. To add an attack::

    def _build(eps, steps, step_size, strength=None):   # strength: one of its options
        return (lambda model, x, y: my_attack(model, x, y, eps)), {"eps": eps}

    register_attack(AttackSpec("my-attack", "My attack", LINF_THREAT, _build, options=("strength",)))

and import the file in ``pni/attacks/__init__.py``. Its title goes to the reports, its
``options`` to ``build_attacks`` / ``evaluate(attack_options=...)`` and its ``flags`` to
``pni eval``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ._common import AttackError, check_eps, check_positive_int

Attack = Callable[[nn.Module, Tensor, Tensor], Any]
# build(eps=, steps=, step_size=, **its own options) -> (the attack, its parameters as reported)
Builder = Callable[..., tuple[Attack, dict[str, Any]]]

DEFAULT_EPS = 8 / 255
DEFAULT_VOTES = 10  # noise draws a prediction is judged over in `pni eval` (honest protocol)
# the protocols (which attacks, votes, cascade) are defined once, in pni.evaluation.protocols

# Threat models. Every attack bounded at eps counts in the per-sample worst case; C&W-L2
# looks for the smallest L2 perturbation, with no bound: its "accuracy" (where it failed) is
# not robustness at eps, so it stays out of the worst case.
NO_THREAT = "none"
LINF_THREAT = "Linf"
MIN_NORM_THREAT = "L2 min-norm"
UNBOUNDED_THREATS = (MIN_NORM_THREAT,)


@dataclass(frozen=True)
class AttackFlag:
    """A ``pni eval`` flag setting the build option ``option`` (or, with ``key``, the entry
    ``key`` of that option's dict of overrides); ``None`` (not given) sets nothing."""

    flag: str
    option: str
    help: str
    key: str | None = None
    type: Callable[[str], Any] = int
    default: Any = None
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class AttackSpec:
    """One named attack of ``pni eval``.

    ``title``: its column in the reports; ``threat``: ``LINF_THREAT``, ``MIN_NORM_THREAT``
    (kept out of the worst case), ...; ``build(eps=, steps=, step_size=, **own_options)``
    returns ``(attack, params)`` (``eps`` checked, ``steps`` / ``step_size`` None unless
    given); ``options``: the ``build_attacks`` keywords it takes (those given, not None);
    ``flags``: the ``pni eval`` flags that set them. ``one_draw_of``: the attack this one is
    with one draw per step ("eot-zoo" is "zoo" averaged over draws): on a deterministic model,
    with the same parameters but the draws (``budget.DRAW_KEYS``), both compute exactly the
    same, and ``evaluate`` runs them once.
    """

    name: str
    title: str
    threat: str
    build: Builder
    options: tuple[str, ...] = ()
    flags: tuple[AttackFlag, ...] = ()
    one_draw_of: str | None = None

    @property
    def in_worst_case(self) -> bool:
        return self.threat not in UNBOUNDED_THREATS


_ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Adds ``spec`` to the attacks of ``pni eval``; a name taken is an AttackError."""
    if spec.name in _ATTACKS:
        raise AttackError(f"attack {spec.name!r} is already registered")
    _ATTACKS[spec.name] = spec
    return spec


def unregister_attack(name: str) -> None:
    """Removes the attack ``name`` (a test's toy attack, say)."""
    _ATTACKS.pop(name, None)


def get_attack(name: str) -> AttackSpec:
    """The spec of the attack ``name``; an unknown name is an AttackError listing them."""
    if name not in _ATTACKS:
        raise AttackError(f"unknown attack {name!r}; expected one of: {', '.join(attack_names())}")
    return _ATTACKS[name]


def attack_names() -> list[str]:
    """The registered attacks, "clean" first, then in registration order."""
    return list(_ATTACKS)


def attack_options() -> tuple[str, ...]:
    """The keywords of ``build_attacks`` (and of ``evaluate(attack_options=...)``)."""
    return tuple(dict.fromkeys(option for spec in _ATTACKS.values() for option in spec.options))


def attack_flags() -> list[AttackFlag]:
    """The ``pni eval`` flags of the registered attacks, each once."""
    flags = {flag.flag: flag for spec in _ATTACKS.values() for flag in spec.flags}
    return list(flags.values())


def build_attacks(names: Sequence[str], eps: float | None = None, steps: int | None = None,
                  step_size: float | None = None,
                  **options: Any) -> tuple[dict[str, Attack], dict[str, dict[str, Any]]]:
    """Callables and their parameters for ``names``; "clean" means no attack.

    ``options`` (``attack_options()``): ``eot`` (EOT-PGD's draws, default 20), ``eot_batch``
    (draws per vectorized pass), ``cw_profile`` ("paper" or "strong"), and dicts of keyword
    overrides ``cw`` (``pni.attacks.cw_l2``), ``zoo`` (``pni.attacks.zoo``; L-inf bounded
    at ``eps`` here) and ``aa`` (``pni.attacks.autoattack``: n_iter, n_restarts, eot_iter,
    batch_size).
    """
    known = attack_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AttackError(f"unknown attack option(s) {', '.join(unknown)}; expected: {', '.join(known)}")
    options = {k: v for k, v in options.items() if v is not None}
    eps = check_eps(DEFAULT_EPS if eps is None else eps)
    if steps is not None:
        check_positive_int(steps, "steps", minimum=0)
    if step_size is not None:
        check_eps(step_size, "step_size")
    table: dict[str, Attack] = {}
    params: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = get_attack(name)
        own = {k: v for k, v in options.items() if k in spec.options}
        table[name], params[name] = spec.build(eps=eps, steps=steps, step_size=step_size, **own)
    return table, params


def _clean(**_: Any) -> tuple[Attack, dict[str, Any]]:
    return (lambda m, x, y: x), {}


register_attack(AttackSpec("clean", "Clean", NO_THREAT, _clean))
