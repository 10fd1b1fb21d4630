"""Activation functions by name, as in the seed notes (binary step to SiLU).

`activation("relu")` returns a fresh nn.Module. Extra keywords go to its constructor, e.g.
`activation("leaky_relu", negative_slope=0.2)` or `activation("prelu", num_parameters=64)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from networks.errors import ConfigError
from networks.spec import choice


class _ZeroGradStep(torch.autograd.Function):
    """Heaviside step whose backward pass returns zeros (its true derivative almost everywhere)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad_output)


class BinaryStep(nn.Module):
    """f(x) = 1 if x >= 0 else 0.

    Its gradient is zero everywhere, so nothing before it can be trained by backpropagation: every
    weight below a binary step receives a zero update. Use it for thresholding outputs, or for
    gradient-free training (evolution strategies), not as a hidden activation of a backprop-trained net.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ZeroGradStep.apply(x)


class LinearActivation(nn.Module):
    """f(x) = slope * x. Its gradient is the constant `slope`, whatever x is (seed notes)."""

    def __init__(self, slope: float = 1.0):
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.slope if self.slope != 1.0 else x

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "binary_step": BinaryStep,
    "linear": LinearActivation,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda dim=-1: nn.Softmax(dim=dim),  # over the feature axis
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda negative_slope=0.01: nn.LeakyReLU(negative_slope),  # slope 0.01: torch and the notes
    "prelu": lambda num_parameters=1, init=0.25: nn.PReLU(num_parameters, init),  # 0.25: He et al. 2015
    "elu": lambda alpha=1.0: nn.ELU(alpha),
    "gelu": lambda approximate="none": nn.GELU(approximate),  # exact x * Phi(x) unless "tanh"
    "silu": nn.SiLU,
}

# Gain for orthogonal / xavier init after each activation (nn.init.calculate_gain's names).
INIT_GAIN_NAME = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def activation(name: str, *, field: str = "activation", **kwargs: Any) -> nn.Module:
    """A fresh activation module by name. Unknown name -> ConfigError(field, ... allowed: ...)."""
    choice(field, name, ACTIVATIONS, what="activation")
    try:
        return ACTIVATIONS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(field, f"bad arguments for activation '{name}': {e}") from None


def init_gain(name: str) -> float:
    """Init gain that keeps activations' scale through layers of this kind (1.0 when unknown)."""
    return nn.init.calculate_gain(INIT_GAIN_NAME[name]) if name in INIT_GAIN_NAME else 1.0
