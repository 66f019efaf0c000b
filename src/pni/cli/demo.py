"""``pni demo``: the whole method on the packaged MNIST sample, on a laptop, in minutes.

Trains a vanilla adversarially trained LeNet-5 and a PNI-W one with the same budget,
evaluates both on the same images with the same seeds (clean, FGSM, PGD, EOT-PGD with PGD's
steps and step size; noise on and off), puts them side by side with the paired difference
(PNI-W - vanilla, image by image) and two standard errors, and writes ``report.md``,
``results.json`` and ``alphas.png`` (alpha per layer over training, as Fig. 2).
Scale: packaged MNIST sample (5,000 train / 1,000 test images), LeNet-5, a few epochs;
its numbers are a demonstration, not the paper's setting.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
import argparse
from typing import Any


from ..runs import ALPHAS_FIGURE, RESULTS
from ..attacks import pgd
from ..config import TrainConfig
from ..data import at_most, load_dataset
from ..evaluation.evaluator import evaluate
from ..evaluation.result import Evaluation
from ..models import layer_labels
from ..reports.evaluation import attack_parameters_table, evaluation_table
from ..reports.figures import plot_alphas
from ..files import write_json, write_text
from ..reports.markdown import md_table
from ..training.trainer import RunExistsError, build_model
from .args import writable_folder
from ..training.run import train_run

EPS = 0.3
DEMO_TRAINING = dict(model="lenet5", dataset="mnist-sample", eps=EPS, steps=10, step_size=0.05,
                     epochs=10, warmup_epochs=2, batch_size=128, lr=0.02, milestones=[8],
                     weight_decay=3e-4, eval_subset=500, eval_steps=20)
EVAL_IMAGES = 1000
EVAL_TRIALS = 3
PGD_STEPS, PGD_STEP_SIZE = 40, 0.01          # the paper's MNIST PGD (Sec. 4.1)
EOT_SAMPLES = 5                              # EOT-PGD: PGD's steps and step size, gradient over 5 draws
EOT_STEPS, EOT_STEP_SIZE = PGD_STEPS, PGD_STEP_SIZE
VOTES = 5                                    # noise draws each prediction is judged over
MODELS = {"vanilla": ("Vanilla adv. train", None), "pni-w": ("PNI-W + adv. train", "W")}


def demo_attacks() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The demo's attacks: FGSM, PGD-40 (paper), and EOT-PGD over the noise."""
    table = {
        "clean": lambda m, x, y: x,
        "fgsm": lambda m, x, y: pgd(m, x, y, EPS, EPS, 1, random_start=False),
        "pgd": lambda m, x, y: pgd(m, x, y, EPS, PGD_STEP_SIZE, PGD_STEPS),
        "eot-pgd": lambda m, x, y: pgd(m, x, y, EPS, EOT_STEP_SIZE, EOT_STEPS, eot=EOT_SAMPLES),
    }
    params = {
        "clean": {},
        "fgsm": {"eps": EPS},
        "pgd": {"eps": EPS, "steps": PGD_STEPS, "step_size": PGD_STEP_SIZE, "random_start": True},
        "eot-pgd": {"eps": EPS, "steps": EOT_STEPS, "step_size": EOT_STEP_SIZE, "eot": EOT_SAMPLES,
                    "random_start": True},
    }
    return table, params


def run_demo(out_dir: str | Path = "pni-demo", epochs: int | None = None, seed: int = 0,
             overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Runs the demo and returns its results (also written to ``out_dir``)."""
    out = Path(out_dir)
    if (out / RESULTS).exists() and not overwrite:
        raise RunExistsError(f"output folder {str(out)!r} already holds a demo; pass --overwrite "
                             f"or choose another --out")
    if overwrite:
        for name in MODELS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    train_set = load_dataset("mnist-sample", "train")
    test_set = at_most(load_dataset("mnist-sample", "test"), EVAL_IMAGES)  # class-stratified
    attacks, attack_params = demo_attacks()
    started = time.perf_counter()
    rows: list[tuple[str, Evaluation]] = []
    results: dict[str, Any] = {"setting": "packaged MNIST sample (5,000 train / 1,000 test), LeNet-5",
                               "attacks": attack_params, "models": {}}
    histories: dict[str, list[dict[str, Any]]] = {}
    for key, (title, location) in MODELS.items():
        config = TrainConfig(**DEMO_TRAINING, location=location, seed=seed, progress=progress)
        if epochs is not None:
            config.epochs = epochs
            config.milestones = [m for m in config.milestones if m < epochs]
        config.validate()
        print(f"[{key}] training LeNet-5 ({title}), {config.epochs} epochs, PGD-{config.steps} "
              f"eps {EPS} ...", flush=True)
        result = train_run(config, out / key, overwrite=True, data=(train_set, test_set))
        model, history = result.model, result.history
        histories[key] = history
        print(f"[{key}] evaluating on {len(test_set)} test images, {EVAL_TRIALS} trials ...", flush=True)
        evaluation = evaluate(model, test_set, attacks, trials=EVAL_TRIALS, seed=seed, votes=VOTES,
                              progress=progress)
        evaluation.attacks = attack_params
        rows.append((title, evaluation))
        results["models"][key] = {"title": title, "location": location, "config": config.to_dict(),
                                  "final_alphas": history[-1]["alphas"], **evaluation.to_json()}
    table = evaluation_table(rows, attacks=[*attacks, "worst-case"])
    paired = paired_table(rows[0][1], rows[1][1], [*attacks, "worst-case"])
    results["paired"] = {setting: {attack: dict(zip(("difference", "stderr"), paired_difference(
        rows[0][1], rows[1][1], setting, attack))) for attack in [*attacks, "worst-case"]}
        for setting in rows[1][1].fractions}
    labels = layer_labels(build_model(TrainConfig(**DEMO_TRAINING), train_set))
    plot_alphas(histories["pni-w"], out / ALPHAS_FIGURE, labels=labels,
                title="PNI-W LeNet-5: alpha per layer over training (MNIST sample)")
    results["seconds"] = time.perf_counter() - started
    write_json(results, out / RESULTS)
    write_text(_report(table + "\n" + paired, rows[0][1], results, histories["pni-w"], labels), out / "report.md")
    print("\n" + table + "\n" + paired)
    print(f"demo finished in {results['seconds']:.0f} s; written: {out / 'report.md'}, "
          f"{out / 'results.json'}, {out / 'alphas.png'}")
    return results


def paired_difference(a: Evaluation, b: Evaluation, setting: str, attack: str) -> tuple[float, float]:
    """(mean accuracy of ``b`` - ``a``, its standard error), in points, compared image by image
    (both evaluated on the same images): sd(b_i - a_i)/sqrt(n), b_i image i's accuracy averaged
    over trials and noise draws; at least the trials' std of the difference / sqrt(trials)."""
    fa, fb = (e.fractions[_setting(e, setting)][attack].double() for e in (a, b))
    diff = fb.mean(0) - fa.mean(0)
    stderr = float(diff.std()) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    trials = fb.mean(1) - fa.mean(1)
    if len(trials) > 1:
        stderr = max(stderr, float(trials.std(unbiased=False)) / math.sqrt(len(trials)))
    return 100 * float(diff.mean()), 100 * stderr


def _setting(evaluation: Evaluation, setting: str) -> str:
    """``setting`` where ``evaluation`` has it; a noise-free model has one (with = without noise)."""
    return setting if setting in evaluation.fractions else next(iter(evaluation.fractions))


def paired_table(a: Evaluation, b: Evaluation, attacks: list[str]) -> str:
    """Vanilla (``a``) and PNI-W (``b``) side by side per test, with the paired difference and
    two standard errors; "yes" where the difference exceeds them."""
    from ..reports.evaluation import NOISE_TITLES, attack_title

    blocks = []
    for setting in NOISE_TITLES:
        if setting not in b.fractions:
            continue
        rows = []
        for attack in attacks:
            va, vb = (100 * float(e.fractions[_setting(e, setting)][attack].mean()) for e in (a, b))
            diff, se = paired_difference(a, b, setting, attack)
            rows.append([attack_title(attack), f"{va:.2f}", f"{vb:.2f}", f"{diff:+.2f}", f"{2 * se:.2f}",
                         "yes" if abs(diff) > 2 * se else "no"])
        blocks.append(f"**{NOISE_TITLES[setting]}: PNI-W - vanilla AT, paired over the same {a.n} images**\n\n"
                      + md_table(["Test", "Vanilla AT", "PNI-W", "Difference", "2 SE", "Beyond 2 SE"], rows))
    return "\n".join(blocks)


def _report(table: str, evaluation: Evaluation, results: dict[str, Any],
            history: list[dict[str, Any]], labels: dict[str, str]) -> str:
    alphas = history[-1]["alphas"]
    alpha_rows = md_table(["Layer", "alpha"], [[labels.get(k.split(":")[0], k), f"{v:.4f}"] for k, v in alphas.items()])
    return (
        "# pni demo: PNI-W vs vanilla adversarial training\n\n"
        f"Scale: {results['setting']}, {DEMO_TRAINING['epochs']} epochs of PGD-{DEMO_TRAINING['steps']} "
        f"adversarial training at eps {EPS}. A demonstration of the method, not the paper's setting.\n\n"
        f"Accuracy (%), mean±std over {evaluation.trials} trials on {evaluation.n} test images; each "
        f"prediction is judged over {VOTES} noise draws (expected accuracy). \"Test with PNI\" keeps "
        "the trained noise on; \"without\" turns it off. EOT-PGD averages the gradient over noise "
        "draws, the attack a randomized defense must face (with PGD's steps and step size, so with the "
        "noise off it is PGD); the worst case counts an image as robust only if it survives every attack. "
        "Both models face the same tests on the same images with the same seeds; the paired tables give "
        "PNI-W's accuracy minus vanilla AT's, compared image by image, and two standard errors "
        "(sd of the per-image differences / sqrt(n), at least the trials' error).\n\n"
        + table + "\nAttack settings:\n\n" + attack_parameters_table(evaluation)
        + "\nLearned alpha per layer (PNI-W, last epoch):\n\n" + alpha_rows
        + "\n![alpha per layer over training](alphas.png)\n"
        + f"\nTotal time: {results['seconds']:.0f} s.\n")


def add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the whole method on MNIST in minutes, no download",
                          description="Train a vanilla adversarially trained LeNet-5 and a PNI-W one on "
                                      "the packaged MNIST sample, evaluate both, write a report.")
    demo.add_argument("--out", default="pni-demo", help="output folder (default pni-demo)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default from the demo setup)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help="replace a demo already in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    writable_folder(args.out)
    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite,
             progress=not args.quiet)
    return 0
