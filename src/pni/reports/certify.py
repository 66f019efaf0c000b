"""Certification reports: ``certify.json`` / ``certify.md`` / ``certify.png`` of ``pni certify``
(a ``pni.certify.Certification``) and the Markdown of a certificate cross-check (a
``pni.certification.check.CertificateCheck``). Both are read through their public attributes
and methods, so this module imports neither."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runs import CERTIFY, CHECK
from ..provenance import with_code
from ..files import write_json, write_text
from .markdown import md_table

CHECK_ATTACK_TITLES = {"cw": "C&W-L2 (strong)", "pgd-l2": "L2 PGD + EOT"}


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest L2 radius CERTIFY can give with ``n`` samples at ``alpha``: every sample on
    the top class gives the one-sided Clopper-Pearson bound ``alpha ** (1 / n)``, and the
    radius ``sigma * Phi^-1`` of it. No image is certified beyond it, whatever the model."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


def radius_note(result: Any) -> str:
    """One sentence: the largest certifiable radius for the run's n, and which report radii
    lie beyond it (their columns are 0 by construction, not by the model)."""
    limit = max_certifiable_radius(result.sigma, result.n, result.alpha)
    beyond = [r for r in result.summary()["certified_accuracy_percent"] if float(r) > limit]
    tail = (f"; the columns r = {', '.join(map(str, beyond))} lie beyond it and are 0 by construction "
            f"(more noise samples, --noise-samples, reach further)" if beyond else "")
    return (f"Largest radius certifiable with n = {result.n} noise samples at alpha = {result.alpha:g}: "
            f"{limit:.3f} (sigma * Phi^-1(alpha^(1/n))){tail}.\n")


def certification_markdown(result: Any, label: str = "model") -> str:
    """``certify.md``: the settings, certified accuracy (%) at the report radii, abstentions."""
    summary = result.summary()
    acc = summary["certified_accuracy_percent"]
    table = md_table(["Model", *(f"r = {r}" for r in acc), "Abstain"],
                     [[label, *(f"{v:.2f}" for v in acc.values()), f"{summary['abstain_percent']:.2f}"]])
    subset = result.subset
    subset_note = (f", a class-stratified sample of {subset['n']} of {subset['of']} images "
                   f"(seed {subset['seed']})" if subset and subset.get("seed") is not None else "")
    return (f"# Certification: {label}\n\n"
            f"Randomized smoothing (Cohen et al. 2019, CERTIFY): sigma = {result.sigma:g} in [0, 1] pixel "
            f"units, n0 = {result.n0}, n = {result.n}, alpha = {result.alpha:g}; {len(result.labels)} images"
            f"{subset_note}. Certified accuracy (%) at L2 radius r: the share of images whose class is "
            f"right and certified at a radius >= r.\n\n{table}\n{radius_note(result)}"
            f"\nTime per image: {result.time_per_image:.3f} s ({result.n0 + result.n} forward "
            f"samples each).\n")


def plot_certification(result: Any, path: str | Path, label: str = "model") -> Path:
    """The certified-accuracy curve as a PNG (matplotlib's Agg canvas; no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    radii, accuracy = result.curve()
    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(radii, accuracy, label=f"{label}, sigma = {result.sigma:g}")
    ax.set(xlabel="L2 radius", ylabel="certified accuracy (%)", ylim=(0, 100), xlim=(0, radii[-1]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_certification(result: Any, out_dir: str | Path, label: str = "model") -> dict[str, Path]:
    """``certify.json``, ``certify.md`` and ``certify.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return {"json": write_json(with_code({"model": label, **result.to_json()}), out_dir / CERTIFY),
            "markdown": write_text(certification_markdown(result, label), out_dir / "certify.md"),
            "figure": plot_certification(result, out_dir / "certify.png", label)}


def certificate_check_markdown(check: Any, label: str = "model") -> str:
    """The cross-check of certificates against L2 attacks: counts per attack, the verdict
    and every contradiction."""
    rows = []
    for attack in check.l2:
        c = check.counts(attack)
        rows.append([CHECK_ATTACK_TITLES.get(attack, attack), c["images"], c["within_radius"],
                     c["abstained_within_radius"], c["violations"]])
    lines = [f"# Certificates against attacks: {label}\n",
             f"{len(check.indices)} certified images attacked on the smoothed classifier; each "
             f"adversarial example judged by PREDICT (n = {check.settings.get('predict_n')}, alpha = "
             f"{check.predict_alpha:g}). A violation is an example with L2 < the certified radius that "
             f"PREDICT assigns another class: an error of the certificate or of the attack. Expected "
             f"by chance: at most {check.expected_by_chance:.3g} per attack.\n",
             md_table(["Attack", "Images", "L2 < radius", "PREDICT abstains there", "Violations"], rows).rstrip("\n")]
    lines.append("\nVerdict: " + ("no violation." if check.ok else "VIOLATIONS FOUND:"))
    lines += [f"- image {r['image']} ({r['attack']}): L2 {r['l2']:.4f} < radius {r['radius']:.4f}, "
              f"certified class {r['certified_class']}, PREDICT says {r['predicted_class']}"
              for r in check.records()]
    return "\n".join(lines) + "\n"


def write_certificate_check(check: Any, out_dir: str | Path, label: str = "model") -> dict[str, Path]:
    """``check.json`` and ``check.md`` (the certificate cross-check) in ``out_dir``."""
    out_dir = Path(out_dir)
    return {"json": write_json(with_code({"model": label, **check.to_json()}), out_dir / CHECK),
            "markdown": write_text(certificate_check_markdown(check, label), out_dir / "check.md")}
