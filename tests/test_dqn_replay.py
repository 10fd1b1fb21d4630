"""Replay components: n-step folding, autoreset steps never stored, wrap-around, the sum tree, PER sampling."""

import numpy as np
import pytest
import torch

import envs
from agents import losses
from agents.replay import ReplayBuffer, SumTree
from networks import io


def one_env_buffer(n_step=1, gamma=0.5, capacity=16, **kwargs):
    return ReplayBuffer(capacity, (1,), np.float32, 1, gamma=gamma, n_step=n_step, **kwargs)


def feed(buffer, steps):
    """steps: (obs, action, reward, next_obs, terminated, truncated) for env 0 of member 0 (a population of one)."""
    for obs, action, reward, next_obs, terminated, truncated in steps:
        buffer.add(
            np.array([[[obs]]], np.float32),
            np.array([[action]]),
            np.array([[reward]], np.float32),
            np.array([[[next_obs]]], np.float32),
            np.array([[terminated]]),
            np.array([[truncated]]),
            np.array([[True]]),
        )


def rows(buffer, member=0):
    """(obs, reward, next_obs, terminated, discount) per stored row of `member`, as an (N, 5) array."""
    n, m = int(buffer.sizes[member]), member
    return np.stack(
        [
            buffer.obs[m, :n, 0],
            buffer.rewards[m, :n],
            buffer.next_obs[m, :n, 0],
            buffer.terminated[m, :n],
            buffer.discounts[m, :n],
        ],
        axis=1,
    )


# An episode of five steps: obs k -> k+1 with reward k+1 (1, 2, 3, 4, 5), ending at obs 5.
EPISODE = [(k, 0, float(k + 1), k + 1, False, False) for k in range(5)]


def test_three_step_returns_by_hand_terminated_episode_flushes_without_bootstrap():
    buffer = one_env_buffer(n_step=3, gamma=0.5)
    feed(buffer, EPISODE[:4] + [(4, 0, 5.0, 5, True, False)])
    np.testing.assert_allclose(
        rows(buffer),
        [
            # obs, Σγ^i r_i,                 bootstrap obs, terminated, γ^k
            (0, 1 + 0.5 * 2 + 0.25 * 3, 3, 0, 0.125),  # 2.75
            (1, 2 + 0.5 * 3 + 0.25 * 4, 4, 0, 0.125),  # 4.5
            (2, 3 + 0.5 * 4 + 0.25 * 5, 5, 1, 0.125),  # 6.25, the episode ended inside the window
            (3, 4 + 0.5 * 5, 5, 1, 0.25),  # 6.5, only two rewards left
            (4, 5, 5, 1, 0.5),
        ],
        rtol=1e-6,
    )


def test_truncated_episode_flushes_and_still_bootstraps():
    buffer = one_env_buffer(n_step=3, gamma=0.5)
    feed(buffer, EPISODE[:4] + [(4, 0, 5.0, 5, False, True)])
    assert rows(buffer)[:, 3].tolist() == [0, 0, 0, 0, 0]  # nothing terminated: all bootstrap
    assert rows(buffer)[:, 4].tolist() == [0.125, 0.125, 0.125, 0.25, 0.5]


def test_one_step_rows_hold_gamma_and_the_env_flags():
    buffer = one_env_buffer(n_step=1, gamma=0.9)
    feed(buffer, EPISODE[:2] + [(2, 1, 3.0, 3, True, False)])
    np.testing.assert_allclose(rows(buffer), [(0, 1, 1, 0, 0.9), (1, 2, 2, 0, 0.9), (2, 3, 3, 1, 0.9)], rtol=1e-6)
    assert buffer.actions[0, :3].tolist() == [0, 0, 1]


def test_n_step_windows_are_per_env():
    buffer = ReplayBuffer(16, (1,), np.float32, 2, gamma=1.0, n_step=2)
    for t in range(3):  # env 0 earns 1 per step, env 1 earns 10
        buffer.add(
            np.array([[[t], [t]]], np.float32),
            np.zeros((1, 2), np.int64),
            np.array([[1.0, 10.0]], np.float32),
            np.array([[[t + 1], [t + 1]]], np.float32),
            np.zeros((1, 2), bool),
            np.zeros((1, 2), bool),
            np.array([[True, True]]),
        )
    assert sorted(buffer.rewards[0, : len(buffer)].tolist()) == [2.0, 2.0, 20.0, 20.0]


def test_autoreset_steps_are_never_stored():
    """Drive CartPole's native vector env as the trainer does: the step after an episode ends only resets."""
    env = envs.make("CartPole-v1", num_envs=3, seed=0)
    buffer = ReplayBuffer(5000, (4,), np.float32, 3, gamma=0.99)
    obs, _ = env.reset()
    after_end = np.zeros(3, bool)
    valid_steps = 0
    rng = np.random.default_rng(0)
    for _ in range(300):
        actions = rng.integers(2, size=3)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        valid = ~after_end
        buffer.add(*(x[None] for x in (obs, actions, rewards, next_obs, terminated, truncated, valid)))
        valid_steps += int(valid.sum())
        after_end = terminated | truncated
        obs = next_obs
    assert after_end.any() or buffer.terminated[0, : len(buffer)].sum() > 0  # episodes did end
    assert len(buffer) == valid_steps < 900
    # CartPole pays 1 per real step; its reset steps pay 0, so any stored 0 would be a reset step
    assert (buffer.rewards[0, : len(buffer)] == 1.0).all()
    # a stored transition never jumps from a terminal state to a fresh start
    stored = slice(0, len(buffer))
    moved = np.abs(buffer.next_obs[0, stored] - buffer.obs[0, stored]).max(axis=1)
    assert moved.max() < 0.5


def test_ring_wraps_around():
    buffer = one_env_buffer(capacity=4)
    feed(buffer, [(k, 0, float(k), k + 1, False, False) for k in range(6)])
    assert len(buffer) == 4 and buffer.pos[0] == 2
    assert buffer.obs[0, :, 0].tolist() == [4, 5, 2, 3]


def test_uniform_sampling_shapes_and_dtypes():
    buffer = ReplayBuffer(100, (4,), np.float32, 1, gamma=0.99)
    for k in range(50):
        buffer.add(
            np.full((1, 1, 4), k, np.float32),
            np.array([[k % 2]]),
            np.ones((1, 1), np.float32),
            np.full((1, 1, 4), k + 1, np.float32),
            np.zeros((1, 1), bool),
            np.zeros((1, 1), bool),
            np.ones((1, 1), bool),
        )
    batch = buffer.sample(8, np.array([3]))
    assert batch.obs.shape == (1, 3, 8, 4) and batch.obs.dtype == torch.float32
    assert batch.actions.shape == (1, 3, 8) and batch.actions.dtype == torch.int64
    assert batch.rewards.dtype == batch.terminated.dtype == batch.discounts.dtype == torch.float32
    assert (batch.next_obs - batch.obs == 1).all() and batch.indices.max() < 50 and batch.weights is None


def test_sum_tree_by_hand():
    tree = SumTree(5)  # 8 leaves
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    found = tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99]))
    assert found.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    tree.update(np.array([1, 1]), np.array([7.0, 7.0]))  # repeated index
    assert tree.total == 15.0 and tree.find(np.array([7.99, 8.0])).tolist() == [1, 2]


def test_prioritized_sampling_follows_priorities_and_weights():
    buffer = one_env_buffer(capacity=4, prioritized=True, alpha=1.0, priority_eps=0.0, rngs=[np.random.default_rng(0)])
    feed(buffer, [(k, 0, 0.0, k, False, False) for k in range(4)])
    one = np.array([True])
    buffer.update_priorities(torch.arange(4)[None], torch.tensor([[1.0, -2.0, 3.0, 4.0]]), one)  # |δ| is used
    assert buffer.trees[0].leaves[:4].tolist() == [1.0, 2.0, 3.0, 4.0] and buffer.max_priority[0] == 4.0
    counts = np.zeros(4)
    for _ in range(500):
        batch = buffer.sample_prioritized(20, np.array([1.0]), one)
        counts += np.bincount(batch.indices[0].numpy(), minlength=4)
    assert (counts / counts.sum()).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.01)
    expected = losses.importance_weights(np.array([0.1, 0.2, 0.3, 0.4]), 4, 1.0, 0.1)  # 1, 1/2, 1/3, 1/4
    assert batch.weights[0].numpy() == pytest.approx(expected[batch.indices[0].numpy()], rel=1e-6)
    feed(buffer, [(9, 0, 0.0, 9, False, False)])  # a new transition gets the largest priority so far
    assert buffer.trees[0].leaves[0] == 4.0


def test_prioritized_replay_needs_each_members_stream():
    # a fixed default stream would draw the same batches whatever the run's seed
    with pytest.raises(ValueError, match="rngs"):
        one_env_buffer(prioritized=True)
    with pytest.raises(ValueError, match="rngs"):
        ReplayBuffer(8, (1,), np.float32, 1, gamma=0.9, prioritized=True, members=2, rngs=[np.random.default_rng(0)])


def test_replay_state_round_trips_through_a_checkpoint(tmp_path):
    buffer = one_env_buffer(n_step=2, capacity=8, prioritized=True, rngs=[np.random.default_rng(0)])
    feed(buffer, EPISODE)
    buffer.update_priorities(torch.tensor([[0, 2]]), torch.tensor([[0.5, 3.0]]), np.array([True]))
    io.save(tmp_path / "replay", {"replay": buffer.state_dict()})
    tree, _ = io.load(tmp_path / "replay")
    restored = one_env_buffer(n_step=2, capacity=8, prioritized=True, rngs=[np.random.default_rng(0)])
    restored.load_state_dict(tree["replay"])
    np.testing.assert_array_equal(rows(restored), rows(buffer))
    assert restored.pos[0] == buffer.pos[0]
    assert restored.trees[0].leaves.tolist() == pytest.approx(buffer.trees[0].leaves.tolist())


def test_members_write_and_sample_their_own_rings():
    """A population's rings: each member's rows at its own position, its own n-step windows and γ, drawn from its
    own stream; member k's ring is what a single run's buffer holds after the same steps."""
    gammas, generators = [0.5, 0.9], [torch.Generator().manual_seed(s) for s in (3, 4)]
    together = ReplayBuffer(8, (1,), np.float32, 2, gamma=gammas, n_step=2, members=2, generators=generators)
    alone = [ReplayBuffer(8, (1,), np.float32, 2, gamma=g, n_step=2) for g in gammas]
    rng = np.random.default_rng(0)
    for t in range(13):  # member 1's env 0 only resets on some steps: the members' positions drift apart
        obs = np.full((2, 2, 1), t, np.float32)
        actions, rewards = rng.integers(2, size=(2, 2)), rng.random((2, 2)).astype(np.float32)
        ended, valid = rng.random((2, 2)) < 0.2, rng.random((2, 2)) < 0.8
        together.add(obs, actions, rewards, obs + 1, ended, np.zeros_like(ended), valid)
        for k, buffer in enumerate(alone):
            buffer.add(*(x[k : k + 1] for x in (obs, actions, rewards, obs + 1, ended, np.zeros_like(ended), valid)))
    for k, buffer in enumerate(alone):
        assert together.sizes[k] == buffer.sizes[0] and together.pos[k] == buffer.pos[0]
        np.testing.assert_array_equal(rows(together, k), rows(buffer))
        np.testing.assert_array_equal(together.actions[k], buffer.actions[0])
    assert together.pos[0] != together.pos[1]
    batch = together.sample(4, np.array([2, 1]))  # member 1 draws one batch; its second is padding
    assert batch.obs.shape == (2, 2, 4, 1)
    first = torch.randint(0, int(together.sizes[0]), (2, 4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(batch.indices[0], first)  # member 0's draws come from its own stream
    assert torch.equal(batch.obs[1, 0, :, 0], torch.from_numpy(together.obs[1, batch.indices[1, 0].numpy(), 0]))
