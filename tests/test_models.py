"""Model zoo: the paper's parameter counts (Table 3), shapes, normalization, bad names."""
from __future__ import annotations

import pytest
import torch

import pni

TABLE3_CAPACITY = {
    ("resnet20", 1.0): 269_722,
    ("resnet32", 1.0): 464_154,
    ("resnet44", 1.0): 658_586,
    ("resnet56", 1.0): 853_018,
    ("resnet20", 1.5): 605_026,
    ("resnet20", 2.0): 1_073_962,
    ("resnet20", 4.0): 4_286_026,
    ("resnet18", 1.0): 11_173_962,
}


@pytest.mark.parametrize("name,width", list(TABLE3_CAPACITY))
def test_parameter_counts_match_table3(name, width):
    model = pni.create_model(name, width=width)
    assert pni.count_parameters(model) == TABLE3_CAPACITY[(name, width)]
    pni.inject(model, "W")  # alphas are not part of the paper's capacity
    assert pni.count_parameters(model) == TABLE3_CAPACITY[(name, width)]
    assert pni.count_parameters(model, include_alphas=True) > TABLE3_CAPACITY[(name, width)]


@pytest.mark.parametrize("name,shape", [("resnet20", (3, 32, 32)), ("resnet18", (3, 32, 32)),
                                        ("lenet5", (1, 28, 28))])
def test_output_shape_and_input_shape_attribute(name, shape):
    model = pni.create_model(name, num_classes=7).eval()
    assert model.input_shape == shape and model.arch == name
    assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_normalization_is_inside_the_model_and_not_trainable():
    model = pni.create_model("resnet20", normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert torch.allclose(model.normalize.mean.flatten(), torch.full((3,), 0.5))
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith("normalize") for n in names)
    assert "normalize.mean" in model.state_dict()
    x = torch.rand(2, 3, 32, 32)
    plain = pni.create_model("resnet20", normalize=False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normalize")})
    assert torch.allclose(model.eval()(x), plain((x - 0.5) / 0.25), atol=1e-5)


def test_in_channels_changes_the_stem():
    model = pni.create_model("lenet5", in_channels=3, normalize=((0.5,) * 3, (0.5,) * 3))
    assert model.conv0.in_channels == 3
    assert model(torch.rand(1, 3, 28, 28)).shape == (1, 10)


def test_unknown_model_name_lists_choices():
    with pytest.raises(pni.ModelError, match=r"unknown model 'resnet21'.*resnet20.*lenet5"):
        pni.create_model("resnet21")


def test_bad_width_and_missing_default_normalization_are_clear_errors():
    with pytest.raises(pni.ModelError, match="width"):
        pni.create_model("resnet20", width=0)
    with pytest.raises(pni.ModelError, match="in_channels=1"):
        pni.create_model("resnet20", in_channels=1)


def test_layer_labels_name_lenet_layers_like_the_paper():
    labels = pni.layer_labels(pni.create_model("lenet5"))
    assert labels == {"conv0": "Conv0", "conv1": "Conv1", "fc0": "FC0", "fc1": "FC1", "fc2": "FC2"}
    resnet18 = pni.layer_labels(pni.create_model("resnet18"))
    assert resnet18["stage2.0.shortcut.0"] == "Conv2.0.sc" and resnet18["stage4.1.conv2"] == "Conv4.3"


def _layouts(model: torch.nn.Module) -> set[bool]:
    """Whether each 4-D weight of ``model`` is stored channels_last (and not also NCHW)."""
    return {p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            for p in model.parameters() if p.dim() == 4}


def test_cpu_channels_last_switches_a_conv_model_and_restores_it_with_nchw_input_gradients():
    from pni.models.modes import cpu_channels_last

    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), "W").eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad(), pni.noise_enabled(model, False):
        standard = model(x)
    with cpu_channels_last(model) as changed:
        assert changed and _layouts(model) == {True}
        x_in = x.clone().requires_grad_(True)
        with pni.noise_enabled(model, False):
            logits = model(x_in)
        (grad,) = torch.autograd.grad(logits.sum(), x_in)
        assert grad.is_contiguous()  # attacks flatten gradients with .view
        assert torch.allclose(logits, standard, atol=1e-4)  # only the summation order differs
    assert _layouts(model) == {False}
    with pytest.raises(RuntimeError, match="boom"), cpu_channels_last(model):
        raise RuntimeError("boom")
    assert _layouts(model) == {False}  # restored on an error too


def test_cpu_channels_last_leaves_a_user_managed_layout_and_a_model_without_convolutions_alone():
    from pni.models.modes import cpu_channels_last

    model = pni.create_model("resnet20").to(memory_format=torch.channels_last)
    with cpu_channels_last(model) as changed:
        assert not changed
    assert _layouts(model) == {True}  # the user's choice stays
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    with cpu_channels_last(mlp) as changed:
        assert not changed
        assert mlp(torch.rand(2, 3, 2, 2)).shape == (2, 3)


class _ViewNet(torch.nn.Module):
    """A user's model whose forward flattens with ``.view`` (fails on an NHWC tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(len(x), -1))


def test_cpu_channels_last_leaves_a_users_own_modules_in_their_layout():
    from pni.models.modes import cpu_channels_last

    model = _ViewNet()
    with cpu_channels_last(model) as changed:
        assert not changed
        assert model(torch.rand(2, 3, 8, 8)).shape == (2, 2)   # its .view still works
    result = pni.evaluate(model, (torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])), ["clean", "pgd"],
                          trials=1, threat="linf:8/255", steps=1)
    assert result.n == 4
