"""Compact frame replay: rebuilt stacks, next stacks and n-step targets equal what the env produced.

Transitions are recorded as the env hands them over (stacked by Gymnasium's FrameStackObservation) and compared
with what the replay rebuilds from single frames, for every slot that can be sampled: across episode ends
(terminated and truncated), across the circular buffer's wrap-around, with two vector-env slots.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FrameStackObservation

from agents.frame_replay import ACTED, FrameReplay


class CountingFrames(gym.Env):
    """Frames (3, 3) uint8 whose pixels encode a global counter, episodes of random length 1..9."""

    observation_space = gym.spaces.Box(0, 255, (3, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self):
        self.counter = 0

    def _frame(self):
        self.counter += 1
        return np.full((3, 3), self.counter % 251, np.uint8) + np.eye(3, dtype=np.uint8) * (self.counter // 251)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, 10))
        self.truncates = bool(self.np_random.random() < 0.3)
        return self._frame(), {}

    def step(self, action):
        self.left -= 1
        over = self.left == 0
        reward = float(self.counter % 7) + action
        return self._frame(), reward, over and not self.truncates, over and self.truncates, {}


def collect(vec_env, replay: FrameReplay, steps: int, seed: int = 0):
    """Run a random policy the way dqn does, skipping autoreset steps. Returns per-env transition lists."""
    rng = np.random.default_rng(seed)
    obs, _ = vec_env.reset(seed=seed)
    n = vec_env.num_envs
    after_end = np.zeros(n, dtype=bool)
    history = [[] for _ in range(n)]  # per env: (slot, obs, action, reward, next_obs, terminated, truncated)
    for _ in range(steps):
        actions = rng.integers(vec_env.single_action_space.n, size=n)
        next_obs, rewards, terminated, truncated, _ = vec_env.step(actions)
        valid = ~after_end
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid=valid)
        for env in np.flatnonzero(valid):
            slot = (
                replay.pos[env] - (1 if terminated[env] else 2)
            ) % replay.slots  # next frame is not stored on termination
            history[env].append(
                (
                    slot,
                    obs[env].copy(),
                    int(actions[env]),
                    float(rewards[env]),
                    next_obs[env].copy(),
                    bool(terminated[env]),
                    bool(truncated[env]),
                )
            )
        after_end = terminated | truncated
        obs = next_obs
    return history


def expected_n_step(transitions: list, j: int, n: int, gamma: float):
    reward, discount = 0.0, 1.0
    for k in range(n):
        _, _, _, r, next_obs, term, trunc = transitions[j + k]
        reward += discount * r
        discount *= gamma
        if term or trunc:
            return reward, next_obs, float(term), discount
        if k + 1 < n and j + k + 1 >= len(transitions):
            return None  # the look-ahead needs a step that has not happened yet
    return reward, next_obs, 0.0, discount


def check_every_samplable_slot(replay: FrameReplay, history: list, gamma: float) -> int:
    """Compare each samplable slot with the newest transition recorded there. Returns how many were checked."""
    checked = 0
    assert len(replay) == np.count_nonzero(replay.flags & ACTED)  # the running count survives overwrites
    for env, transitions in enumerate(history):
        newest = {}
        for j, transition in enumerate(transitions):
            newest[transition[0]] = j  # later laps overwrite earlier ones
        slots = np.arange(replay.slots)
        envs = np.full_like(slots, env)
        samplable = replay._samplable(envs, slots)
        acted = (replay.flags[env] & ACTED) != 0
        # Only a few slots at the wrap-around edge and the newest ones may be unsamplable.
        assert samplable.sum() >= acted.sum() - (replay.stack + replay.n_step)
        for slot in np.flatnonzero(samplable):
            j = newest[slot]
            _, obs, action, _, _, _, _ = transitions[j]
            want = expected_n_step(transitions, j, replay.n_step, gamma)
            assert want is not None, "a sampled look-ahead must be complete"
            reward, next_obs, done, discount = want
            batch = replay._gather(np.array([env]), np.array([slot]))
            np.testing.assert_array_equal(batch.obs[0].numpy(), obs)
            if not done:  # a terminated transition's next stack is never used (not stored)
                np.testing.assert_array_equal(batch.next_obs[0].numpy(), next_obs)
            assert batch.actions[0].item() == action
            assert batch.rewards[0].item() == pytest.approx(reward, rel=1e-6)
            assert batch.terminated[0].item() == done
            assert batch.discounts[0].item() == pytest.approx(discount, rel=1e-6)
            checked += 1
    return checked


@pytest.mark.parametrize("n_step", [1, 3])
def test_rebuilt_stacks_match_the_env_across_episode_ends_and_wraparound(n_step):
    vec_env = gym.vector.SyncVectorEnv(
        [lambda: FrameStackObservation(CountingFrames(), 4, padding_type="reset") for _ in range(2)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    replay = FrameReplay(capacity=2 * 37, num_envs=2, frame_shape=(3, 3), n_actions=3, n_step=n_step, gamma=0.9)
    history = collect(vec_env, replay, steps=300)  # ~8 laps of each 37-slot stream
    assert all(len(h) > 3 * replay.slots for h in history)
    assert check_every_samplable_slot(replay, history, gamma=0.9) > 40
    # Sampled batches are always complete, uint8, on the requested layout.
    batch = replay.sample(64)
    assert batch.obs.shape == (64, 4, 3, 3) and batch.obs.dtype.is_floating_point is False
    assert batch.actions.dtype == batch.indices.dtype == torch.int64 and batch.weights is None
    many = replay.sample(16, num_batches=3)  # a whole training phase at once, as dqn samples
    assert many.obs.shape == (3, 16, 4, 3, 3) and many.terminated.shape == (3, 16)


def test_stack_never_mixes_episodes():
    vec_env = gym.vector.SyncVectorEnv(
        [lambda: FrameStackObservation(CountingFrames(), 4, padding_type="reset")],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    replay = FrameReplay(capacity=500, num_envs=1, frame_shape=(3, 3), n_actions=3)
    collect(vec_env, replay, steps=200, seed=1)
    # Frames inside one stack increase by exactly one (same episode) or repeat (reset padding).
    batch = replay.sample(256)
    values = batch.obs[:, :, 0, 1].numpy().astype(int)  # off-diagonal pixel = counter % 251
    steps = np.diff(values, axis=1)
    assert set(np.unique(steps)) <= {0, 1}
    padded = steps == 0
    assert padded.any()  # the test saw episode starts
    assert not (padded[:, 1:] & ~padded[:, :-1]).any()  # padding only at the front


def test_midway_stack_and_checkpoint_round_trip():
    replay = FrameReplay(capacity=40, num_envs=1, frame_shape=(2, 2), n_actions=4)
    frames = np.arange(1, 9, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)  # 8 distinct frames
    # A chunk that starts mid-episode (e.g. after a resume): all four frames of the stack are written.
    obs, next_obs = frames[0:4][None], frames[1:5][None]
    replay.add(obs, np.array([2]), np.array([1.0]), next_obs, np.array([False]), np.array([False]))
    replay.add(next_obs, np.array([3]), np.array([2.0]), frames[2:6][None], np.array([True]), np.array([False]))
    batch = replay.sample(8)
    assert {tuple(b[:, 0, 0]) for b in batch.obs.numpy()} == {(1, 2, 3, 4), (2, 3, 4, 5)}

    copy = FrameReplay(capacity=40, num_envs=1, frame_shape=(2, 2), n_actions=4)
    copy.load_state_dict(replay.state_dict())
    assert len(copy) == len(replay) == 2
    np.testing.assert_array_equal(copy.stacks(np.array([0]), np.array([4]))[0, :, 0, 0], [2, 3, 4, 5])


@pytest.mark.slow
def test_real_atari_stacks_are_rebuilt_exactly():
    from envs.atari import make_single

    def make():  # Breakout with life loss ending episodes and a short time limit: many ends in few steps
        return make_single("ALE/Breakout-v5", terminal_on_life_loss=True, max_episode_steps=200)

    vec_env = gym.vector.SyncVectorEnv([make, make], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    replay = FrameReplay(capacity=2 * 90, num_envs=2, frame_shape=(84, 84), n_actions=4, n_step=3, gamma=0.99)
    history = collect(vec_env, replay, steps=240)
    ends = sum(t[5] or t[6] for h in history for t in h)
    assert ends >= 4 and all(len(h) > replay.slots for h in history)
    assert check_every_samplable_slot(replay, history, gamma=0.99) > 100
    vec_env.close()
