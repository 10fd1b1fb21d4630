"""What every generative trainer shares: the checkpoint tree layout, resuming, threads, batches, init.

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
from collections.abc import Iterator

import torch
from torch import nn

from networks import io
from networks.errors import CheckpointError, TrainingDiverged
from networks.runtime import restore_rng_state, rng_state


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


def sample(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A random batch (with replacement across steps, uniform within), drawn from torch's global RNG."""
    return x[torch.randint(len(x), (batch_size,), device=x.device)]


def ensure_finite(step: int, **losses: float) -> None:
    """Raise TrainingDiverged when a loss is NaN or infinite (checked before logging and evaluating)."""
    bad = [name for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} loss at step {step}: training diverged; the newest checkpoint is the "
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
