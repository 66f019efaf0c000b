"""Presets: every preset and scale loads, the paper scale holds the paper's settings."""
from __future__ import annotations

import pytest

from pni.config import SCALES, ConfigError, TrainConfig, list_presets, load_config


@pytest.mark.parametrize("preset", ["mnist-lenet", "cifar-resnet20"])
@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_and_scale_gives_a_valid_config(preset, scale):
    config = load_config(preset, scale)
    assert isinstance(config, TrainConfig)
    assert max(config.milestones, default=0) < config.epochs


def test_paper_scale_holds_the_paper_settings():
    cifar = load_config("cifar-resnet20", "paper")
    assert (cifar.model, cifar.location, cifar.steps, cifar.epochs, cifar.batch_size) == (
        "resnet20", "W", 7, 160, 128)
    assert cifar.eps == pytest.approx(8 / 255) and cifar.lr == 0.1 and cifar.weight_decay == 3e-4
    assert cifar.milestones == [80, 120] and cifar.nesterov and cifar.momentum == 0.9
    assert cifar.w_clean == cifar.w_adv == 0.5 and cifar.init_alpha == 0.25
    mnist = load_config("mnist-lenet", "paper")
    assert (mnist.eps, mnist.steps, mnist.step_size) == (0.3, 40, 0.01)


def test_smoke_scale_needs_no_download_for_mnist():
    assert load_config("mnist-lenet", "smoke").dataset == "mnist-sample"


def test_overrides_apply_and_unknown_fields_are_rejected():
    config = load_config("mnist-lenet", "smoke", location=None, steps=3)
    assert config.location is None and config.steps == 3
    with pytest.raises(ConfigError, match="unknown config field.*stepz"):
        load_config("mnist-lenet", "smoke", stepz=3)


def test_presets_are_listed():
    assert {"mnist-lenet", "cifar-resnet20"} <= set(list_presets())


@pytest.mark.parametrize("fields, message", [  # issue 22: not torch's overflow RuntimeError mid-training
    ({"gamma": 1e300, "milestones": [1]},
     "config field gamma=1e+300: the learning rate would reach 1e299 (lr=0.1 x gamma=1e+300 at 1 milestone(s)), "
     "above the largest float32 (3.4e+38) the optimizer computes in; expected a schedule that stays below it"),
    ({"gamma": 1e20, "milestones": [1, 2]},
     "config field gamma=1e+20: the learning rate would reach 1e39 (lr=0.1 x gamma=1e+20 at 2 milestone(s)), "
     "above the largest float32 (3.4e+38) the optimizer computes in; expected a schedule that stays below it"),
    ({"lr": 1e300, "milestones": []},
     "config field lr=1e+300: the learning rate would reach 1e300 (lr=1e+300 x gamma=0.1 at 0 milestone(s)), "
     "above the largest float32 (3.4e+38) the optimizer computes in; expected a schedule that stays below it"),
    ({"weight_decay": 1e300}, "config field weight_decay=1e+300: expected a number below the largest float32 "
                              "(3.4e+38)"),
])
def test_overflowing_schedules_are_refused_naming_the_field(fields, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**fields).validate()
    assert str(error.value) == message
    TrainConfig(gamma=10.0, milestones=[1, 2]).validate()  # large but finite in float32: allowed
