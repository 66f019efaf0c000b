"""TrainConfig.precision: auto follows PyTorch's defaults (TF32 convolutions on CUDA, float32
elsewhere), config.json records the precision used, and runs recorded before the field (the
booleans tf32 and bf16) keep their run keys and resume."""
from __future__ import annotations

import json

import pytest
import torch

from pni.config import ConfigError, TrainConfig, effective_precision, load_config, replace
from pni.reproduce import get_plans, resolve
from pni.reproduce.steps import run_key
from pni.training import train_run
from pni.training.run_folder import config_changes


def test_precision_values_and_their_meaning_per_device():
    assert TrainConfig().precision == "auto"
    with pytest.raises(ConfigError, match="precision='fp16': expected auto, tf32, float32 or bf16"):
        TrainConfig(precision="fp16").validate()
    assert [effective_precision(p, "cuda") for p in ("auto", "tf32", "float32", "bf16")] == \
        ["tf32", "tf32", "float32", "bf16"]
    assert [effective_precision(p, "cpu") for p in ("auto", "tf32", "float32", "bf16")] == \
        ["float32", "float32", "float32", "bf16"]


def test_configs_written_before_precision_read_as_what_they_computed():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict({**old, "tf32": False, "bf16": False}).precision == "float32"
    assert TrainConfig.from_dict({**old, "tf32": True, "bf16": False}).precision == "tf32"
    assert TrainConfig.from_dict({**old, "tf32": False, "bf16": True}).precision == "bf16"
    assert TrainConfig.from_dict(old).precision == "auto"  # no record at all: the default


def test_run_keys_of_existing_runs_stay():
    """The results folders already trained (cpu scale, and the paper-scale float32 control run)
    keep their keys: float32 is keyed as before the field; another precision is another run."""
    cpu = {s.key for s in resolve(get_plans("table2"), "cpu") if s.kind == "train"}
    assert "lenet5-W-at-mnist-501bbc46" in cpu
    paper = [s for s in resolve(get_plans("table2"), "paper", data_dir="../shared/data/cifar10-jpeg.zip")
             if s.kind == "train"]
    assert paper[0].key == "resnet20-none-at-folder-fd203045" and paper[0].config.precision == "float32"
    config = load_config("mnist-lenet", "cpu")
    float32 = run_key(replace(config, precision="float32"))
    assert run_key(config) == float32  # auto on the cpu is float32
    tf32 = run_key(replace(config, precision="tf32"))
    assert tf32 != float32 and tf32 == run_key(replace(config, precision="tf32", device="cuda"))  # device-free
    assert run_key(replace(config, precision="auto", device="cuda")) == tf32  # auto on CUDA is tf32
    assert run_key(replace(config, precision="bf16")) not in (float32, tf32)


def test_config_json_records_the_precision_used(tmp_path):
    config = load_config("mnist-lenet", "smoke", train_subset=64, eval_subset=0, steps=1, progress=False)
    assert config.precision == "auto"
    train_run(config, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["precision"] == "float32" and "tf32" not in recorded and "bf16" not in recorded
    # resuming with auto again is the same run (auto -> float32 on the cpu both times)
    train_run(replace(config, epochs=2), tmp_path / "run", resume=True)
    train_run(replace(config, precision="tf32"), tmp_path / "tf32")  # explicit: recorded as declared
    assert json.loads((tmp_path / "tf32" / "config.json").read_text())["precision"] == "tf32"


def test_a_checkpoint_from_before_precision_resumes():
    requested = replace(TrainConfig(), precision="float32").to_dict()
    old = {k: v for k, v in requested.items() if k != "precision"}
    assert config_changes({**old, "tf32": False, "bf16": False}, requested, "x") == {}
    assert config_changes(old, requested, "x") == {}  # older still: float32
    with pytest.raises(Exception, match="precision"):
        config_changes({**old, "tf32": False, "bf16": True}, requested, "x")


@pytest.mark.cuda
def test_backend_flags_follow_the_precision():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from pni.training.cuda_graphs import configure_backends

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        configure_backends(torch.device("cuda"), "tf32")
        assert torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        configure_backends(torch.device("cuda"), "float32")
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
