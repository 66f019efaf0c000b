"""``pni train``: adversarial training with PNI (Eq. 10-12) from a preset, every field a flag;
it calls ``pni.training.train_run``."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs import CHECKPOINT, TRAIN_LOG
from .args import add_config_flags, peek_option, positive_minutes, writable_folder


def add_train_parser(sub: Any, argv: Sequence[str]) -> None:
    train = sub.add_parser("train", help="adversarial training with PNI (Eq. 10-12)",
                           description="Train a model from a preset; every field can be overridden.")
    train.add_argument("--preset", default="cifar-resnet20",
                       help="preset name (see `pni info`); default cifar-resnet20")
    train.add_argument("--scale", default="cpu",
                       help="smoke (seconds), cpu (about an hour on 2 cores) or paper; default cpu")
    train.add_argument("--out", required=True, help="output folder for checkpoint.pt and train_log.jsonl")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a run already in --out (kept aside until the new run's first checkpoint)")
    train.add_argument("--max-minutes", type=positive_minutes, default=None,
                       help="stop after the last epoch that fits in this wall time (resume later)")
    train.add_argument("--save-every-minutes", type=positive_minutes, default=None,
                       help="also write a mid-epoch checkpoint every this many minutes (SIGTERM and "
                            "SIGINT always write one after the current batch)")
    train.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write every epoch's log record to TensorBoard event files in DIR "
                            "(needs the tensorboard package; train_log.jsonl is written either way)")
    words = list(argv)  # --help shows the chosen preset's values
    add_config_flags(train, peek_option(words, "--preset") or "cifar-resnet20",
                      peek_option(words, "--scale") or "cpu")
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import check_device, load_config
    from ..training.run import train_data, train_run

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    if overrides.get("data_dir"):  # stored resolved (absolute) in config.json: found from anywhere
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    config = load_config(args.preset, args.scale, **overrides)
    check_device(config.device)
    writable_folder(args.out)
    sink = None
    if args.tensorboard:
        from ..training.tensorboard_sink import TensorBoardSink

        sink = TensorBoardSink(args.tensorboard)  # one-line error if tensorboard is not installed
    train_set, test_set = train_data(config)
    print(f"training {config.model} (noise {config.location or 'none'}) on {config.dataset} "
          f"({len(train_set)} images), {config.epochs} epochs -> {args.out}")
    try:
        result = train_run(config, args.out, resume=args.resume, overwrite=args.overwrite,
                           max_minutes=args.max_minutes, save_every_minutes=args.save_every_minutes,
                           data=(train_set, test_set), epoch_callback=sink)
    finally:
        if sink is not None:
            sink.close()
    if result.stopped_early:
        print(f"stopped after epoch {result.last.get('epoch', 0)} of {config.epochs} "
              f"(--max-minutes {args.max_minutes:g}); continue with --resume")
    print(f"done: {Path(args.out) / CHECKPOINT}  (log: {Path(args.out) / TRAIN_LOG})")
    if result.last:
        last = result.last
        print(f"last epoch: clean {100 * last.get('test_clean_acc', float('nan')):.2f}%  "
              f"PGD {100 * last.get('test_pgd_acc', float('nan')):.2f}%")
    return 0
