"""Multi-layer perceptrons, and the layer options (activation, dropout, norm, init) every type shares."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from networks.activations import activation, init_gain
from networks.spec import check_fields, choice, int_list, probability

NORMS = ("none", "batch", "layer")
INITS = ("default", "orthogonal", "xavier", "kaiming")
MLP_FIELDS = ("type", "hidden", "activation", "dropout", "norm", "init")


@dataclass(frozen=True)
class LayerOptions:
    """What every hidden layer of a spec shares."""

    activation: str = "relu"
    dropout: float = 0.0  # after each hidden activation; 0 = off
    norm: str = "none"  # between the affine layer and its activation; layer: Ba et al. 2016, as PQN uses it
    init: str = "default"  # torch's own init unless asked
    field: str = "network"  # config path, for error messages

    @classmethod
    def parse(cls, spec: Mapping[str, Any], field: str) -> LayerOptions:
        options = cls(
            activation=spec.get("activation", "relu"),
            dropout=probability(f"{field}.dropout", spec.get("dropout", 0.0)),
            norm=choice(f"{field}.norm", spec.get("norm", "none"), NORMS, what="norm"),
            init=choice(f"{field}.init", spec.get("init", "default"), INITS, what="init"),
            field=field,
        )
        options.make_activation()  # fail now, at build time, on an unknown name
        return options

    def make_activation(self) -> nn.Module:
        return activation(self.activation, field=f"{self.field}.activation")


class Encoder(nn.Sequential):
    """A feed-forward network (B, *input_shape) -> (B, output_dim), built from named stages."""

    def __init__(self, stages: OrderedDict[str, nn.Module], *, input_shape: Sequence[int], output_dim: int):
        super().__init__(stages)
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim


def mlp_layers(in_dim: int, hidden: Sequence[int], options: LayerOptions) -> nn.Sequential:
    """Linear -> norm -> activation -> dropout, once per hidden width. (B, in_dim) -> (B, hidden[-1])."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if options.norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif options.norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(options.make_activation())
        if options.dropout > 0:
            layers.append(nn.Dropout(options.dropout))
        in_dim = width
    return nn.Sequential(*layers)


def build_mlp(spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str) -> Encoder:
    """{type: mlp, hidden: [64, 64], ...}: flattens any input shape, then the hidden layers."""
    check_fields(field, spec, MLP_FIELDS, "type mlp")
    options = LayerOptions.parse(spec, field)
    hidden = int_list(f"{field}.hidden", spec.get("hidden", []))
    in_dim = math.prod(input_shape)
    encoder = Encoder(
        OrderedDict(flatten=nn.Flatten(), mlp=mlp_layers(in_dim, hidden, options)),
        input_shape=input_shape,
        output_dim=hidden[-1] if hidden else in_dim,
    )
    apply_init(encoder, options)
    return encoder


def apply_init(module: nn.Module, options: LayerOptions) -> None:
    """Re-initialise every Linear / Conv weight (biases to zero) unless init is 'default'."""
    if options.init == "default":
        return
    gain = init_gain(options.activation)
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            init_layer(layer, options.init, gain=gain, activation=options.activation)


def init_layer(layer: nn.Linear | nn.Conv2d, init: str, *, gain: float, activation: str = "relu") -> None:
    if init == "default":
        return
    if init == "orthogonal":  # gain sqrt(2) after ReLU, as in SB3 / CleanRL
        nn.init.orthogonal_(layer.weight, gain)
    elif init == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain)
    elif init == "kaiming":  # He et al. 2015; defined for the ReLU family only
        nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
        nn.init.kaiming_normal_(layer.weight, a=0.01 if activation == "leaky_relu" else 0, nonlinearity=nonlinearity)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
