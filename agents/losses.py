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
    q_taken: torch.Tensor,
    targets: torch.Tensor,
    kind: str = "huber",
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean TD loss over the batch (the last axis): huber (smooth L1, δ=1, as SB3 and Mnih et al.) or mse. For
    (B,) inputs a scalar; for a population's (P, B) one mean per member, (P,).

    `weights` (B,) are prioritized replay's importance weights; the mean is then Σ w_i l_i / B. `mask` (0/1) keeps
    only some steps: the mean is then over the kept ones (Σ m_i w_i l_i / Σ m_i), and a row that keeps none has
    loss 0 (and no gradient) rather than the NaN of an empty mean, which nan_policy would take for a divergence.
    """
    if kind == "huber":
        elementwise = F.smooth_l1_loss(q_taken, targets, reduction="none")
    elif kind == "mse":
        elementwise = F.mse_loss(q_taken, targets, reduction="none")
    else:
        raise ValueError(f"unknown loss '{kind}' (huber or mse)")
    if weights is not None:
        elementwise = elementwise * weights
    if mask is not None:
        return (elementwise * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return elementwise.mean(-1)


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


def q_lambda_targets(
    rewards: torch.Tensor,
    next_q: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Peng's Q(λ) targets over a rollout of T steps, as PQN uses them (Gallici et al. 2025; purejaxql), (T, ...).

        G_t = r_t + γ (1 − term_t) [λ G_{t+1} + (1 − λ) max_a Q(s_{t+1}, a)]       within an episode
        G_t = r_t + γ (1 − term_t) max_a Q(s_{t+1}, a)                              at t = T − 1, or a truncation

    λ = 0 gives one-step Q-learning targets; λ = 1 the discounted return to the episode's end (Monte Carlo),
    bootstrapped once from the last step's max Q. rewards, terminated, truncated: (T, ...) with step t's outcome;
    next_q: (T, ..., A), the Q values of s_{t+1}, the observation step t returned.

    Episode ends follow Gymnasium's vector envs with NEXT_STEP autoreset: the step that ends an episode returns
    its final observation, so s_{t+1} is the true next state even at a time limit. A termination does not
    bootstrap; a truncation bootstraps from the final observation's max Q and does not carry G across into the
    next episode. (purejaxql and CleanRL's pqn.py get the reset observation back instead and treat a truncation
    as a termination.) The step after an episode's end is only a reset (its action is ignored): it holds no
    transition, so its target means nothing and the caller leaves it out of the loss, as it does a rollout's
    first step when the previous rollout ended an episode on its last step.
    """
    next_value = next_q.amax(dim=-1)  # (T, ...)
    bootstraps = 1.0 - terminated.to(next_value.dtype)
    continues = 1.0 - torch.maximum(terminated, truncated).to(next_value.dtype)  # G_{t+1} is the same episode
    targets = torch.empty_like(next_value)
    following = next_value[-1]  # G_T does not exist: the last step bootstraps in full (λ's weight goes to max Q)
    for t in reversed(range(rewards.shape[0])):
        carried = lam * continues[t]  # the weight on G_{t+1}; 0 at an episode's end
        following = rewards[t] + gamma * bootstraps[t] * (carried * following + (1.0 - carried) * next_value[t])
        targets[t] = following
    return targets
