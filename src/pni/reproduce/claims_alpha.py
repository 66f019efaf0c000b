"""Table 1's claims on the learned noise scales alpha, judged from each run's final
alphas (the last epoch's ``alphas`` in its ``train_log.jsonl``; |alpha|, the sign of a noise
scale is irrelevant). An alpha has no standard error, so these verdicts follow fixed rules,
stated relative to the initial alpha (``init_alpha``, the paper's 0.25) and to the other
run; applied to the paper's own Table 1 alphas, both claims hold:

* "Without adversarial training the alphas go to ~0": *holds* when every layer's |alpha| is
  at most ``VANISHED`` x init (0.025 for 0.25); *does not hold* when some layer keeps at
  least ``KEPT`` x init (0.125); *inconclusive* in between (they fell, but not to ~0).
  The paper: largest 0.009.
* "Without PNI in x-hat generation alpha runs away, with it the alphas stay moderate":
  *holds* when some layer of the run without PNI in x-hat reaches ``RUNAWAY`` x init (1.0),
  every layer of the run with it stays below that, and the first run's largest |alpha| is
  at least ``RATIO`` times the second's; *does not hold* when no layer of the first runs
  away or some layer of the second does; *inconclusive* otherwise. The paper: 5.856 vs 0.771.

A run still training (its log ends before its last epoch) is not judged.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .verdicts import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_JUDGED, Verdict

INIT_ALPHA = 0.25     # the paper's (and pni's default) initial alpha
VANISHED = 0.1        # |alpha| <= VANISHED * init: "~0"
KEPT = 0.5            # |alpha| >= KEPT * init: that layer's noise did not vanish
RUNAWAY = 4.0         # |alpha| >= RUNAWAY * init: that layer's alpha ran away
RATIO = 2.0           # the run-away run's largest |alpha| over the other's, at least
SOURCE = "Table 1, rule on |alpha|"


def alpha_labels(alphas: Mapping[str, float]) -> dict[str, float]:
    """``{"stage1.0.conv1:W": -0.1}`` as ``{"Conv1.0": 0.1}``: the paper's layer labels
    (``pni.models.layer_label``; a site other than W is added in brackets) and |alpha|."""
    from ..models import layer_label

    out: dict[str, float] = {}
    for key, value in alphas.items():
        layer, _, site = key.partition(":")
        label = layer_label(layer) + (f" ({site})" if site and site != "W" else "")
        out[label] = abs(float(value))
    return out


def final_alphas(found: Mapping[str, Any] | None) -> tuple[dict[str, float] | None, float, str]:
    """(label -> |alpha| at the run's last epoch, its initial alpha, why there are none) from
    ``Results``' "alphas_final" record of a run; None with a reason when missing or unfinished."""
    if not found or not found.get("alphas"):
        return None, INIT_ALPHA, "no training log with alphas"
    init = float(found.get("init_alpha") or INIT_ALPHA)
    epoch, epochs = found.get("epoch"), found.get("epochs")
    if epoch is not None and epochs is not None and int(epoch) < int(epochs):
        return None, init, f"still training (epoch {epoch} of {epochs})"
    return alpha_labels(found["alphas"]), init, ""


def _largest(alphas: Mapping[str, float]) -> tuple[str, float]:
    return max(alphas.items(), key=lambda kv: kv[1])


def _cite(alphas: Mapping[str, float]) -> str:
    layer, top = _largest(alphas)
    mean = sum(alphas.values()) / len(alphas)
    return f"largest |alpha| {top:.4g} ({layer}), mean {mean:.4g} over {len(alphas)} layers"


def vanishing_verdict(alphas: Mapping[str, float] | None, init: float = INIT_ALPHA,
                      missing: str = "") -> Verdict:
    """"Without adversarial training the alphas go to ~0" (the module's rule)."""
    claim = "Without adversarial training the alphas go to ~0"
    if not alphas:
        return Verdict(claim, SOURCE, NOT_JUDGED, f"missing: vanilla-training run ({missing or 'not run'})")
    top = _largest(alphas)[1]
    verdict = HOLDS if top <= VANISHED * init else DOES_NOT_HOLD if top >= KEPT * init else INCONCLUSIVE
    evidence = (f"vanilla training: {_cite(alphas)}; init {init:g}; rule: holds if every |alpha| <= "
                f"{VANISHED * init:.4g} ({VANISHED:g} x init), does not hold if some |alpha| >= "
                f"{KEPT * init:.4g} ({KEPT:g} x init)")
    return Verdict(claim, SOURCE, verdict, evidence)


def runaway_verdict(off: Mapping[str, float] | None, on: Mapping[str, float] | None, init: float = INIT_ALPHA,
                    missing: str = "") -> Verdict:
    """"Without PNI in x-hat generation alpha runs away, with it they stay moderate"."""
    claim = "Without PNI in x-hat generation some alpha runs away; with it the alphas stay moderate"
    if not off or not on:
        return Verdict(claim, SOURCE, NOT_JUDGED, f"missing: {missing or 'a run'}")
    limit = RUNAWAY * init
    off_top, on_top = _largest(off)[1], _largest(on)[1]
    if off_top < limit or on_top >= limit:
        verdict = DOES_NOT_HOLD
    elif off_top >= RATIO * on_top:
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    evidence = (f"without PNI in x-hat: {_cite(off)}; with it: {_cite(on)}; rule: holds if the first "
                f"reaches {limit:.4g} ({RUNAWAY:g} x init {init:g}), the second stays below it, and the "
                f"first's largest is >= {RATIO:g}x the second's")
    return Verdict(claim, SOURCE, verdict, evidence)


def alpha_claims(results: Any, track: str) -> list[Verdict]:
    def final(row: str) -> tuple[dict[str, float] | None, float, str]:
        return final_alphas(results.get("table1", row, track, "alphas_final"))

    (plain, init, plain_missing), (off, _, off_missing), (on, _, on_missing) = (
        final(r) for r in ("vanilla-training", "at-xnoise-off", "at-xnoise-on"))
    missing = "; ".join(f"{name} run ({why})" for name, alphas, why in
                        (("without PNI in x-hat", off, off_missing), ("with PNI in x-hat", on, on_missing))
                        if not alphas)
    return [vanishing_verdict(plain, init, plain_missing), runaway_verdict(off, on, init, missing)]
