"""The results report (``pni reproduce NAME --report``: ``<out>/RESULTS.md``; with ``--update-docs``
``docs/RESULTS.md``): per plan and
track, the paper's number next to ours (mean±std over trials), the honest counterparts
(EOT-PGD, AutoAttack-rand) next to the paper-protocol PGD, "not run yet" where a step has
no result (the tables: ``pni.reproduce.report_tables``); then the verdicts on the paper's
claims (``pni.reproduce.claims``), and their one-line summary in the README between
``<!-- verdicts:start -->`` and ``<!-- verdicts:end -->``. Never typed by hand: every number
comes from ``paper_numbers`` or from the step folders."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..files import write_text
from .claims import judge_claims
from .claims_alpha import INIT_ALPHA, KEPT, RATIO, RUNAWAY, VANISHED
from .plans import Plan
from .report_tables import NOT_RUN, paper_cells, render_plan, transfer_measures
from .results import Results
from .scales import tracks
from .steps import ReproduceError
from .verdicts import NOT_JUDGED, Verdict

__all__ = ["NOT_RUN", "README_END", "README_START", "ReportClash", "check_replace", "origin_line",
           "paper_cells", "read_origin", "render", "transfer_measures", "update_readme", "verdict_summary",
           "write_readme_summary", "write_results"]

README_START, README_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
UNFINISHED_MARK = "†"   # a README verdict judged on a step still to finish (report_tables.PARTIAL_MARK)


def track_header(results: Results, plan: Plan, track: Any) -> str:
    configs = [c for (p, _, t, w), c in results.found.items() if p == plan.name and t == track.name and w == "config"]
    budget = ""
    if configs:
        c = configs[0]
        subset = f"{c.get('train_subset')} training images" if c.get("train_subset") else "full training set"
        budget = (f" Run config: {c.get('dataset')}, {subset}, {c.get('epochs')} epochs, PGD-{c.get('steps')} "
                  f"eps {c.get('eps', 0):.4g} step {c.get('step_size', 0):g}.")
    evaluated = {}
    for (p, _, t, what), value in results.found.items():
        if p == plan.name and t == track.name and isinstance(value, dict) and "accuracy_percent" in value:
            evaluated.setdefault(what, set()).add(value.get("n"))
    if evaluated:
        budget += " Evaluated on: " + "; ".join(
            f"{what} protocol {', '.join(f'n={n}' for n in sorted(ns, key=lambda v: (v is None, v)))} test images"
            for what, ns in sorted(evaluated.items())) + "."
    caveat = (" The paper's numbers are CIFAR-10 ResNet numbers: on this track compare directions, "
              "not values.") if track.model else ""
    return f"**Track {track.name}** ({track.note}).{budget}{caveat}\n"


def _on_track(plans: list[Plan], track: Any) -> set[str]:
    """The names of the plans ``track`` trains rows of (their claims are judged there)."""
    return {p.name for p in plans if any(track.adapt(r.specs[0], p.name) is not None for r in p.rows)}


def _command(plans: list[Plan], scale: str, data_dir: str | None = None, flags: str = "") -> str:
    data = f" --data-dir {data_dir}" if data_dir else ""
    return (f"pni reproduce {' '.join(p.name for p in plans) if len(plans) < 9 else 'all'} --scale {scale}"
            f"{data} --report{flags}")


VERDICT_RULES = (
    "Each verdict: *holds* (our difference in the claimed direction exceeds two standard errors), *does not "
    "hold at this scale* (it exceeds them the other way), *inconclusive* (within two standard errors). "
    "Two accuracies measured on the same images (same subset, labels and n, per-image outcomes in both "
    "results.json) are compared image by image (*paired*): the difference's standard error is "
    "sd(a_i - b_i)/sqrt(n), a_i image i's accuracy averaged over the trials, and at least the trials' "
    "std of the difference/sqrt(trials). Otherwise (*unpaired*) each side's standard error is the larger of "
    "std/sqrt(trials) and the binomial error on its n images (a mean C&W L2: its standard error over the "
    "fooled images; undefined, so inconclusive, when none was fooled), combined as a root sum of squares. Claims "
    "without a standard error follow a stated rule: Table 1's alphas are judged relative to the initial alpha "
    f"({INIT_ALPHA:g}) and to the other run (`pni.reproduce.claims_alpha`: ~0 means every |alpha| <= "
    f"{VANISHED:g} x init, *does not hold* if some |alpha| >= {KEPT:g} x init; a run-away alpha reaches "
    f"{RUNAWAY:g} x init while every alpha of the with-noise run stays below that and its largest is at most "
    f"1/{RATIO:g} of the run-away one; these rules give *holds* on the paper's own Table 1 alphas); a claim that "
    "is an audit item's check (Table 7, Fig. 3) *holds* when `pni audit` passes it, with the audit's own "
    "tolerance. Every row is one training run (as in the paper), except the rows trained with several seeds "
    "(their table shows each seed and the mean ± std over seeds): those errors cover the test images and the "
    "noise draws, not the spread between training runs. Claims between two rows that have several seeds are "
    "also judged over the seeds (*over training seeds*: Welch's t-test on the per-seed accuracies, one-sided at "
    "5 %, which includes the seed-to-seed spread). Table 2 tests six locations against one baseline: each "
    "location's PGD verdict also states its Holm-adjusted p-value over the locations judged.\n")


# --- where a report came from: recorded in it, checked before it is replaced ---------------------
_ORIGIN = re.compile(r"<!-- pni-report: scale=(?P<scale>\S+) out=(?P<out>.*?) -->")
_LEGACY_SCALE = re.compile(r"(?:^# Reproduction results \(|Verdicts at )(?P<scale>\w+) scale", re.M)
_LEGACY_OUT = re.compile(r"--report[^`]*` from `(?P<out>[^`]+)`")


class ReportClash(ReproduceError):
    """A report would replace one built from another scale or results folder (``--force`` allows it)."""


def origin_line(scale: str, out: str | Path, root: str | Path) -> str:
    """The HTML comment a rendered report carries: its scale and its results folder, the folder
    relative to ``root`` (the report's own folder) so the check holds from any working directory."""
    folder = Path(os.path.relpath(Path(out).resolve(), Path(root).resolve())).as_posix()
    return f"<!-- pni-report: scale={scale} out={folder} -->"


def read_origin(text: str, root: str | Path) -> tuple[str | None, Path | None]:
    """(scale, resolved results folder) recorded in a report's ``text`` (its folder: ``root``); a
    report written before the comment existed gives its title's scale and the folder its
    "Generated by ... from `X`" names (relative to the working directory); None where unknown."""
    found = _ORIGIN.search(text)
    if found:
        return found["scale"], (Path(root) / found["out"]).resolve()
    scale, out = _LEGACY_SCALE.search(text), _LEGACY_OUT.search(text)
    return (scale["scale"] if scale else None), (Path(out["out"]).resolve() if out else None)


def check_replace(path: str | Path, scale: str, out: str | Path, force: bool = False,
                  block: bool = False) -> None:
    """Raises ``ReportClash`` when ``path`` holds a report (or, ``block``, a README verdict block)
    built from another scale or results folder than ``scale`` / ``out``, unless ``force``."""
    path = Path(path)
    if force or not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if block:
        start, end = text.find(README_START), text.find(README_END)
        if start < 0 or end < start:
            return
        text = text[start:end]
    old_scale, old_out = read_origin(text, path.parent)
    if old_scale is None and old_out is None:
        return
    mismatch = []
    if old_scale is not None and old_scale != scale:
        mismatch.append(f"scale {old_scale}, not {scale}")
    if old_out is not None and old_out != Path(out).resolve():
        mismatch.append(f"results folder {old_out}, not {Path(out).resolve()}")
    if mismatch:
        raise ReportClash(f"{path} holds a report built from another run ({'; '.join(mismatch)}): "
                          f"not replaced; pass --force to replace it, or --report-out another file")


def render(plans: list[Plan], scale: str, out: str | Path, root: str | Path = ".",
           data_dir: str | None = None, flags: str = "") -> str:
    """The whole report as Markdown; figure links are relative to ``root`` (the report's folder);
    ``data_dir`` as ``resolve`` takes it (the CIFAR tracks' data). Its first line records the scale
    and the results folder (``origin_line``)."""
    from ..attacks.budget import published

    results = Results(plans, scale, out, data_dir)
    zoo_full = published("eot-zoo")
    parts = [origin_line(scale, out, root) + "\n", f"# Reproduction results ({scale} scale)\n",
             f"Generated by `{_command(plans, scale, data_dir, flags)}` from `{out}`; do not edit by hand. Paper numbers: He, "
             f"Rakin, Fan, CVPR 2019 (`pni.reproduce.paper_numbers`). Ours: mean±std over trials (one trial: "
             f"the mean); accuracies in %. EOT-PGD and AA-rand are the honest counterparts of the paper's PGD: "
             f"EOT-PGD averages each gradient over 20 noise draws; AA-rand is AutoAttack's randomized version "
             f"at the budget pyautoattack publishes for it (APGD-CE + APGD-DLR, 100 iterations, EOT 20). A column "
             f"or verdict at a smaller budget says so (\"AA-rand, 10 it x 10 draws (reduced)\"); so do ZOO and C&W "
             f"below their own defaults in pni (ZOO: {zoo_full['steps']:,} iterations of {zoo_full['coords']} "
             f"coordinates, EOT-ZOO {zoo_full['eot']} draws per query; C&W: its profile's steps x binary "
             f"searches). The honest "
             f"protocol runs its attacks as AutoAttack does, in a cascade (clean -> EOT-PGD -> AA-rand: each "
             f"attacks only the images still classified correctly by some noise draw), so its later columns are "
             f"cumulative (robust to every attack so far) and the last one is the per-image worst case; every "
             f"prediction is judged over 10 noise draws.\n",
             "Tracks at this scale:\n",
             "\n".join(f"- **{t.name}**: {t.note}" for t in tracks(scale, data_dir)) + "\n"]
    for plan in plans:
        parts.append(f"## {plan.title}\n")
        if plan.notes:
            parts.append(f"_{plan.notes}_\n")
        for track in tracks(scale, data_dir):
            if not any(track.adapt(r.specs[0], plan.name) is not None for r in plan.rows):
                continue
            parts.append(track_header(results, plan, track))
            parts.append(render_plan(results, plan, track, Path(root)))
    parts.append("## Verdicts on the paper's claims\n")
    parts.append(VERDICT_RULES)
    for track in tracks(scale, data_dir):
        verdicts = judge_claims(results, track.name, _on_track(plans, track))
        if verdicts:
            parts.append(f"**Track {track.name}**\n\n" + "\n".join(v.line() for v in verdicts) + "\n")
    return "\n".join(parts)


def write_results(plans: list[Plan], scale: str, out: str | Path, path: str | Path | None = None,
                  data_dir: str | None = None, force: bool = False, flags: str = "") -> Path:
    """Renders the report of ``plans`` from ``out`` and writes it to ``path`` (atomically; default
    ``<out>/RESULTS.md``). A report already there that was built from another scale or results
    folder is not replaced (``ReportClash``) unless ``force``. ``flags``: what the regenerating
    command line adds after ``--report`` (e.g. " --update-docs")."""
    path = Path(out) / "RESULTS.md" if path is None else Path(path)
    check_replace(path, scale, out, force)
    return write_text(render(plans, scale, out, root=path.parent, data_dir=data_dir, flags=flags), path,
                      what="results report")


# --- the README's summary -------------------------------------------------------------------------
def verdict_summary(plans: list[Plan], scale: str, out: str | Path, report: str,
                    data_dir: str | None = None, root: str | Path = ".", flags: str = "") -> str:
    """One line per claim with its verdict per track, linking ``report`` (a relative path);
    ``root``: the README's folder (the recorded results folder is relative to it)."""
    results = Results(plans, scale, out, data_dir)
    merged: dict[str, tuple[Verdict, dict[str, str]]] = {}
    for track in tracks(scale, data_dir):
        for v in judge_claims(results, track.name, _on_track(plans, track)):
            unfinished = v.verdict != NOT_JUDGED and any(m.unfinished for m in v.measures or ())
            merged.setdefault(v.claim, (v, {}))[1][track.name] = v.verdict + (UNFINISHED_MARK if unfinished else "")
    lines = [origin_line(scale, out, root), f"Verdicts at {scale} scale (`{_command(plans, scale, data_dir, flags)}`; numbers, evidence and rules in "
             f"[{report}]({report})):", ""]
    for claim, (first, per_track) in merged.items():
        cells = "; ".join(f"{t}: *{'not judged yet' if v == NOT_JUDGED else v}*" for t, v in per_track.items())
        lines.append(f"- {claim} ({first.source}): {cells}")
    if any(v.endswith(UNFINISHED_MARK) for _, per_track in merged.values() for v in per_track.values()):
        lines += ["", f"{UNFINISHED_MARK} judged on the finished attacks of an evaluation step still to finish "
                      "(final numbers: the finished step reports the same; the report marks their cells)."]
    return "\n".join(lines) + "\n"


def update_readme(readme: str | Path, block: str) -> str:
    """Replaces what lies between the README's verdict markers by ``block`` (atomically);
    anything else is left byte for byte. Returns a one-line account."""
    readme = Path(readme)
    try:
        text = readme.read_text()
    except OSError:
        return f"README {readme} not found: left alone"
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return f"README {readme} has no {README_START} ... {README_END} markers: left alone"
    head = text[: start + len(README_START)]
    new = head + "\n" + block + text[end:]
    if new != text:
        write_text(new, readme, what="README")
    return f"verdict summary written to {readme}"


def write_readme_summary(plans: list[Plan], scale: str, out: str | Path, readme: str | Path,
                         report: str | Path, data_dir: str | None = None, force: bool = False,
                         flags: str = "") -> str:
    """The README's verdict block for ``plans`` (``verdict_summary``), linking ``report``; a block
    built from another scale or results folder is not replaced (``ReportClash``) unless ``force``."""
    check_replace(readme, scale, out, force, block=True)
    link = Path(os.path.relpath(Path(report).resolve(), Path(readme).resolve().parent)).as_posix()
    return update_readme(readme, verdict_summary(plans, scale, out, link, data_dir, Path(readme).parent, flags))
