"""Transfer attack (the paper's Table 5, left): adversarial examples made on a source model,
accuracy of a target model on them (``S => T``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..models.modes import cpu_channels_last, eval_mode
from ._common import AttackError, check_images, check_model_inputs, check_positive_int
from .votes import VotedResult, predict_votes, vote_correctness

AttackLike = str | Callable[[nn.Module, Tensor, Tensor], Any]


@dataclass
class TransferResult(VotedResult):
    """What ``transfer`` returns: the examples made on the source and the target's
    per-sample correctness on them over ``votes`` noise draws (``accuracy``: expected,
    ``vote_accuracy``: majority vote)."""

    params: dict[str, Any] = field(default_factory=dict)


def adversarial_images(output: Any) -> Tensor:
    """The images an attack returned: a tensor, or a result object's ``x_adv``."""
    return output if isinstance(output, Tensor) else output.x_adv


def resolve_attack(attack: AttackLike, eps: float | None = None, steps: int | None = None,
                   step_size: float | None = None) -> tuple[Callable[[nn.Module, Tensor, Tensor], Any], dict[str, Any]]:
    """An attack callable and its parameters from a registry name or a callable."""
    if isinstance(attack, str):
        from .registry import build_attacks

        table, params = build_attacks([attack], eps=eps, steps=steps, step_size=step_size)
        return table[attack], {"attack": attack, **params[attack]}
    if not callable(attack):
        raise AttackError(f"attack must be a registry name or a callable (model, x, y) -> x_adv, "
                          f"got {type(attack).__name__}")
    return attack, {"attack": getattr(attack, "__name__", type(attack).__name__)}


def transfer(source: nn.Module, target: nn.Module, x: Tensor, y: Tensor, attack: AttackLike = "pgd", *,
             eps: float | None = None, steps: int | None = None, step_size: float | None = None,
             votes: int = 1, batch_size: int = 256, seed: int | None = None) -> TransferResult:
    """Adversarial examples made on ``source`` by ``attack`` (a registry name such as "pgd",
    built with ``eps``/``steps``/``step_size``, or a callable ``(model, x, y) -> x_adv``),
    judged on ``target`` over ``votes`` noise draws.

    Both models run in eval mode with their noise switches as they are, and are left as
    they were. With ``seed``, every batch is seeded as ``pni.evaluate`` seeds a trial's
    batches, so ``transfer(m, m, ...)`` gives exactly the white-box result of
    ``evaluate(m, ..., seed=seed)``.
    """
    check_images(x, y)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(votes, "votes")
    fn, params = resolve_attack(attack, eps, steps, step_size)
    params["votes"] = votes
    # the layout evaluate runs a model in: the same seeds give the same draws as there
    with eval_mode(source, target), cpu_channels_last(source), cpu_channels_last(target):
        parts, fractions, majorities = [], [], []
        for start in range(0, len(y), batch_size):
            if seed is not None:
                from ..seeding import batch_seed

                torch.manual_seed(batch_seed(seed, start))
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            x_adv = adversarial_images(fn(source, xb, yb)).detach()
            fraction, majority = vote_correctness(predict_votes(target, x_adv, votes, batch_size), yb)
            parts.append(x_adv)
            fractions.append(fraction)
            majorities.append(majority)
    if not parts:
        empty = torch.zeros(0, device=x.device)
        return TransferResult(x_adv=x.detach().clone(), fraction=empty, correct=empty.bool(), params=params)
    return TransferResult(x_adv=torch.cat(parts), fraction=torch.cat(fractions),
                          correct=torch.cat(majorities), params=params)


@dataclass
class TransferMatrix:
    """Accuracy of every target model on examples made on every source model (Table 5,
    left: ``A => B`` and ``B => A``; the diagonal is the white-box attack), per trial."""

    names: list[str]
    labels: dict[str, str]
    trials: int
    seeds: list[int]
    n: int
    params: dict[str, Any]
    accuracy: dict[str, dict[str, list[float]]] = field(default_factory=dict)       # source -> target -> per trial
    vote_accuracy: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # majority vote, per trial
    subset: dict[str, Any] | None = None  # which subset of the data (pni.data.subset_record); None: all

    def summary(self, majority: bool = False) -> dict[str, dict[str, dict[str, float]]]:
        """``{source: {target: {"mean", "std"}}}`` in percent."""
        table = self.vote_accuracy if majority else self.accuracy
        out: dict[str, dict[str, dict[str, float]]] = {}
        for source, row in table.items():
            out[source] = {}
            for target, values in row.items():
                t = torch.tensor([100 * v for v in values], dtype=torch.float64)
                out[source][target] = {"mean": float(t.mean()),
                                       "std": float(t.std(correction=0)) if len(t) > 1 else 0.0}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"models": self.names, "labels": self.labels, "n": self.n, "trials": self.trials,
                "seeds": self.seeds, "attack": self.params,
                "accuracy_percent": self.summary(), "accuracy_per_trial": self.accuracy,
                "majority_vote_accuracy_percent": self.summary(majority=True),
                **({"subset": self.subset} if self.subset is not None else {})}


def transfer_matrix(models: dict[str, nn.Module], x: Tensor, y: Tensor, attack: AttackLike = "pgd", *,
                    trials: int = 5, seed: int = 0, eps: float | None = None, steps: int | None = None,
                    step_size: float | None = None, votes: int = 1, batch_size: int = 256,
                    labels: dict[str, str] | None = None) -> TransferMatrix:
    """``transfer`` between every ordered pair of ``models`` (the diagonal: white-box), over
    ``trials`` seeds ``seed, seed + 1, ...``; trial ``t`` seeds its batches as
    ``evaluate`` does, so a diagonal entry equals ``evaluate``'s result for that attack."""
    check_positive_int(trials, "trials")
    if len(models) < 2:
        raise AttackError(f"a transfer matrix needs at least two models, got {len(models)}")
    _, params = resolve_attack(attack, eps, steps, step_size)
    params["votes"] = votes
    seeds = [seed + t for t in range(trials)]
    names = list(models)
    result = TransferMatrix(names, dict(labels or {name: name for name in names}), trials, seeds, len(y), params)
    for source in names:
        result.accuracy[source], result.vote_accuracy[source] = {}, {}
        for target in names:
            runs = [transfer(models[source], models[target], x, y, attack, eps=eps, steps=steps,
                             step_size=step_size, votes=votes, batch_size=batch_size, seed=s)
                    for s in seeds]
            result.accuracy[source][target] = [r.accuracy for r in runs]
            result.vote_accuracy[source][target] = [r.vote_accuracy for r in runs]
    return result


def transfer_checkpoints(paths: list[str], attack: AttackLike = "pgd", *, trials: int = 5, n: int | None = None,
                         eps: float | None = None, steps: int | None = None, step_size: float | None = None,
                         votes: int = 1, dataset: str | None = None, data_dir: str | None = None,
                         split: str = "test", batch_size: int = 256, seed: int = 0,
                         device: str = "cpu") -> TransferMatrix:
    """``transfer_matrix`` between ``pni train`` checkpoints (named A, B, ...) on the first
    checkpoint's dataset; eps defaults to the first checkpoint's training eps, PGD steps to
    the paper's (40 for 28x28 gray images, 7 otherwise). The models must share the input shape.
    ``n`` images (None: all) are a class-stratified sample (``Dataset.subset``, seed 0),
    recorded in ``TransferMatrix.subset``."""
    from ..models import load_model
    from ..data import at_most, load_dataset, warn_missing_classes
    from .budget import paper_pgd_steps
    from ..models import model_label

    if n is not None and n < 1:
        raise AttackError(f"--n must be a positive number of images, got {n}")
    loaded = [load_model(p, device=device) for p in paths]
    config = loaded[0][1].get("config", {})
    data = load_dataset(dataset or config.get("dataset", "cifar10"), split, data_dir or config.get("data_dir"))
    data = at_most(data, n)
    warn_missing_classes(data.labels, len(data.classes),
                         f"the transfer {'subset' if data.subset_info else 'data'} ({len(data)} images)",
                         data.classes)
    shapes = {p: tuple((c.get("model_meta") or {}).get("input_shape") or data.image_shape)
              for p, (_, c) in zip(paths, loaded)}
    if len(set(shapes.values()) | {tuple(data.image_shape)}) > 1:
        raise AttackError(f"the checkpoints take different inputs ({shapes}); transfer needs models "
                          f"of the same dataset ({data.image_shape})")
    eps = config.get("eps") if eps is None else eps
    if steps is None and attack in ("pgd", "eot-pgd"):
        steps = paper_pgd_steps(data.image_shape)
    if step_size is None and config.get("step_size") is not None:
        step_size = config["step_size"]
    names = [chr(ord("A") + i) for i in range(len(paths))]
    labels = {}
    for name, path, (_, ckpt) in zip(names, paths, loaded):
        labels[name] = f"{model_label(ckpt)}: {path}"
    x, y = data.tensors()
    x, y = x.to(device), y.to(device)
    for path, (model, _) in zip(paths, loaded):
        try:
            check_model_inputs(model, x, y)
        except AttackError as error:
            raise AttackError(f"checkpoint {path!r}: {error}") from None
    matrix = transfer_matrix({name: m for name, (m, _) in zip(names, loaded)}, x, y,
                             attack, trials=trials, seed=seed, eps=eps, steps=steps, step_size=step_size,
                             votes=votes, batch_size=batch_size, labels=labels)
    matrix.subset = data.subset_info
    return matrix
