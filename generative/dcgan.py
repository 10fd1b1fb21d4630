"""Kind `dcgan`: the DCGAN recipe (Radford et al. 2016, as pytorch/examples implements it).

Transposed-convolution generator and convolutional discriminator; N(0, 0.02) init; BatchNorm in both (not on the
discriminator's input layer); ReLU in G, LeakyReLU(0.2) in D; Tanh output; Adam 2e-4, betas (0.5, 0.999); D gives
logits and the losses use BCEWithLogitsLoss (safe under autocast). The generator grows a base x base map (4, or 7
for MNIST's 28) by doubling, so it makes 4*2^k or 7*2^k pixels: 8, 14, 16, 28, 32, 56, 64, 128...
Training is gan.py's two-phase loop; only the networks differ.

`conditional: true` draws the class asked for (Mirza & Osindero 2014): a learned label embedding is concatenated to
z in the generator, and the discriminator adds a projection term <embed(y), features(x)> to its logit (the
projection discriminator, Miyato & Koyama 2018), so it judges "a real image of class y" rather than "a real image".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import networks
from generative.adversarial import AdversarialConfig, MinibatchStd, sample_images, train_adversarial
from generative.common import normal_init
from networks.errors import ConfigError


@dataclass
class Config(AdversarialConfig):
    data: str = "mnist5k"  # digits | mnist5k | npz:<path> | folder:<path> | env:<env_id>
    image_size: int | None = field(default=64, metadata={"ge": 8})  # DCGAN paper: 64x64 (28, 32 fit too)
    latent_dim: int = field(default=100, metadata={"ge": 1})  # DCGAN paper
    ngf: int = field(default=64, metadata={"ge": 1})  # generator width (pytorch/examples)
    ndf: int = field(default=64, metadata={"ge": 1})  # discriminator width (pytorch/examples)
    conditional: bool = False  # draw a chosen class: label embedding in G, projection in D (needs labelled data)

    def validate(self) -> None:
        super().validate()
        if self.image_size is not None:
            plan(self.image_size)


def plan(image_size: int) -> tuple[int, int]:
    """(base, doublings) with base * 2**doublings == image_size, base 4 or 7, doublings >= 1."""
    for base in (4, 7):
        size, doublings = image_size, 0
        while size > base and size % 2 == 0:
            size, doublings = size // 2, doublings + 1
        if size == base and doublings >= 1:
            return base, doublings
    raise ConfigError(
        "image_size",
        f"a DCGAN generator makes 4*2^k or 7*2^k pixels (8, 14, 16, 28, 32, 56, 64, ...), got {image_size}",
    )


LABEL_DIM = 32  # size of the learned class embedding that joins z (a 10-class one-hot would also do)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], ngf: int, num_classes: int = 0):
        super().__init__()
        channels, size, _ = image_shape
        base, doublings = plan(size)
        width = ngf * 2 ** (doublings - 1)
        self.embed = nn.Embedding(num_classes, LABEL_DIM) if num_classes else None
        inputs = latent_dim + (LABEL_DIM if num_classes else 0)
        layers: list[nn.Module] = [  # (B, latent [+ label], 1, 1) -> (B, width, base, base)
            nn.ConvTranspose2d(inputs, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(doublings - 1):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2)]
            layers.append(nn.ReLU(True))
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]  # (B, C, size, size)
        self.net = nn.Sequential(*layers)
        normal_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, latent + LABEL_DIM)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], ndf: int, num_classes: int = 0, minibatch_std: bool = False):
        super().__init__()
        channels, size, width = image_shape
        if size != width:
            raise ConfigError("image_size", f"DCGAN takes square images, the data are {tuple(image_shape)}")
        base, doublings = plan(size)
        layers: list[nn.Module] = [  # (B, C, size, size) -> (B, ndf, size/2, size/2); no norm on the input
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
            networks.activation("leaky_relu", negative_slope=0.2),
        ]
        width = ndf
        for _ in range(doublings - 1):  # each: (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2)]
            layers.append(networks.activation("leaky_relu", negative_slope=0.2))
            width *= 2
        if minibatch_std:  # (B, w, base, base) -> (B, w + 1, base, base)
            layers.append(MinibatchStd())
            width += 1
        layers += [nn.Conv2d(width, 1, base, 1, 0, bias=False), nn.Flatten()]  # (B, 1) logits
        self.net = nn.Sequential(*layers)
        # projection: one weight per feature of the last map, per class (Miyato & Koyama 2018)
        self.embed = nn.Embedding(num_classes, width * base * base) if num_classes else None
        normal_init(self)
        if self.embed is not None:  # small like every other D weight, so the projection starts near 0
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is None:
            return self.net(x)
        features = self.net[:-2](x)  # (B, w, base, base)
        logits = self.net[-2:](features)  # (B, 1)
        return logits + (self.embed(labels) * features.flatten(1)).sum(1, keepdim=True)


def build_networks(
    config: Config, image_shape: tuple[int, int, int], num_classes: int = 0
) -> tuple[nn.Module, nn.Module]:
    generator = Generator(config.latent_dim, image_shape, config.ngf, num_classes)
    channels, height, width = image_shape  # D takes `pack` images stacked as channels (PacGAN)
    seen = (channels * config.stability.pack, height, width)
    discriminator = Discriminator(seen, config.ndf, num_classes, config.stability.minibatch_std)
    return generator, discriminator


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    return train_adversarial(config, tracker, build_networks, resume=resume, make_env=make_env)


def generate(config: Config, tree: dict, *, n: int, seed: int, label: int | None = None) -> np.ndarray:
    """(n, C, H, W) in [0, 1]; `label` draws one class from a conditional run (see gan.sample_images)."""
    return sample_images(config, tree, build_networks, n=n, seed=seed, label=label)
