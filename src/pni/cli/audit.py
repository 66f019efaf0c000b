"""``pni audit``: the gradient-obfuscation checklist (Table 7) and the Fig. 3 sweeps of a
checkpoint, or of any model (``--model``, ``cli.benchmark``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..attacks.threat import threat_eps
from ..runs import AUDIT_FOLDER
from .args import add_audit_arguments, audit_overrides, writable_folder
from .benchmark import add_model_arguments


def add_audit_parser(sub: Any) -> None:
    aud = sub.add_parser("audit", help="gradient-obfuscation checklist (Table 7) and the Fig. 3 sweeps",
                         description="Measure the checklist of Athalye et al. (2018) on a checkpoint: "
                                     "1 FGSM vs PGD, 2 black-box vs white-box, 3 unbounded attack, "
                                     "4 random sampling, 5 increasing eps, and beyond the paper 6 PGD "
                                     "steps to 100, 7 EOT samples 1 -> 30. Each item: evidence, verdict, rule.")
    add_audit_arguments(aud)
    add_model_arguments(aud, benchmark=False)
    aud.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from ..auditing import audit_checkpoint
    from ..reports.audit import write_audit
    from .benchmark import cmd_audit_model, need_checkpoint

    if args.model:
        return cmd_audit_model(args)
    need_checkpoint(args)
    if args.threat:
        args.eps = threat_eps(args.threat, args.eps)
    overrides = audit_overrides(args)
    out = writable_folder(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / AUDIT_FOLDER)
    report = audit_checkpoint(args.checkpoint, eps=args.eps, n=args.n, surrogate=args.surrogate,
                              train_surrogate_model=not args.no_surrogate, dataset=args.dataset,
                              data_dir=args.data_dir, split=args.split, device=args.device,
                              progress=not args.quiet, **overrides)
    paths = write_audit(report, out)
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
