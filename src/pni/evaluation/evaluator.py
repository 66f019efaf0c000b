"""Accuracy under attack over several trials, with the noise on and off (Tables 1-3).

Every figure is mean ± std over ``trials`` runs with distinct seeds (the paper: 5),
"Test with PNI" (noise on) and "Test without PNI" (noise off, the same weights).
A randomized model's prediction can be judged over ``votes`` noise draws (the expected
accuracy, and the majority-vote accuracy), and the per-sample worst case over all the
attacks run is the robust accuracy to quote ("worst-case").
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..settings import check_int
from .. import distributed as dist_utils
from . import per_image
from .estimate import attack_passes
from ..provenance import code_version
from .resume import fingerprint, load_partial, save_partial
from ..data import Dataset, as_tensors, warn_missing_classes
from ..models.modes import cpu_channels_last, eval_mode, model_device
from ..noise import is_injected, noise_enabled, noise_modules
from ..progress import credit, progress_bar, shrink_total
from ..resumable import BatchRecord, batch_record, replaying, resumable_batches
from ..seeding import batch_seed
from .result import NOISE_SETTINGS, WORST_CASE, Evaluation, EvaluationError
from .settings import EvalSettings

Attack = Callable[[nn.Module, Tensor, Tensor], Any]  # x_adv, or a result with .x_adv


def correct_mask(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None,
                 batch_size: int = 256, seed: int | None = None, start_index: int = 0) -> Tensor:
    """Per-sample correctness (bool) of ``model`` on ``x`` or on ``attack(model, x, y)``.

    With ``seed``, the random state is set to ``batch_seed(seed, start_index + start)``
    before each batch (``start_index``: the position of ``x[0]`` in the whole set).
    """
    return sample_outcomes(model, x, y, attack, batch_size, seed, start_index)["correct"]


def sample_outcomes(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None,
                    batch_size: int = 256, seed: int | None = None, start_index: int = 0,
                    votes: int = 1, on_batch: Callable[[float], None] | None = None) -> dict[str, Tensor]:
    """Per-sample results on ``x`` or on ``attack(model, x, y)``, judged over ``votes`` noise
    draws: ``"fraction"`` (float: the share of draws that are correct), ``"correct"``
    (bool: the majority vote is correct; with one vote, that one pass), and the attack's own
    per-sample figures when it returns a result object (``per_sample()``: ``"l2"``,
    ``"success"``, ...). Seeding as ``correct_mask``. ``on_batch``: called with each finished
    batch's number of images (progress; in fractions as an attack's own batches finish).
    Inside a ``pni.resumable.batch_record`` each finished batch is kept, and reused on resume.
    """
    from ..attacks.votes import predict_votes, vote_correctness

    starts = list(range(0, len(y), batch_size))

    def one_batch(i: int) -> dict[str, Tensor]:
        start = starts[i]
        if seed is not None:
            torch.manual_seed(batch_seed(seed, start_index + start))
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        extra: dict[str, Tensor] = {}
        if attack is not None:
            out = attack(model, xb, yb)
            if not isinstance(out, Tensor):
                extra = dict(out.per_sample()) if hasattr(out, "per_sample") else {}
                out = out.x_adv
            xb = out
        fraction, correct = vote_correctness(predict_votes(model, xb, votes, batch_size), yb)
        return {key: value.detach() for key, value in {"fraction": fraction, "correct": correct, **extra}.items()}

    # each batch kept as it finishes inside an evaluation with a partial file (pni.resumable)
    outcomes = resumable_batches(len(starts), one_batch, sizes=[len(y[s:s + batch_size]) for s in starts],
                                 report=on_batch, device=y.device)
    parts: dict[str, list[Tensor]] = {}
    for outcome in outcomes:
        for key, value in outcome.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        return {"fraction": torch.zeros(0, device=y.device),
                "correct": torch.zeros(0, dtype=torch.bool, device=y.device)}
    return {key: torch.cat(values) for key, values in parts.items()}


def accuracy(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None,
             batch_size: int = 256) -> float:
    """Accuracy of ``model`` (in eval mode, noise as it is) on clean or attacked images."""
    with eval_mode(model):
        mask = correct_mask(model, x, y, attack, batch_size)
    return float(mask.float().mean()) if len(mask) else math.nan


def _attack_table(attacks: Sequence[str] | dict[str, Attack], eps: float | None,
                  steps: int | None, step_size: float | None,
                  options: dict[str, Any] | None = None) -> tuple[dict[str, Attack], dict[str, dict]]:
    from ..attacks.registry import build_attacks

    if isinstance(attacks, dict):
        return dict(attacks), {name: dict(getattr(a, "params", {})) for name, a in attacks.items()}
    return build_attacks(list(attacks), eps=eps, steps=steps, step_size=step_size, **(options or {}))


def _in_worst_case(attacks: Sequence[str] | dict[str, Attack], table: dict[str, Attack]) -> list[str]:
    """The attacks the per-sample worst case is over: those bounded at eps by their spec's
    threat (C&W-L2, minimum-norm, is not); callables passed in a dict: all of them."""
    from ..attacks.registry import get_attack

    if isinstance(attacks, dict):
        return list(table)
    return [name for name in table if get_attack(name).in_worst_case]


def evaluate(model: nn.Module, data: Dataset | tuple[Tensor, Tensor],
             attacks: Sequence[str] | dict[str, Attack] = ("clean", "pgd", "fgsm"),
             trials: int = 5, noise: bool | str = True, *, eps: float | None = None,
             steps: int | None = None, step_size: float | None = None, seed: int = 0,
             batch_size: int = 256, device: str | torch.device | None = None,
             progress: bool = False, distributed: bool = False, votes: int = 1,
             worst_case: bool = True, attack_options: dict[str, Any] | None = None,
             cascade: Sequence[str] = (), threat: Any = None,
             resume_file: str | os.PathLike | None = None) -> Evaluation:
    """Accuracy under each attack, mean ± std over ``trials`` seeds (the paper's Tables 1-3).

    ``noise=True`` evaluates with the noise on and again with it off (Table 2's "Test with
    PNI" / "Test without PNI"); a model without noise is evaluated once, as "without_noise".
    Trial ``t`` seeds every batch from ``(seed + t, batch start)`` (``pni.seeding.batch_seed``).
    Data lacking some of the model's classes prints one warning line (stderr) naming them.

    Args:
        model: the classifier (images in [0, 1]); it runs in eval mode, its mode restored after.
        data: a :class:`~pni.data.Dataset` (a ``subset`` of one is recorded in
            ``Evaluation.subset``) or an ``(images, labels)`` pair, images (N, C, H, W) in [0, 1].
        attacks: names registered in ``pni.attacks.registry`` ("clean", "fgsm", "pgd",
            "eot-pgd", "cw", "zoo", "aa-rand", "aa-standard") or a dict of callables
            ``attack(model, x, y) -> x_adv``. Default ``("clean", "pgd", "fgsm")``: the paper's.
        trials: seeds each accuracy is averaged over (default 5, as the paper).
        threat: the threat model, ``"linf:8/255"`` (``pni.attacks.threat``); named attacks other than
            "clean" need it or ``eps`` (there is no default radius: data differ).
        noise: also evaluate with the noise on (default True); False: noise off only; "on":
            noise on only (the model as deployed).
        eps: L-inf radius of the named attacks (default None: the ``threat``'s; one of them
            is required with named attacks other than "clean").
        steps: PGD steps of the named attacks (default None: 7).
        step_size: PGD step (default None: ``2.5 * eps / steps``, Madry et al.).
        seed: seed of trial 0 (default 0); trial ``t`` uses ``seed + t``.
        batch_size: images per attacked batch (default 256).
        device: where to evaluate (default None: the model's device).
        progress: show the work done, batch by batch, in forward+backward passes (each attack
            weighted by its passes per image, ``pni.evaluation.estimate``; the images the cascade
            spares an attack leave the total), with the time left (``pni.progress``: a bar on a
            terminal, a line every few percent elsewhere; default False).
        distributed: every rank of a torchrun group calls it and evaluates a contiguous run of
            whole batches; results are gathered on every rank, equal to one process (default False).
        votes: noise draws each prediction is judged over (default 1, the paper's single pass;
            a model whose two passes agree gets 1, and one EOT draw, automatically: ``randomized``);
            ``accuracies`` are then expected accuracies, ``vote_accuracies`` majority votes.
        worst_case: add "worst-case", per sample the worst over clean and every attack bounded
            at eps (C&W-L2, minimum-norm, excepted): the robust accuracy to quote (default True).
        attack_options: options of the named attacks for ``build_attacks`` (``eot``,
            ``eot_batch``, ``cw_profile``, ``cw``, ``zoo``, ``aa``; default None).
        cascade: attacks run as AutoAttack runs its own (default (): every attack on every
            image): after "clean", each named attack, in evaluation order, attacks only the
            images some draw still classifies correctly under all the earlier ones, and its
            accuracy is cumulative (robust to it and to every earlier chained attack). The
            per-image worst case is exactly that of running every attack on every image
            (``("eot-pgd", "aa-rand")``: the honest protocol).
        resume_file: a file where each finished attack's outcomes, and the running attack's
            finished batches (ZOO's own batches included), are saved (default None: none); a
            killed evaluation called again with the same file and arguments reuses them and
            runs only the rest, with the same results as one uninterrupted run
            (``pni.evaluation.resume``, ``pni.resumable``). The caller deletes it when done.

    Returns:
        Evaluation: per noise setting and attack, the accuracy of every trial
        (``summary()``: mean and std in percent) and the per-sample results.

    Raises:
        EvaluationError: bad ``trials``, ``votes`` or ``batch_size``; NaN/inf weights or
            pixels, labels outside the model's classes, images of a shape it does not take.
        AttackError: an unknown attack or option, or a bad ``eps``, ``steps`` or ``step_size``.

    Example:
        >>> import pni
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> data = pni.load_dataset("mnist-sample", "test").subset(20)
        >>> result = pni.evaluate(model, data, ("clean", "fgsm"), trials=2, eps=0.1)
        >>> result.n, result.seeds, list(result.summary())
        (20, [0, 1], ['with_noise', 'without_noise'])
        >>> sorted(result.summary()["with_noise"]), sorted(result.summary()["with_noise"]["fgsm"])
        (['clean', 'fgsm', 'worst-case'], ['mean', 'std'])
    """
    check_int(trials, "trials", 1, EvaluationError)
    x, y = as_tensors(data)
    subset = data.subset_info if isinstance(data, Dataset) else None
    if not distributed or dist_utils.is_main():
        _warn_missing(model, data, y, subset)
    if device is None:
        device = model_device(model)
    x, y = x.to(device), y.to(device)
    check_int(votes, "votes", 1, EvaluationError)
    check_int(batch_size, "batch_size", 1, EvaluationError)
    check_fit(model, x, y)
    from .user_model import judging  # the threat (required), randomness: one draw, one vote if none
    eps, randomized, votes, attack_options = judging(model, x, attacks, threat, eps, votes, attack_options)
    table, params = _attack_table(attacks, eps, steps, step_size, attack_options)
    settings = ["with_noise", "without_noise"] if (noise and noise_modules(model)) else ["without_noise"]
    if not is_injected(model) and not noise_modules(model):
        settings = ["without_noise"]
    if noise == "on" and noise_modules(model):  # the model as deployed only (pni.benchmark)
        settings = ["with_noise"]
    seeds = [seed + t for t in range(trials)]
    result = Evaluation(attacks=params, trials=trials, seeds=seeds, n=len(y), votes=votes, subset=subset,
                        labels_sha256=per_image.labels_digest(y.cpu()), randomized=randomized)
    in_worst_case = _in_worst_case(attacks, table)
    worst_case = worst_case and len(in_worst_case) >= 2
    chain = _cascade_chain(list(table), tuple(cascade), in_worst_case)
    if resume_file is not None and distributed:
        raise EvaluationError("resume_file is not supported with distributed=True")
    # the finished attacks of an interrupted call (resume_file), under the key of everything they depend on
    partial_key = None if resume_file is None else fingerprint(
        model, x, y, {"attacks": params, "seeds": seeds, "votes": votes, "batch_size": batch_size,
                      "settings": settings, "chain": chain})
    done, batches, seconds_before = ({}, {}, 0.0) if partial_key is None else load_partial(resume_file, partial_key)
    started = time.monotonic()
    lo, hi = 0, len(y)
    if distributed:
        lo, hi = dist_utils.shard_range(len(y), batch_size, dist_utils.rank(), dist_utils.world_size())
    draws = {setting: randomized and _draws_in(model, x, setting) for setting in settings}
    from ..attacks.budget import one_draw_twins

    twins = {} if isinstance(attacks, dict) else one_draw_twins(list(table), chain, params)
    costs = {setting: _pass_costs(params, votes, attack_options, steps, draws[setting]) for setting in settings}
    for setting in settings:   # a twin with no draws is not run again (below): it costs nothing
        costs[setting] |= {name: 0 for name in twins if not draws[setting]}
    passes = trials * (hi - lo) * sum(sum(of_setting.values()) for of_setting in costs.values())
    bar = progress_bar(passes, "eval", "pass", enabled=progress and (not distributed or dist_utils.is_main()))
    tally = _Tally(passes)  # the same count with or without a bar: the share the partial file records
    # what the finished attacks need to be read back as an Evaluation (pni.evaluation.partial)
    head = None if partial_key is None else {
        "attacks": params, "order": list(table), "settings": settings, "trials": trials, "seeds": seeds,
        "n": len(y), "votes": votes, "subset": subset, "labels_sha256": result.labels_sha256,
        "randomized": randomized, "worst_case_over": list(in_worst_case) if worst_case else [],
        "chain": list(chain), "code": code_version()}
    record = None if partial_key is None else BatchRecord(
        batches, lambda: save_partial(resume_file, partial_key, done, batches, tally.share(),
                                      seconds_before + time.monotonic() - started, head))
    with eval_mode(model), cpu_channels_last(model):  # (results: same up to summation order)
        for setting in settings:
            for table_of_setting in (result.accuracies, result.correct, result.fractions,
                                     result.vote_accuracies):
                table_of_setting[setting] = {}
            with noise_enabled(model, NOISE_SETTINGS[setting]):
                # the cascade's worst case so far per trial: (share of correct draws, majority correct)
                running: list[tuple[Tensor, Tensor] | None] = [None] * trials
                outcomes: dict[str, dict[str, Tensor]] = {}   # this setting's, by attack
                for name, attack in table.items():
                    chained = name in chain
                    saved = done.get(setting, {}).get(name)
                    work = _Work(bar, costs[setting][name], tally)
                    same = None if draws[setting] else twins.get(name)
                    if saved is not None:  # finished before an interruption (resume_file)
                        stacked = dict(saved)
                        if chained:
                            running = [(stacked["fraction"][t].to(x.device), stacked["correct"][t].to(x.device))
                                       for t in range(trials)]
                        work.resumed(trials * (hi - lo))
                    elif same is not None:  # one draw is every draw: the attack it equals already ran
                        stacked = {key: value.clone() for key, value in outcomes[same].items()}
                        work.done(trials * (hi - lo))
                        if record is not None:
                            done.setdefault(setting, {})[name] = dict(stacked)
                            record.save(force=True)
                    else:
                        stacked = _run_attack(model, x, y, attack if name != "clean" else None, seeds, batch_size,
                                              lo, hi, votes, running if chained else None, distributed, work,
                                              record, f"{setting}/{name}")
                        if record is not None:
                            done.setdefault(setting, {})[name] = dict(stacked)
                            record.drop(f"{setting}/{name}")
                            record.save(force=True)
                    outcomes[name] = dict(stacked)
                    result.record(setting, name, stacked)
                if worst_case:
                    result.add_worst_case(setting, in_worst_case)
    label_attacks(result, in_worst_case if worst_case else [], chain)
    bar.close()
    return result


def label_attacks(result: Evaluation, worst_case_over: Sequence[str], chain: Sequence[str]) -> None:
    """Names in ``result.attacks`` what the worst case is over and which attacks ran chained."""
    if worst_case_over:
        result.attacks[WORST_CASE] = {"over": ", ".join(worst_case_over)}
    for name in chain:
        result.attacks[name] = {**result.attacks.get(name, {}), "cascade": " -> ".join(chain)}
    result.cascade = list(chain)


class _Tally:
    """The passes done of a total (the total shrinks when the cascade spares images)."""

    def __init__(self, total: float) -> None:
        self.n, self.total = 0.0, float(total)

    def share(self) -> float:
        return min(self.n / self.total, 1.0) if self.total > 0 else 1.0


class _Work:
    """One attack's share of ``evaluate``'s progress, counted in forward+backward passes
    (``cost`` per image): the images it has attacked, and those the cascade spares it (they
    leave the total, so that the time left is that of the work still to do). ``tally``: the
    same count, kept with or without a bar (the partial file records its share)."""

    def __init__(self, bar: Any, cost: int, tally: _Tally) -> None:
        self.bar, self.cost, self.tally = bar, cost, tally

    def done(self, images: float) -> None:
        if replaying():   # batches a stopped run finished, reused: not this run's pace
            self.resumed(images)
            return
        self.bar.update(images * self.cost)
        self.tally.n += images * self.cost

    def resumed(self, images: float) -> None:
        """Work a stopped run finished (its partial file): done, but not part of the pace."""
        credit(self.bar, images * self.cost)
        self.tally.n += images * self.cost

    def spared(self, images: int) -> None:
        shrink_total(self.bar, images * self.cost)
        self.tally.total = max(self.tally.n, self.tally.total - images * self.cost)


def _draws_in(model: nn.Module, x: Tensor, setting: str) -> bool:
    """Whether a randomized ``model`` draws randomness in the noise ``setting``: with its noise
    on, or without PNI noise modules (its own randomness, already detected), yes; with its PNI
    noise off only if it has randomness of its own (a pni model is then deterministic, and its
    EOT attacks run one draw per step)."""
    if NOISE_SETTINGS[setting] or not noise_modules(model):
        return True
    from .user_model import detect_randomness

    with noise_enabled(model, False):
        return detect_randomness(model, x)


def _pass_costs(params: dict[str, dict[str, Any]], votes: int, attack_options: dict[str, Any] | None,
                steps: int | None, randomized: bool) -> dict[str, int]:
    """Each attack's forward+backward passes per image (``pni.evaluation.estimate``; its own
    ``steps`` when its parameters name them), at least 1: the weights of ``evaluate``'s progress."""
    settings = {"votes": votes, "attack_options": attack_options or {}}
    return {name: max(1, round(attack_passes(name, settings, own.get("steps") or steps or 7, randomized)))
            for name, own in params.items()}


def _run_attack(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None, seeds: list[int], batch_size: int,
                lo: int, hi: int, votes: int, running: list[tuple[Tensor, Tensor] | None] | None,
                distributed: bool, work: _Work, record: BatchRecord | None = None,
                path: str = "") -> dict[str, Tensor]:
    """One attack over every trial on the images ``lo:hi``: per-sample outcomes stacked over
    the trials (on the CPU; gathered over the ranks when ``distributed``). ``running``: in
    the cascade, each trial's worst case so far, updated in place. ``work``: its progress.
    ``record``: each trial's finished batches are kept there under ``path/trial``."""
    per_trial = []
    for t, t_seed in enumerate(seeds):
        with contextlib.ExitStack() as scope:
            if record is not None:
                scope.enter_context(batch_record(record, f"{path}/{t}"))
            outcome = _cascade_step(model, x[lo:hi], y[lo:hi], attack, batch_size, t_seed, lo, votes,
                                    None if running is None else running[t], work)
        if running is not None:
            running[t] = (outcome["fraction"], outcome["correct"])
        per_trial.append(outcome)
    stacked = {key: torch.stack([o[key] for o in per_trial]).cpu() for key in per_trial[0]
               if all(key in o for o in per_trial)}  # (an empty cascade step has no extras)
    if distributed:
        shards = dist_utils.all_gather_object(stacked)
        keys = {key for shard in shards for key in shard}  # an empty shard has no extras
        stacked = {key: torch.cat([shard[key] for shard in shards if key in shard], dim=1)
                   for key in sorted(keys)}
    return stacked


def _cascade_chain(names: Sequence[str], cascade: Sequence[str], in_worst_case: list[str]) -> list[str]:
    """The attacks of the cascade in evaluation order: "clean" (when run) then those named in
    ``cascade``; only attacks counted in the worst case may be chained."""
    unknown = [n for n in cascade if n not in names or n not in in_worst_case or n == "clean"]
    if unknown:
        raise EvaluationError(f"cascade: {', '.join(map(repr, unknown))} is not an attack of this evaluation "
                              f"bounded at eps; expected some of: {', '.join(n for n in in_worst_case if n != 'clean')}")
    if not cascade:
        return []
    return [n for n in names if n == "clean" or n in cascade]


def _cascade_step(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None, batch_size: int, seed: int,
                  start_index: int, votes: int, running: tuple[Tensor, Tensor] | None,
                  work: _Work) -> dict[str, Tensor]:
    """One attack of one trial: on every image (``running`` None), or, in the cascade, on the
    images still robust on some draw under the earlier chained attacks (``running``: their
    worst share of correct draws and majority vote so far). A chained attack's outcome is
    cumulative (per image the worst of it and ``running``), so an image left out counts as
    fooled by every draw, as it already was; its other per-sample figures are NaN / False.
    ``work``: the progress, per batch; the images left out leave its total."""
    if running is None:
        return sample_outcomes(model, x, y, attack, batch_size, seed=seed, start_index=start_index, votes=votes,
                               on_batch=work.done)
    so_far, so_far_correct = running
    todo = (so_far > 0).nonzero().flatten()
    work.spared(len(y) - len(todo))
    part = sample_outcomes(model, x[todo], y[todo], attack, batch_size, seed=seed, start_index=start_index,
                           votes=votes, on_batch=work.done)
    full: dict[str, Tensor] = {}
    for key, value in part.items():
        filled = torch.zeros((len(y), *value.shape[1:]), dtype=value.dtype, device=value.device)
        if value.dtype.is_floating_point and key != "fraction":
            filled.fill_(math.nan)
        filled[todo.to(value.device)] = value
        full[key] = filled
    full["fraction"] = torch.minimum(full["fraction"], so_far.to(full["fraction"].device))
    full["correct"] = full["correct"] & so_far_correct.to(full["correct"].device)
    return full


def check_fit(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """EvaluationError (one line) unless the model's weights are finite and ``(x, y)`` fits
    it: finite pixels in [0, 1], labels among its classes, images of a shape it takes."""
    from ..attacks._common import AttackError, check_model_inputs

    try:
        check_model_inputs(model, x, y)
    except AttackError as error:
        raise EvaluationError(str(error)) from None


def _warn_missing(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], labels: Tensor,
                  subset: dict[str, Any] | None) -> None:
    """One warning line when the evaluation data lacks classes the model predicts."""
    names = data.classes if isinstance(data, Dataset) else None
    num_classes = len(names) if names is not None else getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        return
    what = (f"the evaluation subset ({subset['n']} of {subset['of']} images, seed {subset['seed']})"
            if subset else f"the evaluation data ({len(labels)} images)")
    warn_missing_classes(labels, num_classes, what, names)


def evaluate_checkpoint(path: str, settings: EvalSettings | None = None,
                        **overrides: Any) -> tuple[Evaluation, str]:
    """Evaluates a ``pni train`` checkpoint on its own dataset's test split.

    ``settings`` (default ``EvalSettings()``) with ``overrides`` on top: any of its fields
    as keywords (``attacks``, ``trials``, ``n``, ``eps``, ``steps``, ``step_size``,
    ``noise``, ``votes``, ``device``, ...). Defaults follow the checkpoint's training
    settings: its eps and step size, and the paper's PGD steps (40 for 1-channel 28x28
    data such as MNIST, 7 otherwise). ``n`` images (default: all) are a class-stratified
    sample drawn with ``subset_seed`` (``Dataset.subset``; independent of the trials'
    ``seed``), recorded in the result. Returns the evaluation and a label for the model
    (arch, noise location).
    """
    from .opened_run import open_checkpoint

    if settings is not None and not isinstance(settings, EvalSettings):
        raise TypeError(f"evaluate_checkpoint(): settings must be an EvalSettings, got {type(settings).__name__} "
                        f"(attacks go in attacks=...)")
    known = {f.name for f in dataclasses.fields(EvalSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"evaluate_checkpoint() got unknown setting(s): {', '.join(unknown)}")
    s = dataclasses.replace(settings or EvalSettings(), **overrides)
    if s.n is not None and s.n < 1:
        raise EvaluationError(f"--n must be a positive number of images, got {s.n}")
    run = open_checkpoint(path, dataset=s.dataset, data_dir=s.data_dir, split=s.split, n=s.n,
                          subset_seed=s.subset_seed, device=s.device)
    if s.progress and s.announce:  # an interactive run says up front how long it will take
        _announce(run, s)
    evaluation = evaluate(run.model, run.data, s.attacks, s.trials, s.noise,
                          eps=run.eps if s.eps is None else s.eps,
                          steps=run.paper_steps if s.steps is None else s.steps,
                          step_size=run.step_size if s.step_size is None else s.step_size, seed=s.seed,
                          batch_size=s.batch_size, device=s.device, progress=s.progress,
                          distributed=s.distributed, votes=s.votes, worst_case=s.worst_case,
                          attack_options=s.attack_options, cascade=tuple(s.cascade), resume_file=s.resume_file)
    return evaluation, run.label


def _announce(run: Any, s: EvalSettings) -> None:
    """Prints the estimated time of evaluating ``run`` with ``s`` (``pni.evaluation.estimate``)."""
    from .estimate import announce, evaluation_passes, measure_pass_rate, sample_images

    from ..attacks._common import is_randomized

    steps = run.paper_steps if s.steps is None else s.steps
    sample = sample_images(run.data, s.device)
    with eval_mode(run.model):  # (train mode would move BatchNorm statistics)
        randomized = is_randomized(run.model, sample)
    passes = evaluation_passes(dataclasses.asdict(s), steps, randomized=randomized)
    rate = measure_pass_rate(run.model, sample)
    announce("pni eval", len(run.data) * passes / rate, len(run.data), passes)
