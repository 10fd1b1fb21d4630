"""Recurrent DQN: state resets at episode boundaries (acting and replay), burn-in without gradient,
sequence windows and n-step targets, config checks, and a short end-to-end run with checkpoint/eval/resume."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import drqn
from agents.episode_replay import ACTED, FIRST, EpisodeReplay
from launch.tracking import LocalTracker
from networks import io
from networks.batched import Members
from networks.errors import ConfigError

CPU = torch.device("cpu")


class Numbered(gym.Env):
    """obs = (episode number, step in episode); episodes of random length 3..12; reward = step + 1."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t, self.length = 0, int(self.np_random.integers(3, 13))
        self.truncates = bool(self.np_random.random() < 0.3)
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        over = self.t == self.length
        obs = np.array([self.episode, self.t], np.float32)
        return obs, float(self.t), over and not self.truncates, over and self.truncates, {}


def small_net(cell: str = "lstm") -> drqn.RecurrentQNetwork:
    config = drqn.Config(network={"type": cell, "hidden_size": 8, "pre": {"type": "mlp", "hidden": [8]}})
    env = gym.vector.SyncVectorEnv([Numbered], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    torch.manual_seed(0)
    return drqn.build_q_network(config, env)


def act(q_net, obs, state, episode_start, epsilon, rng):
    """drqn.act for a single run (a population of one), with arrays and states without the member axis."""
    actions, fed, next_state = drqn.act(
        Members([q_net]), obs[None], tuple(s[None] for s in state), episode_start[None], np.array([epsilon]), [rng], CPU
    )
    return actions[0], tuple(s[0] for s in fed), tuple(s[0] for s in next_state)


def one(batch):
    """A single run's SequenceBatch with the member axis the learner takes, (1, B, ...)."""
    fields = []
    for value in batch:
        if isinstance(value, tuple):
            fields.append(tuple(v[None] for v in value))
        else:
            fields.append(None if value is None else value[None])
    return type(batch)(*fields)


def fill(replay: EpisodeReplay, q_net: drqn.RecurrentQNetwork, num_envs: int, steps: int) -> None:
    """The acting half of drqn.train: per-slot state, reset at episode starts, autoreset steps skipped."""
    env = gym.vector.SyncVectorEnv([Numbered] * num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    state = q_net.initial_state(num_envs)
    episode_start, after_end = np.ones(num_envs, bool), np.zeros(num_envs, bool)
    for _ in range(steps):
        actions, fed, state = act(q_net, obs, state, episode_start, 0.5, rng)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        valid = ~after_end
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid, fed)
        episode_start, after_end, obs = ~valid, terminated | truncated, next_obs


def make_replay(q_net, *, burn_in=3, seq_len=5, n_step=2, capacity=2 * 120, num_envs=2, **kwargs) -> EpisodeReplay:
    shapes = tuple((s.shape[0], s.shape[2]) for s in q_net.initial_state(1))
    return EpisodeReplay(
        capacity=capacity,
        num_envs=num_envs,
        obs_shape=(2,),
        burn_in=burn_in,
        seq_len=seq_len,
        n_step=n_step,
        gamma=0.5,
        state_shapes=shapes,
        **kwargs,
    )


# --- the state resets at episode boundaries -----------------------------------------------------------


def test_acting_resets_only_the_slots_whose_episode_starts():
    q_net = small_net()
    state = tuple(torch.full_like(s, 0.7) for s in q_net.initial_state(3))
    obs = np.zeros((3, 2), np.float32)
    _, fed, next_state = act(q_net, obs, state, np.array([False, True, False]), 0.0, np.random.default_rng(0))
    for tensor in fed:  # (layers, N, H): slot 1 starts from zeros, the others keep their state
        assert torch.all(tensor[:, 1] == 0) and torch.all(tensor[:, [0, 2]] == 0.7)
    # The next state of slots 0 and 2 is the same function of the same input: equal; slot 1 differs.
    assert torch.allclose(next_state[0][:, 0], next_state[0][:, 2]) and not torch.allclose(
        next_state[0][:, 0], next_state[0][:, 1]
    )


def test_stored_states_are_zero_exactly_at_episode_starts():
    q_net = small_net()
    replay = make_replay(q_net, capacity=2 * 400)
    fill(replay, q_net, num_envs=2, steps=150)
    h = replay.states[0]  # (E, C, layers, H)
    nonzero = np.abs(h).reshape(*h.shape[:2], -1).sum(-1) > 0
    first, acted = (replay.flags & FIRST) != 0, (replay.flags & ACTED) != 0
    episode_step = replay.obs[..., 1]
    assert first.sum() > 20
    assert not nonzero[first].any()  # every episode's first step was fed a zero state
    assert np.array_equal(first & acted, (episode_step == 0) & acted)  # FIRST marks exactly the episode starts
    assert nonzero[acted & ~first].all()  # and later steps carry a state


def test_windows_never_carry_a_state_across_episodes():
    q_net = small_net()
    replay = make_replay(q_net, capacity=2 * 60)  # small: wraps around several times
    fill(replay, q_net, num_envs=2, steps=400)
    for _ in range(20):
        batch = replay.sample(16)
        episode = batch.obs[..., 0]  # (B, L)
        trained = replay.burn_in + torch.arange(replay.seq_len)
        kept = batch.mask.bool()
        # Every trained step kept in the loss, its bootstrap step and the whole burn-in share step 0's episode.
        same = episode == episode[:, :1]
        assert same[:, trained][kept].all()
        assert torch.gather(same, 1, batch.bootstrap)[kept].all()
        assert same[:, : replay.burn_in + 1][kept.any(1)].all()
        assert not batch.first[:, 1:].any()  # the only reset a window needs is at its start
        # A window that starts an episode starts it from the zero state.
        starts = batch.first[:, 0]
        assert torch.all(batch.initial_state[0][:, starts] == 0)


def test_n_step_targets_match_hand_worked_numbers():
    q_net = small_net()
    replay = make_replay(q_net, burn_in=0, seq_len=4, n_step=2, capacity=2 * 40)
    fill(replay, q_net, num_envs=2, steps=60)
    batch = replay.sample(64)
    steps_in = batch.obs[..., 1]  # (B, L): step within the episode; reward of the step from t is t + 1
    for b in range(64):
        for t in range(4):
            if not batch.mask[b, t]:
                continue
            k = int(batch.bootstrap[b, t]) - t
            rewards = [float(steps_in[b, t + i]) + 1 for i in range(k)]
            want = sum(r * 0.5**i for i, r in enumerate(rewards))  # gamma 0.5
            assert batch.rewards[b, t].item() == pytest.approx(want)
            assert batch.discounts[b, t].item() == pytest.approx(0.5**k)
            assert k == 2 or batch.terminated[b, t] or steps_in[b, t + k] > 0  # fewer only at an episode end


# --- burn-in without gradient -------------------------------------------------------------------------


def test_burn_in_runs_without_gradient_but_warms_the_state():
    q_net = small_net()
    target_net = small_net()
    replay = make_replay(q_net, burn_in=4, seq_len=5, n_step=1, capacity=2 * 200)
    fill(replay, q_net, num_envs=2, steps=300)
    batch = one(replay.sample(16))  # (1, B, L, ...)
    obs = batch.obs.clone().requires_grad_(True)
    batch = batch._replace(obs=obs)
    online, target = Members([q_net]), Members([target_net])
    q_taken, targets = drqn.sequence_q_and_targets(online, target, batch, burn_in=4, double_q=True)
    assert q_taken.requires_grad and not targets.requires_grad
    drqn.sequence_loss(q_taken, targets, batch, "huber").sum().backward()
    grad_norm = obs.grad[0].norm(dim=-1)  # (B, L)
    assert grad_norm[:, :4].abs().sum() == 0  # burn-in steps: no gradient at all
    assert grad_norm[:, 4:9].sum() > 0  # trained steps: gradient flows
    assert all(p.grad is None for p in target_net.parameters())
    # The burn-in still matters: other burn-in inputs give other Q-values on the trained steps.
    shifted = batch._replace(obs=torch.cat([obs[:, :, :4].detach() + 1.0, obs[:, :, 4:].detach()], 2))
    with torch.no_grad():
        q_shifted, _ = drqn.sequence_q_and_targets(online, target, shifted, burn_in=4, double_q=True)
    assert not torch.allclose(q_shifted, q_taken.detach())


def test_unroll_from_stored_state_matches_the_actor():
    """A window started from its stored state reproduces the Q-values the actor computed step by step."""
    q_net = small_net("gru")
    replay = make_replay(q_net, burn_in=0, seq_len=6, n_step=1, capacity=400, num_envs=1)
    fill(replay, q_net, num_envs=1, steps=100)
    batch = replay.sample(8)
    with torch.no_grad():
        unrolled, _ = q_net(batch.obs, batch.initial_state, batch.first)  # (B, L, A)
        state = batch.initial_state
        for t in range(batch.obs.shape[1]):
            if not batch.mask[:, min(t, 5)].all():
                break
            step_q, state = q_net(batch.obs[:, t], state)
            assert torch.allclose(step_q, unrolled[:, t], atol=1e-5)


# --- config and end to end ----------------------------------------------------------------------------


def test_config_errors():
    with pytest.raises(ConfigError, match="network.type"):
        drqn.Config(network={"type": "mlp", "hidden": [8]}).validate()
    with pytest.raises(ConfigError, match="compact_replay"):
        drqn.Config(compact_replay=True).validate()
    with pytest.raises(ConfigError, match="buffer_size"):
        drqn.Config(buffer_size=40, batch_size=32).validate()
    assert {f.name for f in dataclasses.fields(drqn.Config)} >= {
        f.name for f in dataclasses.fields(drqn.dqn.Config)
    }  # every dqn field, same names


@pytest.mark.parametrize("variant", [{}, {"store_hidden_state": False, "prioritized": {"enabled": True}}])
def test_short_run_checkpoints_evaluates_and_resumes(tmp_path, variant):
    from launch.config import from_dict

    base = {
        "env_id": "dlforge/CartPoleNoVel-v1",
        "learning_rate_final": 1e-5,
        "num_envs": 2,
        "total_steps": 600,
        "learning_starts": 200,
        "buffer_size": 2000,
        "batch_size": 8,
        "seq_len": 4,
        "burn_in": 2,
        "n_step": 2,
        "double_q": True,
        "train_freq": 2,
        "target_update_interval": 100,
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 300,
        "log_every": 100,
        "device": "cpu",
        "network": {"type": "gru", "hidden_size": 16},
    }
    config = from_dict(drqn.Config, {**base, **variant}, "")
    tracker = LocalTracker(tmp_path / "run")
    summary = drqn.train(config, tracker)
    tracker.close()
    assert summary["global_step"] >= 600 and summary["charts/updates"] > 0  # num_envs transitions per step
    tree, meta = io.load(sorted((tmp_path / "run" / "checkpoints").glob("step-*.json"))[-1])
    result = drqn.evaluate(config, tree, episodes=3, seed=5, video_path=None)
    again = drqn.evaluate(config, tree, episodes=3, seed=5, video_path=None)
    assert result["returns"] == again["returns"] and len(result["returns"]) == 3
    resumed = dataclasses.replace(config, total_steps=800)
    tracker = LocalTracker(tmp_path / "run", resume_step=meta["step"])
    assert drqn.train(resumed, tracker, resume=tree)["global_step"] >= 800
    tracker.close()
