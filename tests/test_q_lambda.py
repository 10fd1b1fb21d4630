"""Q(λ) targets (agents/losses.py) against numbers worked out by hand.

One rollout of three steps, γ = 0.5, rewards 1, 2, 3. The max Q of the observation each step returned is
10, 20, 30 (the maximum of two actions, so that the max is taken inside the function).
"""

import pytest
import torch

from agents.losses import q_lambda_targets

GAMMA = 0.5
REWARDS = torch.tensor([1.0, 2.0, 3.0])
NEXT_Q = torch.tensor([[10.0, 0.0], [-1.0, 20.0], [30.0, 5.0]])  # max: 10, 20, 30
NONE = torch.zeros(3, dtype=torch.bool)


def flags(*steps: int) -> torch.Tensor:
    flag = torch.zeros(3, dtype=torch.bool)
    flag[list(steps)] = True
    return flag


def targets(lam: float, terminated=NONE, truncated=NONE) -> list[float]:
    return q_lambda_targets(REWARDS, NEXT_Q, terminated, truncated, GAMMA, lam).tolist()


def test_lambda_0_gives_one_step_targets():
    # r + γ max Q(s'): 1 + 5, 2 + 10, 3 + 15
    assert targets(0.0) == pytest.approx([6.0, 12.0, 18.0])


def test_lambda_1_gives_the_discounted_return_bootstrapped_once_at_the_end():
    # G2 = 3 + 0.5·30 = 18;  G1 = 2 + 0.5·18 = 11;  G0 = 1 + 0.5·11 = 6.5
    assert targets(1.0) == pytest.approx([6.5, 11.0, 18.0])


def test_lambda_1_with_a_termination_is_the_monte_carlo_return():
    # the episode terminates at step 2: G2 = 3;  G1 = 2 + 0.5·3 = 3.5;  G0 = 1 + 0.5·3.5 = 2.75 = 1 + 0.5·2 + 0.25·3
    assert targets(1.0, terminated=flags(2)) == pytest.approx([2.75, 3.5, 3.0])


def test_lambda_half_mixes_the_return_and_max_q():
    # G2 = 18;  G1 = 2 + 0.5·(0.5·18 + 0.5·20) = 11.5;  G0 = 1 + 0.5·(0.5·11.5 + 0.5·10) = 6.375
    assert targets(0.5) == pytest.approx([6.375, 11.5, 18.0])


def test_a_termination_does_not_bootstrap():
    # step 1 terminates: G1 = 2;  G0 = 1 + 0.5·(0.5·2 + 0.5·10) = 4;  step 2 belongs to the next episode: 18
    assert targets(0.5, terminated=flags(1)) == pytest.approx([4.0, 2.0, 18.0])


def test_a_truncation_bootstraps_from_the_final_observation_and_stops_the_return_there():
    # step 1 hits the time limit: G1 = 2 + 0.5·20 = 12 (not 11.5: G2 is another episode's);
    # G0 = 1 + 0.5·(0.5·12 + 0.5·10) = 6.5
    assert targets(0.5, truncated=flags(1)) == pytest.approx([6.5, 12.0, 18.0])
    # with λ = 1 too, the truncated step bootstraps instead of carrying the next episode's return
    assert targets(1.0, truncated=flags(1)) == pytest.approx([1 + 0.5 * 12, 12.0, 18.0])


def test_terminated_and_truncated_together_count_as_terminated():
    assert targets(0.5, terminated=flags(1), truncated=flags(1)) == targets(0.5, terminated=flags(1))


def test_envs_are_independent_columns():
    # (T, N) = (3, 2): column 0 as above with λ = 0.5, column 1 terminated at step 1
    rewards = torch.stack([REWARDS, REWARDS], dim=1)
    next_q = torch.stack([NEXT_Q, NEXT_Q], dim=1)  # (3, 2, 2)
    terminated = torch.stack([NONE, flags(1)], dim=1)
    result = q_lambda_targets(rewards, next_q, terminated, torch.zeros_like(terminated), GAMMA, 0.5)
    assert result.shape == (3, 2)
    assert result[:, 0].tolist() == pytest.approx([6.375, 11.5, 18.0])
    assert result[:, 1].tolist() == pytest.approx([4.0, 2.0, 18.0])


def test_float_flags_work_as_bools():
    as_float = q_lambda_targets(REWARDS, NEXT_Q, flags(1).float(), NONE.float(), GAMMA, 0.5)
    assert as_float.tolist() == pytest.approx([4.0, 2.0, 18.0])


def test_the_recursion_equals_the_forward_view_weighted_n_step_returns():
    """G^λ_t = (1 − λ) Σ_{n<T−t} λ^{n−1} G^(n)_t + λ^{T−t−1} G^(T−t)_t (Sutton & Barto 2018, eq. 12.9),
    with G^(n)_t = Σ_{k<n} γ^k r_{t+k} + γ^n max Q(s_{t+n}): written out directly, no episode ends."""
    generator = torch.Generator().manual_seed(0)
    steps, gamma, lam = 6, 0.9, 0.7
    rewards = torch.randn(steps, generator=generator, dtype=torch.float64)
    next_q = torch.randn(steps, 3, generator=generator, dtype=torch.float64)
    value = next_q.amax(-1)  # value[k] = max Q(s_{k+1})

    def n_step(t: int, n: int) -> float:
        return sum(gamma**k * rewards[t + k] for k in range(n)) + gamma**n * value[t + n - 1]

    expected = []
    for t in range(steps):
        horizon = steps - t
        weighted = sum((1 - lam) * lam ** (n - 1) * n_step(t, n) for n in range(1, horizon))
        expected.append(float(weighted + lam ** (horizon - 1) * n_step(t, horizon)))
    none = torch.zeros(steps, dtype=torch.bool)
    assert q_lambda_targets(rewards, next_q, none, none, gamma, lam).tolist() == pytest.approx(expected, abs=1e-12)
