"""Threat models as text: ``linf:8/255`` (the norm, then the radius; a number or a fraction).

A threat is what an evaluation attacks within. pni never guesses it for data it does not
know: ``pni.evaluate`` with named attacks needs ``threat=`` (or ``eps=``), ``pni eval
--model`` needs ``--threat``; only a ``pni train`` checkpoint supplies its own (its
training eps). The attacks of ``pni eval`` are L-inf bounded, so ``linf`` is the norm taken.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PNIError

NORMS = ("linf",)


class ThreatError(PNIError):
    """A threat that cannot be parsed or is not supported; the message names it."""


@dataclass(frozen=True)
class Threat:
    """An L-p ball: ``norm`` ("linf") and radius ``eps`` in [0, 1] pixel units."""

    norm: str
    eps: float

    def __str__(self) -> str:
        return f"{self.norm}:{self.eps:.6g}"

    def to_json(self) -> dict[str, object]:
        return {"norm": self.norm, "eps": self.eps}


def parse_threat(value: str | Threat) -> Threat:
    """``"linf:8/255"`` (or a ``Threat``) as a ``Threat``; one-line ThreatError otherwise.

    >>> parse_threat("linf:8/255").eps == 8 / 255, str(parse_threat("Linf:0.3"))
    (True, 'linf:0.3')
    """
    if isinstance(value, Threat):
        return value
    if not isinstance(value, str) or ":" not in value:
        raise ThreatError(f"a threat is written NORM:EPS, e.g. linf:8/255 or linf:0.3; got {value!r}")
    norm, _, radius = value.partition(":")
    norm = norm.strip().lower().replace("-", "")
    if norm not in NORMS:
        raise ThreatError(f"threat {value!r}: norm {norm!r} is not supported; expected one of: {', '.join(NORMS)}")
    try:
        if "/" in radius:
            num, den = radius.split("/", 1)
            eps = float(num) / float(den)
        else:
            eps = float(radius)
    except (ValueError, ZeroDivisionError):
        raise ThreatError(f"threat {value!r}: the radius must be a number or a fraction such as 8/255") from None
    if not 0.0 < eps <= 1.0:
        raise ThreatError(f"threat {value!r}: the radius must be in (0, 1] (images are in [0, 1]), got {eps:g}")
    return Threat(norm, eps)


def threat_eps(threat: str | Threat | None, eps: float | None, attacks: object = ()) -> float | None:
    """The radius an evaluation attacks at: ``eps``, else the ``threat``'s; both given must
    agree. With neither, named attacks other than "clean" are a ThreatError (a dict of
    callables carries its own radius)."""
    if threat is not None:
        radius = parse_threat(threat).eps
        if eps is not None and abs(float(eps) - radius) > 1e-12:
            raise ThreatError(f"eps={eps:g} and threat={str(threat)!r} disagree; give one of them")
        return radius
    if eps is None and not isinstance(attacks, dict) and any(name != "clean" for name in attacks):
        raise ThreatError("a threat is required for these attacks: threat='linf:8/255' (or eps=); pni does "
                          "not guess a radius for your data")
    return eps
