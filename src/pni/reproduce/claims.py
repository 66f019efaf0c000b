"""The paper's claims, each judged from a ``report.Results`` on one track
(``verdicts.judge``): PNI-W beats vanilla AT (Table 2), noise on beats noise off, PNI-W is
the best location, whether EOT-PGD / AutoAttack-rand erase PNI's gain, FGSM weaker than PGD
(Table 7 item 1), capacity helps (Table 3), PNI resists ZOO better than vanilla AT (Table 5)."""
from __future__ import annotations

from typing import Any

from .verdicts import NOT_JUDGED, Measure, Verdict, erased, judge, measure, metric

ON, OFF = "with_noise", "without_noise"
OTHER_LOCATIONS = ("pni-i", "pni-a-a", "pni-a-b", "pni-w+a-a", "pni-w+a-b")


def _acc(results: Any, plan: str, row: str, track: str, setting: str, attack: str,
         protocol: str = "paper") -> Measure | None:
    return measure(results.get(plan, row, track, protocol), setting, attack)


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
    for attack, title in (("eot-pgd", "EOT-PGD"), ("aa-rand", "AutoAttack-rand")):
        honest = judge(f"PNI-W beats vanilla AT under {title}", "honest counterpart of Table 2",
                       (f"PNI-W {title} (noise on)", acc("pni-w", ON, attack, "honest")),
                       (f"vanilla AT {title}", acc("vanilla", OFF, attack, "honest")))
        verdicts += [honest, erased(f"{title} erases PNI-W's gain over vanilla AT", "Table 2 vs honest protocol",
                                    pgd, honest, title)]
    others = [(row, acc(row, ON, "pgd")) for row in OTHER_LOCATIONS]
    measured = [(row, m) for row, m in others if m is not None]
    if measured:
        best_row, best = max(measured, key=lambda rm: rm[1].mean)
        verdict = judge("PNI-W is the best location under PGD", "Table 2",
                        ("PNI-W PGD", acc("pni-w", ON, "pgd")), (f"best other location ({best_row}) PGD", best))
        if len(measured) < len(OTHER_LOCATIONS):
            verdict = Verdict(verdict.claim, verdict.source, verdict.verdict, verdict.evidence,
                              note=f"(only {len(measured)} of {len(OTHER_LOCATIONS)} other locations run)")
        verdicts.append(verdict)
    else:
        verdicts.append(Verdict("PNI-W is the best location under PGD", "Table 2", NOT_JUDGED,
                                "missing: the other locations' runs"))
    verdicts.append(judge("FGSM (one step) is weaker than PGD (iterative): PNI-W accuracy higher under FGSM",
                          "Table 7 item 1, from Table 2",
                          ("PNI-W FGSM", acc("pni-w", ON, "fgsm")), ("PNI-W PGD", acc("pni-w", ON, "pgd"))))
    return verdicts


def table3_claims(results: Any, track: str) -> list[Verdict]:
    base = _acc(results, "table3", "resnet20-pni-w", track, ON, "pgd")
    verdicts = [judge("PNI-W beats vanilla AT under PGD (ResNet-20)", "Table 3",
                      ("PNI-W PGD", base),
                      ("vanilla AT PGD", _acc(results, "table3", "resnet20-vanilla", track, OFF, "pgd")))]
    for tag, title in (("resnet32", "ResNet-32"), ("resnet20x1.5", "ResNet-20 x1.5"), ("resnet20x4", "ResNet-20 x4")):
        bigger = _acc(results, "table3", f"{tag}-pni-w", track, ON, "pgd")
        if bigger is not None or tag != "resnet20x4":
            verdicts.append(judge(f"Capacity helps: {title} PNI-W beats ResNet-20 PNI-W under PGD", "Table 3",
                                  (f"{title} PGD", bigger), ("ResNet-20 PGD", base)))
    return verdicts


def table5_claims(results: Any, track: str) -> list[Verdict]:
    vanilla = metric(results.get("table5", "a-vanilla", track, "zoo"), "zoo", "success_rate")
    return [judge(f"PNI-{loc} resists ZOO better than vanilla AT (lower success rate)", "Table 5",
                  (f"PNI-{loc} ZOO success %", metric(results.get("table5", row, track, "zoo"), "zoo", "success_rate")),
                  ("vanilla AT ZOO success %", vanilla), higher_is_better=False)
            for row, loc in (("b-w", "W"), ("b-a-a", "A-a"), ("b-w+a-a", "W+A-a"))]


CLAIMS = {"table2": table2_claims, "table3": table3_claims, "table5": table5_claims}


def judge_claims(results: Any, track: str, plans: set[str]) -> list[Verdict]:
    """The verdicts of every claim whose plan is in ``plans``, on ``track``."""
    return [v for name, claims in CLAIMS.items() if name in plans for v in claims(results, track)]
