"""Other libraries' attacks under pni's judging: a torchattacks or foolbox attack object
runs through ``pni.evaluate`` and gets pni's votes, trials and per-image worst case.

``foreign_attack(obj, eps=...)`` returns an attack callable ``(model, x, y) -> x_adv``:

* torchattacks (``torchattacks.PGD(model, eps=..., ...)``): called as ``obj(x, y)``; the
  object must have been built on the model being evaluated (it holds it).
* foolbox 3 (``foolbox.attacks.LinfPGD()``): called as ``obj(PyTorchModel(model, (0, 1)),
  x, y, epsilons=eps)`` and its clipped examples kept.
* any callable ``fn(x, y) -> x_adv`` (``library="callable"``).

The library's own verdict (one stochastic pass, for a randomized model a lucky draw) is not
used: ``evaluate`` judges the returned images over ``votes`` fresh draws, seeds each trial,
and puts the attack in the per-image worst case. With ``eps`` the examples are checked to
lie in the L-inf ball and in [0, 1] (an attack that leaves its threat would make every
worst case meaningless). Neither library is a dependency of pni.

Example::

    import torchattacks, pni
    attack = pni.attacks.foreign_attack(torchattacks.PGD(model, eps=8/255, alpha=2/255, steps=10), eps=8/255)
    result = pni.evaluate(model, data, {"clean": None, "torchattacks-pgd": attack}, votes=10)
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._common import AttackError, check_eps

LIBRARIES = ("torchattacks", "foolbox", "callable")


def _library_of(obj: Any) -> str:
    root = type(obj).__module__.split(".")[0]
    if root in ("torchattacks", "foolbox"):
        return root
    if callable(obj):
        return "callable"
    raise AttackError(f"cannot run a {type(obj).__name__} as an attack: expected a torchattacks or foolbox "
                      f"attack object, or a callable fn(x, y) -> x_adv")


class ForeignAttack:
    """An attack of another library as a pni attack callable; ``params`` is what the
    evaluation records (its library, class, eps and the object's own settings)."""

    def __init__(self, obj: Any, eps: float | None = None, library: str | None = None) -> None:
        self.obj = obj
        self.library = library or _library_of(obj)
        if self.library not in LIBRARIES:
            raise AttackError(f"unknown library {library!r}; expected one of: {', '.join(LIBRARIES)}")
        self.eps = None if eps is None else check_eps(eps)
        if self.library == "foolbox" and self.eps is None:
            raise AttackError("a foolbox attack needs eps= (its epsilons)")
        self.params: dict[str, Any] = {"library": self.library, "attack": type(obj).__name__,
                                       **({"eps": self.eps} if self.eps is not None else {}),
                                       **_own_settings(obj)}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.library == "torchattacks":
            held = getattr(self.obj, "model", None)
            if isinstance(held, nn.Module) and not any(m is model for m in held.modules()):
                raise AttackError(f"the torchattacks {type(self.obj).__name__} was built on another model "
                                  f"({type(held).__name__}); build it on the model evaluated")
            x_adv = self.obj(x, y)
        elif self.library == "foolbox":
            import foolbox

            fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x.device)
            _, x_adv, _ = self.obj(fmodel, x, y, epsilons=self.eps)
        else:
            x_adv = self.obj(x, y)
        if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
            raise AttackError(f"{self.params['attack']} returned {getattr(x_adv, 'shape', type(x_adv).__name__)}, "
                              f"not images of shape {tuple(x.shape)}")
        x_adv = x_adv.detach().to(x.dtype)
        if self.eps is not None:
            excess = float((x_adv - x).abs().amax()) if len(x) else 0.0
            if excess > self.eps + 1e-5 or (len(x) and not bool(((x_adv >= 0) & (x_adv <= 1)).all())):
                raise AttackError(f"{self.params['attack']} left its threat: L-inf distance {excess:.4g} > eps "
                                  f"{self.eps:.4g}, or pixels outside [0, 1]")
        return x_adv


def _own_settings(obj: Any) -> dict[str, Any]:
    """The plain numeric / text settings an attack object keeps (eps, alpha, steps, ...)."""
    out = {}
    for key, value in sorted(vars(obj).items()) if hasattr(obj, "__dict__") else ():
        if key.startswith("_") or key in ("model", "device"):
            continue
        if isinstance(value, (bool, int, float, str)) and len(out) < 12:
            out[key] = value
    return out


def foreign_attack(obj: Any, eps: float | None = None, library: str | None = None) -> ForeignAttack:
    """``obj`` (a torchattacks or foolbox attack, or ``fn(x, y) -> x_adv``) as a pni attack,
    its examples checked against ``eps`` when given. See the module's docstring."""
    return ForeignAttack(obj, eps, library)


__all__ = ["LIBRARIES", "ForeignAttack", "foreign_attack"]
