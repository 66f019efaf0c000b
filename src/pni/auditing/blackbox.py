"""Item 2 of the audit, black-box vs white-box: a transfer attack from a surrogate model
(trained here when none is given) and a score-based attack (ZOO), judged against the
white-box attacks on the same images.

A black-box attack that beats the white-box ones means the gradients mislead (Athalye et
al. 2018); the surrogate is the source model of the paper's Table 5 (S => T).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import pgd
from ..data import Dataset, as_tensors, subset_tensors
from ..models import MODELS, create_model
from ..attacks.budget import madry_step_size
from .bench import Attack, Bench, pct, stratified_head, tolerance
from .result import AuditItem
from .settings import ITEM_NAMES, AuditError, AuditSettings


def _num_classes(model: nn.Module, data: Dataset | tuple[Tensor, Tensor]) -> int:
    if isinstance(data, Dataset):
        return len(data.classes)
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int):
        return classes
    return max(2, int(as_tensors(data)[1].max()) + 1)


def train_surrogate(train_data: Dataset | tuple[Tensor, Tensor], arch: str | None = None,
                    num_classes: int | None = None, epochs: int = 5, n: int | None = 10000,
                    adversarial: bool = False, eps: float | None = None, seed: int = 0,
                    device: str = "cpu", progress: bool = False) -> nn.Module:
    """A substitute model for transfer attacks (the paper's Table 5), trained with ``pni.fit``:
    plain training by default, PGD adversarial training at ``eps`` with ``adversarial``, on
    ``n`` images (a class-stratified sample drawn with ``seed``; None: all).
    ``arch`` defaults to LeNet-5 for 1x28x28 images and ResNet-20 otherwise."""
    from ..config import TrainConfig
    from ..training.trainer import fit

    x, y, _ = subset_tensors(train_data, n, seed)
    if len(y) == 0:
        raise AuditError("train_data for the surrogate is empty")
    if arch is None:
        arch = "lenet5" if tuple(x.shape[1:]) == (1, 28, 28) else "resnet20"
    if num_classes is None:
        num_classes = len(train_data.classes) if isinstance(train_data, Dataset) else max(2, int(y.max()) + 1)
    if isinstance(train_data, Dataset):
        stats = (train_data.mean, train_data.std)
    else:
        dims = [0, 2, 3]
        stats = (x.mean(dims).tolist(), x.std(dims).clamp_min(1e-3).tolist())
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes, in_channels=x.shape[1], normalize=stats)
    steps = 7
    eps_train = 8 / 255 if eps is None else eps
    config = TrainConfig(model=arch, location=None, epochs=epochs, batch_size=128,
                         lr=0.05, milestones=[], adversarial=adversarial, eps=eps_train,
                         steps=steps, step_size=madry_step_size(eps_train, steps), eval_subset=0,
                         augment="none", seed=seed, device=device, progress=progress)
    fit(model, (x, y), config)
    return model.eval()


def _transfer_from_surrogate(surrogate: nn.Module, s: AuditSettings) -> tuple[Attack, dict[str, Any]]:
    """Item 2's transfer attack (the paper's Table 5, S => T): PGD examples crafted on the
    surrogate, judged on the audited model like every other attack of the audit."""
    surrogate.eval()

    def attack(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return pgd(surrogate, x, y, s.eps, s.pgd_step_size, s.steps)

    return attack, {"source": "surrogate", "attack": "pgd", "eps": s.eps, "steps": s.steps,
                    "step_size": s.pgd_step_size}


def _score_based(model: nn.Module, x: Tensor, y: Tensor, s: AuditSettings) -> tuple[Tensor | None, dict[str, Any]]:
    """Item 2's score-based attack: ZOO (``pni.attacks.zoo``, queries of the model's scores
    only) within the eps-ball, on ``score_n`` of the images (class-stratified), ``score_queries``
    per image."""
    try:
        from ..attacks.zoo import zoo
    except ImportError:
        return None, {"attack": "zoo", "not_measured": "pni.attacks.zoo is not available"}
    coords = min(s.score_coords, int(x[0].numel()))
    steps = max(1, s.score_queries // (2 * coords + 1))
    lr = s.score_lr if s.score_lr is not None else max(0.01, s.eps / 4)
    params = {"attack": "zoo", "eps": s.eps, "steps": steps, "coords": coords, "lr": lr,
              "queries_per_image": steps * (2 * coords + 1), "images": len(y)}
    torch.manual_seed(s.seed)
    result = zoo(model, x, y, steps=steps, coords=coords, eps=s.eps, lr=lr)
    return result.x_adv.detach(), params


def _measure(model: nn.Module, bench: Bench, s: AuditSettings, surrogate: nn.Module | None,
           surrogate_note: str) -> AuditItem:
    acc_p, _ = bench.pgd(s.eps, s.pgd_step_size, s.steps)
    acc_f, _ = bench.fgsm(s.eps)
    white = min(acc_p, acc_f)
    rule = ("accuracy under a black-box attack < white-box accuracy (min of PGD, FGSM) on the same "
            "images - tol")
    evidence: dict[str, Any] = {"white_box_accuracy": pct(white), "pgd_accuracy": pct(acc_p),
                                "fgsm_accuracy": pct(acc_f), "black_box_accuracy": {},
                                "white_box_reference": {}, "black_box_attacks": {},
                                "surrogate": surrogate_note}
    # name -> (black-box accuracy, white-box accuracy on the same images, images)
    results: dict[str, tuple[float, float, int]] = {}
    if surrogate is not None:
        attack, params = _transfer_from_surrogate(surrogate, s)
        results["transfer-pgd"] = (bench.accuracy(("transfer-pgd",), attack)[0], white, len(bench.y))
        evidence["black_box_attacks"]["transfer-pgd"] = params
    if s.score_n > 0:
        m = min(s.score_n, len(bench.y))
        x_sub, y_sub = stratified_head(bench.x, bench.y, m)
        x_zoo, params = _score_based(model, x_sub, y_sub, s)
        evidence["black_box_attacks"]["zoo"] = params
        if x_zoo is not None:
            sub = Bench(model, x_sub, y_sub, s.trials, s.seed, s.batch_size, bench.votes)
            sub_white = min(sub.pgd(s.eps, s.pgd_step_size, s.steps)[0], sub.fgsm(s.eps)[0])
            judged = Bench(model, x_zoo, y_sub, s.trials, s.seed, s.batch_size, bench.votes)
            results["zoo"] = (judged.clean()[0], sub_white, m)
    if not results:
        reasons = [surrogate_note] + [p["not_measured"] for p in evidence["black_box_attacks"].values()
                                      if "not_measured" in p]
        return AuditItem(2, ITEM_NAMES[2], None, evidence, rule, "not measured: " + "; ".join(reasons))
    failed = []
    parts = []
    for name, (acc, ref, count) in results.items():
        tol = tolerance(acc, ref, count * s.trials, s.z, s.tol_floor)
        evidence["black_box_accuracy"][name] = pct(acc)
        evidence["white_box_reference"][name] = {"accuracy": pct(ref), "images": count, "tolerance": pct(tol)}
        if acc < ref - tol:
            failed.append(name)
        parts.append(f"{name} {100 * acc:.2f}% vs white-box {100 * ref:.2f}% on {count} images "
                     f"(tol {100 * tol:.2f})")
    evidence["stronger_than_white_box"] = failed
    return AuditItem(2, ITEM_NAMES[2], not failed, evidence, rule, "; ".join(parts))


def black_box_item(model: nn.Module, bench: Bench, s: AuditSettings, surrogate: nn.Module | None,
                   train_data: Dataset | tuple[Tensor, Tensor] | None,
                   data: Dataset | tuple[Tensor, Tensor], device: torch.device,
                   say: Callable[[str], None]) -> AuditItem:
    """Item 2: the transfer attack from ``surrogate`` (else from one trained on
    ``train_data``; without either, not measured) and ZOO on ``score_n`` of the images."""
    if surrogate is not None:
        note = "given"
    elif train_data is not None:
        say(f"item 2: training a surrogate ({s.surrogate_epochs} epochs) for the transfer attack ...")
        arch = getattr(model, "arch", None)
        arch = arch if arch in MODELS else None
        surrogate = train_surrogate(train_data, arch=arch, num_classes=_num_classes(model, data),
                                    epochs=s.surrogate_epochs, n=s.surrogate_train_n,
                                    adversarial=s.surrogate_adversarial, eps=s.eps, seed=s.seed,
                                    device=str(device))
        note = (f"trained by pni: {getattr(surrogate, 'arch', 'model')}, {s.surrogate_epochs} epochs "
                f"{'PGD adversarial' if s.surrogate_adversarial else 'plain'} training on "
                f"{min(_count(train_data), s.surrogate_train_n or 10**12)} images")
    else:
        note = "no surrogate model and no train_data to train one"
    if surrogate is not None:
        surrogate = surrogate.to(device).eval()
    return _measure(model, bench, s, surrogate, note)


def _count(data: Dataset | tuple[Tensor, Tensor]) -> int:
    return len(data) if isinstance(data, Dataset) else len(data[1])
