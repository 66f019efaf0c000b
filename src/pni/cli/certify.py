"""``pni certify CKPT --sigma S``: randomized-smoothing certificates of a checkpoint (Cohen et al.
2019). It parses the arguments and calls ``pni.certify.certify_checkpoint``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .args import parse_device, positive_int, add_deprecated_flag, add_num_images_flag


def add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pni certify``; their values are checked by ``pni.certify``."""
    parser.add_argument("checkpoint", help="checkpoint.pt written by `pni train`")
    parser.add_argument("--sigma", type=float, required=True,
                        help="std of the Gaussian noise in [0, 1] pixel units (Cohen et al.: 0.12, 0.25, "
                             "0.5, 1.0); certify a model trained with about the same input noise")
    parser.add_argument("--noise-samples", dest="n", type=positive_int, default=10_000, metavar="N",
                        help="noise samples that bound the top class's probability (Cohen et al.'s n; "
                             "default 10000, theirs 100000); they bound the largest certifiable radius")
    add_deprecated_flag(parser, "--n", "--noise-samples", "n", positive_int)
    parser.add_argument("--n0", type=positive_int, default=100,
                        help="noise samples that select the top class (default 100)")
    parser.add_argument("--alpha", type=float, default=0.001,
                        help="failure probability of each certificate (default 0.001)")
    add_num_images_flag(parser, "certify a class-stratified sample of N test images (default: all)",
                        dest="subset", old="--subset", type=positive_int)
    parser.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--batch-size", type=positive_int, default=1000,
                        help="noise samples per forward pass (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", type=parse_device, default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--check", type=int, default=0, metavar="K",
                        help="also attack the first K certified images with the strong C&W-L2 and an L2 PGD "
                             "with EOT on the smoothed classifier: an example inside its certified radius "
                             "that PREDICT assigns another class is an error of the certificate or the "
                             "attack (check.json, check.md; default 0: no check)")
    parser.add_argument("--check-steps", type=positive_int, default=None, metavar="S",
                        help="steps of both check attacks (default: C&W's strong profile, 1000 steps x 9 "
                             "binary-search steps; L2 PGD 100 steps)")
    parser.add_argument("--out", default=None,
                        help="folder for certify.json, certify.md and certify.png "
                             "(default: <checkpoint folder>/certify)")


def _check_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": args.seed, "batch_size": args.batch_size}
    if args.check_steps is not None:
        options.update(cw_options={"steps": args.check_steps}, pgd_steps=args.check_steps)
    return options


def cmd_certify(args: argparse.Namespace) -> int:
    from ..certification.smoothing import CertifyError
    from ..certification.check import certify_and_check
    from ..reports.certify import write_certificate_check, write_certification

    if args.check < 0:
        raise CertifyError(f"--check must be a number of images >= 0, got {args.check}")
    result, check, label = certify_and_check(
        args.checkpoint, args.sigma, check_images=args.check, check_options=_check_options(args),
        n0=args.n0, n=args.n, alpha=args.alpha, subset=args.subset, dataset=args.dataset,
        data_dir=args.data_dir, split=args.split, batch_size=args.batch_size, seed=args.seed,
        device=args.device, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "certify"
    paths = write_certification(result, out, label)
    print(paths["markdown"].read_text())
    written = [paths["json"], paths["markdown"], paths["figure"]]
    if check is not None:
        checked = write_certificate_check(check, out, label)
        print(checked["markdown"].read_text())
        written += [checked["json"], checked["markdown"]]
    print(f"written: {', '.join(map(str, written))}")
    return 0


def add_certify_parser(subparsers: Any) -> None:
    """Adds ``certify`` to the ``pni`` sub-commands (``subparsers``: from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "certify", help="certified L2 robustness by randomized smoothing (Cohen et al. 2019)",
        description="Certify a checkpoint's smoothed classifier g(x) = argmax_c P(f(x + delta) = c), "
                    "delta ~ N(0, sigma^2 I) in [0, 1] pixel space, with the model's own noise drawn "
                    "afresh for every sample: per image the class (or abstain) and the certified L2 "
                    "radius sigma * Phi^-1(p_A lower bound), then certified accuracy at radii 0, 0.25, "
                    "0.5, 0.75 and 1.0 (Cohen's CERTIFY).")
    add_certify_arguments(parser)
    parser.set_defaults(func=cmd_certify)
