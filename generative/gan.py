"""Kind `gan`: a generator and a discriminator (MLPs from networks.build), trained in the notes' two phases.

Each step:  (1) the discriminator learns real vs fake, the generator untouched;
            (2) the generator learns to fool the discriminator, which is frozen.
The same loop (`train_adversarial`) trains `dcgan`, which only swaps the two networks.

Stability options (the non-saturating loss: Goodfellow et al. 2014; one-sided label smoothing: Salimans et al.
2016; spectral norm on the discriminator: Miyato et al. 2018; separate learning rates, TTUR: Heusel et al. 2017).
Alarms: mode collapse (judge histogram) and a discriminator that wins outright (loss near zero for many steps).
Images in [-1, 1] inside, [0, 1] outside.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import networks
from generative import images
from generative.classifier import fit_judge, load_judge
from generative.common import (
    Best,
    ImageOptions,
    fit,
    load_data,
    make_tree,
    optimize,
    restore_tree,
    sample,
    session,
    spec_of,
    spectral_norm_all,
)
from generative.data import Images
from generative.metrics import (
    DiscriminatorWatch,
    FrechetLeNetDistance,
    class_histogram,
    coverage_metrics,
    mode_collapse,
)
from networks.errors import ConfigError


@dataclass
class Stability:
    non_saturating: bool = True  # G maximises log D(G(z)) instead of minimising log(1 - D(G(z))) (Goodfellow 2014)
    label_smoothing: float = field(default=0.0, metadata={"ge": 0, "lt": 0.5})  # one-sided: real target 1 - s
    spectral_norm: bool = False  # on every discriminator conv/linear layer (Miyato et al. 2018)


@dataclass
class Alarms:
    d_loss_below: float = field(default=0.05, metadata={"gt": 0})  # "near zero": within this of its floor
    d_loss_steps: int = field(default=200, metadata={"gt": 0})  # consecutive steps before the alarm fires
    class_above: float = field(default=0.40, metadata={"gt": 0, "le": 1})  # mode collapse: one class above
    class_below: float = field(default=0.02, metadata={"ge": 0, "lt": 1})  # ... or any class below


@dataclass
class AdversarialConfig(ImageOptions):
    """Fields every GAN kind shares."""

    data: str = "digits"  # digits | mnist5k | npz:<path> | folder:<path> | env:<env_id>
    latent_dim: int = field(default=64, metadata={"ge": 1})  # size of the noise z
    batch_size: int = field(default=64, metadata={"gt": 0})  # DCGAN used 128; 64 is kinder to 2 CPU cores
    lr_g: float = field(default=2e-4, metadata={"gt": 0})  # DCGAN paper; TTUR: 1e-4 here, 4e-4 for D
    lr_d: float = field(default=2e-4, metadata={"gt": 0})  # DCGAN paper
    beta1: float = field(default=0.5, metadata={"ge": 0, "lt": 1})  # DCGAN paper: 0.9 oscillated
    beta2: float = field(default=0.999, metadata={"ge": 0, "lt": 1})  # Adam's default
    stability: Stability = field(default_factory=Stability)
    alarms: Alarms = field(default_factory=Alarms)
    eval_samples: int = field(default=1000, metadata={"ge": 2})  # samples for FLD and class coverage
    judge: str | None = None  # a `classify` run folder; None trains a LeNet judge on the data (seconds)
    judge_steps: int = field(default=1500, metadata={"ge": 0})  # steps for that judge; 0 = no judge metrics
    amp: bool = False  # bf16 autocast (for GPUs; the losses take logits, so autocast is safe)
    channels_last: bool = False  # NHWC memory layout for the conv nets (faster convs on GPUs)
    compile: bool = False  # torch.compile both networks (pays a compile pause up front)

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError("latent_dim", f"must be >= 1, got {self.latent_dim}")


@dataclass
class Config(AdversarialConfig):
    generator: dict[str, Any] = field(  # z -> hidden -> C*H*W, then Tanh
        default_factory=lambda: {"type": "mlp", "hidden": [256, 512], "activation": "relu", "norm": "batch"}
    )
    discriminator: dict[str, Any] = field(  # image -> hidden -> 1 logit
        default_factory=lambda: {"type": "mlp", "hidden": [512, 256], "activation": "leaky_relu"}
    )


# --- the two losses, as pure functions --------------------------------------------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0):
    """BCE of D on real (target 1 - smoothing, one-sided) and fake (target 0) samples, summed."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 1.0 - smoothing))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """Non-saturating: -log D(G(z)). Minimax (saturating): log(1 - D(G(z))), flat where D is sure."""
    if non_saturating:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


# --- networks ------------------------------------------------------------------------------------


class MlpGenerator(nn.Module):
    """z (B, latent) -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, spec: dict, latent_dim: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = networks.build(spec, (latent_dim,), output_dim=int(np.prod(image_shape)), field="generator")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(z)).view(-1, *self.image_shape)


def build_networks(config: Config, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    generator = MlpGenerator(config.generator, config.latent_dim, image_shape)
    discriminator = networks.build(config.discriminator, image_shape, output_dim=1, field="discriminator")
    return generator, discriminator


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    return train_adversarial(config, tracker, build_networks, resume=resume, make_env=make_env)


def generate(config: Config, tree: dict, *, n: int, seed: int) -> np.ndarray:
    return sample_images(config, tree, build_networks, n=n, seed=seed)


# --- the loop both GAN kinds share -----------------------------------------------------------------


def train_adversarial(
    config, tracker, build, *, resume: dict | None = None, make_env: Callable | None = None
) -> dict[str, float]:
    with session(config) as device:
        data = load_data(config, make_env)
        generator, discriminator = build(config, data.shape)
        if config.stability.spectral_norm:
            spectral_norm_all(discriminator)
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        generator = generator.to(device).to(memory_format=layout)
        discriminator = discriminator.to(device).to(memory_format=layout)
        # compiled wrappers run the steps; the plain modules own the weights the checkpoint saves
        run_g, run_d = generator, discriminator
        if config.compile:
            run_g, run_d = torch.compile(generator), torch.compile(discriminator)
        opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
        fixed_noise = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        models = {"generator": generator, "discriminator": discriminator}
        optimizers = {"generator": opt_g, "discriminator": opt_d}
        step = 0 if resume is None else restore_tree(resume, models, optimizers)
        best = Best("eval/fld", "min", value=float(resume.get("best_fld", math.nan)) if resume else math.nan)
        watch = DiscriminatorWatch(
            config.alarms.d_loss_below, config.alarms.d_loss_steps, config.stability.label_smoothing
        )
        scorer = Scorer(config, data, device, tracker)
        real_images = torch.from_numpy(data.x_train).to(device) * 2 - 1  # (N, C, H, W) in [-1, 1]
        real_images = real_images.contiguous(memory_format=layout)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.amp else contextlib.nullcontext()
        fixed_noise = fixed_noise.to(device)
        specs = {"generator": {"latent_dim": config.latent_dim, "image_shape": list(data.shape)}}
        timing = {"train_s": 0.0, "alarms": 0}

        def update(step: int) -> dict[str, float]:
            started = time.perf_counter()
            real = sample(real_images, config.batch_size)
            z = torch.randn(config.batch_size, config.latent_dim, device=device)
            with autocast:
                fake = run_g(z)
                # (1) discriminator: real vs fake; detach() keeps the generator out of this update
                d_loss = discriminator_loss(run_d(real), run_d(fake.detach()), config.stability.label_smoothing)
            optimize(opt_d, d_loss)
            # (2) generator: fool the discriminator, frozen (no gradients for its weights)
            discriminator.requires_grad_(False)
            with autocast:
                g_loss = generator_loss(run_d(fake), config.stability.non_saturating)
            optimize(opt_g, g_loss)
            discriminator.requires_grad_(True)
            d_value = d_loss.item()
            timing["train_s"] += time.perf_counter() - started
            if watch.update(d_value) and watch.run == config.alarms.d_loss_steps:
                timing["alarms"] += 1
                tracker.log({"charts/alarm_discriminator_wins": 1.0}, step)
            return {"losses/discriminator": d_value, "losses/generator": g_loss.detach(),
                    "charts/images_per_s": images_per_s(step)}  # fmt: skip

        def images_per_s(step: int) -> float:
            return step_images(step, resume, config) / max(timing["train_s"], 1e-9)

        def checkpoint_tree(step: int) -> dict:
            return make_tree(models, optimizers, step, specs=specs, best_fld=best.value)

        step, metrics = fit(
            tracker, step=step, total_steps=config.total_steps, eval_every=config.eval_every, update=update,
            evaluate=lambda step: scorer.evaluate(generator, fixed_noise, step),
            checkpoint_tree=checkpoint_tree, best=best,
        )  # fmt: skip
        tracker.image("eval/interpolation", interpolation_strip(generator, fixed_noise), step)
        summary = {
            **metrics,
            "charts/images_per_s": images_per_s(step),
            "charts/alarm_discriminator_wins": float(timing["alarms"]),
        }
        if best.found:
            summary["eval/best_fld"] = best.value
        tracker.summary(summary)
        return summary


def step_images(step: int, resume: dict | None, config) -> int:
    start = 0 if resume is None else int(resume.get("step", 0))
    return (step - start) * config.batch_size


class Scorer:
    """Sample grids, Fréchet LeNet distance and class coverage at each evaluation."""

    def __init__(self, config, data: Images, device: torch.device, tracker):
        self.config, self.tracker, self.device = config, tracker, device
        self.judge, self.fld = None, None
        if data.y_train is not None and (config.judge or config.judge_steps > 0):
            judge = (
                load_judge(config.judge)
                if config.judge
                else fit_judge(data, steps=config.judge_steps, seed=config.seed, device=device)
            )
            if judge.input_shape[0] != data.shape[0]:
                raise ConfigError("judge", f"the judge takes {judge.input_shape} images, the data are {data.shape}")
            self.judge = judge.to(device)
            real = torch.from_numpy(data.x_test).to(device)
            accuracy = float((self.judge.predict(real).cpu() == torch.from_numpy(data.y_test)).float().mean())
            tracker.log({"eval/judge_accuracy": accuracy}, 0)
            self.fld = FrechetLeNetDistance(self.judge, real)

    @torch.no_grad()
    def evaluate(self, generator: nn.Module, fixed_noise: torch.Tensor, step: int) -> dict[str, float]:
        generator.eval()
        self.tracker.image("eval/samples", images.grid(to_unit(generator(fixed_noise)).cpu().numpy()), step)
        metrics: dict[str, float] = {}
        if self.judge is not None:
            z = torch.randn(self.config.eval_samples, self.config.latent_dim, device=self.device)
            samples = torch.cat([to_unit(generator(b)) for b in z.split(500)])
            histogram = class_histogram(self.judge.predict(samples), self.judge.num_classes)
            alarms = self.config.alarms
            metrics = {
                "eval/fld": self.fld(samples),
                **coverage_metrics(histogram),
                "eval/alarm_mode_collapse": float(
                    mode_collapse(histogram, above=alarms.class_above, below=alarms.class_below)
                ),
            }
            self.tracker.log(metrics, step)
        generator.train()
        return metrics


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def interpolation_strip(generator: nn.Module, noise: torch.Tensor, rows: int = 6, steps: int = 10) -> np.ndarray:
    """Each row walks a straight line in z between two fixed noise vectors."""
    generator.eval()
    t = torch.linspace(0, 1, steps, device=noise.device)[None, :, None]  # (1, steps, 1)
    z = noise[:rows, None] * (1 - t) + noise[rows : 2 * rows, None] * t  # (rows, steps, latent)
    strip = to_unit(generator(z.reshape(rows * steps, -1))).cpu().numpy()
    generator.train()
    return images.grid(strip, nrow=steps)


def sample_images(config, tree: dict, build, *, n: int, seed: int) -> np.ndarray:
    """(n, C, H, W) in [0, 1] from a checkpoint tree, on the CPU."""
    spec = spec_of(tree, "generator")
    generator, _ = build(config, tuple(spec["image_shape"]))
    restore_tree(tree, {"generator": generator})
    generator.eval()
    z = torch.randn(n, spec["latent_dim"], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return to_unit(generator(z)).numpy()
