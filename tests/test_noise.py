"""PNI noise (Eq. 5-8): statistics, gradients, switches, locations, and reversibility."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import pni
from pni.noise import NoiseInjection


def _eval_model(name: str, location: str = "W", granularity: str = "layer") -> nn.Module:
    torch.manual_seed(0)
    model = pni.create_model(name)
    pni.inject(model, location, granularity)
    return model.eval()


def _input_for(model: nn.Module, n: int = 4) -> torch.Tensor:
    return torch.rand(n, *model.input_shape, generator=torch.Generator().manual_seed(1))


def test_noise_std_equals_abs_alpha_times_std_of_v():
    torch.manual_seed(0)
    v = torch.randn(64, 32) * 3.0 + 1.0
    noise = NoiseInjection((), init_alpha=-0.4)
    draws = torch.stack([noise(v) - v for _ in range(400)])
    expected = 0.4 * v.std(correction=0)
    assert draws.std().item() == pytest.approx(expected.item(), rel=0.02)
    assert draws.mean().abs().item() < 0.02 * expected.item()


def test_fresh_noise_at_every_call_and_one_draw_per_weight_call():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    pni.inject(conv, "W", example_input=None)
    first, second = conv.weight, conv.weight
    assert not torch.equal(first, second)
    # a weight draw is shared by the batch: two identical samples get identical outputs
    x = torch.rand(1, 3, 8, 8).repeat(2, 1, 1, 1)
    out = conv(x)
    assert torch.equal(out[0], out[1])


def test_alpha_gradient_is_sum_of_upstream_grad_times_eta():
    """Eq. 7-8: dL/dalpha = sum(dL/dv~ * eta) with eta ~ N(0, sigma^2) a fixed draw."""
    v = torch.randn(5, 7)
    upstream = torch.randn(5, 7)
    noise = NoiseInjection((), init_alpha=0.25)
    torch.manual_seed(123)
    out = noise(v)
    (out * upstream).sum().backward()
    torch.manual_seed(123)
    eta = torch.randn_like(v) * v.std(correction=0)
    assert torch.allclose(out, v + 0.25 * eta)
    assert noise.alpha.grad.item() == pytest.approx((upstream * eta).sum().item(), rel=1e-5)


def test_no_gradient_flows_through_sigma():
    v = torch.randn(6, 6, requires_grad=True)
    noise = NoiseInjection((), init_alpha=0.5)
    noise(v).sum().backward()
    assert torch.allclose(v.grad, torch.ones_like(v))


@pytest.mark.parametrize("granularity,shape", [("channel", (4,)), ("element", (4, 3, 3, 3))])
def test_weight_alpha_shapes(granularity, shape):
    conv = nn.Conv2d(3, 4, 3)
    pni.inject(conv, "W", granularity)
    (alpha,) = pni.alphas(conv).values()
    assert tuple(alpha.shape) == shape


def test_channel_granularity_scales_each_channel():
    torch.manual_seed(0)
    v = torch.randn(2000, 3)
    noise = NoiseInjection((3,), granularity="channel", channel_dim=1)
    with torch.no_grad():
        noise.alpha.copy_(torch.tensor([0.0, 0.5, 1.0]))
    diff = noise(v) - v
    sigma = v.std(correction=0)
    assert diff[:, 0].abs().max().item() == 0.0
    assert diff[:, 1].std().item() == pytest.approx(0.5 * sigma.item(), rel=0.08)
    assert diff[:, 2].std().item() == pytest.approx(1.0 * sigma.item(), rel=0.08)


def test_eval_mode_keeps_noise_on():
    model = _eval_model("lenet5")
    x = _input_for(model)
    assert not model.training
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("location", pni.LOCATIONS)
def test_noise_off_reproduces_noise_free_model_exactly(location):
    torch.manual_seed(0)
    plain = pni.create_model("resnet20").eval()
    noisy = pni.inject(copy.deepcopy(plain), location)
    x = _input_for(plain)
    with pni.noise_enabled(noisy, False):
        assert torch.equal(noisy(x), plain(x))
    assert not torch.equal(noisy(x), plain(x))  # back on after the context


def test_set_noise_and_context_restore_previous_states_and_change_nothing_else():
    model = _eval_model("lenet5", "W+A-a")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pni.set_noise(model, False)
    x = _input_for(model)
    assert torch.equal(model(x), model(x))
    with pni.noise_enabled(model, True):
        assert not torch.equal(model(x), model(x))
    assert torch.equal(model(x), model(x))  # still off
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["resnet20", "lenet5"])
@pytest.mark.parametrize("granularity", pni.GRANULARITIES)
@pytest.mark.parametrize("location", pni.LOCATIONS)
def test_every_location_and_granularity_runs_forward_and_backward(name, location, granularity):
    torch.manual_seed(0)
    model = pni.create_model(name)
    pni.inject(model, location, granularity)
    x = _input_for(model, 2).requires_grad_(True)
    model(x).logsumexp(1).sum().backward()
    alphas = pni.alphas(model)
    expected_layers = 1 if location == "I" else (20 if name == "resnet20" else 5)
    assert len(alphas) == expected_layers * (2 if "+" in location else 1)
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in alphas.values())
    assert x.grad is not None


def test_resnet20_weight_layer_noise_gives_the_20_alphas_of_table1_in_order():
    model = _eval_model("resnet20")
    alphas = pni.alphas(model)
    labels = pni.layer_labels(model)
    names = [labels[key.split(":")[0]] for key in alphas]
    expected = (["Conv0"] + [f"Conv{s}.{i}" for s in (1, 2, 3) for i in range(6)] + ["FC"])
    assert names == expected
    assert all(a.item() == 0.25 for a in alphas.values())


def test_input_location_is_input_noise_of_first_layer_only():
    model = _eval_model("resnet20", "I")
    assert list(pni.alphas(model)) == ["conv0:I"]


def test_param_groups_exclude_alphas_from_weight_decay():
    model = _eval_model("resnet20", "W+A-a")
    groups = pni.param_groups(model, 3e-4)
    alpha_ids = {id(a) for a in pni.alphas(model).values()}
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    undecayed = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert {id(p) for p in undecayed} == alpha_ids
    assert not alpha_ids & {id(p) for p in decayed}
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))


@pytest.mark.parametrize("location", pni.LOCATIONS)
def test_inject_then_remove_restores_original_outputs_and_keys(location):
    torch.manual_seed(0)
    model = pni.create_model("resnet20").eval()
    keys = list(model.state_dict())
    x = _input_for(model)
    reference = model(x)
    pni.inject(model, location, "channel")
    pni.remove(model)
    assert torch.equal(model(x), reference)
    assert sorted(model.state_dict()) == sorted(keys)
    assert not pni.is_injected(model) and not pni.alphas(model)


def test_state_dict_round_trip_and_deepcopy_keep_alphas():
    model = _eval_model("resnet20", "W+A-b")
    with torch.no_grad():
        for i, a in enumerate(pni.alphas(model).values()):
            a.fill_(0.01 * i)
    clone = pni.inject(pni.create_model("resnet20"), "W+A-b").eval()
    clone.load_state_dict(model.state_dict())
    copied = copy.deepcopy(model)
    x = _input_for(model)
    for other in (clone, copied):
        assert [a.item() for a in pni.alphas(other).values()] == [a.item() for a in pni.alphas(model).values()]
        torch.manual_seed(5)
        out_other = other(x)
        torch.manual_seed(5)
        assert torch.equal(out_other, model(x))
    pni.set_noise(copied, False)  # the copy's switch is its own
    assert not torch.equal(model(x), model(x))


def test_channels_last_keeps_noise_free_outputs_and_noise_statistics():
    model = _eval_model("resnet20", "W+A-a", "channel")
    x = _input_for(model)
    with pni.noise_enabled(model, False):
        reference = model(x)
    model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with pni.noise_enabled(model, False):
        assert torch.allclose(model(x_cl), reference, atol=1e-4)
    conv = model.stage1[0].conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    noise = conv.weight - conv.parametrizations.weight.original
    expected = 0.25 * conv.parametrizations.weight.original.std(correction=0)
    assert noise.std().item() == pytest.approx(expected.item(), rel=0.1)


def test_torch_compile_keeps_noise_and_switch():
    model = _eval_model("lenet5", "W+A-a")
    compiled = torch.compile(model, backend="eager")
    x = _input_for(model)
    assert not torch.equal(compiled(x), compiled(x))
    with pni.noise_enabled(model, False):
        assert torch.allclose(compiled(x), compiled(x))


def test_freeze_alphas_sets_value_and_stops_training():
    model = _eval_model("lenet5")
    pni.freeze_alphas(model, 0.1)
    assert all(a.item() == pytest.approx(0.1) and not a.requires_grad for a in pni.alphas(model).values())


def test_exclude_by_name_and_pattern():
    model = pni.create_model("resnet20")
    pni.inject(model, "W", exclude=("fc", "stage3.*"))
    keys = list(pni.alphas(model))
    assert "fc:W" not in keys and not any(k.startswith("stage3") for k in keys)
    assert len(keys) == 13


def test_inject_works_on_a_plain_user_model_in_registration_order():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    pni.inject(model, "A-a", "channel")
    assert list(pni.alphas(model)) == ["0:A-a", "3:A-a"]
    model(torch.rand(2, 1, 8, 8)).sum().backward()


# --- bad input -------------------------------------------------------------------------

def test_unknown_location_is_a_clear_error():
    with pytest.raises(pni.PNIError, match=r"unknown noise location 'W\+X'.*A-a"):
        pni.inject(pni.create_model("lenet5"), "W+X")


def test_unknown_granularity_is_a_clear_error():
    with pytest.raises(pni.PNIError, match=r"unknown noise granularity 'row'.*channel"):
        pni.inject(pni.create_model("lenet5"), "W", "row")


def test_double_injection_is_refused():
    model = pni.inject(pni.create_model("lenet5"))
    with pytest.raises(pni.PNIError, match="already has PNI noise"):
        pni.inject(model)


def test_element_activation_noise_without_shape_asks_for_example_input():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(pni.PNIError, match="example_input"):
        pni.inject(model, "A-a", "element")
    pni.inject(model, "A-a", "element", example_input=torch.zeros(1, 4))
    assert tuple(pni.alphas(model)["0:A-a"].shape) == (3,)


def test_channels_last_noise_draw_keeps_layout_and_statistics():
    from pni.noise import standard_normal_like

    torch.manual_seed(0)
    v = torch.empty(64, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    eta = standard_normal_like(v)
    assert eta.shape == v.shape and eta.stride() == v.stride()
    assert abs(eta.mean().item()) < 0.01 and eta.std().item() == pytest.approx(1.0, rel=0.01)
