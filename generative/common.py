"""What every generative trainer shares: its training options, its loop's cadence, the checkpoint tree layout,
resuming, threads, batches, init.

The loop (`fit`): each trainer writes its own gradient step (`update`) and evaluation; `fit` calls the step,
checks and logs the losses every LOG_EVERY steps, and every `eval_every` steps (and at the last) evaluates,
checkpoints (the best one too, when a `Best` metric is given) and stops early when the tracker asks.

Checkpoint tree (one layout for every kind, so agents and `dlforge generate` know where to look):
    tree["model"][part]      state dict of each network part: "generator", "discriminator", "encoder", ...
    tree["specs"][part]      JSON that rebuilds that part: its networks.build spec, input shape, sizes
    tree["optimizer"][part]  optimizer state per part
    tree["step"]             gradient steps done
    tree["rng"]              networks.runtime.rng_state()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from generative.data import Images, load_images
from networks import io
from networks.errors import CheckpointError, TrainingDiverged
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything

LOG_EVERY = 50  # steps between loss logs (and non-finite checks)


# --- training options every kind shares ----------------------------------------------------------------


@dataclass
class TrainingOptions:
    """The options every generative kind trains with. Each kind's Config extends this (or ImageOptions) and
    re-declares a default only where its own source differs."""

    data: str = "mnist5k"  # where the examples come from (each kind lists the sources it reads)
    total_steps: int = field(default=3000, metadata={"gt": 0})  # gradient steps
    batch_size: int = field(default=128, metadata={"gt": 0})  # pytorch/examples' VAE batch
    eval_every: int = field(default=1000, metadata={"gt": 0})  # steps between test metrics, images, checkpoints
    test_fraction: float = field(default=0.2, metadata={"gt": 0, "lt": 1})  # held-out share
    seed: int = 0  # seeds the split, the init, the noise and the batches
    device: str = "auto"  # auto | cpu | cuda[:N]
    torch_threads: int = field(default=0, metadata={"ge": 0})  # CPU threads for torch; 0 = torch's default

    def validate(self) -> None:
        """Cross-field rules; kinds that have some override this."""


@dataclass
class ImageOptions(TrainingOptions):
    """The options of the kinds that learn from images (generative.data.load_images)."""

    data: str = "mnist5k"  # digits | mnist5k | npz:<path> | folder:<path> | env:<env_id>
    image_size: int | None = field(default=None, metadata={"ge": 4})  # None: the data's own size
    env_frames: int = field(default=2000, metadata={"ge": 2})  # frames collected for data env:<env_id>


def load_data(config: ImageOptions, make_env: Callable | None = None) -> Images:
    """The images `config` names, split by its seed; `make_env` (envs.make) collects `env:<id>` frames."""
    return load_images(config.data, seed=config.seed, image_size=config.image_size,
                       test_fraction=config.test_fraction, env_frames=config.env_frames, make_env=make_env)  # fmt: skip


@contextlib.contextmanager
def session(config: TrainingOptions) -> Iterator[torch.device]:
    """What every trainer does before building anything: validate, set torch's threads, seed; yields the device."""
    config.validate()
    with torch_threads(config.torch_threads):
        device = resolve_device(config.device)
        seed_everything(config.seed)
        yield device


# --- the loop's cadence ---------------------------------------------------------------------------------


@dataclass
class Best:
    """The best value of one evaluation metric so far; the checkpoint that reached it is also saved as best."""

    metric: str  # a key `evaluate` returns, e.g. "eval/fld"
    mode: Literal["min", "max"]
    value: float = math.nan  # NaN: none yet (or the value a resumed checkpoint stored)

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            self.value = math.inf if self.mode == "min" else -math.inf

    def update(self, metrics: Mapping[str, float]) -> bool:
        """Take `metrics[metric]` if it beats the best so far; True when it did."""
        value = metrics.get(self.metric)
        if value is None or not (value < self.value if self.mode == "min" else value > self.value):
            return False
        self.value = value
        return True

    @property
    def found(self) -> bool:
        return math.isfinite(self.value)


def fit(
    tracker,
    *,
    step: int,
    total_steps: int,
    eval_every: int,
    update: Callable[[int], Mapping[str, torch.Tensor | float]],
    evaluate: Callable[[int], dict[str, float]],
    checkpoint_tree: Callable[[int], dict],
    best: Best | None = None,
) -> tuple[int, dict[str, float]]:
    """Train from `step` to `total_steps`; returns (the step reached, the last evaluation's metrics).

    update(step)          one gradient step, the `step`-th; returns what to log ("losses/...": tensors or floats,
                          read only when logged, so the step does not wait on the device)
    evaluate(step)        test metrics (logged by it, with its images); returned as the run's summary
    checkpoint_tree(step) the tree to save (generative.common.make_tree); called after `best` has taken the
                          evaluation, so the tree can record the best value so far
    """
    metrics: dict[str, float] = {}
    while step < total_steps:
        logged = update(step + 1)
        step += 1
        at_eval = is_eval_step(step, eval_every, total_steps)
        if step % LOG_EVERY == 0 or at_eval:
            values = {name: float(value) for name, value in logged.items()}
            ensure_finite(step, values)
            tracker.log(values, step)
        if at_eval:
            metrics = evaluate(step)
            improved = best is not None and best.update(metrics)
            tree = checkpoint_tree(step)
            tracker.checkpoint(tree, step)
            if improved:
                tracker.checkpoint(tree, step, best=True, metric=best.value)
            if tracker.should_stop():
                break
    return step, metrics


# --- the checkpoint tree ----------------------------------------------------------------------------------


def make_tree(
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    *,
    specs: dict[str, dict],
    **extra,
) -> dict:
    return {
        "model": {name: module.state_dict() for name, module in models.items()},
        "specs": specs,
        "optimizer": {name: opt.state_dict() for name, opt in optimizers.items()},
        "step": int(step),
        "rng": rng_state(),
        **extra,
    }


def restore_tree(
    tree: dict, models: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer] | None = None
) -> int:
    """Load every part (and optimizer) from `tree`; returns the step to continue from."""
    parts = _mapping(tree, "model")
    for name, module in models.items():
        state = parts.get(name)
        if state is None:
            raise CheckpointError(f"checkpoint holds no '{name}' (model parts: {sorted(parts)})")
        io.load_module_state(module, state, f"model.{name}")
    if optimizers:
        states = _mapping(tree, "optimizer")
        for name, optimizer in optimizers.items():
            if name not in states:
                raise CheckpointError(f"checkpoint holds no optimizer '{name}' (has: {sorted(states)})")
            io.load_optimizer_state(optimizer, states[name], f"optimizer.{name}")
    if optimizers and "rng" in tree:
        restore_rng_state(tree["rng"])
    step = tree.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint 'step' must be a whole number >= 0, got {step!r}")
    return step


def _mapping(tree: dict, key: str) -> dict:
    value = tree.get(key) if isinstance(tree, dict) else None
    if not isinstance(value, dict):
        raise CheckpointError(f"checkpoint '{key}' must be a mapping of parts, got {type(value).__name__}")
    return value


def spec_of(tree: dict, part: str) -> dict:
    try:
        return tree["specs"][part]
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint holds no spec for '{part}' (is it from another kind of run?)") from None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch CPU threads (0 = leave torch's default), restoring the old count afterwards.

    Small-batch CPU training on a shared 2-core machine is several times faster with one thread.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def optimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """One gradient step on `loss`; returns it detached (for logging, without waiting on the device)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, *, enabled: bool = True, step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate annealed to 0 over `total_steps` along half a cosine (Loshchilov & Hutter 2017), constant
    when not `enabled`; call its step() after each optimizer step. `step` continues a resumed run."""

    def factor(s: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(s / total_steps, 1.0))) if enabled else 1.0

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    schedule.last_epoch = step
    for group, base_lr in zip(optimizer.param_groups, schedule.base_lrs):
        group["lr"] = base_lr * factor(step)
    return schedule


def translate(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift each image by a random whole number of pixels in [-shift, shift] on each axis (zeros fill in)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    offsets = torch.randint(-shift, shift + 1, (n, 2), device=x.device).float()
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -2 * offsets[:, 0] / w, -2 * offsets[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def sample(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A random batch (with replacement across steps, uniform within), drawn from torch's global RNG."""
    return x[torch.randint(len(x), (batch_size,), device=x.device)]


def ensure_finite(step: int, values: Mapping[str, float]) -> None:
    """Raise TrainingDiverged when a logged loss is NaN or infinite (checked before logging and evaluating)."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at step {step}: training diverged; the newest checkpoint is the "
            "last good one (lower the learning rate)"
        )


def is_eval_step(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def normal_init(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN init (Radford et al. 2016): conv and linear weights N(0, 0.02), norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Spectral normalisation on every conv and linear layer (Miyato et al. 2018)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d | nn.Linear):
            setattr(module, name, spectral_norm(child))
        else:
            spectral_norm_all(child)
    return module
