"""The per-table renderers of ``docs/RESULTS.md`` (``pni.reproduce.report``): each takes a
``Results`` (duck-typed: ``get``, ``folder``, ``key``), a plan, a track and the folder the
report is written to (for relative figure links) and returns Markdown. Paper numbers come
from ``paper_numbers``, ours from the step folders; "not run yet" where a step has none."""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..reports.markdown import md_table
from . import paper_numbers as paper
from .claims import CW_PROFILES, cw_noise_off_note
from .claims_alpha import final_alphas
from .plans import Plan, seeded_id
from .verdicts import DOES_NOT_HOLD, HOLDS, Measure, judge, measure, metric

NOT_RUN = "not run yet"
SETTING_TITLES = {"with_noise": "with noise", "without_noise": "without noise"}
RADII = ("0.25", "0.5")


# --- shared cells -----------------------------------------------------------------------------
def _table3_key(row_id: str) -> tuple[str, str]:
    for scheme in ("none", "vanilla", "pni-w"):
        if row_id.endswith("-" + scheme):
            return row_id[: -len(scheme) - 1], scheme
    return row_id, ""


def paper_cells(plan: str, row_id: str, setting: str) -> dict[str, paper.Value]:
    """The paper's clean / PGD / FGSM for a row in a noise setting ({} where it reports none)."""
    if plan == "table1":
        return paper.TABLE1.get(row_id, {}) if setting == "with_noise" else {}
    if plan == "table2":
        return paper.TABLE2.get(row_id, {}).get(setting, {})
    if plan == "table3":
        tag, scheme = _table3_key(row_id)
        return paper.TABLE3.get(tag, {}).get(scheme, {}).get(setting, {})
    if plan == "table6":
        noisy = row_id == "pni-w"
        return paper.TABLE6.get(row_id, {}) if (setting == "with_noise") == noisy else {}
    return {}


def _paper(value: paper.Value | None) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:.2f}±{std:.2f}" if std is not None else f"{mean:.2f}"


SUPERSEDED_MARK = "*"
SUPERSEDED_NOTE = ("A cell marked * comes from an earlier honest evaluation of the same model at the reduced budget "
                   "its column header names, shown until the re-run at the published budget lands.")


PARTIAL_MARK = "†"
RUNNING = "running"


def _partial(found: Any) -> bool:
    return isinstance(found, dict) and bool(found.get("partial"))


def _ours(m: Measure | None, ran: bool, found: dict[str, Any] | None = None) -> str:
    """Our cell: the measure, "-" (ran, nothing to show), "not run yet", or, in a step still to
    finish (``found`` partial), "running" for an attack it has not finished and a mark on those
    it has (``PARTIAL_MARK``); an earlier honest evaluation's cell is marked ``SUPERSEDED_MARK``."""
    if m is None:
        return RUNNING if _partial(found) else "-" if ran else NOT_RUN
    cell = m.cell() if math.isfinite(m.mean) else "undefined"
    if isinstance(found, dict) and found.get("superseded"):
        return f"{cell}{SUPERSEDED_MARK}"
    return f"{cell}{PARTIAL_MARK}" if _partial(found) else cell


def _cell_notes(results: Any, plan: Plan, track: str, *protocols: str) -> str:
    """What the marks of a table's cells mean (only the marks it shows): an earlier honest
    evaluation (*), the finished attacks of a step still to finish (†, with how far each is)."""
    shown = [(row, results.get(plan.name, row.id, track, p)) for row in plan.rows for p in protocols]
    notes = [SUPERSEDED_NOTE] if any(isinstance(f, dict) and f.get("superseded") for _, f in shown) else []
    running = [f"{row.label} ({100 * float(f['partial'].get('share_done') or 0):.0f} % of its work done)"
               for row, f in shown if _partial(f)]
    if running:
        notes.append(f"A cell marked {PARTIAL_MARK} comes from an evaluation step still to finish: the attacks it has "
                     "finished, read from its partial file (`evaluation.partial.pt` in its step folder; the finished "
                     f"step reports these same outcomes); \"{RUNNING}\" marks the attacks it has still to finish. "
                     f"Still to finish: {', '.join(dict.fromkeys(running))}.")
    return "".join(f"{note}\n\n" for note in notes)


def _settings(results: Any, plan: Plan, row: Any, track: str) -> list[str]:
    found = results.get(plan.name, row.id, track, "paper")
    if found:
        return [s for s in ("with_noise", "without_noise") if s in found.get("accuracy_percent", {})]
    noisy = getattr(row.specs[0], "location", None) is not None
    return ["with_noise", "without_noise"] if noisy else ["without_noise"]


def _wants(row: Any, kind: str, protocol: str | None = None) -> bool:
    return any(type(s).__name__ == kind and (protocol is None or getattr(s, "protocol", None) == protocol)
               for s in row.specs)


def link(path: Path, root: Path) -> str:
    """``path`` relative to the report's folder ``root`` (Markdown links resolve from there)."""
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


HONEST_TITLES = {"eot-pgd": "EOT-PGD", "aa-rand": "AA-rand"}


def honest_columns(found: list[dict[str, Any] | None]) -> dict[str, str]:
    """The honest columns' titles from what the honest results ``found`` record: an attack below
    its published budget names it ("AA-rand, 10 it x 10 draws (reduced)", ``pni.attacks.budget``),
    and in a cascade (``evaluate(cascade=...)``) every attack after the first is cumulative."""
    from ..attacks.budget import column_label

    titles = {}
    for name, title in HONEST_TITLES.items():
        text = column_label(name, title, found)
        chains = [r.get("cascade") or [] for r in found if r]
        for chain in chains:
            if name in chain and chain.index(name) > 1:   # chained after clean and another attack
                upto = chain[1:chain.index(name) + 1]
                text += f" (cumulative: robust to {' and '.join(HONEST_TITLES.get(n, n) for n in upto)})"
                break
        titles[name] = text
    return titles


# --- Tables 1, 2, 3: accuracy -----------------------------------------------------------------
def accuracy_table(results: Any, plan: Plan, track: str) -> str:
    """Tables 1, 2, 3: per row and noise setting, the paper's clean / PGD / FGSM next to
    ours, and our EOT-PGD and AutoAttack-rand (the 'honest' protocol) next to the PGD."""
    titles = honest_columns([results.get(plan.name, row.id, track, "honest") for row in plan.rows])
    header = ["Row", "Test", "Clean: paper", "Clean: ours", "PGD: paper", "PGD: ours", "FGSM: paper",
              "FGSM: ours", f"{titles['eot-pgd']}: ours", f"{titles['aa-rand']}: ours"]
    lines = []
    for row in plan.rows:
        ours = results.get(plan.name, row.id, track, "paper")
        honest = results.get(plan.name, row.id, track, "honest")
        for setting in _settings(results, plan, row, track):
            cells = paper_cells(plan.name, row.id, setting)
            line = [row.label, SETTING_TITLES[setting]]
            for attack in ("clean", "pgd", "fgsm"):
                line += [_paper(cells.get(attack)), _ours(measure(ours, setting, attack), ours is not None, ours)]
            for attack in ("eot-pgd", "aa-rand"):
                line.append(_ours(measure(honest, setting, attack), honest is not None, honest)
                            if _wants(row, "Eval", "honest") else "-")
            lines.append(line)
    return _cell_notes(results, plan, track, "paper", "honest") + md_table(header, lines)


SEED_COLUMNS = (("paper", "clean", "Clean"), ("paper", "pgd", "PGD"), ("honest", "eot-pgd", "EOT-PGD"),
                ("honest", "aa-rand", "AA-rand"), ("honest", "worst-case", "worst case"))


def seed_table(results: Any, plan: Plan, track: str) -> str:
    """The rows trained with several seeds: each seed's accuracies (the row's noise setting as
    the verdicts take it: noise on for PNI, off for vanilla AT) and mean ± std (ddof 1) over the
    seeds done. Empty when no row of ``plan`` has several seeds on ``track``."""
    seeded = [r for r in plan.rows if getattr(results, "seed_count", lambda *a: 1)(plan.name, r.id, track) > 1]
    if not seeded:
        return ""
    honest = [h for r in seeded for h in results.seeds(plan.name, r.id, track, "honest")]
    titles = honest_columns(honest)
    header = ["Row", "Seeds", *(titles.get(a, t) if proto == "honest" and a in titles else t
                                for proto, a, t in SEED_COLUMNS)]
    lines = []
    for row in seeded:
        setting = "with_noise" if getattr(row.specs[0], "location", None) else "without_noise"
        count = results.seed_count(plan.name, row.id, track)
        per_column = []
        for protocol, attack, _ in SEED_COLUMNS:
            values = [m.mean for m in (measure(r, setting, attack)
                                       for r in results.seeds(plan.name, row.id, track, protocol)) if m is not None]
            if not values:
                per_column.append(NOT_RUN)
            elif len(values) == 1:
                per_column.append(f"{values[0]:.2f} (1 seed)")
            else:
                mean = sum(values) / len(values)
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                per_column.append(f"{mean:.2f}±{std:.2f} ({len(values)} seeds: {', '.join(f'{v:.2f}' for v in values)})")
        lines.append([f"{row.label} ({SETTING_TITLES[setting]})", str(count), *per_column])
    return ("Training seeds (each seed one training run, evaluated on the same images; mean ± std over the seeds "
            "done, std with ddof 1):\n\n" + md_table(header, lines))


def alpha_table(results: Any, plan: Plan, track: Any) -> str:
    """Table 1 (top): |alpha| per layer at each run's last epoch next to the paper's
    (ResNet-20's layers; on a LeNet-5 track our layers only, with the paper's summary)."""
    runs = []
    for row in plan.rows:
        found = results.get(plan.name, row.id, track.name, "alphas_final")
        alphas, _, why = final_alphas(found)
        if alphas is None and found and found.get("alphas"):
            alphas = final_alphas({**found, "epochs": None})[0]   # still training: show where it is
        runs.append((row, alphas, found, why))
    ours_labels = [label for _, alphas, _, _ in runs for label in (alphas or {})]
    resnet20 = track.model is None
    layers = list(dict.fromkeys([*(paper.TABLE1_LAYERS if resnet20 else ()), *ours_labels]))
    header = ["Layer"]
    for row, _, found, _ in runs:
        short = {"vanilla-training": "vanilla training", "at-xnoise-off": "AT, no PNI in x-hat",
                 "at-xnoise-on": "AT, PNI in x-hat"}.get(row.id, row.label)
        epoch = f" (epoch {found.get('epoch')}/{found.get('epochs')})" if found and found.get("alphas") else ""
        header += [f"{short}: paper", f"{short}: ours{epoch}"]
    lines = []
    for layer in layers:
        line = [layer]
        for row, alphas, _, _ in runs:
            index = paper.TABLE1_LAYERS.index(layer) if layer in paper.TABLE1_LAYERS and resnet20 else None
            values = paper.TABLE1_ALPHAS.get(row.id)
            line.append(f"{values[index]:.3f}" if values is not None and index is not None else "-")
            line.append(f"{alphas[layer]:.3f}" if alphas and layer in alphas else ("-" if alphas else NOT_RUN))
        lines.append(line)
    for title, pick in (("largest", max), ("mean", lambda v: sum(v) / len(v))):
        line = [f"*{title}*"]
        for row, alphas, _, _ in runs:
            values = paper.TABLE1_ALPHAS.get(row.id)
            line += [f"{pick(values):.3f}" if values else "-", f"{pick(list(alphas.values())):.3f}" if alphas else "-"]
        lines.append(line)
    note = ("Final |alpha| per layer (the last epoch's `alphas` in each run's train_log.jsonl; the sign of a "
            "noise scale is irrelevant), initial alpha 0.25; *largest* and *mean*: over the layers.")
    if not resnet20:
        note += (" The paper's per-layer alphas are ResNet-20's (Conv0, Conv1.0 ... Conv3.5, FC: see the "
                 "CIFAR track or `paper_numbers.TABLE1_ALPHAS`); this track's LeNet-5 layers have no paper "
                 "counterpart, so only the paper's largest and mean |alpha| are shown.")
    return f"{note}\n\n{md_table(header, lines)}"


@lru_cache(maxsize=None)
def parameter_counts(model: str, width: float) -> tuple[int, int]:
    """(parameters with alphas excluded, alphas PNI-W adds at layer granularity) of
    ``pni.create_model(model, width=width)``."""
    from ..models import count_parameters, create_model
    from ..noise import inject

    net = create_model(model, width=width)
    plain = count_parameters(net)
    inject(net, "W")
    return plain, count_parameters(net, include_alphas=True) - plain


def capacity_table(results: Any, plan: Plan, track: Any) -> str:
    """Table 3's capacity column: the paper's next to ours, counted from the model."""
    lines = []
    for row in plan.rows:
        tag, scheme = _table3_key(row.id)
        if scheme != "none":
            continue
        spec = track.adapt(row.specs[0], plan.name)
        capacity = paper.TABLE3.get(tag, {}).get("capacity")
        line = [row.label.split(":")[0], f"{capacity:,}" if capacity else "-"]
        if spec is None:
            lines.append(line + ["not on this track", "-", "-"])
            continue
        plain, alphas = parameter_counts(spec.model, float(spec.width))
        width = f" x{spec.width:g}" if spec.width != 1 else ""
        lines.append(line + [f"{spec.model}{width}", f"{plain:,}", f"+{alphas}"])
    return ("Parameter counts: ours counted from `pni.create_model(model, width=...)`, the noise scales "
            "(alphas) excluded as in the paper; PNI-W adds one alpha per Conv/Linear layer.\n\n"
            + md_table(["Model", "Params: paper", "Our model", "Params: ours (alphas excluded)",
                        "PNI-W alphas"], lines))


# --- Table 4: C&W -----------------------------------------------------------------------------
def _l2(found: Any) -> str:
    l2 = metric(found, "cw", "mean_l2")
    if l2 is None:
        return _ours(None, found is not None, found)
    if not math.isfinite(l2.mean):
        return "none fooled"
    se = f" (SE {l2.se:.3f})" if l2.se is not None and math.isfinite(l2.se) else ""
    return f"{l2.cell()}{se}{PARTIAL_MARK if _partial(found) else ''}"


def cw_table(results: Any, plan: Plan, track: str) -> str:
    from ..attacks.budget import column_label

    protocols = [protocol for protocol, _ in CW_PROFILES]
    profiles = {protocol: column_label("cw", profile, [results.get(plan.name, row.id, track, protocol)
                                                      for row in plan.rows])
                for protocol, profile in CW_PROFILES}
    lines = []
    for row in plan.rows:
        cells = [row.label, f"{paper.TABLE4[row.id]:.2f}" if row.id in paper.TABLE4 else "-"]
        for protocol in protocols:
            found = results.get(plan.name, row.id, track, protocol)
            cells += [_l2(found), _ours(metric(found, "cw", "success_rate"), found is not None, found)]
        lines.append(cells)
    votes = _judged_over(results, plan, track, *protocols)
    notes: dict[str, str] = {}   # per run evaluated (rows that are stand-ins share one)
    for row in plan.rows:
        for protocol, profile in CW_PROFILES:
            key = getattr(results, "key", lambda *a: None)(plan.name, row.id, track, protocol) or row.id
            note = cw_noise_off_note(results.get(plan.name, row.id, track, protocol), row.label)
            if note and key not in notes:
                notes[key] = f"- {profile}: {note}"
    return (_cell_notes(results, plan, track, *protocols) + "Mean L2 of the successful perturbations (SE: its standard error over those images) and the "
            "attack's success rate on the initially correct images. C&W's loss uses the expected logits over "
            f"the noise draws (C&W-EOT), and an image counts as fooled only if the majority vote over {votes} "
            "fresh draws misclassifies the returned example (a lucky single draw during the search is not a "
            "success); the mean L2 is over those images only. " + SAME_IMAGE_RULE
            + _before_same_image_rule(results, plan, track, protocols, ("cw",)) + "\n\n"
            + md_table(["Row", "Mean L2: paper"] + [f"{what}{profiles[protocol]}" for protocol in protocols
                                                     for what in ("Mean L2: ours, ", "Success %: ")], lines)
            + ("\nThe same noisy models with their noise off (same images):\n\n" + "\n".join(notes.values()) + "\n"
               if notes else ""))


# --- Table 5: black box -----------------------------------------------------------------------
def transfer_measures(found: dict[str, Any] | None) -> tuple[Measure | None, Measure | None]:
    """(A => B, B => A) accuracies from a ``transfer.json`` whose first model is A."""
    if not found or len(found.get("models", [])) < 2:
        return None, None
    a, b = found["models"][:2]
    acc, trials, n = found["accuracy_percent"], int(found.get("trials", 1)), found.get("n")

    def one(source: str, target: str) -> Measure:
        stats = acc[source][target]
        return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), trials, n)
    return one(a, b), one(b, a)


def blackbox_table(results: Any, plan: Plan, track: str) -> str:
    from ..attacks.budget import column_label, recorded

    lines = []
    for row in plan.rows:
        nums = paper.TABLE5.get(row.id, {})
        found = results.get(plan.name, row.id, track, "transfer")
        ab, ba = transfer_measures(found)
        zoo = results.get(plan.name, row.id, track, "zoo")
        line = [row.label]
        for key, ours in (("a=>b", ab), ("b=>a", ba)):
            line += [_paper(nums.get(key)), _ours(ours, found is not None) if _wants(row, "Transfer") else "-"]
        line += [_paper(nums.get("zoo")), _ours(metric(zoo, "zoo", "success_rate"), zoo is not None, zoo),
                 _ours(metric(zoo, "eot-zoo", "success_rate"), zoo is not None, zoo)]
        lines.append(line)
    votes = _judged_over(results, plan, track, "zoo")
    zoos = [results.get(plan.name, row.id, track, "zoo") for row in plan.rows]
    zoo_title, eot_zoo_title = (column_label(name, title, zoos) for name, title in (("zoo", "ZOO"),
                                                                                       ("eot-zoo", "EOT-ZOO")))
    draws = sorted({str(params["eot"]) for params, randomized in recorded("eot-zoo", zoos)
                    if randomized and params and "eot" in params})
    return (_cell_notes(results, plan, track, "zoo") + f"ZOO and EOT-ZOO (every query's scores averaged over {' / '.join(draws) or 'the'} noise draws on a noisy "
            "model) succeed on an image only if "
            f"the majority vote over {votes} fresh noise draws misclassifies the returned example; transfer "
            f"accuracies are judged over the same number of draws. {SAME_IMAGE_RULE}"
            + _before_same_image_rule(results, plan, track, ("zoo",), ("zoo", "eot-zoo")) + "\n\n"
            + md_table(["Row", "A⇒B: paper", "A⇒B: ours", "B⇒A: paper", "B⇒A: ours", "ZOO success %: paper",
                        f"{zoo_title} success %: ours", f"{eot_zoo_title} success %: ours"], lines))


def _judged_over(results: Any, plan: Plan, track: str, *protocols: str) -> str:
    """The fresh draws the success-rate protocols' results were judged over (e.g. "10"; "the
    protocol's" before any ran)."""
    votes = {str((found.get("attacks") or {}).get(name, {}).get("votes", found.get("votes")))
             for protocol in protocols
             for row in plan.rows for found in [results.get(plan.name, row.id, track, protocol)] if found
             for name in (found.get("attacks") or {}) if name != "clean"}
    return " / ".join(sorted(votes)) if votes else "the protocol's"


SAME_IMAGE_RULE = ("On a noisy model an example within half a gray level of its image in every pixel (it stores "
                   "as the same 8-bit image) is that image, judged by its image's own vote: a borderline image "
                   "whose votes split is never counted fooled at distance zero.")


def _before_same_image_rule(results: Any, plan: Plan, track: str, protocols: Sequence[str],
                            attacks: Sequence[str]) -> str:
    """A note naming the noisy rows whose ``attacks`` ran before ``SAME_IMAGE_RULE`` (their
    parameters lack ``same_image_linf``); "" when there are none."""
    labels = [row.label for row in plan.rows for protocol in protocols
              for found in [results.get(plan.name, row.id, track, protocol)]
              if found and found.get("randomized") and any(
                  name in (found.get("attacks") or {}) and "same_image_linf" not in found["attacks"][name]
                  for name in attacks)]
    if not labels:
        return ""
    return (" Run before that rule (a success there may be such a zero-distance flip): "
            + ", ".join(dict.fromkeys(labels)) + ".")


def substitute_table(results: Any, plan: Plan, track: str) -> str:
    """The substitute-model attack (``substitute.json``): the substitute's agreement with
    the target on held-out images and the target's accuracy under transferred FGSM / PGD."""
    lines = []
    for row in plan.rows:
        if not _wants(row, "Substitute"):
            continue
        found = results.get(plan.name, row.id, track, "substitute")
        if not found:
            lines.append([row.label] + [NOT_RUN] * 5)
            continue
        record, attacks = found.get("substitute", {}), found.get("attacks", {})
        clean = next((a["clean_accuracy"] for a in attacks.values() if "clean_accuracy" in a), None)

        def pct(value: Any) -> str:
            return f"{100 * float(value):.2f}" if value is not None else "-"
        lines.append([row.label, f"{record.get('queries', '-'):,}" if record.get("queries") else "-",
                      pct(record.get("agreement")), pct(clean),
                      *(pct(attacks.get(a, {}).get("accuracy")) for a in ("fgsm", "pgd")), found.get("n", "-")])
    return ("Substitute-model attack (Papernot et al. 2017; not a number the paper prints): a substitute "
            "trained on the target's labels, then FGSM / PGD made on it and transferred; accuracy % of the "
            "target (noise on) on held-out images.\n\n"
            + md_table(["Row", "Queries to train the substitute", "Agreement with target %", "Target clean %",
                        "Transferred FGSM %", "Transferred PGD %", "Images"], lines))


# --- Table 6: noise-based defenses and certificates -------------------------------------------
def certified(found: dict[str, Any] | None, radius: str) -> Measure | None:
    """Certified accuracy (%) at an L2 radius from a ``certify.json``, n = images certified;
    with its per-image outcomes (correct and certified at that radius) and the images'
    fingerprint, so that two models certified on the same images compare image by image."""
    if not found or radius not in found.get("certified_accuracy_percent", {}):
        return None
    per_image, images = None, None
    rows = found.get("per_image") or {}
    if all(k in rows for k in ("label", "prediction", "radius")):
        from ..evaluation.per_image import labels_digest

        hits = [100.0 * (p == y and r >= float(radius))
                for y, p, r in zip(rows["label"], rows["prediction"], rows["radius"])]
        per_image = tuple(hits)
        images = f"{(found.get('subset') or {}).get('indices_sha256', 'all')}/{labels_digest(rows['label'])}/n={len(hits)}"
    return Measure(float(found["certified_accuracy_percent"][radius]), 0.0, 1, found.get("images"),
                   per_image=per_image, images=images)


def table6_table(results: Any, plan: Plan, track: str) -> str:
    titles = honest_columns([results.get(plan.name, row.id, track, "honest") for row in plan.rows])
    header = ["Row", "Test", "Clean: paper", "Clean: ours", "PGD: paper", "PGD: ours", f"{titles['eot-pgd']}: ours",
              f"{titles['aa-rand']}: ours", *(f"Certified r={r}: ours" for r in RADII)]
    lines = []
    for row in plan.rows:
        ours = results.get(plan.name, row.id, track, "paper")
        honest = results.get(plan.name, row.id, track, "honest")
        cert = results.get(plan.name, row.id, track, "certify")
        settings = _settings(results, plan, row, track)
        for setting in settings:
            cells = paper_cells(plan.name, row.id, setting)
            line = [row.label, SETTING_TITLES[setting]]
            for attack in ("clean", "pgd"):
                line += [_paper(cells.get(attack)), _ours(measure(ours, setting, attack), ours is not None, ours)]
            line += [_ours(measure(honest, setting, a), honest is not None, honest) for a in ("eot-pgd", "aa-rand")]
            first = setting == settings[0]     # the certificate is of the model as it runs (noise on)
            line += [_ours(certified(cert, r), cert is not None) if first else "-" for r in RADII]
            lines.append(line)
    for name, clean, pgd in paper.TABLE6_LITERATURE:
        lines.append([name, "quoted from the paper, not run", f"{clean:.2f}", "-", f"{pgd:.2f}", "-", "-", "-",
                      "-", "-"])
    return (_cell_notes(results, plan, track, "paper", "honest") + md_table(header, lines)
            + _certificate_notes(results, plan, track))


def _certificate_notes(results: Any, plan: Plan, track: str) -> str:
    """How the certificates were made, and PNI-W's certified accuracy against each other row's
    (binomial error on the certified images)."""
    certs = {row.id: (row.label, results.get(plan.name, row.id, track, "certify")) for row in plan.rows}
    made = next((c for _, c in certs.values() if c), None)
    if made is None or "pni-w" not in certs:
        return ""
    text = (f"\nCertified: randomized smoothing (Cohen et al. 2019) of each model as it runs, sigma "
            f"{made.get('sigma')}, {made.get('n')} noise samples per image on {made.get('images')} test images, "
            f"alpha {made.get('alpha')}.\n\nCertified accuracy, PNI-W against each other row (two standard errors, "
            f"paired over the same certified images):\n\n")
    label, pni = certs["pni-w"]
    lines = []
    for radius in RADII:
        for row_id, (other_label, other) in certs.items():
            if row_id == "pni-w":
                continue
            v = judge("", "", ("PNI-W", certified(pni, radius)), (other_label, certified(other, radius)))
            word = {HOLDS: "PNI-W higher", DOES_NOT_HOLD: "PNI-W lower"}.get(
                v.verdict, "not run yet" if "missing" in v.evidence else "within two standard errors")
            lines.append(f"- radius {radius}: {word}: {v.evidence}")
    return text + "\n".join(lines) + "\n" + _check_notes(results, plan, track)


def _check_notes(results: Any, plan: Plan, track: str) -> str:
    """The certificate cross-check of each row (``check.json``: C&W-L2 and L2 PGD on the smoothed
    classifier must not find an example inside a certified radius that PREDICT classifies otherwise)."""
    lines = []
    for row in plan.rows:
        found = results.certificate_check(plan.name, row.id, track)
        if not found:
            continue
        counts = ", ".join(f"{attack}: {c['within_radius']} of {c['images']} examples inside the radius, "
                           f"{c['violations']} violation(s)" for attack, c in found.get("attacks", {}).items())
        verdict = "no violation" if found.get("ok") else "**VIOLATIONS: the certificate or the attack is wrong**"
        lines.append(f"- {row.label}: {verdict} ({counts}; expected by chance at most "
                     f"{found.get('expected_by_chance_per_attack', 0):.3g} per attack)")
    if not lines:
        return ""
    return ("\nCertificates against attacks (audit item 8): on certified images, the strong C&W-L2 and an L2 "
            "PGD with EOT attack the smoothed classifier; PREDICT judges each example.\n\n" + "\n".join(lines) + "\n")


# --- Table 7, Fig. 3: the audit; Fig. 2: alphas ------------------------------------------------
def audit_table(results: Any, plan: Plan, track: str) -> str:
    lines = []
    for row in plan.rows:
        found = results.get(plan.name, row.id, track, "audit")
        items = {int(i["number"]): i for i in (found or {}).get("items", [])}
        numbers = sorted(set(paper.TABLE7) | set(items)) if plan.name == "table7" else sorted(items)
        if not numbers:
            lines.append([row.label, "-", "-", "-", NOT_RUN])
        for number in numbers:
            item = items.get(number)
            name = item["name"] if item else paper.TABLE7[number][0]
            ours = (item.get("verdict", "-") + (f": {item['summary']}" if item.get("summary") else "")) \
                if item else (NOT_RUN if found is None else "not measured")
            lines.append([row.label, number, name,
                          paper.TABLE7[number][1] if plan.name == "table7" and number in paper.TABLE7 else "-",
                          ours])
    return md_table(["Row", "Item", "Check", "Paper", "Ours"], lines)


AUDIT_FIGURES = (("fig3.png", "PGD accuracy vs eps and vs steps"), ("eot.png", "accuracy vs EOT samples"))


def audit_figures(results: Any, plan: Plan, track: str, root: Path) -> str:
    """The audit's figures per row (Fig. 3: fig3.png; eot.png), linked relative to ``root``."""
    lines = []
    for row in plan.rows:
        folder = results.folder(plan.name, row.id, track, "audit")
        shown = [f"![{title}]({link(folder / name, root)})" for name, title in AUDIT_FIGURES
                 if folder is not None and (folder / name).exists()]
        lines.append(f"- {row.label}: {' '.join(shown) if shown else NOT_RUN}")
    return "\n".join(lines) + "\n"


def figure_lines(results: Any, plan: Plan, track: str, root: Path) -> str:
    lines = []
    for row in plan.rows:
        found = results.get(plan.name, row.id, track, "alphas")
        lines.append(f"- {row.label}: ![alpha per layer]({link(Path(found['png']), root)})" if found
                     else f"- {row.label}: {NOT_RUN}")
    return "\n".join(lines) + "\n"


def render_plan(results: Any, full: Plan, track: Any, root: Path) -> str:
    """Every table and figure of ``plan`` on ``track``, as Markdown blocks (the rows the track
    does not train are named once, not listed as "not run yet"; Table 3's capacity table
    keeps them)."""
    name = track.name
    plan = dataclasses.replace(full, rows=tuple(r for r in full.rows if track.adapt(r.specs[0], full.name)))
    absent = [r.label for r in full.rows if r not in plan.rows]
    blocks = {
        "table1": lambda: [accuracy_table(results, plan, name), alpha_table(results, plan, track)],
        "table2": lambda: [accuracy_table(results, plan, name), seed_table(results, plan, name)],
        "table3": lambda: [accuracy_table(results, plan, name), capacity_table(results, full, track)],
        "table4": lambda: [cw_table(results, plan, name)],
        "table5": lambda: [blackbox_table(results, plan, name), substitute_table(results, plan, name)],
        "table6": lambda: [table6_table(results, plan, name)],
        "table7": lambda: [audit_table(results, plan, name), audit_figures(results, plan, name, root)],
        "fig2": lambda: [figure_lines(results, plan, name, root)],
        "fig3": lambda: [audit_table(results, plan, name), audit_figures(results, plan, name, root)],
    }[plan.name]()
    if absent:
        blocks.append(f"Not on this track (its budget leaves them out): {', '.join(absent)}.\n")
    blocks.append(code_note(results, plan, name))
    return "\n".join(b for b in blocks if b)


MEASURED = ("paper", "honest", "cw-paper", "cw-strong", "zoo", "transfer", "substitute", "audit", "certify")


def code_note(results: Any, plan: Plan, track: str) -> str:
    """Which code produced the measurements shown (``pni.provenance``: pni's version and git
    commit in every result file), every training seed of a row included: one line when they
    share a commit, else the rows per commit."""
    rows_by_code: dict[str, list[str]] = {}
    for row in plan.rows:
        seeds = getattr(results, "seed_count", lambda *a: 1)(plan.name, row.id, track)
        for k, what in ((k, what) for k in range(seeds) for what in MEASURED):
            found = results.get(plan.name, seeded_id(row.id, k), track, what)
            if not isinstance(found, dict):
                continue
            label = row.label if k == 0 else f"{row.label} (training seed {k})"
            code = found.get("code") if isinstance(found.get("code"), dict) else None
            commit = code.get("commit") if code else None
            text = (f"pni {code.get('pni')}, commit {str(commit)[:10]}{' (modified)' if code.get('dirty') else ''}"
                    if code and commit else f"pni {code.get('pni')}" if code else "not recorded (made before pni "
                    "recorded its code version)")
            entries = rows_by_code.setdefault(text, [])
            if label not in entries:
                entries.append(label)
    if not rows_by_code:
        return ""
    if len(rows_by_code) == 1:
        return f"Code: {next(iter(rows_by_code))}.\n"
    return "Code that produced these rows (they come from different versions):\n\n" + "\n".join(
        f"- {text}: {', '.join(rows)}" for text, rows in rows_by_code.items()) + "\n"
