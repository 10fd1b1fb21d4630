"""Every activation's value and gradient at points worked out by hand (float64, so exact to ~1e-12).

Formulas (seed notes, DISHASHREE GUPTA 2020): step(x) = [x >= 0]; linear(x) = a x; sigmoid(x) =
1 / (1 + e^-x), sigmoid' = s (1 - s); tanh' = 1 - tanh^2; relu' = [x > 0]; leaky_relu(x) = 0.01 x for
x < 0; prelu(x) = a x for x < 0 with a trainable; elu(x) = e^x - 1 for x < 0, elu' = e^x;
gelu(x) = x Phi(x), gelu' = Phi(x) + x phi(x); silu(x) = x s(x), silu' = s(x) (1 + x (1 - s(x))).
"""

from __future__ import annotations

import pytest
import torch

import networks
from networks import ConfigError

# (name, kwargs, x, f(x), f'(x)) with the numbers written out, not recomputed by the formula.
CASES = [
    ("binary_step", {}, -1.0, 0.0, 0.0),
    ("binary_step", {}, 0.0, 1.0, 0.0),
    ("binary_step", {}, 2.5, 1.0, 0.0),
    ("linear", {}, -3.0, -3.0, 1.0),
    ("linear", {"slope": 2.0}, -1.0, -2.0, 2.0),
    ("sigmoid", {}, 0.0, 0.5, 0.25),
    ("sigmoid", {}, 1.0, 0.7310585786300049, 0.19661193324148185),
    ("sigmoid", {}, -1.0, 0.2689414213699951, 0.19661193324148185),
    ("tanh", {}, 0.0, 0.0, 1.0),
    ("tanh", {}, 1.0, 0.7615941559557649, 0.41997434161402614),
    ("tanh", {}, -1.0, -0.7615941559557649, 0.41997434161402614),
    ("relu", {}, -1.0, 0.0, 0.0),
    ("relu", {}, 0.0, 0.0, 0.0),  # torch's choice of subgradient at the kink
    ("relu", {}, 2.0, 2.0, 1.0),
    ("leaky_relu", {}, -1.0, -0.01, 0.01),
    ("leaky_relu", {}, 2.0, 2.0, 1.0),
    ("leaky_relu", {"negative_slope": 0.2}, -2.0, -0.4, 0.2),
    ("prelu", {}, -2.0, -0.5, 0.25),  # initial slope 0.25 (He et al. 2015)
    ("prelu", {}, 3.0, 3.0, 1.0),
    ("elu", {}, -1.0, -0.6321205588285577, 0.36787944117144233),  # e^-1 - 1, e^-1
    ("elu", {}, 0.0, 0.0, 1.0),
    ("elu", {}, 2.0, 2.0, 1.0),
    ("gelu", {}, 0.0, 0.0, 0.5),
    ("gelu", {}, 1.0, 0.8413447460685429, 1.0833154705876864),  # Phi(1), Phi(1) + phi(1)
    ("gelu", {}, -1.0, -0.15865525393145707, -0.08331547058768629),
    ("silu", {}, 0.0, 0.0, 0.5),
    ("silu", {}, 1.0, 0.7310585786300049, 0.9276705118714869),
    ("silu", {}, -1.0, -0.2689414213699951, 0.07232948812851325),
]


@pytest.mark.parametrize(("name", "kwargs", "x", "value", "grad"), CASES)
def test_value_and_gradient(name: str, kwargs: dict, x: float, value: float, grad: float) -> None:
    module = networks.activation(name, **kwargs).double()
    point = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    out = module(point)
    out.sum().backward()
    assert out.item() == pytest.approx(value, abs=1e-12)
    assert point.grad is not None
    assert point.grad.item() == pytest.approx(grad, abs=1e-12)


def test_softmax_value_and_jacobian() -> None:
    # x = [0, ln 3] -> e^x = [1, 3] -> [0.25, 0.75]; d s_i / d x_j = s_i (delta_ij - s_j).
    x = torch.tensor([0.0, 1.0986122886681098], dtype=torch.float64)
    softmax = networks.activation("softmax")
    assert softmax(x).tolist() == pytest.approx([0.25, 0.75], abs=1e-12)
    jacobian = torch.autograd.functional.jacobian(softmax, x)
    expected = [[0.1875, -0.1875], [-0.1875, 0.1875]]
    assert jacobian.tolist()[0] == pytest.approx(expected[0], abs=1e-12)
    assert jacobian.tolist()[1] == pytest.approx(expected[1], abs=1e-12)
    assert softmax(torch.tensor([0.0, 0.0])).tolist() == [0.5, 0.5]


def test_every_listed_activation_is_covered() -> None:
    covered = {case[0] for case in CASES} | {"softmax"}
    assert covered == set(networks.ACTIVATIONS)


def test_binary_step_cannot_be_trained_by_backprop() -> None:
    """Weights below a binary step get exactly zero gradient, so gradient descent never moves them."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    out = networks.activation("binary_step")(layer(torch.randn(8, 3)))
    ((out - 0.5) ** 2).mean().backward()
    assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
    torch.optim.SGD(layer.parameters(), lr=1.0).step()
    assert torch.equal(layer.weight, before)


def test_prelu_slope_is_trainable() -> None:
    prelu = networks.activation("prelu")
    (slope,) = list(prelu.parameters())
    assert slope.requires_grad and slope.item() == 0.25
    prelu(torch.tensor([-2.0, 3.0])).sum().backward()
    assert slope.grad.item() == -2.0  # d(a x)/da = x on the negative side only
    torch.optim.SGD(prelu.parameters(), lr=0.1).step()
    assert slope.item() == pytest.approx(0.45)


def test_each_call_gives_a_fresh_module() -> None:
    assert networks.activation("prelu") is not networks.activation("prelu")


def test_unknown_activation_names_the_field_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        networks.activation("rleu", field="network.activation")
    message = str(info.value)
    assert message.startswith("network.activation: ")
    assert "did you mean 'relu'" in message and "allowed: binary_step, linear" in message
    assert "\n" not in message


def test_bad_activation_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad arguments for activation 'relu'"):
        networks.activation("relu", slope=3)
