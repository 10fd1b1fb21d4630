"""Kind `gan`: a generator and a discriminator, MLPs from networks.build, trained by generative/adversarial.py's
two-phase loop (the one `dcgan` uses with convolutional networks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import networks
from generative.adversarial import AdversarialConfig, MinibatchStd, sample_images, train_adversarial
from networks.errors import ConfigError


@dataclass
class Config(AdversarialConfig):
    generator: dict[str, Any] = field(  # z -> hidden -> C*H*W, then Tanh
        default_factory=lambda: {"type": "mlp", "hidden": [256, 512], "activation": "relu", "norm": "batch"}
    )
    discriminator: dict[str, Any] = field(  # image -> hidden -> 1 logit
        default_factory=lambda: {"type": "mlp", "hidden": [512, 256], "activation": "leaky_relu"}
    )


class MlpGenerator(nn.Module):
    """z (B, latent) -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, spec: dict, latent_dim: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = networks.build(spec, (latent_dim,), output_dim=int(np.prod(image_shape)), field="generator")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(z)).view(-1, *self.image_shape)


def build_networks(config: Config, image_shape: tuple[int, int, int], num_classes: int = 0):
    if num_classes:
        raise ConfigError("conditional", "the MLP gan is not class-conditional; use kind dcgan")
    generator = MlpGenerator(config.generator, config.latent_dim, image_shape)
    seen = (image_shape[0] * config.stability.pack, *image_shape[1:])  # D's input: `pack` images as channels
    if not config.stability.minibatch_std:
        return generator, networks.build(config.discriminator, seen, output_dim=1, field="discriminator")
    body = networks.build(config.discriminator, seen, field="discriminator")  # (B, F)
    return generator, nn.Sequential(body, MinibatchStd(), nn.Linear(body.output_dim + 1, 1))  # (B, 1) logits


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    return train_adversarial(config, tracker, build_networks, resume=resume, make_env=make_env)


def generate(config: Config, tree: dict, *, n: int, seed: int, label: int | None = None) -> np.ndarray:
    return sample_images(config, tree, build_networks, n=n, seed=seed, label=label)
