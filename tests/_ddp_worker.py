"""One rank of the distributed tests (tests/test_distributed.py launches it with torchrun).

``python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py OUT SINGLE_RUN``
runs every scenario in the same two processes (one start-up) and rank 0 writes
``OUT/results.json``; the runs' folders are left in OUT for the test to inspect.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import pni
from pni import distributed
from pni.config import TrainConfig, replace
from pni.evaluation.evaluator import evaluate
from pni.noise import noise_enabled
from pni.training.trainer import Trainer, build_model


PLAIN_IMAGES = 1024


def plain_config(**changes) -> TrainConfig:
    """LeNet-5, no noise, no adversary, no augmentation: deterministic given the data order.
    32 steps at a small learning rate, before training turns chaotic (float rounding
    differences then grow by orders of magnitude per epoch)."""
    return _config(**({"lr": 0.02} | changes))


def _config(**changes) -> TrainConfig:
    base = dict(model="lenet5", dataset="mnist-sample", location=None, adversarial=False, epochs=2,
                batch_size=64, lr=0.05, milestones=[], eps=0.1, step_size=0.05, steps=2,
                eval_subset=64, augment="none", progress=False, seed=0)
    return TrainConfig(**(base | changes)).validate()


def _flat_parameters(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def _same_on_all_ranks(tensor: torch.Tensor) -> bool:
    gathered = distributed.all_gather_object(tensor.cpu())
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def _bn_buffers(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([b.reshape(-1) for name, b in net.named_buffers() if "running" in name])


def _new_record() -> dict:
    return {"identical": [], "noise_differs": [], "noise_off_equal": []}


def _checker(record: dict, probe: torch.Tensor):
    """A step callback: parameters identical on every rank before each step; the noise
    draws of the same forward differ across ranks; without noise the outputs agree."""
    def callback(net, epoch, step):
        record["identical"].append(_same_on_all_ranks(_flat_parameters(net)))
        was_training = net.training
        net.eval()
        with torch.no_grad():
            noisy = net(probe)
            with noise_enabled(net, False):
                clean = net(probe)
        net.train(was_training)
        gathered = distributed.all_gather_object(noisy)
        record["noise_differs"].append(not torch.equal(gathered[0], gathered[1]))
        if step == 0:  # BatchNorm statistics agree at epoch boundaries (averaged)
            record["noise_off_equal"].append(_same_on_all_ranks(clean))
    return callback


def _fit(config: TrainConfig, train, test, out: Path, resume: bool = False, callback=None):
    torch.manual_seed(1234)  # rank 0's initial weights are broadcast by DDP
    model = build_model(config, train)
    trainer = Trainer(model, train, config, test, out, step_callback=callback)
    result = trainer.fit(resume=resume, overwrite=not resume)  # a retried launch starts afresh
    return trainer, result


def adversarial_pni(out: Path, train, test) -> dict:
    """PGD training of a PNI-W ResNet (BatchNorm, two forwards per step) on 2 ranks; then
    the same run stopped after epoch 1 and resumed with 2 ranks."""
    config = _config(model="resnet20", width=0.25, location="W", adversarial=True)
    probe = test.tensors()[0][:8]
    record = _new_record()
    trainer, result = _fit(config, train, test, out / "adv", callback=_checker(record, probe))
    net = trainer.net
    record["final_identical"] = _same_on_all_ranks(_flat_parameters(net))
    record["bn_identical"] = _same_on_all_ranks(_bn_buffers(net))
    record["is_ddp"] = isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
    record["per_rank_batch"] = trainer.loader.batch_size
    history = [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.history]
    record["history_identical"] = all(h == history for h in distributed.all_gather_object(history))
    record["alphas"] = result.last["alphas"]

    stopped = out / "adv-resumed"
    _fit(replace(config, epochs=1), train, test, stopped, callback=_checker(_new_record(), probe))
    resumed, _ = _fit(config, train, test, stopped, resume=True, callback=_checker(_new_record(), probe))
    record["resume_equal"] = torch.equal(_flat_parameters(resumed.net), _flat_parameters(net))
    record["resume_start_epoch"] = resumed.start_epoch
    return record


def plain(out: Path, train, single_run: Path) -> dict:
    """The 2-rank runs the test compares with one process: 2 epochs; 1 epoch (resumed by
    the test in one process); a 1-process run of 1 epoch resumed here for the second."""
    _fit(plain_config(), train, None, out / "plain")
    _fit(plain_config(epochs=1), train, None, out / "plain-1")
    target = out / "single-resumed"
    if distributed.is_main():
        shutil.copytree(single_run, target)
    distributed.barrier()
    trainer, result = _fit(plain_config(), train, None, target, resume=True)
    return {"start_epoch": trainer.start_epoch, "note": result.history[-1].get("note")}


def two_forward_gradient(train) -> dict:
    """One PGD-training step (clean forward, attack on the unwrapped module, adversarial
    forward, one backward) on 2 ranks: the averaged gradient equals the one-process gradient
    of the same 64 images, i.e. DDP reduced every parameter exactly once."""
    config = plain_config(adversarial=True, steps=2)
    torch.manual_seed(1234)
    trainer = Trainer(build_model(config, train), train, config)
    before = copy.deepcopy(trainer.net)
    seen = {}
    attack = trainer._adversarial_examples
    trainer._adversarial_examples = lambda x, labels: seen.setdefault("x_adv", attack(x, labels))
    x, y = next(iter(trainer.loader))
    trainer.train_step(x, y, adversarial=True)
    grads = torch.cat([p.grad.reshape(-1) for p in trainer.net.parameters()])
    gathered = distributed.all_gather_object((x, y, seen["x_adv"], grads))
    out = {"grads_identical": all(torch.equal(g[3], grads) for g in gathered)}
    if distributed.is_main():
        xs, ys, advs = (torch.cat([g[i] for g in gathered]) for i in range(3))
        before.train()
        loss = (config.w_clean * F.cross_entropy(before(xs), ys)
                + config.w_adv * F.cross_entropy(before(advs), ys))
        loss.backward()
        reference = torch.cat([p.grad.reshape(-1) for p in before.parameters()])
        out["max_difference"] = float((reference - grads).abs().max())
        out["reference_scale"] = float(reference.abs().max())
    return out


EVAL_N = 200
EVAL_KWARGS = dict(attacks=("clean", "pgd", "fgsm"), trials=2, eps=0.1, steps=3, step_size=0.05,
                   seed=3, batch_size=64)


def sharded_evaluation(model: torch.nn.Module, test, out: Path) -> dict:
    """A sharded evaluation of a PNI model equals the single-process one, sample by sample
    (here on rank 0; the test repeats it in its own process from ``eval.pt``)."""
    pni.inject(model, "W", init_alpha=0.5)
    x, y = test.tensors()
    data = (x[:EVAL_N], y[:EVAL_N])
    kwargs = EVAL_KWARGS
    sharded = evaluate(model, data, distributed=True, **kwargs)
    if distributed.is_main():
        torch.save({"model": model.state_dict(), "correct": sharded.correct}, out / "eval.pt")
    out = {"n": sharded.n}
    if distributed.is_main():
        single = evaluate(model, data, distributed=False, **kwargs)
        out["accuracies_equal"] = sharded.accuracies == single.accuracies
        out["masks_equal"] = all(torch.equal(sharded.correct[s][a], single.correct[s][a])
                                 for s in single.correct for a in single.correct[s])
        out["settings"] = sorted(sharded.correct)
        out["accuracies"] = sharded.accuracies
    return out


def main() -> None:
    out, single_run = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    distributed.init("cpu")
    train = pni.load_dataset("mnist-sample", "train").subset(256)
    test = pni.load_dataset("mnist-sample", "test").subset(256)
    results = {"world_size": distributed.world_size(), "backend": torch.distributed.get_backend(),
               "adversarial": adversarial_pni(out, train, test)}
    plain_train = pni.load_dataset("mnist-sample", "train").subset(PLAIN_IMAGES)
    results["plain"] = plain(out, plain_train, single_run)
    results["gradient"] = two_forward_gradient(plain_train)
    trained, _ = _fit(plain_config(lr=0.05, epochs=4), plain_train, None, None)
    results["eval"] = sharded_evaluation(trained.net, test, out)
    if distributed.is_main():
        (out / "results.json").write_text(json.dumps(results, indent=1))
    distributed.cleanup()


if __name__ == "__main__":
    main()
