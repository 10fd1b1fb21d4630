"""What the two GAN kinds (gan, dcgan) share: their options, the two losses, the two-phase loop, evaluation and
sampling.

Each step:  (1) the discriminator learns real vs fake, the generator untouched;
            (2) the generator learns to fool the discriminator, which is frozen;
            (3) with `ema_decay`, the averaged generator that samples follows G.
A kind supplies only `build(config, image_shape, num_classes) -> (generator, discriminator)`.

Stability options (the non-saturating loss: Goodfellow et al. 2014; one-sided label smoothing: Salimans et al.
2016; spectral norm on the discriminator: Miyato et al. 2018; separate learning rates, TTUR: Heusel et al. 2017;
an average of the generator's weights and a minibatch standard-deviation feature: Karras et al. 2018; packing:
Lin et al. 2018; the R1 penalty: Mescheder et al. 2018; top-k generator updates: Sinha et al. 2020). Alarms: mode
collapse (judge histogram) and a discriminator that wins outright (loss near zero for many steps). Images in [-1, 1]
inside, [0, 1] outside.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generative import common, images
from generative.data import Images
from generative.metrics import DiscriminatorWatch
from generative.scoring import JudgedOptions, Scorer
from networks.errors import ConfigError


@dataclass
class Stability:
    non_saturating: bool = True  # G maximises log D(G(z)) instead of minimising log(1 - D(G(z))) (Goodfellow 2014)
    label_smoothing: float = field(default=0.0, metadata={"ge": 0, "lt": 0.5})  # one-sided: real target 1 - s
    spectral_norm: bool = False  # on every discriminator conv/linear layer (Miyato et al. 2018)
    # > 0: sample and evaluate with an exponential moving average of G's weights, decay per step. The live G
    # chases a moving D and oscillates; its average sits nearer the centre (Karras et al. 2018 used 0.999;
    # Yazici et al. 2019, "The unusual effectiveness of averaging in GAN training"). 0 = off.
    ema_decay: float = field(default=0.0, metadata={"ge": 0, "lt": 1})
    # D also sees the standard deviation of its features across a group of 4 samples (Karras et al. 2018, sec. 3):
    # a G that draws too few kinds of image lowers it, so D can penalise a lack of variety one sample cannot show.
    minibatch_std: bool = False
    # D judges `pack` samples at once, stacked along channels, all real or all fake (PacGAN, Lin et al. 2018):
    # a G that drops modes makes packs that look alike, which D can tell from real packs. 1 = off.
    pack: int = field(default=1, metadata={"ge": 1})
    # > 0: G also pays this weight / (mean |G(z1) - G(z2)| / mean |z1 - z2|) over pairs of its samples (drawn for
    # the same class when conditional): a G that ignores z and draws one image per class pays most (mode seeking,
    # Mao et al. 2019). 0 = off.
    mode_seeking: float = field(default=0.0, metadata={"ge": 0})
    # > 0: D also pays r1_gamma / 2 * E ||dD(x)/dx||^2 on real images (R1, Mescheder et al. 2018, "Which training
    # methods for GANs do actually converge?"): D's slope on the data is pushed to zero, so G and D settle where G
    # matches the data instead of circling it; their image experiments used 10. 0 = off.
    r1_gamma: float = field(default=0.0, metadata={"ge": 0})
    # < 1: G learns only from the k fakes D scores most real, k shrinking 0.99x per epoch from the whole batch down
    # to this fraction of it (top-k training, Sinha et al. 2020, who kept 0.5-0.75): the gradients of the worst
    # fakes can push them away from their nearest mode. 1 = off.
    top_k: float = field(default=1.0, metadata={"gt": 0, "le": 1})


@dataclass
class Alarms:
    d_loss_below: float = field(default=0.05, metadata={"gt": 0})  # "near zero": within this of its floor
    d_loss_steps: int = field(default=200, metadata={"gt": 0})  # consecutive steps before the alarm fires
    class_above: float = field(default=0.40, metadata={"gt": 0, "le": 1})  # mode collapse: one class above
    class_below: float = field(default=0.02, metadata={"ge": 0, "lt": 1})  # ... or any class below


@dataclass
class AdversarialConfig(JudgedOptions):
    """Fields every GAN kind shares."""

    data: str = "digits"  # digits | mnist5k | npz:<path> | folder:<path> | env:<env_id>
    latent_dim: int = field(default=64, metadata={"ge": 1})  # size of the noise z
    batch_size: int = field(default=64, metadata={"gt": 0})  # DCGAN used 128; 64 is kinder to 2 CPU cores
    lr_g: float = field(default=2e-4, metadata={"gt": 0})  # DCGAN paper; TTUR: 1e-4 here, 4e-4 for D
    lr_d: float = field(default=2e-4, metadata={"gt": 0})  # DCGAN paper
    beta1: float = field(default=0.5, metadata={"ge": 0, "lt": 1})  # DCGAN paper: 0.9 oscillated
    beta2: float = field(default=0.999, metadata={"ge": 0, "lt": 1})  # Adam's default
    # anneal both learning rates to 0 over total_steps (Loshchilov & Hutter 2017): G and D settle instead of
    # chasing each other to the last step, so the class mix the evaluation sees stops swinging
    cosine_decay: bool = False
    stability: Stability = field(default_factory=Stability)
    alarms: Alarms = field(default_factory=Alarms)
    amp: bool = False  # bf16 autocast (for GPUs; the losses take logits, so autocast is safe)
    channels_last: bool = False  # NHWC memory layout for the conv nets (faster convs on GPUs)
    compile: bool = False  # torch.compile both networks (pays a compile pause up front)

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError("latent_dim", f"must be >= 1, got {self.latent_dim}")
        if self.batch_size % self.stability.pack:
            raise ConfigError("stability.pack", f"must divide batch_size {self.batch_size}, got {self.stability.pack}")
        if self.stability.pack > 1 and getattr(self, "conditional", False):
            raise ConfigError("stability.pack", "a class-conditional discriminator judges one sample at a time: use 1")


# --- the two losses, as pure functions --------------------------------------------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0):
    """BCE of D on real (target 1 - smoothing, one-sided) and fake (target 0) samples, summed."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 1.0 - smoothing))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||dD(x)/dx||^2 over the real samples (Mescheder et al. 2018); `real` must require grad. Differentiable,
    so D's optimiser can lower it."""
    (slope,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)  # (B, C, H, W)
    return slope.pow(2).flatten(1).sum(1).mean()


def top_k_count(batch: int, epoch: float, floor: float, decay: float = 0.99) -> int:
    """How many of a batch's fakes G learns from: batch * decay^epoch, never below ceil(floor * batch) (Sinha et
    al. 2020's schedule)."""
    return max(math.ceil(floor * batch), min(batch, int(batch * decay**epoch)))


def generator_loss(fake_logits: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """Non-saturating: -log D(G(z)). Minimax (saturating): log(1 - D(G(z))), flat where D is sure."""
    if non_saturating:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


# --- parts of the networks ---------------------------------------------------------------------------


class MinibatchStd(nn.Module):
    """Appends one feature (or channel): the standard deviation of each feature across a group of samples,
    averaged over features (Karras et al. 2018, sec. 3). (B, F) -> (B, F + 1); (B, C, H, W) -> (B, C + 1, H, W).

    Sample i is grouped with samples i + M, i + 2M, ... (M = B / group), as in the authors' code; the group is the
    largest divisor of B up to `group_size`.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        group = max(g for g in range(1, min(self.group_size, b) + 1) if b % g == 0)
        grouped = x.reshape(group, b // group, *x.shape[1:])  # (G, M, ...)
        std = (grouped.var(0, unbiased=False) + 1e-8).sqrt()  # (M, ...) per feature, within each group
        stat = std.flatten(1).mean(1).repeat(group)  # (B,): sample i gets its group's (i % M) value
        extra = stat.view(b, 1, *([1] * (x.dim() - 2))).expand(b, 1, *x.shape[2:])
        return torch.cat([x, extra.to(x.dtype)], dim=1)


class Average:
    """An exponential moving average of a network's weights, kept in a copy of it (`module`) that samples.

    Batch-norm statistics (buffers) are copied from the live network, as Karras et al.'s code does. The decay
    starts short and grows to `decay`, min(decay, (1 + step) / (10 + step)) as in tf.train.ExponentialMovingAverage,
    so the average does not drag the random initial weights along for thousands of steps.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, live: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for average, current in zip(self.module.parameters(), live.parameters()):
            average.lerp_(current, 1.0 - decay)
        for average, current in zip(self.module.buffers(), live.buffers()):
            average.copy_(current)


# --- the loop both GAN kinds share -----------------------------------------------------------------


def call(network: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """network(x), or network(x, labels) for a class-conditional one."""
    return network(x) if labels is None else network(x, labels)


def train_adversarial(
    config, tracker, build, *, resume: dict | None = None, make_env: Callable | None = None
) -> dict[str, float]:
    with common.session(config) as device:
        data = common.load_data(config, make_env)
        num_classes = conditional_classes(config, data)  # 0: unconditional
        generator, discriminator = build(config, data.shape, num_classes)  # D takes `pack` images at once
        if config.stability.spectral_norm:
            common.spectral_norm_all(discriminator)
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        generator = generator.to(device).to(memory_format=layout)
        discriminator = discriminator.to(device).to(memory_format=layout)
        average = Average(generator, config.stability.ema_decay) if config.stability.ema_decay > 0 else None
        sampler = generator if average is None else average.module  # what evaluation and `generate` draw from
        # compiled wrappers run the steps; the plain modules own the weights the checkpoint saves
        run_g, run_d = generator, discriminator
        if config.compile:
            run_g, run_d = torch.compile(generator), torch.compile(discriminator)
        opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
        fixed_noise = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        models = {"generator": generator, "discriminator": discriminator}
        if average is not None:
            models["generator_ema"] = average.module
        optimizers = {"generator": opt_g, "discriminator": opt_d}
        step = 0 if resume is None else common.restore_tree(resume, models, optimizers)
        schedules = [common.cosine_schedule(o, config.total_steps, enabled=config.cosine_decay, step=step)
                     for o in (opt_g, opt_d)]  # fmt: skip
        best = common.Best("eval/fld", "min", value=float(resume.get("best_fld", math.nan)) if resume else math.nan)
        watch = DiscriminatorWatch(
            config.alarms.d_loss_below, config.alarms.d_loss_steps, config.stability.label_smoothing
        )
        scorer = Scorer(config, data, device, tracker, alarms=config.alarms)
        real_images = torch.from_numpy(data.x_train).to(device) * 2 - 1  # (N, C, H, W) in [-1, 1]
        real_images = real_images.contiguous(memory_format=layout)
        real_labels = torch.from_numpy(data.y_train).to(device) if num_classes else None
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.amp else contextlib.nullcontext()
        fixed_noise = fixed_noise.to(device)
        specs = {"generator": {"latent_dim": config.latent_dim, "image_shape": list(data.shape),
                               "num_classes": num_classes, "ema": average is not None}}  # fmt: skip
        timing = {"train_s": 0.0, "alarms": 0}
        pack = functools.partial(packed, pack=config.stability.pack)
        seeking = config.stability.mode_seeking
        r1_gamma, top_k = config.stability.r1_gamma, config.stability.top_k

        def update(step: int) -> dict[str, float | torch.Tensor]:
            started = time.perf_counter()
            index = torch.randint(len(real_images), (config.batch_size,), device=device)
            real = real_images[index]
            labels = None if real_labels is None else real_labels[index]
            fake_labels = labels if seeking == 0 else paired(labels)  # the real batch's classes
            z = torch.randn(config.batch_size, config.latent_dim, device=device)
            real_input = pack(real).requires_grad_(r1_gamma > 0)  # R1 differentiates D's logit by it
            losses = {}
            with autocast:
                fake = call(run_g, z, fake_labels)
                # (1) discriminator: real vs fake; detach() keeps the generator out of this update
                real_logits = call(run_d, real_input, labels)
                d_loss = discriminator_loss(
                    real_logits, call(run_d, pack(fake.detach()), fake_labels), config.stability.label_smoothing
                )
                if r1_gamma > 0:
                    losses["losses/r1"] = r1_penalty(real_logits, real_input)
                    d_loss = d_loss + r1_gamma / 2 * losses["losses/r1"]
            common.optimize(opt_d, d_loss)
            # (2) generator: fool the discriminator, frozen (no gradients for its weights)
            discriminator.requires_grad_(False)
            with autocast:
                fake_logits = call(run_d, pack(fake), fake_labels)  # (B / pack, 1)
                if top_k < 1:  # only the fakes D finds most real teach G
                    epoch = step * config.batch_size / len(real_images)
                    fake_logits = fake_logits.topk(top_k_count(len(fake_logits), epoch, top_k), dim=0).values
                g_loss = generator_loss(fake_logits, config.stability.non_saturating)
                if seeking > 0:
                    g_loss = g_loss + seeking * mode_seeking_loss(fake, z)
            common.optimize(opt_g, g_loss)
            discriminator.requires_grad_(True)
            for schedule in schedules:
                schedule.step()
            if average is not None:  # (3) the sampler follows G slowly
                average.update(generator, step)
            d_value = d_loss.item()
            timing["train_s"] += time.perf_counter() - started
            if watch.update(d_value) and watch.run == config.alarms.d_loss_steps:
                timing["alarms"] += 1
                tracker.log({"charts/alarm_discriminator_wins": 1.0}, step)
            return {"losses/discriminator": d_value, "losses/generator": g_loss.detach(),
                    **{name: value.detach() for name, value in losses.items()},
                    "charts/images_per_s": images_per_s(step)}  # fmt: skip

        def images_per_s(step: int) -> float:
            return step_images(step, resume, config) / max(timing["train_s"], 1e-9)

        def checkpoint_tree(step: int) -> dict:
            return common.make_tree(models, optimizers, step, specs=specs, best_fld=best.value)

        step, metrics = common.fit(
            tracker, step=step, total_steps=config.total_steps, eval_every=config.eval_every, update=update,
            evaluate=lambda step: evaluate(sampler, scorer, config, tracker, step, fixed_noise, num_classes),
            checkpoint_tree=checkpoint_tree, best=best,
        )  # fmt: skip
        tracker.image("eval/interpolation", interpolation_strip(sampler, fixed_noise, num_classes), step)
        summary = {
            **metrics,
            "charts/images_per_s": images_per_s(step),
            "charts/alarm_discriminator_wins": float(timing["alarms"]),
        }
        if best.found:
            summary["eval/best_fld"] = best.value
        tracker.summary(summary)
        return summary


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + 1e-5), sample i paired with sample i + B/2 (Mao et al. 2019)."""
    half = len(z) // 2
    ratio = (fake[:half] - fake[half : 2 * half]).abs().mean() / (z[:half] - z[half : 2 * half]).abs().mean()
    return 1.0 / (ratio + 1e-5)


def paired(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Labels whose second half repeats the first, so samples i and i + B/2 are drawn for one class."""
    if labels is None:
        return None
    half = len(labels) // 2
    return torch.cat([labels[:half], labels[:half], labels[2 * half :]])


def packed(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, C, H, W) -> (B / pack, pack * C, H, W): samples i * pack ... i * pack + pack - 1 side by side."""
    return x if pack == 1 else x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


def conditional_classes(config, data: Images) -> int:
    """The number of classes a conditional GAN draws from (0 when it is not conditional)."""
    if not getattr(config, "conditional", False):
        return 0
    if data.y_train is None:
        raise ConfigError("conditional", f"needs labelled data, and '{config.data}' has no labels")
    return data.num_classes


def step_images(step: int, resume: dict | None, config) -> int:
    start = 0 if resume is None else int(resume.get("step", 0))
    return (step - start) * config.batch_size


@torch.no_grad()
def evaluate(
    generator: nn.Module, scorer: Scorer, config, tracker, step: int, fixed_noise: torch.Tensor, num_classes: int
) -> dict[str, float]:
    """The fixed-noise grid (one row per class when conditional) and the judge's scores of `eval_samples`."""
    generator.eval()
    if num_classes:  # the same 8 noise vectors in every row: the class changes down, the style across
        z, labels = fixed_noise[:8].repeat(num_classes, 1), class_rows(num_classes, 8, fixed_noise.device)
        tracker.image("eval/samples", images.grid(draw(generator, z, labels).cpu().numpy(), nrow=8), step)
    else:
        tracker.image("eval/samples", images.grid(draw(generator, fixed_noise, None).cpu().numpy()), step)
    metrics: dict[str, float] = {}
    if scorer.judge is not None:
        n, device = config.eval_samples, fixed_noise.device
        z = torch.randn(n, config.latent_dim, device=device)
        labels = torch.arange(n, device=device) % num_classes if num_classes else None
        pick = (lambda i: None) if labels is None else (lambda i: labels[i : i + 500])
        samples = torch.cat([draw(generator, z[i : i + 500], pick(i)) for i in range(0, n, 500)])
        metrics = scorer.score(samples, labels)
        tracker.log(metrics, step)
    generator.train()
    return metrics


def class_rows(num_classes: int, per_class: int, device=None) -> torch.Tensor:
    """Labels 0, 0, ..., 1, 1, ...: `per_class` of each, so a grid of `per_class` columns has a row per class."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def draw(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return to_unit(call(generator, z, labels))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def interpolation_strip(
    generator: nn.Module, noise: torch.Tensor, num_classes: int = 0, rows: int = 6, steps: int = 10
) -> np.ndarray:
    """Each row walks a straight line in z between two fixed noise vectors (conditional: row r draws class r)."""
    generator.eval()
    t = torch.linspace(0, 1, steps, device=noise.device)[None, :, None]  # (1, steps, 1)
    z = noise[:rows, None] * (1 - t) + noise[rows : 2 * rows, None] * t  # (rows, steps, latent)
    labels = class_rows(rows, steps, noise.device) % num_classes if num_classes else None
    strip = draw(generator, z.reshape(rows * steps, -1), labels).cpu().numpy()
    generator.train()
    return images.grid(strip, nrow=steps)


def sample_images(config, tree: dict, build, *, n: int, seed: int, label: int | None = None) -> np.ndarray:
    """(n, C, H, W) in [0, 1] from a checkpoint tree, on the CPU, from the averaged generator when there is one.

    A class-conditional generator draws `label` only, or without it ceil(n / classes) of each class in class
    order (a grid of that many columns has one row per class).
    """
    spec = common.spec_of(tree, "generator")
    num_classes = int(spec.get("num_classes", 0))
    generator, _ = build(config, tuple(spec["image_shape"]), num_classes)
    common.restore_tree(tree, {"generator_ema" if spec.get("ema") else "generator": generator})
    labels = requested_labels(n, num_classes, label)
    z = torch.randn(n if labels is None else len(labels), spec["latent_dim"],
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip
    generator.eval()
    with torch.no_grad():
        return draw(generator, z, labels).numpy()


def requested_labels(n: int, num_classes: int, label: int | None) -> torch.Tensor | None:
    if label is not None:
        if not num_classes:
            raise ConfigError("--label", "this run's generator is not class-conditional (train dcgan with "
                              "conditional: true)")  # fmt: skip
        if not 0 <= label < num_classes:
            raise ConfigError("--label", f"must be a class in 0..{num_classes - 1}, got {label}")
        return torch.full((n,), label)
    return class_rows(num_classes, math.ceil(n / num_classes)) if num_classes else None
