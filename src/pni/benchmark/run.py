"""Runs a versioned protocol on one model and returns its card.

``benchmark(model, data, threat=...)`` judges any ``nn.Module`` (images in [0, 1]);
``benchmark_checkpoint(path)`` a ``pni train`` checkpoint on its own data and eps. The
model runs as deployed (its noise on); a model whose two passes agree is judged with one
draw and one vote (nothing to average), and the card says it is deterministic.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.registry import build_attacks
from ..data import Dataset, as_tensors, stratified_indices
from ..files import file_sha256
from ..evaluation.evaluator import evaluate
from ..evaluation.resume import partial_attacks
from ..evaluation.result import WORST_CASE
from ..models import count_parameters
from ..attacks.budget import madry_step_size, paper_pgd_steps
from ..attacks.threat import Threat, parse_threat
from ..evaluation.user_model import detect_randomness, deterministic_options
from .card import code_record, make_card, per_image_shares
from .protocol import BenchmarkError, Protocol, get_protocol

CPU_BATCH = 32   # images per attacked batch of a card on a CPU (``card_batch_size``)
DEVICE_BATCH = 256


def card_batch_size(device: str | torch.device | None, model: nn.Module | None = None) -> int:
    """Images per attacked batch of a card: ``CPU_BATCH`` on a CPU, ``DEVICE_BATCH`` elsewhere.

    A batch is the unit a stopped card loses (finished batches are kept in its partial file).
    The cascade hands every image still robust to a later attack at once, so on a CPU a batch of
    256 made Square-EOT on a ResNet-20's 155 robust images one unsaved 76-minute chunk (hours on
    a PNI-A-a model, whose passes cost twice as much): a stop lost all of it. Batches of 32 keep
    each chunk to minutes, for 7-35 % more time per image on a ResNet-20 than batches of 256
    (``benchmarks/card_batch.py``). A batch's images share its seed (``pni.seeding.batch_seed``):
    the card records the batch size it ran with."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu")) if model is not None else "cpu"
    return CPU_BATCH if torch.device(device).type == "cpu" else DEVICE_BATCH


def _sample(data: Dataset | tuple[Tensor, Tensor], protocol: Protocol) -> tuple[Any, dict[str, Any]]:
    """The protocol's class-stratified sample of the test images, and what it is."""
    if isinstance(data, Dataset):
        sample = data.subset(protocol.n, protocol.subset_seed) if protocol.n < len(data) else data
        return sample, {"dataset": data.name, "split": data.split, "n": len(sample),
                        "subset_seed": protocol.subset_seed}
    x, y = as_tensors(data)
    if protocol.n < len(y):
        idx = stratified_indices(y, protocol.n, protocol.subset_seed)
        x, y = x[idx], y[idx]
    return (x, y), {"dataset": "user tensors", "split": "given", "n": len(y), "subset_seed": protocol.subset_seed}


def _attacks(protocol: Protocol, eps: float, image_shape: tuple[int, ...],
             options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The protocol's attacks: the paper-style one at the paper's steps for this data, the
    others at the protocol's EOT-PGD steps (2.5 eps / steps each)."""
    table: dict[str, Any] = {}
    params: dict[str, dict[str, Any]] = {}
    for name in protocol.attacks:
        steps = _steps(protocol, name, image_shape)
        own, own_params = build_attacks([name], eps=eps, steps=steps, step_size=madry_step_size(eps, steps),
                                        **options)
        table.update(own)
        params.update(own_params)
    return table, params


def benchmark(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], threat: str | Threat, *,
              name: str = "model", protocol: str = "pni-honest-v1", budget: str = "full",
              n: int | None = None, source: str = "python", weights_sha256: str | None = None,
              device: str | torch.device | None = None, batch_size: int | None = None,
              say: Callable[[str], None] = lambda text: None, progress: bool = False,
              resume_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Judges ``model`` under the versioned ``protocol`` and returns its card (validated).

    Args:
        model: any classifier taking images in [0, 1] (randomized or not), run as deployed.
        data: the test set: a pni Dataset or an ``(images, labels)`` pair; the protocol's
            class-stratified sample of ``n`` is taken from it.
        threat: ``"linf:8/255"``: required (a pni checkpoint supplies its own, see
            ``benchmark_checkpoint``).
        name: the model's name on the card and the leaderboard.
        protocol: "pni-honest-v1".
        budget: "full" (the protocol), "cpu" or "smoke" (smaller budgets, written on the card).
        n: fewer images than the protocol's (written on the card).
        batch_size: images per attacked batch (default None: ``card_batch_size``, 32 on a CPU,
            256 elsewhere; the audit's 256), recorded on the card (``attacks._judging``).
        say: called with each line of news (the protocol run, the time estimate, the verdicts).
        progress: show the attacks' work done, batch by batch, with the time left (``evaluate``'s
            progress, ``pni.progress``).
        resume_file: where the finished attacks are kept: a stopped run resumes from them
            (``evaluate(resume_file=)``; the caller deletes it once the card is written).

    Returns:
        dict: the card (``docs/BENCHMARK.md``); write it with ``pni.benchmark.write_card``.
    """
    from ..auditing import audit

    proto, changes = get_protocol(protocol, budget, n)
    code = code_record()  # the code that ran: taken before a long run, not after it
    threat = parse_threat(threat)
    sample, data_record = _sample(data, proto)
    x, y = as_tensors(sample)
    if device is not None:
        model = model.to(device)
        x = x.to(device)
    randomized = detect_randomness(model, x)
    attack_batch = card_batch_size(device, model) if batch_size is None else batch_size
    options = dict(proto.attack_options)
    votes = proto.votes
    if not randomized:
        options, votes = deterministic_options(options), 1
    table, params = _attacks(proto, threat.eps, tuple(x.shape[1:]), options)
    say(f"benchmark {proto.name} ({budget}) of {name}: {len(y)} images, threat {threat}, "
        f"randomized: {'yes' if randomized else 'no'}, votes {votes}, attacks {', '.join(table)}"
        + (f" (cascade: clean -> {' -> '.join(proto.cascade)})" if proto.cascade else ""))
    reused = [a for a in partial_attacks(resume_file) if a in proto.attacks]
    estimate_line = _estimate(model, x, proto, options, votes, randomized, len(y), threat.eps, reused)
    if estimate_line:
        say(estimate_line)
    evaluation = evaluate(model, sample, table, trials=proto.trials, noise="on", seed=0, batch_size=attack_batch,
                          device=device, votes=votes, worst_case=True, cascade=proto.cascade, progress=progress,
                          resume_file=resume_file)
    setting = next(iter(evaluation.fractions))
    shares = per_image_shares(evaluation.fractions[setting])
    majority_worst = evaluation.correct[setting][WORST_CASE].float().mean(0)
    data_record["labels_sha256"] = evaluation.labels_sha256
    params[WORST_CASE] = {"over": ", ".join(table)}
    params["_judging"] = {"votes": votes, "trials": proto.trials, "setting": setting, "batch_size": attack_batch}
    say(f"attacks done: worst case {100 * float(shares[WORST_CASE].mean()):.2f}%")
    report = None
    if proto.audit_items:
        report = audit(model, sample, threat.eps, items=proto.audit_items, n=min(proto.audit_n, len(y)),
                       label=name, device=device,  # (no partial file: the evaluation default)
                       batch_size=DEVICE_BATCH if batch_size is None else batch_size, **proto.audit_options)
        say(f"audit: {report.verdict()}")
    return make_card(name=name, source=source, parameters=count_parameters(model), randomized=randomized,
                     weights_sha256=weights_sha256, protocol=proto, budget=budget, changes=changes,
                     data=data_record, threat=threat, per_image=shares, majority_worst=majority_worst,
                     attacks=params, audit=report, code=code)


def _estimate(model: nn.Module, x: Tensor, proto: Protocol, options: dict[str, Any], votes: int,
              randomized: bool, n: int, eps: float, reused: Sequence[str] = ()) -> str | None:
    """The up-front time estimate (``pni.evaluation.estimate``): the attacks, every chained one
    counted on every image (an upper bound the cascade cuts to the share of images still
    robust when each starts), and the audit's items on its images. ``reused``: attacks a stopped
    run finished (its partial file): not counted. None under a minute."""
    from ..auditing.settings import AuditSettings
    from ..evaluation.estimate import attack_passes, audit_seconds, format_duration, measure_pass_rate

    rate = measure_pass_rate(model, x[:16])
    settings = {"votes": votes, "attack_options": options}
    passes = sum(attack_passes(a, settings, _steps(proto, a, tuple(x.shape[1:])), randomized)
                 for a in proto.attacks if a not in reused) * proto.trials
    attacks = n * passes / rate
    audit = 0.0
    if proto.audit_items:
        audit_settings = AuditSettings(eps=eps, items=proto.audit_items, **proto.audit_options)
        if not randomized:  # item 7's EOT sweep is one k on a deterministic model
            audit_settings = dataclasses.replace(audit_settings, eot_ks=(1,))
        audit = audit_seconds(audit_settings, min(proto.audit_n, n), rate, surrogate_training=False)
    if attacks + audit < 60:
        return None
    parts = []
    if passes:
        parts.append(f"the attacks {format_duration(attacks)} ({n} images x {passes:,.0f} forward+backward passes each"
                     + (f"; the cascade runs {', '.join(proto.cascade)} only on the images still robust, usually "
                        f"far less" if proto.cascade else "") + ")")
    if proto.audit_items:
        parts.append(f"the audit {format_duration(audit)} ({min(proto.audit_n, n)} images)")
    if reused:
        parts.append(f"{', '.join(reused)} finished before the stop (reused)")
    return f"at most about {format_duration(attacks + audit)} on this device: " + ", ".join(parts)


def _steps(proto: Protocol, attack: str, image_shape: tuple[int, ...]) -> int:
    """The PGD steps of ``attack`` under ``proto``: the paper's for its paper attack."""
    return paper_pgd_steps(image_shape) if attack == proto.paper_attack else proto.eot_pgd_steps


def benchmark_checkpoint(path: str | os.PathLike, threat: str | Threat | None = None, *,
                         name: str | None = None, protocol: str = "pni-honest-v1", budget: str = "full",
                         n: int | None = None, dataset: str | None = None, data_dir: str | None = None,
                         device: str = "cpu", batch_size: int | None = None,
                         say: Callable[[str], None] = lambda text: None, progress: bool = False,
                         resume_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """``benchmark`` of a ``pni train`` checkpoint on its own dataset's test split, at its
    training eps unless ``threat`` is given (``dataset`` / ``data_dir``: another copy of its data)."""
    from ..evaluation.opened_run import open_checkpoint

    run = open_checkpoint(path, dataset=dataset, data_dir=data_dir, device=device)
    if threat is None:
        if run.eps is None:
            raise BenchmarkError(f"checkpoint {str(path)!r} records no training eps: give a threat (linf:EPS)")
        threat = Threat("linf", float(run.eps))
    return benchmark(run.model, run.data, threat, name=name or run.label, protocol=protocol, budget=budget, n=n,
                     source=f"pni checkpoint {shown_path(path)}", weights_sha256=file_sha256(path),
                     device=device, batch_size=batch_size, say=say, progress=progress, resume_file=resume_file)


def shown_path(path: str | os.PathLike) -> str:
    """How a card names a file: relative to the current folder when it lies below it (a
    card is committed and read on other machines), else as given."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
