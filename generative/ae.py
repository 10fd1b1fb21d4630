"""Kind `ae`: dense and convolutional autoencoders; `noise_std > 0` makes them denoising autoencoders.

encoder (networks.build, so agents can reuse it) -> code -> decoder (an MLP, or transposed convolutions) -> logits.
The loss is BCE per pixel on images in [0, 1] (the Keras blog's measure). A denoising autoencoder sees
x + N(0, noise_std^2) (clipped to [0, 1]) and must reconstruct the clean x (Vincent et al. 2008).

The encoder of a run trained on `env:<env_id>` frames is what a DQN config loads with
`network: {init_from: RUN_DIR, part: encoder}`: tree["model"]["encoder"] holds its weights and
tree["specs"]["encoder"] the networks.build spec, input shape and output size that rebuild it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import networks
from generative import images
from generative.common import (
    ImageOptions,
    cosine_schedule,
    fit,
    load_data,
    make_tree,
    optimize,
    restore_tree,
    sample,
    session,
    spec_of,
    translate,
)
from generative.data import Images
from generative.metrics import reconstruction_errors
from networks.errors import ConfigError
from networks.resnet import BasicBlock

DEFAULT_ENCODERS = {  # the code layer (a Linear to code_dim) is added by networks.build's output_dim
    "conv": {"type": "cnn", "conv": [[32, 3, 2, 1], [64, 3, 2, 1]], "activation": "relu"},
    "dense": {"type": "mlp", "hidden": [256], "activation": "relu"},
}


@dataclass
class Config(ImageOptions):
    arch: Literal["conv", "dense"] = "conv"  # picks the default encoder and the decoder type
    code_dim: int = field(default=32, metadata={"ge": 1})  # the Keras blog's 32-d code
    encoder: dict[str, Any] | None = None  # networks.build spec; None: DEFAULT_ENCODERS[arch]
    decoder_channels: list[int] = field(default_factory=lambda: [64, 32])  # conv: widths, each doubles H, W
    decoder_hidden: list[int] = field(default_factory=lambda: [256])  # dense: decoder MLP widths
    # BatchNorm after each hidden transposed conv (Ioffe & Szegedy 2015), as in DCGAN's generator
    decoder_norm: bool = False
    # residual blocks (networks.resnet's BasicBlock, He et al. 2016) at each conv decoder width, before it doubles
    decoder_blocks: int = field(default=0, metadata={"ge": 0})
    noise_std: float = field(default=0.0, metadata={"ge": 0})  # > 0: denoising autoencoder
    # denoising: also score test inputs with these noise levels against the clean images (eval/denoise<std>_...)
    eval_noise: list[float] = field(default_factory=list)
    # augmentation: move each training image (input and target alike) by up to this many pixels; with only
    # 4,000 MNIST digits the decoder otherwise learns the training set (train BCE 0.071, test 0.081 here)
    shift: int = field(default=0, metadata={"ge": 0})
    lr: float = field(default=1e-3, metadata={"gt": 0})  # Adam's default (Kingma & Ba 2015)
    cosine_decay: bool = False  # anneal lr to 0 over total_steps (Loshchilov & Hutter 2017)

    def validate(self) -> None:
        if self.code_dim < 1:
            raise ConfigError("code_dim", f"must be >= 1, got {self.code_dim}")
        if self.arch == "conv" and not self.decoder_channels:
            raise ConfigError("decoder_channels", "a conv decoder needs at least one width, e.g. [64, 32]")
        if any(not 0 < level <= 1 for level in self.eval_noise):
            raise ConfigError("eval_noise", f"noise levels must be in (0, 1], got {self.eval_noise}")


class ConvDecoder(nn.Module):
    """code (B, D) -> Linear -> (B, w0, h0, w0') -> transposed convs, each doubling -> crop to (B, C, H, W) logits.

    `norm` puts BatchNorm after each hidden transposed conv; `blocks` residual blocks run at each width first.
    """

    def __init__(
        self, code_dim: int, image_shape: tuple[int, int, int], channels: list[int], *, norm: bool = False,
        blocks: int = 0,
    ):  # fmt: skip
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        scale = 2 ** len(channels)
        self.base = (math.ceil(h / scale), math.ceil(w / scale))  # grown past (H, W) if needed, then cropped
        self.project = nn.Sequential(nn.Linear(code_dim, channels[0] * self.base[0] * self.base[1]), nn.ReLU())
        layers: list[nn.Module] = []
        for i, (width, out) in enumerate(zip(channels, [*channels[1:], c])):
            layers += [BasicBlock(in_channels=width, out_channels=width, stride=1, make_activation=nn.ReLU)
                       for _ in range(blocks)]  # fmt: skip  # (B, width, h, w): same shape
            layers.append(nn.ConvTranspose2d(width, out, 4, 2, 1))  # (B, out, 2h, 2w); the last gives logits
            if i + 1 < len(channels):
                layers += [nn.BatchNorm2d(out), nn.ReLU()] if norm else [nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.project(code).view(-1, self.channels[0], *self.base)
        return self.net(x)[..., : self.image_shape[1], : self.image_shape[2]]


class DenseDecoder(nn.Module):
    """code (B, D) -> MLP -> (B, C, H, W) logits."""

    def __init__(self, code_dim: int, image_shape: tuple[int, int, int], hidden: list[int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        spec = {"type": "mlp", "hidden": list(hidden), "activation": "relu"}
        self.net = networks.build(spec, (code_dim,), output_dim=int(np.prod(image_shape)), field="decoder_hidden")

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code).view(-1, *self.image_shape)


def encoder_spec(config) -> dict:
    return dict(config.encoder) if config.encoder is not None else dict(DEFAULT_ENCODERS[config.arch])


def build_decoder(
    config, code_dim: int, image_shape: tuple[int, int, int], *, norm: bool = False, blocks: int = 0
) -> nn.Module:
    if config.arch == "conv":
        return ConvDecoder(code_dim, image_shape, list(config.decoder_channels), norm=norm, blocks=blocks)
    return DenseDecoder(code_dim, image_shape, list(config.decoder_hidden))


class Autoencoder(nn.Module):
    def __init__(self, config: Config, image_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder = networks.build(encoder_spec(config), image_shape, output_dim=config.code_dim, field="encoder")
        self.decoder = build_decoder(
            config, config.code_dim, image_shape, norm=config.decoder_norm, blocks=config.decoder_blocks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits
        return self.decoder(self.encoder(x))


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE per pixel, averaged over pixels and images."""
    return F.binary_cross_entropy_with_logits(logits, target)


def corrupt(x: torch.Tensor, noise_std: float) -> torch.Tensor:
    return (x + noise_std * torch.randn_like(x)).clamp(0.0, 1.0) if noise_std > 0 else x


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    with session(config) as device:
        data = load_data(config, make_env)
        model = Autoencoder(config, data.shape).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        parts, optimizers = {"encoder": model.encoder, "decoder": model.decoder}, {"autoencoder": optimizer}
        step = 0 if resume is None else restore_tree(resume, parts, optimizers)
        schedule = cosine_schedule(optimizer, config.total_steps, enabled=config.cosine_decay, step=step)
        specs = {"encoder": describe_encoder(config, data), "decoder": {"image_shape": list(data.shape)}}
        x_train = torch.from_numpy(data.x_train).to(device)

        def update(step: int) -> dict[str, torch.Tensor]:
            model.train()
            x = translate(sample(x_train, config.batch_size), config.shift)
            loss = optimize(optimizer, reconstruction_loss(model(corrupt(x, config.noise_std)), x))
            schedule.step()
            return {"losses/bce_per_pixel": loss}

        _, metrics = fit(
            tracker, step=step, total_steps=config.total_steps, eval_every=config.eval_every, update=update,
            evaluate=lambda step: evaluate(model, data, config, tracker, step, device),
            checkpoint_tree=lambda step: make_tree(parts, optimizers, step, specs=specs),
        )  # fmt: skip
        tracker.summary(metrics)
        return metrics


def describe_encoder(config, data: Images) -> dict:
    """What the agent side needs to rebuild the encoder: networks.build(spec, input_shape, output_dim)."""
    return {
        "spec": networks.resolve(encoder_spec(config), "encoder"),
        "input_shape": list(data.shape),
        "output_dim": config.code_dim,
        "data": config.data,
        "input_scaling": "divide uint8 observations by 255 (images in [0, 1])",
    }


@torch.no_grad()
def evaluate(model: Autoencoder, data: Images, config, tracker, step: int, device) -> dict[str, float]:
    """Test-split BCE and MSE per pixel, reconstruction grid, code scatter, interpolation strip."""
    model.eval()
    x_test = torch.from_numpy(data.x_test).to(device)
    codes = torch.cat([model.encoder(b) for b in x_test.split(500)])
    recon = torch.cat([torch.sigmoid(model.decoder(c)) for c in codes.split(500)])
    metrics = {f"eval/{k}": v for k, v in reconstruction_errors(x_test, recon).items()}
    shown = x_test[:32]
    for level in config.eval_noise:  # other noise levels, each against the clean images
        _, denoised = denoise(model, x_test, level, config.seed)
        metrics.update({f"eval/denoise{level:g}_{k}": v for k, v in reconstruction_errors(x_test, denoised).items()})
    if config.noise_std > 0:  # the denoising task: noisy test input, clean target
        noisy, recon = denoise(model, x_test, config.noise_std, config.seed)
        metrics.update({f"eval/denoise_{k}": v for k, v in reconstruction_errors(x_test, recon).items()})
        shown = noisy[:32]
    tracker.log(metrics, step)
    tracker.image("eval/reconstructions", images.pairs(shown.cpu().numpy(), recon[:32].cpu().numpy()), step)
    tracker.image("eval/code_scatter", images.scatter(codes.cpu().numpy(), data.y_test, "test codes"), step)
    tracker.image("eval/interpolation", interpolation(model.decoder, codes), step)
    return metrics


def denoise(model: Autoencoder, x: torch.Tensor, noise_std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with seeded N(0, noise_std^2) noise, clipped to [0, 1]; the model's reconstruction of it)."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    noisy = (x + noise_std * torch.randn(x.shape, generator=generator, device=x.device)).clamp(0, 1)
    return noisy, torch.cat([torch.sigmoid(model(b)) for b in noisy.split(500)])


def interpolation(decoder: nn.Module, codes: torch.Tensor, rows: int = 6, steps: int = 10) -> np.ndarray:
    """Decode straight lines between the codes of pairs of test images, one pair per row."""
    rows = min(rows, len(codes) // 2)
    t = torch.linspace(0, 1, steps, device=codes.device)[None, :, None]
    z = codes[:rows, None] * (1 - t) + codes[rows : 2 * rows, None] * t  # (rows, steps, D)
    return images.grid(torch.sigmoid(decoder(z.reshape(rows * steps, -1))).cpu().numpy(), nrow=steps)


def generate(config: Config, tree: dict, *, n: int, seed: int, make_env: Callable | None = None) -> np.ndarray:
    """Autoencoders do not sample: they reconstruct `n` test images (chosen by `seed`), as (n, C, H, W).
    `make_env` (envs.make) is needed only to collect `env:<id>` data again."""
    image_shape = tuple(spec_of(tree, "decoder")["image_shape"])
    model = Autoencoder(config, image_shape)
    restore_tree(tree, {"encoder": model.encoder, "decoder": model.decoder})
    data = load_data(config, make_env)
    pick = np.random.default_rng(seed).choice(len(data.x_test), size=min(n, len(data.x_test)), replace=False)
    x = torch.from_numpy(data.x_test[np.sort(pick)])
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.sigmoid(model(corrupt(x, config.noise_std))).numpy()
