"""``pni transfer A B [C ...]``: the transfer-attack matrix between checkpoints (Table 5, left)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..evaluation.settings import TransferSettings
from .args import add_dataclass_flags, add_num_images_flag, flag_fields, flag_values, writable_folder


def add_transfer_parser(sub: Any) -> None:
    tr = sub.add_parser("transfer", help="transfer attack between checkpoints: the A=>B / B=>A matrix (Table 5)",
                        description="Adversarial examples made on each checkpoint (the source), accuracy of "
                                    "each other checkpoint (the target) on them: rows sources, columns "
                                    "targets, the diagonal is the white-box attack; then A => B and B => A "
                                    "as in the paper's Table 5 (left). Mean ± std over trials.")
    tr.add_argument("source", help="checkpoint A (its dataset and training eps are used)")
    tr.add_argument("target", help="checkpoint B")
    tr.add_argument("more", nargs="*", help="further checkpoints C, D, ...")
    add_dataclass_flags(tr, TransferSettings, exclude=("n",))
    add_num_images_flag(tr, "a class-stratified sample of N test images (default: all)")
    tr.add_argument("--out", default=None,
                    help="folder for transfer.json and transfer.md (default: <A's folder>/transfer)")
    tr.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    from ..attacks.transfer import transfer_checkpoints
    from ..reports.evaluation import write_transfer

    out = writable_folder(Path(args.out) if args.out else Path(args.source).resolve().parent / "transfer")
    settings = dataclasses.asdict(TransferSettings(**flag_values(args, [f.name for f in flag_fields(TransferSettings)])))
    if settings.get("data_dir") is None:  # A records no data folder: found as pni eval finds it
        from ..checkpoint import read_checkpoint
        from ..evaluation.opened_run import run_data

        config = read_checkpoint(args.source).get("config") or {}
        if config.get("data_dir") is None:
            settings["data_dir"] = run_data(args.source, config, settings["split"], settings.get("dataset"))[1]
    matrix = transfer_checkpoints([args.source, args.target, *args.more], settings.pop("attack"), **settings)
    paths = write_transfer(matrix, out)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0
