"""Evaluation and transfer reports: Table 2 (accuracy under attack, one table per noise
setting), the attacks' settings and own figures, ``results.json`` / ``results.md`` of
``pni eval``, and Table 5 (``transfer.json`` / ``transfer.md`` of ``pni transfer``)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs import RESULTS, TRANSFER
from ..attacks.registry import attack_names, get_attack
from ..evaluation.result import NOISE_TITLES, WORST_CASE, Evaluation
from ..provenance import with_code
from ..files import write_json, write_text
from .markdown import format_cell, format_settings, md_table

MAX_ATTACK_COLUMNS = 6   # a table: the model column and at most this many attacks




def attack_title(name: str) -> str:
    """The report's title of an attack (its spec's), "Worst case" for the per-image worst case;
    an attack passed as a callable: its name."""
    if name == WORST_CASE:
        return "Worst case"
    return get_attack(name).title if name in attack_names() else name


def evaluation_table(rows: Sequence[tuple[str, Evaluation]], attacks: Sequence[str] | None = None,
                     majority: bool = False) -> str:
    """Table 2 as Markdown, one table per noise setting ("Test with PNI", then "Test
    without PNI", each under its title in bold): a row per model, a column per attack
    (accuracy %, mean±std); more than ``MAX_ATTACK_COLUMNS`` attacks are split over tables of
    even widths. A model not measured in a setting has no row there; one without an attack, ``-``.
    ``majority``: the majority-vote accuracies (evaluations with ``votes > 1``)."""
    if attacks is None:
        attacks = []
        for _, ev in rows:
            for setting in ev.accuracies.values():
                attacks += [a for a in setting if a not in attacks]
    parts = -(-len(attacks) // MAX_ATTACK_COLUMNS) or 1   # tables per setting, of even widths
    size = -(-len(attacks) // parts) or 1
    summaries = [(label, ev.vote_summary() if majority else ev.summary(), ev.trials) for label, ev in rows]
    blocks = []
    for setting in NOISE_TITLES:
        measured = [(label, summary[setting], trials) for label, summary, trials in summaries
                    if setting in summary]
        if not measured:
            continue
        for start in range(0, max(len(attacks), 1), size):
            chunk = attacks[start:start + size]
            table = md_table(["Model", *map(attack_title, chunk)],
                             [[label] + [format_cell(accuracies.get(a), trials) for a in chunk]
                              for label, accuracies, trials in measured])
            blocks.append(f"**{NOISE_TITLES[setting]}**\n\n{table}")
    return "\n".join(blocks)


def attack_parameters_table(evaluation: Evaluation) -> str:
    """A Markdown list of every attack's parameters, for the report."""
    lines = [f"- **{attack_title(name)}**: {format_settings(params)}"
             for name, params in evaluation.attacks.items() if params]
    return "\n".join(lines) + ("\n" if lines else "")


def attack_metrics_table(evaluation: Evaluation) -> str:
    """The attacks' own figures (mean±std over trials): success rate (% of the initially
    correct images fooled, by the attack's own check), mean L2 of the successful
    perturbations (C&W: Table 4) and AutoAttack's one-pass accuracy; empty if none."""
    metrics = evaluation.attack_metrics()
    if not metrics:
        return ""
    columns = [("success_rate", "Success rate (%)"), ("mean_l2", "Mean L2 of successes"),
               ("reported_accuracy", "One-pass accuracy (%)")]
    rows = [[attack_title(name), NOISE_TITLES.get(setting, setting)]
            + [format_cell(values.get(key), evaluation.trials) if key in values else "-" for key, _ in columns]
            for setting, per_attack in metrics.items() for name, values in per_attack.items()]
    return md_table(["Attack", "Setting", *(title for _, title in columns)], rows)


def evaluation_markdown(evaluation: Evaluation, label: str) -> str:
    """``results.md``: Table 2 for one model, the majority vote, the attacks' own figures
    and their settings."""
    judged = (f" Every prediction is judged over {evaluation.votes} noise draws: the accuracy is "
              f"the expected accuracy (mean over draws)." if evaluation.votes > 1 else "")
    text = (f"# Evaluation: {label}\n\n"
            f"Accuracy (%) on {evaluation.n} images, mean±std over {evaluation.trials} trials "
            f"(seeds {evaluation.seeds[0]}..{evaluation.seeds[-1]}).{judged}\n\n"
            + evaluation_table([(label, evaluation)]))
    if "worst-case" in evaluation.attacks:
        text += ("\n*Worst case*: per image, correct under every attack run (over: "
                 f"{evaluation.attacks['worst-case'].get('over', '')}): the robust accuracy to quote.\n")
    if evaluation.votes > 1 and evaluation.vote_accuracies:
        text += (f"\nMajority vote over {evaluation.votes} noise draws (%):\n\n"
                 + evaluation_table([(label, evaluation)], majority=True))
    metrics = attack_metrics_table(evaluation)
    if metrics:
        text += "\nThe attacks' own figures:\n\n" + metrics
    return text + "\nAttack settings:\n\n" + attack_parameters_table(evaluation)


def write_evaluation(evaluation: Evaluation, out_dir: str | os.PathLike, label: str) -> dict[str, Path]:
    """``results.json`` and ``results.md`` (``evaluation_markdown``) in ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = write_json(with_code({"model": label, **evaluation.to_json()}), out_dir / RESULTS)
    md_path = write_text(evaluation_markdown(evaluation, label), out_dir / "results.md")
    return {"json": json_path, "markdown": md_path}


def transfer_table(matrix: Any, majority: bool = False) -> str:
    """Table 5 (left) for a ``pni.attacks.transfer.TransferMatrix``: one row per source, one
    column per target (accuracy %, mean±std; the diagonal is the white-box attack), then
    the ``S ⇒ T`` pairs, one row each."""
    summary = matrix.summary(majority=majority)
    names = matrix.names
    grid = md_table(["Source \\ Target", *names],
                    [[source] + [format_cell(summary[source][target], matrix.trials) for target in names]
                     for source in names])
    pairs = md_table(["Source ⇒ Target", "Accuracy (%)"],
                     [[f"{s} ⇒ {t}", format_cell(summary[s][t], matrix.trials)]
                      for s in names for t in names if s != t])
    return grid + "\n" + pairs


def transfer_markdown(matrix: Any) -> str:
    """``transfer.md``: the models, Table 5 and the attack's settings."""
    models = "\n".join(f"- **{name}**: {matrix.labels.get(name, name)}" for name in matrix.names)
    votes = matrix.params.get("votes", 1)
    judged = f" Each prediction is judged over {votes} noise draws (expected accuracy)." if votes > 1 else ""
    return (f"# Transfer attack (Table 5)\n\n{models}\n\n"
            f"Accuracy (%) of the target on adversarial examples made on the source, {matrix.n} images, "
            f"mean±std over {matrix.trials} trials (seeds {matrix.seeds[0]}..{matrix.seeds[-1]}).{judged}\n\n"
            + transfer_table(matrix) + f"\nAttack: {format_settings(matrix.params)}\n")


def write_transfer(matrix: Any, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``transfer.json`` and ``transfer.md`` for a transfer matrix (``pni transfer``)."""
    out_dir = Path(out_dir)
    json_path = write_json(with_code(matrix.to_json()), out_dir / TRANSFER)
    md_path = write_text(transfer_markdown(matrix), out_dir / "transfer.md")
    return {"json": json_path, "markdown": md_path}
