"""``pni info``: what pni has (models, noise locations, datasets, presets, pretrained
names, benchmark protocols) and how many threads it uses."""
from __future__ import annotations

import argparse
import os
from typing import Any

from .. import __version__


def add_info_parser(sub: Any) -> None:
    info = sub.add_parser("info", help="list the models, noise locations, datasets and presets")
    info.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from ..config import SCALES, list_presets
    from ..data import DATASETS, default_data_dir
    from ..models import MODELS
    from ..noise import GRANULARITIES, LOCATIONS

    print(f"pni {__version__}: Parametric Noise Injection (He, Rakin, Fan, CVPR 2019)")
    print(f"models:        {', '.join(MODELS)}")
    print(f"locations:     {', '.join(LOCATIONS)}  (Table 2)")
    print(f"granularities: {', '.join(GRANULARITIES)}")
    print(f"datasets:      {', '.join(DATASETS)}")
    print(f"presets:       {', '.join(list_presets())}  (scales: {', '.join(SCALES)})")
    print(f"data folder:   {default_data_dir()}  (set PNI_DATA or --data-dir)")
    from ..benchmark.protocol import PROTOCOLS
    from ..models.hub import pretrained_names
    print(f"pretrained:    {', '.join(pretrained_names('cpu'))}  (scale cpu: pni.pretrained(name))")
    print(f"benchmarks:    {', '.join(PROTOCOLS)}  (pni eval --benchmark; docs/BENCHMARK.md)")
    print(f"threads:       {threads_line()}")
    return 0


def threads_line() -> str:
    import torch

    from ..threads import ENV, WAIT_ENV

    return (f"{torch.get_num_threads()} of {os.cpu_count()} cores (--threads / ${ENV}; OpenMP wait policy "
            f"{os.environ.get(WAIT_ENV, 'default')})")
