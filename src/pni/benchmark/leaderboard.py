"""Cards side by side: one Markdown table per (protocol, dataset, threat, test images),
sorted by the honest worst-case accuracy (highest first). A card run at a reduced budget or
on fewer images says so in its row: it is not comparable with a full one. Cards whose test
images differ (their labels' digest, ``data.labels_sha256``) are never ranked in one table,
even under one dataset name (two image folders are both "imagefolder")."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..reports.markdown import md_table


def _pm(value: dict[str, float]) -> str:
    return f"{value['mean']:.2f} ± {value['stderr']:.2f}"


def _budget(card: dict[str, Any]) -> str:
    protocol = card["protocol"]
    parts = [] if protocol["budget"] == "full" else [protocol["budget"] + " budget"]
    if "n" in protocol["changes"]:
        parts.append(f"n {card['data']['n']}")
    return "full" if not parts else "reduced: " + ", ".join(parts)


def _audit(card: dict[str, Any]) -> str:
    items = card["audit"]["items"]
    if not items:
        return "not run"
    failed = [str(i["number"]) for i in items if i["verdict"] == "FAIL"]
    measured = [i for i in items if i["verdict"] != "not measured"]
    return (f"{len(measured) - len(failed)}/{len(measured)} pass" + (f" (FAIL: {', '.join(failed)})" if failed else ""))


def _commit(commit: str | None) -> str:
    if not commit:
        return "no commit"
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def leaderboard_markdown(cards: Sequence[dict[str, Any]], title: str = "pni benchmark leaderboard") -> str:
    """The Markdown leaderboard of validated ``cards``."""
    groups: dict[tuple[str, str, str, str | None], list[dict[str, Any]]] = {}
    for card in cards:
        threat = card["threat"]
        key = (card["protocol"]["name"], f"{card['data']['dataset']} ({card['data']['split']})",
               f"{threat['norm']}:{threat['eps']:.4g}", card["data"]["labels_sha256"])
        groups.setdefault(key, []).append(card)
    shared_title = Counter(key[:3] for key in groups)
    lines = [f"# {title}", "",
             "Accuracies in %, mean ± standard error over the images. *Paper PGD*: one-pass PGD at the "
             "paper's steps; *honest worst case*: per image, the worst over every attack of the protocol "
             "(EOT-PGD, AutoAttack-rand, Square-EOT), each judged over fresh draws (expected accuracy); "
             "*gap*: paper PGD minus honest worst case (paired). Sorted by the honest worst case.", ""]
    for (protocol, dataset, threat, images), members in groups.items():
        members = sorted(members, key=lambda c: -c["accuracy"]["honest_worst_case"]["mean"])
        title = f"## {protocol}, {dataset}, {threat}"
        if shared_title[(protocol, dataset, threat)] > 1:     # same name, other test images
            title += f", test images with labels digest {images or 'not recorded'}"
        lines += [title, ""]
        header = ["#", "model", "params", "randomized", "clean", "paper PGD", "honest worst case",
                  "majority vote", "gap", "audit", "budget", "pni"]
        rows = []
        for rank, card in enumerate(members, 1):
            acc, code = card["accuracy"], card["code"]
            rows.append([str(rank), card["model"]["name"], f"{card['model']['parameters']:,}",
                         "yes" if card["model"]["randomized"] else "no", _pm(acc["clean"]), _pm(acc["paper_pgd"]),
                         f"**{_pm(acc['honest_worst_case'])}**", _pm(acc["honest_worst_case_majority"]),
                         f"{card['gap']['points']:.2f} ± {card['gap']['stderr']:.2f}", _audit(card),
                         _budget(card),
                         f"{code['pni_version']} ({_commit(code['git_commit'])})"])
        lines += [md_table(header, rows), ""]
    return "\n".join(lines)
