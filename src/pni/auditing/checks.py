"""The audit's checklist: each numbered check as a named entry of one ``CHECKS`` table.

A check reads one ``AuditRun`` (the model, its measuring bench, the settings) and returns
its ``AuditItem`` (verdict, evidence, the rule) and, for items 5-7, the sweep it measured.
The rules, with "within noise" meaning ``pni.auditing.bench.tolerance``:

1. one-step (FGSM) vs iterative (PGD): fail if FGSM is the stronger attack;
2. black-box vs white-box (``pni.auditing.blackbox``): fail if a black-box attack is stronger;
3. unbounded attack (eps = 1, many steps): fail if accuracy does not reach about 0%;
4. random sampling in the eps-ball vs PGD: fail if random points find adversarial examples
   PGD misses on a meaningful fraction of the images;
5. increasing eps: fail if accuracy does not fall (within noise) as eps grows;
6. (beyond the paper) PGD steps up to 100: fail if accuracy still falls markedly at the end;
7. (beyond the paper) EOT samples 1 -> 30: flag the model when EOT-PGD takes much more
   accuracy than single-draw PGD (the single-draw robustness is then mostly noise).

Adding a check: write ``def my_check(run: AuditRun) -> Outcome``, name it in
``pni.auditing.settings.ITEM_NAMES`` and add ``Check(number, "my_check", my_check)`` to ``CHECKS``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..attacks import pgd, random_search
from ..data import Dataset
from .bench import Bench, pct, stratified_head, tolerance
from .blackbox import black_box_item
from .result import AuditItem, Sweep
from .settings import ITEM_NAMES, AuditSettings
from .sweeps import eot_sweep, eps_sweep, steps_sweep

Outcome = tuple[AuditItem, Sweep | None]  # the item, and the sweep it measured (items 5-7)


@dataclass
class AuditRun:
    """What the checks read: the model, the bench on its audited images, the settings, and
    the inputs of item 2 (a surrogate, or train_data to train one)."""

    model: nn.Module
    bench: Bench
    settings: AuditSettings
    randomized: bool
    label: str = "model"
    surrogate: nn.Module | None = None
    train_data: Dataset | tuple[Tensor, Tensor] | None = None
    data: Dataset | tuple[Tensor, Tensor] | None = None
    say: Callable[[str], None] = lambda text: None  # progress lines

    @property
    def device(self) -> torch.device:
        return self.bench.x.device


@torch.no_grad()
def _majority_wrong(model: nn.Module, x: Tensor, y: Tensor, draws: int) -> Tensor:
    """Per image: misclassified in more than half of ``draws`` forward passes."""
    wrong = torch.zeros(len(y), device=y.device)
    for _ in range(draws):
        wrong += (model(x).argmax(1) != y).float()
    return wrong > draws / 2


def one_step_vs_iterative(run: AuditRun) -> Outcome:
    """Item 1: fails if FGSM is the stronger attack."""
    bench, s = run.bench, run.settings
    acc_f, _ = bench.fgsm(s.eps)
    acc_p, _ = bench.pgd(s.eps, s.pgd_step_size, s.steps)
    tol = tolerance(acc_f, acc_p, bench.n_eff, s.z, s.tol_floor)
    passed = not acc_f < acc_p - tol
    evidence = {"fgsm_accuracy": pct(acc_f), "pgd_accuracy": pct(acc_p), "tolerance": pct(tol),
                "pgd_steps": s.steps, "pgd_step_size": s.pgd_step_size}
    summary = f"FGSM {100 * acc_f:.2f}% vs PGD-{s.steps} {100 * acc_p:.2f}% (tol {100 * tol:.2f} pts)"
    rule = "FGSM accuracy < PGD accuracy - tol (the one-step attack is the stronger one)"
    return AuditItem(1, ITEM_NAMES[1], passed, evidence, rule, summary), None


def unbounded_attack(run: AuditRun) -> Outcome:
    """Item 3: fails if PGD at eps 1 does not bring accuracy to about 0%."""
    bench, s = run.bench, run.settings
    acc, _ = bench.pgd(s.unbounded_eps, s.unbounded_step_size, s.unbounded_steps)
    limit = s.max_unbounded_accuracy
    threshold = limit + s.z * math.sqrt(limit * (1 - limit) / bench.n_eff)
    passed = acc <= threshold
    evidence = {"accuracy": pct(acc), "threshold": pct(threshold), "eps": s.unbounded_eps,
                "steps": s.unbounded_steps, "step_size": s.unbounded_step_size}
    summary = (f"PGD-{s.unbounded_steps} at eps {s.unbounded_eps:g}: {100 * acc:.2f}% "
               f"(threshold {100 * threshold:.2f}%)")
    rule = (f"accuracy under PGD at eps {s.unbounded_eps:g} ({s.unbounded_steps} steps of "
            f"{s.unbounded_step_size:g}) > {100 * limit:g}% + z*SE (does not reach about 0%)")
    return AuditItem(3, ITEM_NAMES[3], passed, evidence, rule, summary), None


def random_sampling(run: AuditRun) -> Outcome:
    """Item 4: fails if random points of the eps-ball find adversarial examples PGD misses
    on more than a small fraction of the images."""
    model, bench, s, randomized = run.model, run.bench, run.settings, run.randomized
    m = min(s.random_n, len(bench.y))
    x, y = stratified_head(bench.x, bench.y, m)
    draws = s.confirm_draws if randomized else 1
    torch.manual_seed(s.seed)
    x_pgd = torch.cat([pgd(model, x[i:i + bench.batch_size], y[i:i + bench.batch_size], s.eps,
                           s.pgd_step_size, s.steps) for i in range(0, m, bench.batch_size)])
    pgd_found = _majority_wrong(model, x_pgd, y, draws)
    generator = torch.Generator().manual_seed(s.seed)
    points, margins = random_search(model, x, y, s.eps, s.random_samples, s.random_candidates,
                                    bench.batch_size, generator)
    random_found = torch.zeros(m, dtype=torch.bool, device=y.device)
    for c in range(points.shape[1]):
        candidate = margins[:, c] < 0
        if candidate.any():
            idx = candidate.nonzero().flatten()
            confirmed = _majority_wrong(model, points[idx, c], y[idx], draws)
            random_found[idx] |= confirmed
    missed = random_found & ~pgd_found
    fraction = float(missed.float().mean())
    limit = s.max_random_fraction
    threshold = limit + s.z * math.sqrt(limit * (1 - limit) / m)
    passed = fraction <= threshold
    evidence = {"images": m, "random_points_per_image": s.random_samples,
                "random_found": int(random_found.sum()), "pgd_found": int(pgd_found.sum()),
                "random_found_pgd_missed": int(missed.sum()), "fraction": pct(fraction),
                "threshold": pct(threshold), "confirm_draws": draws}
    summary = (f"random sampling found {int(random_found.sum())}/{m}, PGD {int(pgd_found.sum())}/{m}; "
               f"random-only {int(missed.sum())} ({100 * fraction:.2f}%, threshold {100 * threshold:.2f}%)")
    rule = (f"fraction of images where {s.random_samples} random points of the eps-ball find an "
            f"adversarial example and PGD does not > {100 * limit:g}% + z*SE"
            + (f"; a point counts when misclassified in most of {draws} noise draws" if draws > 1 else ""))
    return AuditItem(4, ITEM_NAMES[4], passed, evidence, rule, summary), None


def increasing_eps(run: AuditRun) -> Outcome:
    """Item 5: fails if accuracy does not fall (within noise) as eps grows."""
    bench, s, label = run.bench, run.settings, run.label
    sweep = eps_sweep(bench, s.sweep_eps_values(), s.steps, None, 1, label)
    accs = sweep.accuracy
    rises = []
    for i in range(len(accs)):
        for j in range(i + 1, len(accs)):
            tol = tolerance(accs[i], accs[j], bench.n_eff, s.z, s.tol_floor)
            rises.append((accs[j] - accs[i] - tol, i, j))
    worst = max(rises)
    overall_tol = tolerance(accs[0], accs[-1], bench.n_eff, s.z, s.tol_floor)
    drop = accs[0] - accs[-1]
    at_zero = accs[-1] <= tolerance(accs[-1], 0.0, bench.n_eff, s.z, s.tol_floor)
    falls = drop > overall_tol or at_zero
    passed = falls and worst[0] <= 0
    evidence = {"eps": sweep.values, "accuracy": [pct(a) for a in accs], "overall_drop": pct(drop),
                "overall_tolerance": pct(overall_tol),
                "largest_rise": pct(accs[worst[2]] - accs[worst[1]]),
                "largest_rise_between": [sweep.values[worst[1]], sweep.values[worst[2]]]}
    summary = (f"{100 * accs[0]:.2f}% at eps {sweep.values[0]:.4g} -> {100 * accs[-1]:.2f}% at eps "
               f"{sweep.values[-1]:.4g}; largest rise {100 * (accs[worst[2]] - accs[worst[1]]):.2f} pts")
    rule = ("accuracy at the largest eps is neither below the smallest eps's by more than tol "
            "nor within tol of 0%, or accuracy rises by more than tol from a smaller to a larger eps")
    return AuditItem(5, ITEM_NAMES[5], passed, evidence, rule, summary), sweep


def pgd_convergence(run: AuditRun) -> Outcome:
    """Item 6: fails if accuracy still falls markedly at the largest PGD budget."""
    bench, s, label = run.bench, run.settings, run.label
    sweep = steps_sweep(bench, s.steps_values, s.eps, s.pgd_step_size, 1, label)
    accs = sweep.accuracy
    end_drop = accs[-2] - accs[-1]
    tol = tolerance(accs[-2], accs[-1], bench.n_eff, s.z, s.tol_floor)
    passed = end_drop <= tol
    a, b = sweep.values[-2], sweep.values[-1]
    evidence = {"steps": sweep.values, "accuracy": [pct(v) for v in accs], "end_drop": pct(end_drop),
                "tolerance": pct(tol), "step_size": s.pgd_step_size}
    summary = (f"PGD-{a}: {100 * accs[-2]:.2f}% -> PGD-{b}: {100 * accs[-1]:.2f}% "
               f"(drop {100 * end_drop:.2f} pts, tol {100 * tol:.2f})")
    rule = (f"accuracy(PGD-{a}) - accuracy(PGD-{b}) > tol (still falling at the end: the attack "
            "has not converged)")
    return AuditItem(6, ITEM_NAMES[6], passed, evidence, rule, summary), sweep


def eot_samples(run: AuditRun) -> Outcome:
    """Item 7: flags the model when EOT-PGD takes much more accuracy than single-draw PGD."""
    bench, s, randomized, label = run.bench, run.settings, run.randomized, run.label
    ks = sorted(set(s.eot_ks) | {1})
    plateau_n = max(1, min(s.eot_plateau, len(ks) - 1))
    rule = (f"accuracy(EOT k=1) - min(accuracy at the {plateau_n} largest k) > "
            f"max({100 * s.max_eot_drop:g} pts, tol): single-draw PGD robustness is mostly noise")
    if not randomized:
        sweep = eot_sweep(bench, [1], s.eps, s.steps, s.pgd_step_size, label)
        evidence = {"randomized": False, "ks": [1], "accuracy": [pct(sweep.accuracy[0])], "drop": 0.0}
        summary = ("deterministic model: every EOT draw gives the same gradient, so EOT-k equals "
                   f"PGD ({100 * sweep.accuracy[0]:.2f}%); drop 0")
        return AuditItem(7, ITEM_NAMES[7], True, evidence, rule, summary), sweep
    sweep = eot_sweep(bench, ks, s.eps, s.steps, s.pgd_step_size, label)
    accs = sweep.accuracy
    first = accs[0]
    plateau = min(accs[-plateau_n:])
    drop = first - plateau
    tol = tolerance(first, plateau, bench.n_eff, s.z, s.tol_floor)
    limit = max(s.max_eot_drop, tol)
    passed = drop <= limit
    evidence = {"randomized": True, "ks": sweep.values, "accuracy": [pct(a) for a in accs],
                "plateau": pct(plateau), "drop": pct(drop), "limit": pct(limit)}
    summary = (f"EOT k=1 {100 * first:.2f}% -> plateau {100 * plateau:.2f}% (k={sweep.values[-plateau_n]}"
               f"..{sweep.values[-1]}): drop {100 * drop:.2f} pts (limit {100 * limit:.2f})")
    return AuditItem(7, ITEM_NAMES[7], passed, evidence, rule, summary), sweep


def black_box_vs_white_box(run: AuditRun) -> Outcome:
    """Item 2: fails if a black-box attack (transfer, ZOO) beats the white-box ones."""
    item = black_box_item(run.model, run.bench, run.settings, run.surrogate, run.train_data,
                          run.data, run.device, run.say)
    return item, None


@dataclass(frozen=True)
class Check:
    """One checklist item: its number, a name, the function measuring it and the key of
    the sweep it returns (``AuditReport.sweeps``), if any."""

    number: int
    name: str
    run: Callable[[AuditRun], Outcome]
    sweep: str | None = None

    @property
    def title(self) -> str:
        return ITEM_NAMES[self.number]


CHECKS: dict[int, Check] = {check.number: check for check in (
    Check(1, "one_step_vs_iterative", one_step_vs_iterative),
    Check(2, "black_box_vs_white_box", black_box_vs_white_box),
    Check(3, "unbounded_attack", unbounded_attack),
    Check(4, "random_sampling", random_sampling),
    Check(5, "increasing_eps", increasing_eps, sweep="eps"),
    Check(6, "pgd_convergence", pgd_convergence, sweep="steps"),
    Check(7, "eot_samples", eot_samples, sweep="eot"),
)}
