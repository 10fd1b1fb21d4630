"""Output heads that sit on an encoder's features: plain Q values and the dueling split."""

from __future__ import annotations

import torch
from torch import nn


class QHead(nn.Module):
    """Q(s, .) = W f + b: one value per action. (B, in_dim) -> (B, n_actions)."""

    def __init__(self, in_dim: int, n_actions: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_actions)
        self.output_dim = n_actions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')  (Wang et al. 2016, eq. 9).

    Subtracting the mean advantage makes V and A identifiable: the advantages average to zero, so
    V is the mean Q value. `hidden` adds one ReLU layer of that width to each stream, as in the paper.
    """

    def __init__(self, in_dim: int, n_actions: int, hidden: int | None = None):
        super().__init__()
        self.value = _stream(in_dim, 1, hidden)
        self.advantage = _stream(in_dim, n_actions, hidden)
        self.output_dim = n_actions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value = self.value(features)  # (B, 1)
        advantage = self.advantage(features)  # (B, n_actions)
        return value + advantage - advantage.mean(dim=-1, keepdim=True)


def _stream(in_dim: int, out_dim: int, hidden: int | None) -> nn.Module:
    if hidden is None:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
