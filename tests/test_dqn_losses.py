"""DQN maths against numbers worked out by hand (agents/losses.py, agents/schedules.py)."""

import numpy as np
import pytest
import torch

from agents import losses
from agents.schedules import crossed, linear_schedule

REWARDS = torch.tensor([1.0, 0.5, -1.0])
NEXT_Q_TARGET = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.2]])
TERMINATED = torch.tensor([0.0, 0.0, 1.0])
DISCOUNTS = torch.tensor([0.9, 0.81, 0.9])  # γ, γ² (a 2-step row), γ


def test_td_target_bootstraps_from_the_max_unless_terminated():
    # 1 + 0.9·max(1, 2) = 2.8;  0.5 + 0.81·max(3, −1) = 2.93;  terminated: −1 + 0 = −1
    target = losses.td_target(REWARDS, NEXT_Q_TARGET, TERMINATED, DISCOUNTS)
    assert target.tolist() == pytest.approx([2.8, 2.93, -1.0])


def test_double_q_target_lets_the_online_net_pick_and_the_target_net_value():
    next_q_online = torch.tensor([[5.0, 1.0], [0.0, 2.0], [1.0, 0.0]])  # argmax: 0, 1, 0
    # 1 + 0.9·Q_target[0, 0] = 1.9;  0.5 + 0.81·Q_target[1, 1] = 0.5 − 0.81 = −0.31;  terminated: −1
    target = losses.td_target(REWARDS, NEXT_Q_TARGET, TERMINATED, DISCOUNTS, next_q_online)
    assert target.tolist() == pytest.approx([1.9, -0.31, -1.0])


def test_n_step_return_sums_discounted_rewards():
    assert losses.n_step_return([1.0, 2.0, 3.0], 0.5) == pytest.approx(1 + 0.5 * 2 + 0.25 * 3)  # 2.75
    assert losses.n_step_return([4.0], 0.5) == 4.0
    assert losses.n_step_return([1.0, 1.0, 1.0, 1.0], 1.0) == 4.0


def test_td_loss_huber_and_mse_by_hand():
    q = torch.tensor([0.0, 2.0, 5.0])
    y = torch.tensor([0.5, 0.0, 5.0])  # |δ| = 0.5, 2, 0
    # huber: 0.5·0.5² = 0.125 (quadratic inside 1), 2 − 0.5 = 1.5 (linear outside), 0 -> mean 1.625 / 3
    assert losses.td_loss(q, y, "huber").item() == pytest.approx(1.625 / 3)
    assert losses.td_loss(q, y, "mse").item() == pytest.approx((0.25 + 4.0) / 3)
    weights = torch.tensor([1.0, 0.5, 2.0])  # 0.125·1 + 1.5·0.5 + 0·2 = 0.875
    assert losses.td_loss(q, y, "huber", weights).item() == pytest.approx(0.875 / 3)


def test_masked_td_loss_by_hand_is_the_mean_of_the_kept_steps_and_zero_when_none_is_kept():
    q = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])  # two members' (P, B): |δ| = 1, 2, 4
    y = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # member 0 keeps steps 0 and 2; member 1 none
    # huber: 0.5, 1.5, 3.5 -> member 0 (0.5 + 3.5) / 2 = 2; member 1 keeps nothing: 0 (no loss, no gradient)
    assert losses.td_loss(q, y, "huber", mask=mask).tolist() == [2.0, 0.0]
    assert losses.td_loss(q, y, "mse", mask=mask).tolist() == [(1.0 + 16.0) / 2, 0.0]
    weights = torch.tensor([[2.0, 1.0, 0.5], [1.0, 1.0, 1.0]])  # (0.5·2 + 3.5·0.5) / 2 = 1.375
    assert losses.td_loss(q, y, "huber", weights, mask).tolist() == [1.375, 0.0]
    q.requires_grad_(True)
    losses.td_loss(q, y, "huber", mask=mask).sum().backward()
    assert q.grad.tolist() == [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]  # ∂/∂q of (huber(1) + huber(4)) / 2


def test_per_probabilities_by_hand():
    # p^α with α = 0.5: 1, 2, 3, 4 -> divided by 10
    probabilities = losses.per_probabilities(np.array([1.0, 4.0, 9.0, 16.0]), alpha=0.5)
    assert probabilities.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert losses.per_probabilities(np.array([1.0, 4.0]), alpha=0.0).tolist() == [0.5, 0.5]  # α = 0: uniform


def test_importance_weights_by_hand():
    probabilities = np.array([0.1, 0.2, 0.3, 0.4])
    # β = 1: (N·P)^−1 = 2.5, 1.25, 0.8333, 0.625; the largest (least likely, P = 0.1) is 2.5
    weights = losses.importance_weights(probabilities, size=4, beta=1.0, min_probability=0.1)
    assert weights.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    # β = 0.5: the square roots of those
    weights = losses.importance_weights(probabilities, size=4, beta=0.5, min_probability=0.1)
    assert weights.tolist() == pytest.approx([1.0, 0.5**0.5, (1 / 3) ** 0.5, 0.5])
    # β = 0: no correction
    assert losses.importance_weights(probabilities, 4, 0.0, 0.1).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_linear_schedule_and_crossed():
    assert linear_schedule(1.0, 0.04, 8000, 0) == 1.0
    assert linear_schedule(1.0, 0.04, 8000, 4000) == pytest.approx(0.52)
    assert linear_schedule(1.0, 0.04, 8000, 9000) == pytest.approx(0.04)
    assert linear_schedule(1.0, 0.04, 0, 0) == 0.04
    assert crossed(998, 1002, 1000) and not crossed(1000, 1004, 1000) and crossed(999, 1000, 1000)
    assert not crossed(0, 10, 0)
