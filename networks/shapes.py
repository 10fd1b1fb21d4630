"""Shape arithmetic: the conv output formula and a free dummy forward on the meta device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from networks.errors import ConfigError


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1) -> int:
    """Output side of a conv or pooling layer: floor((n + 2p - f) / s) + 1.

    Seed notes: a 6x6 input and a 3x3 filter give 4x4; padding 1 keeps 6x6; stride 2 on 7x7 with a
    3x3 filter gives 3x3.
    """
    return (n + 2 * p - f) // s + 1


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases; buffers such as BatchNorm running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def output_shape(module: nn.Module, input_shape: Sequence[int], *, field: str = "network") -> tuple[int, ...]:
    """Shape of `module`'s output for one input of `input_shape` (batch dim dropped).

    Like SB3's NatureCNN it runs a dummy forward pass, but on the meta device: shapes only, no
    arithmetic and no memory, so it is instant even for VGG-16 at 224x224. A layer that cannot take
    its input becomes a one-line ConfigError naming the network input shape and the layer's input.
    """
    fakes = {
        name: torch.empty_like(t, device="meta") for name, t in [*module.named_parameters(), *module.named_buffers()]
    }
    last: list = [None, None, None]  # (name, class, input shape) of the layer being run

    def remember(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                last[:] = [name, type(_module).__name__, tuple(args[0].shape[1:])]

        return hook

    handles = [m.register_forward_pre_hook(remember(n)) for n, m in module.named_modules() if n]
    x = torch.empty(2, *input_shape, device="meta")  # batch 2: BatchNorm refuses a batch of 1 in training
    try:
        with torch.no_grad():
            y = functional_call(module, fakes, (x,))
    except (RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"layer '{last[0]}' ({last[1]}) gets {last[2]}" if last[0] else "the first layer"
        raise ConfigError(
            field, f"input shape {tuple(input_shape)} is too small for this network: {where} ({reason})"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return tuple(y.shape[1:])
