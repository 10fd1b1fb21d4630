"""LSTM / GRU encoders that carry their state across calls and reset it where an episode ended.

    net = build({"type": "lstm", "hidden_size": 128}, (4,))
    features, state = net(obs_seq, state, done)   # obs (B, T, 4), done (B, T) -> features (B, T, 128)
    features, state = net(obs, state)             # one step: obs (B, 4) -> features (B, 128)

The state is always a tuple of tensors shaped (num_layers, B, hidden_size): (h, c) for an LSTM, (h,)
for a GRU, so callers can mask, store and checkpoint it without knowing which cell it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from networks.errors import ConfigError
from networks.spec import check_fields, choice, positive_int

RECURRENT_FIELDS = ("type", "hidden_size", "num_layers", "pre")
CELLS = ("lstm", "gru")
State = tuple[torch.Tensor, ...]


class RecurrentEncoder(nn.Module):
    """Optional per-step `pre` network, then a multi-layer LSTM or GRU, then an optional Linear."""

    def __init__(
        self,
        *,
        cell: str,
        input_shape: Sequence[int],
        hidden_size: int,
        num_layers: int = 1,
        pre: nn.Module | None = None,
        output_dim: int | None = None,
    ):
        super().__init__()
        self.cell = choice("cell", cell, CELLS, what="cell")
        self.input_shape = tuple(input_shape)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.pre = pre
        rnn_input = pre.output_dim if pre is not None else math.prod(input_shape)
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(rnn_input, hidden_size, num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, output_dim) if output_dim is not None else None
        self.output_dim = output_dim if output_dim is not None else hidden_size

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """All-zero state for `batch_size` sequences, the state every episode starts from."""
        dtype = self.rnn.weight_ih_l0.dtype  # match the weights (a .double() net needs double states)
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)

    def forward(
        self, x: torch.Tensor, state: State | None = None, done: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """x (B, T, *input_shape) or one step (B, *input_shape); done (B, T) or (B,), bool or 0/1.

        done[b, t] true zeroes sequence b's state *before* step t is processed (step t is the first
        observation of a new episode). Returns features (B, T, output_dim) or (B, output_dim).
        """
        one_step = x.dim() == len(self.input_shape) + 1
        if one_step:
            x = x.unsqueeze(1)
            done = None if done is None else done.reshape(-1, 1)
        elif x.dim() != len(self.input_shape) + 2:
            raise ValueError(
                f"expected x of shape (B, T, *{self.input_shape}) or (B, *{self.input_shape}), got {tuple(x.shape)}"
            )
        batch, steps = x.shape[:2]
        flat = x.reshape(batch * steps, *self.input_shape)
        flat = self.pre(flat) if self.pre is not None else flat.flatten(1)
        x = flat.reshape(batch, steps, -1)  # (B, T, rnn_input)
        if state is None:
            state = self.initial_state(batch, x.device)

        if done is None:
            features, state = self._run(x, state)
        else:
            features, state = self._run_with_resets(x, state, done.reshape(batch, steps))
        if self.out is not None:
            features = self.out(features)
        return (features[:, 0] if one_step else features), state

    def _run_with_resets(self, x: torch.Tensor, state: State, done: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One fused RNN call per stretch of steps between resets: loop only where some done is set."""
        keep = 1.0 - done.to(x.dtype)  # (B, T): 0 where the state must restart
        reset_steps = torch.nonzero(done.any(dim=0)).flatten().tolist()
        bounds = sorted({0, *reset_steps, x.shape[1]})
        chunks = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            mask = keep[:, start].view(1, -1, 1)  # (1, B, 1) against state (layers, B, H)
            state = tuple(s * mask for s in state)
            out, state = self._run(x[:, start:end], state)
            chunks.append(out)
        return torch.cat(chunks, dim=1), state

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.cell == "lstm":
            out, (h, c) = self.rnn(x, (state[0].contiguous(), state[1].contiguous()))
            return out, (h, c)
        out, h = self.rnn(x, state[0].contiguous())
        return out, (h,)


def build_recurrent(
    spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str, output_dim: int | None
) -> RecurrentEncoder:
    """{type: lstm|gru, hidden_size, num_layers, pre: <feed-forward spec applied to every step>}."""
    from networks.builder import build  # `pre` is any feed-forward spec; builder imports this module

    cell = spec["type"]
    check_fields(field, spec, RECURRENT_FIELDS, f"type {cell}")
    pre = None
    if spec.get("pre") is not None:
        pre = build(spec["pre"], input_shape, field=f"{field}.pre")
        if isinstance(pre, RecurrentEncoder):
            raise ConfigError(f"{field}.pre", "must be a feed-forward spec (mlp, cnn, ...), not a recurrent one")
    return RecurrentEncoder(
        cell=cell,
        input_shape=input_shape,
        hidden_size=positive_int(f"{field}.hidden_size", spec.get("hidden_size", 256)),
        num_layers=positive_int(f"{field}.num_layers", spec.get("num_layers", 1)),
        pre=pre,
        output_dim=output_dim,
    )
