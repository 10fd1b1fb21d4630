"""The maths of deep Q-learning as pure functions, each unit-tested against numbers worked out by hand.

    target   y = r + γ^k · (1 − terminated) · max_a' Q_target(s', a')                 (Mnih et al. 2015)
    double   y = r + γ^k · (1 − terminated) · Q_target(s', argmax_a' Q_online(s', a'))  (van Hasselt et al. 2016)
    n-step   r = Σ_{i<k} γ^i r_i, bootstrapping from the state k steps on              (Sutton 1988)
    PER      P(i) = p_i^α / Σ_j p_j^α,  w_i = (N · P(i))^−β / max_j w_j                (Schaul et al. 2016)

`k` is the number of rewards folded into r (1 for one-step DQN; fewer than n when the episode ended
sooner), so the replay stores `discount = γ^k` per transition. A terminated episode does not bootstrap;
a truncated one (time limit) does, from its last observation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def td_target(
    rewards: torch.Tensor,
    next_q_target: torch.Tensor,
    terminated: torch.Tensor,
    discounts: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """The bootstrapped target y, (B,). next_q_*: (B, A); the rest (B,).

    With `next_q_online` this is the Double DQN target: the online net picks a', the target net values it.
    """
    if next_q_online is None:
        next_value = next_q_target.amax(dim=-1)  # (B,)
    else:
        best = next_q_online.argmax(dim=-1, keepdim=True)  # (B, 1)
        next_value = next_q_target.gather(-1, best).squeeze(-1)  # (B,)
    return rewards + discounts * (1.0 - terminated) * next_value


def td_loss(
    q_taken: torch.Tensor, targets: torch.Tensor, kind: str = "huber", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean TD loss over the batch: huber (smooth L1, δ=1, as SB3 and Mnih et al.) or mse.

    `weights` (B,) are prioritized replay's importance weights; the mean is then Σ w_i l_i / B.
    """
    if kind == "huber":
        elementwise = F.smooth_l1_loss(q_taken, targets, reduction="none")
    elif kind == "mse":
        elementwise = F.mse_loss(q_taken, targets, reduction="none")
    else:
        raise ValueError(f"unknown loss '{kind}' (huber or mse)")
    if weights is not None:
        elementwise = elementwise * weights
    return elementwise.mean()


def n_step_return(rewards: np.ndarray | list[float], gamma: float) -> float:
    """Σ_i γ^i r_i over the k rewards given (k ≤ n; fewer when the episode ended first)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return float(np.sum(rewards * gamma ** np.arange(len(rewards))))


def per_probabilities(priorities: np.ndarray, alpha: float) -> np.ndarray:
    """P(i) = p_i^α / Σ_j p_j^α for the stored priorities p (all > 0)."""
    scaled = np.asarray(priorities, dtype=np.float64) ** alpha
    return scaled / scaled.sum()


def importance_weights(probabilities: np.ndarray, size: int, beta: float, min_probability: float) -> np.ndarray:
    """w_i = (N · P(i))^−β / max_j w_j: corrects the bias of prioritized sampling; the largest weight is 1.

    The max runs over the whole buffer, whose largest weight belongs to its least likely transition
    (`min_probability`), as in Schaul et al. 2016 (Algorithm 1) and Dopamine.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    max_weight = (size * min_probability) ** -beta
    return (size * probabilities) ** -beta / max_weight
