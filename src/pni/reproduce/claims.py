"""The paper's claims, each judged from a ``report.Results`` on one track
(``verdicts.judge``): PNI-W beats vanilla AT (Table 2), noise on beats noise off, PNI-W is
the best location, whether EOT-PGD / AutoAttack-rand erase PNI's gain, FGSM weaker than PGD
(Table 7 item 1), capacity helps (Table 3), PNI resists ZOO better than vanilla AT (Table 5);
adversarial training needs a larger C&W L2 (Table 4), PNI-W beats PGD AT (Table 6), the
audit's items (Table 7, Fig. 3) and the alphas' convergence (Table 1, ``claims_alpha``)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .claims_alpha import alpha_claims
from .verdicts import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_JUDGED, Measure, Verdict, erased, judge, judge_seeds,
                       measure, metric)

ON, OFF = "with_noise", "without_noise"
# the honest protocol's attacks, and its per-image worst case over them (the robust accuracy
# a reader should take: an image counts only if it withstands every attack)
# (attack, the claims' words for it, its label next to a number)
HONEST_ATTACKS = (("eot-pgd", "EOT-PGD", "EOT-PGD"), ("aa-rand", "AutoAttack-rand", "AutoAttack-rand"),
                  ("worst-case", "the honest worst case (per image, EOT-PGD or AA-rand)", "worst case"))


def honest_attacks(*found: dict[str, Any] | None) -> tuple[tuple[str, str, str], ...]:
    """``HONEST_ATTACKS`` with the budget the honest results ``found`` ran at: an attack below its
    published budget is named with it ("AutoAttack-rand, 10 it x 10 draws (reduced)"), and a worst
    case over such an attack is not called "the honest worst case" (``pni.attacks.budget``)."""
    from ..attacks.budget import budget_text, is_reduced, recorded

    # a deterministic model's one draw per step is its 20-draw average: fewer draws are not short there
    reduced = {name: budget_text(name, params, randomized) for name in ("eot-pgd", "aa-rand")
               for params, randomized in recorded(name, found) if is_reduced(name, params, randomized)}
    out = []
    for attack, title, label in HONEST_ATTACKS:
        if attack in reduced:
            title, label = (f"{text}, {reduced[attack]} (reduced)" for text in (title, label))
        elif attack == "worst-case" and reduced:
            budgets = "; ".join(f"{name} {text}" for name, text in reduced.items())
            title = f"the worst case at a reduced budget (per image, EOT-PGD or AA-rand; {budgets})"
            label = f"worst case (reduced: {budgets})"
        out.append((attack, title, label))
    return tuple(out)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
LOCATION_NAMES = {"pni-i": "PNI-I", "pni-a-a": "PNI-A-a", "pni-a-b": "PNI-A-b", "pni-w+a-a": "PNI-W+A-a",
                  "pni-w+a-b": "PNI-W+A-b"}
OTHER_LOCATIONS = tuple(LOCATION_NAMES)


def _acc(results: Any, plan: str, row: str, track: str, setting: str, attack: str,
         protocol: str = "paper") -> Measure | None:
    return measure(results.get(plan, row, track, protocol), setting, attack)


def table1_claims(results: Any, track: str) -> list[Verdict]:
    """The alphas' rules (``claims_alpha``) and PNI in x-hat generation's gain under PGD."""
    return [*alpha_claims(results, track),
            judge("Adv. training with PNI in x-hat generation beats it without, under PGD", "Table 1",
                  ("with PNI in x-hat PGD", _acc(results, "table1", "at-xnoise-on", track, ON, "pgd")),
                  ("without PNI in x-hat PGD", _acc(results, "table1", "at-xnoise-off", track, ON, "pgd")))]


def table2_claims(results: Any, track: str) -> list[Verdict]:
    def acc(row: str, setting: str, attack: str, protocol: str = "paper") -> Measure | None:
        return _acc(results, "table2", row, track, setting, attack, protocol)

    pgd = judge("PNI-W beats vanilla AT under PGD", "Table 2",
                ("PNI-W PGD (noise on)", acc("pni-w", ON, "pgd")), ("vanilla AT PGD", acc("vanilla", OFF, "pgd")))
    verdicts = [
        pgd,
        judge("PNI-W beats vanilla AT on clean accuracy", "Table 2",
              ("PNI-W clean (noise on)", acc("pni-w", ON, "clean")),
              ("vanilla AT clean", acc("vanilla", OFF, "clean"))),
        judge("Noise on beats noise off under PGD (PNI-W)", "Table 2",
              ("PNI-W PGD noise on", acc("pni-w", ON, "pgd")), ("noise off", acc("pni-w", OFF, "pgd"))),
    ]
    def names_of(row: str) -> tuple[tuple[str, str, str], ...]:
        """The honest attacks' names for a comparison of ``row`` with vanilla AT, with the budget
        those two evaluations ran at."""
        return honest_attacks(results.get("table2", "vanilla", track, "honest"),
                              results.get("table2", row, track, "honest"))

    for attack, title, label in names_of("pni-w"):
        honest = judge(f"PNI-W beats vanilla AT under {title}", "honest counterpart of Table 2",
                       (f"PNI-W {label} (noise on)", acc("pni-w", ON, attack, "honest")),
                       (f"vanilla AT {label}", acc("vanilla", OFF, attack, "honest")))
        verdicts += [honest, erased(f"{_capital(title)} erases PNI-W's gain over vanilla AT",
                                    "Table 2 vs honest protocol", pgd, honest, title)]
    others = [(row, acc(row, ON, "pgd")) for row in OTHER_LOCATIONS]
    measured = [(row, m) for row, m in others if m is not None]
    if measured:
        verdict = best_location(acc("pni-w", ON, "pgd"), measured)
        if len(measured) < len(OTHER_LOCATIONS):
            verdict = dataclasses.replace(verdict, note=f"{verdict.note} (only {len(measured)} of "
                                                        f"{len(OTHER_LOCATIONS)} other locations run)".strip())
        verdicts.append(verdict)
    else:
        verdicts.append(Verdict("PNI-W is the best location under PGD", "Table 2", NOT_JUDGED,
                                "missing: the other locations' runs"))
    verdicts.append(judge("FGSM (one step) is weaker than PGD (iterative): PNI-W accuracy higher under FGSM",
                          "Table 7 item 1, from Table 2",
                          ("PNI-W FGSM", acc("pni-w", ON, "fgsm")), ("PNI-W PGD", acc("pni-w", ON, "pgd"))))
    return holm_notes(verdicts + _location_gains(acc, names_of)) + seed_claims(results, track)


SEEDED_COMPARISONS = (("pni-w", "PNI-W"), ("pni-w+a-a", "PNI-W+A-a"))


def seed_claims(results: Any, track: str) -> list[Verdict]:
    """Table 2's claims against vanilla AT again over training seeds (``judge_seeds``), for the
    rows that have several seeds on ``track``: under PGD and under each honest attack."""
    if not hasattr(results, "seed_count"):
        return []
    out: list[Verdict] = []
    if results.seed_count("table2", "vanilla", track) < 2:
        return out
    for row, name in SEEDED_COMPARISONS:
        if results.seed_count("table2", row, track) < 2:
            continue
        names = honest_attacks(*results.seeds("table2", "vanilla", track, "honest"),
                               *results.seeds("table2", row, track, "honest"))
        for protocol, attack, title in (("paper", "pgd", "PGD"), *(("honest", a, t) for a, t, _ in names)):
            def per_seed(r: str, setting: str) -> list[Measure]:
                return [m for m in (measure(found, setting, attack)
                                    for found in results.seeds("table2", r, track, protocol)) if m is not None]
            out.append(judge_seeds(f"{name} beats vanilla AT under {title}, over training seeds", "Table 2",
                                   (f"{name} (noise on)", per_seed(row, ON)), ("vanilla AT", per_seed("vanilla", OFF))))
    return out


def best_location(pni_w: Measure | None, others: list[tuple[str, Measure]]) -> Verdict:
    """"PNI-W is the best location": PNI-W against each other location, pairwise (not against
    the largest of several noisy means, which is biased upwards). Holds when PNI-W beats every
    one by more than two standard errors, does not hold when some location beats PNI-W so."""
    claim, source = "PNI-W is the best location under PGD", "Table 2"
    pairs = [judge(claim, source, ("PNI-W PGD", pni_w), (f"{LOCATION_NAMES.get(row, row)} PGD", m))
             for row, m in others]
    if any(p.verdict == NOT_JUDGED for p in pairs):
        return Verdict(claim, source, NOT_JUDGED, "missing: PNI-W's PGD accuracy")
    verdict = (HOLDS if all(p.verdict == HOLDS for p in pairs)
               else DOES_NOT_HOLD if any(p.verdict == DOES_NOT_HOLD for p in pairs) else INCONCLUSIVE)
    def one(row: str, m: Measure, p: Verdict) -> str:
        if p.difference is None or p.two_se is None:
            return f"{LOCATION_NAMES.get(row, row)} {m.cite()}: {p.verdict}"
        return (f"{LOCATION_NAMES.get(row, row)} {m.cite()}: {p.verdict} (difference {p.difference:+.2f}, "
                f"two standard errors {p.two_se:.2f})")

    evidence = "; ".join(one(row, m, p) for (row, m), p in zip(others, pairs))
    assert pni_w is not None
    return Verdict(claim, source, verdict, f"PNI-W PGD {pni_w.cite()}; against each other location: {evidence}")


LOCATION_GAIN = " beats vanilla AT under PGD"


def holm_notes(verdicts: list[Verdict]) -> list[Verdict]:
    """Table 2 tests six locations against one baseline: each "<location> beats vanilla AT under
    PGD" verdict gets its one-sided p-value (z = difference / standard error) Holm-adjusted over
    the locations judged, and says whether it survives at 5 % (the verdict itself keeps the
    two-standard-error rule)."""
    from scipy.stats import norm

    tested = [i for i, v in enumerate(verdicts)
              if v.claim.endswith(LOCATION_GAIN) and v.difference is not None and v.two_se]
    if len(tested) < 2:
        return verdicts
    p = {i: float(norm.sf(verdicts[i].difference / (verdicts[i].two_se / 2))) for i in tested}
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, i in enumerate(sorted(tested, key=lambda i: p[i])):
        running = max(running, min(1.0, (len(tested) - rank) * p[i]))
        adjusted[i] = running
    out = list(verdicts)
    for i in tested:
        survives = "significant" if adjusted[i] < 0.05 else "not significant"
        note = (f"{len(tested)} locations are tested against vanilla AT: one-sided p {p[i]:.3g}, "
                f"Holm-adjusted {adjusted[i]:.3g} ({survives} at 5 % after the adjustment).")
        out[i] = dataclasses.replace(verdicts[i], note=f"{verdicts[i].note} {note}".strip())
    return out


def _location_gains(acc: Any, names_of: Any = lambda row: HONEST_ATTACKS) -> list[Verdict]:
    """Every other location against vanilla AT under PGD (Table 2); where that gain holds,
    whether EOT-PGD and AutoAttack-rand erase it."""
    out: list[Verdict] = []
    for row in OTHER_LOCATIONS:
        name = LOCATION_NAMES[row]
        vanilla = acc("vanilla", OFF, "pgd")
        pgd = judge(f"{name} beats vanilla AT under PGD", "Table 2",
                    (f"{name} PGD (noise on)", acc(row, ON, "pgd")), ("vanilla AT PGD", vanilla))
        out.append(pgd)
        if pgd.verdict != HOLDS:
            continue
        for attack, title, label in names_of(row):
            honest = judge(f"{name} beats vanilla AT under {title}", "honest counterpart of Table 2",
                           (f"{name} {label} (noise on)", acc(row, ON, attack, "honest")),
                           (f"vanilla AT {label}", acc("vanilla", OFF, attack, "honest")))
            out.append(erased(f"{_capital(title)} erases {name}'s gain over vanilla AT",
                              "Table 2 vs honest protocol", pgd, honest, title))
    return out


def table3_claims(results: Any, track: str) -> list[Verdict]:
    base = _acc(results, "table3", "resnet20-pni-w", track, ON, "pgd")
    verdicts = [judge("PNI-W beats vanilla AT under PGD (ResNet-20)", "Table 3",
                      ("PNI-W PGD", base),
                      ("vanilla AT PGD", _acc(results, "table3", "resnet20-vanilla", track, OFF, "pgd")))]
    planned = getattr(results, "key", None)  # a model the track does not train is not judged there
    for tag, title in (("resnet32", "ResNet-32"), ("resnet20x1.5", "ResNet-20 x1.5"), ("resnet20x4", "ResNet-20 x4")):
        bigger = _acc(results, "table3", f"{tag}-pni-w", track, ON, "pgd")
        on_track = planned is None or planned("table3", f"{tag}-pni-w", track, "paper") is not None
        if bigger is not None or (on_track and tag != "resnet20x4"):
            verdicts.append(judge(f"Capacity helps: {title} PNI-W beats ResNet-20 PNI-W under PGD", "Table 3",
                                  (f"{title} PGD", bigger), ("ResNet-20 PGD", base)))
    return verdicts


ZOO_TOO_WEAK = 10.0  # % of vanilla AT's images fooled below which ZOO ranks nothing (paper: ~80 %)


ZOO_ROWS = (("b-w", "W"), ("b-a-a", "A-a"), ("b-w+a-a", "W+A-a"))


def table5_claims(results: Any, track: str) -> list[Verdict]:
    """Per noisy row, a lower ZOO (and EOT-ZOO) success rate than vanilla AT; an attack below
    its full budget (``pni.attacks.budget``: ZOO's 1,000 iterations) is named with it in the
    claim ("ZOO, 50 it x 128 coords (reduced)")."""
    from ..attacks.budget import budget_text, column_label, is_reduced

    found = {row: results.get("table5", row, track, "zoo") for row in ("a-vanilla",) + tuple(r for r, _ in ZOO_ROWS)}
    verdicts = []
    for attack, title, source in (("zoo", "ZOO", "Table 5"), ("eot-zoo", "EOT-ZOO", "honest counterpart of Table 5")):
        name = column_label(attack, title, list(found.values()))
        vanilla = metric(found["a-vanilla"], attack, "success_rate")
        verdicts += [judge(f"PNI-{loc} resists {name}{',' if name != title else ''} better than vanilla AT "
                           "(lower success rate)", source,
                           (f"PNI-{loc} {title} success %", metric(found[row], attack, "success_rate")),
                           (f"vanilla AT {title} success %", vanilla), higher_is_better=False)
                     for row, loc in ZOO_ROWS]
    vanilla = metric(found["a-vanilla"], "zoo", "success_rate")
    if vanilla is None or not math.isfinite(vanilla.mean) or vanilla.mean >= ZOO_TOO_WEAK:
        return verdicts
    params = (found["a-vanilla"].get("attacks") or {}).get("zoo")
    budget = f" ({budget_text('zoo', params)})" if is_reduced("zoo", params) else ""
    note = (f"At this budget{budget} ZOO fools only {vanilla.mean:.1f}% of vanilla AT's images (the paper: close "
            f"to 80%): too weak an attack to rank the defenses.")
    return [dataclasses.replace(v, note=f"{v.note} {note}".strip()) for v in verdicts]


CW_PROFILES = (("cw-paper", "paper profile"), ("cw-strong", "strong profile"))
CW_MODELS = (("r20x4", "ResNet-20 (4x)"), ("r18", "ResNet-18"))


def cw_noise_off_note(found: dict[str, Any] | None, name: str) -> str:
    """What C&W does to a noisy model with its noise off, when the vote over fresh draws
    (noise on) counts fewer images fooled: a confidence-0 example lies on the decision boundary
    (and, from a C&W run without its vote check, was judged on its few EOT draws' mean logits
    only). "" when there is nothing to say."""
    on, off = (metric(found, "cw", "success_rate", s) for s in ("with_noise", "without_noise"))
    l2_off = metric(found, "cw", "mean_l2", "without_noise")
    if on is None or off is None or l2_off is None or not on.mean < off.mean:
        return ""
    verified = bool(((found or {}).get("attacks") or {}).get("cw", {}).get("verify"))
    why = ("C&W keeps a point only once a vote over fresh draws misclassifies it, but with confidence 0 that point "
           "lies on the decision boundary, where the next vote is close to a coin flip" if verified else
           "C&W (run without its vote check) keeps the first point its search finds misclassified (confidence 0), "
           "judged on the mean logits of its few EOT draws, and fresh draws often still classify such a point "
           "correctly")
    return (f"{name} with its noise off is fooled on {off.mean:.2f} % of the images (mean L2 {l2_off.mean:.3f}); "
            f"with the noise on, {on.mean:.2f} %. {why}, so fewer count as fooled: a vote-judged minimum-norm "
            "success rate is no evidence of robustness (Table 2's honest L-inf worst case measures that).")


def _cw_claim(claim: str, found_a: Any, name_a: str, found_b: Any, name_b: str) -> Verdict:
    """"``a`` needs a larger C&W L2 than ``b``", judged on the mean L2 of the successful
    perturbations and its standard error over those images (``mean_l2_stderr``); each side
    cites its success rate (the L2 is averaged over the fooled images only)."""
    def named(name: str, found: Any) -> str:
        rate = metric(found, "cw", "success_rate")
        return f"{name} (fooled {rate.mean:.0f}%) mean L2" if rate is not None and math.isfinite(rate.mean) \
            else f"{name} mean L2"
    a, b = metric(found_a, "cw", "mean_l2"), metric(found_b, "cw", "mean_l2")
    verdict = judge(claim, "Table 4", (named(name_a, found_a), a), (named(name_b, found_b), b))
    boundary = " ".join(n for n in (cw_noise_off_note(found_a, name_a), cw_noise_off_note(found_b, name_b)) if n)
    if boundary:
        verdict = dataclasses.replace(verdict, note=f"{verdict.note} {boundary}".strip())
    if a is None or b is None or not all(math.isfinite(m.mean) for m in (a, b)):
        return verdict
    if not (a.error_known() and b.error_known()):
        return Verdict(claim, "Table 4", INCONCLUSIVE, verdict.evidence,
                       note=("Standard error unknown: a side has fewer than two fooled images, or its results.json "
                             "no per-image L2 spread (mean_l2_stderr). " + boundary).strip())
    return _fewer_fooled_understates(verdict, (name_a, found_a), (name_b, found_b))


def _fewer_fooled_understates(verdict: Verdict, a: tuple[str, Any], b: tuple[str, Any]) -> Verdict:
    """A mean L2 averages over the images the attack fooled only: a side fooled on fewer images
    averages over its easiest ones and understates what its others would need. So a verdict
    whose losing side was fooled on fewer images is no evidence (inconclusive, said why); one
    whose winning side was (the conservative direction) stands."""
    (name_a, found_a), (name_b, found_b) = a, b
    rate_a, rate_b = (metric(found, "cw", "success_rate") for found in (found_a, found_b))
    if rate_a is None or rate_b is None or verdict.verdict not in (HOLDS, DOES_NOT_HOLD):
        return verdict
    (loser, lost), (winner, won) = (((name_b, rate_b), (name_a, rate_a)) if verdict.verdict == HOLDS
                                    else ((name_a, rate_a), (name_b, rate_b)))
    if not lost.mean < won.mean:
        return verdict
    why = (f"{loser} is fooled on fewer images ({lost.mean:.2f} % against {won.mean:.2f} %): its mean L2 averages "
           f"over its easiest images and understates what the others would need, so {winner}'s larger mean L2 "
           "is no evidence.")
    return Verdict(verdict.claim, verdict.source, INCONCLUSIVE, verdict.evidence,
                   note=f"{why} {verdict.note}".strip())


def _both(claim: str, parts: list[Verdict]) -> Verdict:
    """A claim made of several: *holds* when each holds, *does not hold* when one does not,
    else inconclusive (not judged while a part is); cites each part."""
    verdicts = {v.verdict for v in parts}
    verdict = (HOLDS if verdicts == {HOLDS} else DOES_NOT_HOLD if DOES_NOT_HOLD in verdicts
               else NOT_JUDGED if NOT_JUDGED in verdicts else INCONCLUSIVE)
    evidence = "; ".join(v.evidence if v.verdict == NOT_JUDGED else f"{v.evidence} ({v.verdict})" for v in parts)
    return Verdict(claim, parts[0].source, verdict, evidence, note=" ".join(dict.fromkeys(v.note for v in parts
                                                                                       if v.note)))


def table4_claims(results: Any, track: str) -> list[Verdict]:
    """Per C&W profile and model: adversarial training (vanilla and PNI-W) needs a larger L2
    than no defense, and PNI-W more than vanilla. Where both models' rows resolve to the same
    runs on this track (stand-ins), they are judged once, under the first model's name."""
    from ..attacks.budget import column_label

    verdicts: list[Verdict] = []
    seen: dict[tuple[str | None, ...], str] = {}   # the runs of a model's rows -> "model, profile"
    for tag, model in CW_MODELS:
        for protocol, profile in CW_PROFILES:
            rows = {s: f"{tag}-{s}" for s in ("none", "vanilla", "pni-w")}
            keys = tuple(results.key("table4", r, track, protocol) for r in rows.values())
            if None in keys:                 # not on this track
                continue
            if keys in seen:
                verdicts = [Verdict(v.claim, v.source, v.verdict, v.evidence,
                                    note=f"{v.note} On this track the {model} rows are the same runs.".strip())
                            if v.claim.endswith(f"({seen[keys]})") else v for v in verdicts]
                continue
            found = {s: results.get("table4", r, track, protocol) for s, r in rows.items()}
            where = seen[keys] = f"{model}, {column_label('cw', profile, list(found.values()))}"
            claim = f"Adversarial training (vanilla, PNI-W) needs a larger C&W L2 than no defense ({where})"
            verdicts += [
                _both(claim, [_cw_claim(claim, found["vanilla"], "vanilla AT", found["none"], "no defense"),
                              _cw_claim(claim, found["pni-w"], "PNI-W", found["none"], "no defense")]),
                _cw_claim(f"PNI-W needs a larger C&W L2 than vanilla AT ({where})",
                          found["pni-w"], "PNI-W", found["vanilla"], "vanilla AT")]
    return verdicts


def table6_claims(results: Any, track: str) -> list[Verdict]:
    return [judge("PNI-W beats PGD AT under PGD", "Table 6",
                  ("PNI-W PGD (noise on)", _acc(results, "table6", "pni-w", track, ON, "pgd")),
                  ("PGD AT PGD", _acc(results, "table6", "pgd-at", track, OFF, "pgd")))]


def audit_claim(claim: str, source: str, found: dict[str, Any] | None, number: int) -> Verdict:
    """A claim that is an audit item's check: *holds* when the item passes, *does not hold*
    when it fails (the audit's own rule and tolerance, ``pni.audit``), with its summary."""
    if found is None:
        return Verdict(claim, source, NOT_JUDGED, "missing: the audit")
    item = next((i for i in found.get("items", []) if int(i.get("number", -1)) == number), None)
    if item is None:
        return Verdict(claim, source, NOT_JUDGED, f"missing: audit item {number}")
    verdict = HOLDS if item.get("passed") else DOES_NOT_HOLD
    evidence = f"audit item {number} {item.get('verdict', '?')}: {item.get('summary', '')}"
    return Verdict(claim, source, verdict, evidence, note=f"Rule (fails if): {item.get('rule', '?')}.")


def table7_claims(results: Any, track: str) -> list[Verdict]:
    found = results.get("table7", "pni-w", track, "audit")
    return [audit_claim("FGSM (one step) does not beat PGD (iterative) on PNI-W", "Table 7 item 1, pni audit",
                        found, 1),
            audit_claim("Black-box attacks (transfer, ZOO) do not beat white-box ones on PNI-W",
                        "Table 7 item 2, pni audit", found, 2)]


def fig3_claims(results: Any, track: str) -> list[Verdict]:
    out = []
    for row, title in (("vanilla", "vanilla AT"), ("pni-w", "PNI-W")):
        found = results.get("fig3", row, track, "audit")
        out += [audit_claim(f"PGD accuracy of {title} falls as eps grows", "Fig. 3 (left), audit item 5", found, 5),
                audit_claim(f"PGD on {title} has converged by the largest step count", "Fig. 3 (right), audit item 6",
                            found, 6)]
    return out


CLAIMS = {"table1": table1_claims, "table2": table2_claims, "table3": table3_claims,
          "table4": table4_claims, "table5": table5_claims, "table6": table6_claims,
          "table7": table7_claims, "fig3": fig3_claims}


def judge_claims(results: Any, track: str, plans: set[str]) -> list[Verdict]:
    """The verdicts of every claim whose plan is in ``plans``, on ``track``."""
    return [v for name, claims in CLAIMS.items() if name in plans for v in claims(results, track)]
