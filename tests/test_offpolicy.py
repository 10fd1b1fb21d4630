"""The off-policy loop's shared behaviours (agents/offpolicy.py), one behaviour for dqn and drqn alike.

dqn and drqn each had their own copy of the loop, and the copies had drifted: the target sync (buffers copied
and unchanged nets skipped in dqn only), the end-of-run evaluation (always in dqn, only with eval_every 0 in
drqn), the checkpoint on a tracker's stop (dqn only), the non-finite check and its message, the charts logged.
Each test below runs both kinds and would have failed on one of the two copies.
"""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_drqn import Numbered
from torch import nn

from agents import dqn, drqn, losses, offpolicy
from agents.checkpoints import Counters
from agents.episode_replay import EpisodeReplay
from agents.evaluation import make_env
from agents.frame_replay import FrameReplay
from agents.replay import Replay, ReplayBuffer
from agents.schedules import Schedules, linear_schedule
from envs.evaluation import run_episodes
from launch.tracking import LocalTracker, load_latest, non_finite_leaf, read_metrics
from networks.errors import TrainingDiverged
from networks.interfaces import Tracker

KINDS = {"dqn": dqn, "drqn": drqn}
TINY = {
    "dqn": {"env_id": "CartPole-v1", "network": {"type": "mlp", "hidden": [16]}, "batch_size": 16},
    "drqn": {
        "env_id": "dlforge/CartPoleNoVel-v1",
        "network": {"type": "gru", "hidden_size": 8},
        "batch_size": 4,
        "seq_len": 4,
        "burn_in": 2,
    },
}
COMMON = {
    "total_steps": 700,
    "learning_starts": 100,
    "buffer_size": 2000,
    "train_freq": 4,
    "target_update_interval": 100,
    "learning_rate": 1e-3,
    "eval_every": 300,
    "eval_episodes": 2,
    "checkpoint_every": 300,
    "log_every": 100,
    "device": "cpu",
    "seed": 1,
}


def tiny(kind: str, **overrides):
    return KINDS[kind].Config(**{**COMMON, **TINY[kind], **overrides})


def train(kind: str, folder, tracker=None, **overrides) -> tuple[dict, list[dict]]:
    tracker = tracker or LocalTracker(folder)
    summary = KINDS[kind].train(tiny(kind, **overrides), tracker)
    tracker.close()
    return summary, read_metrics(folder / "metrics.jsonl")


# --- schedules ---------------------------------------------------------------------------------------------


def test_schedules_follow_sb3_and_take_one_value_per_member():
    config = tiny("dqn", exploration_fraction=0.5, exploration_final_eps=0.1, learning_rate_final=1e-4)
    schedules = Schedules.of(config)
    assert schedules.epsilon(99) == 1.0  # random actions until learning starts
    assert schedules.epsilon(175) == pytest.approx(1.0 - 0.9 * 175 / 350)  # the decay counts from step 0
    assert schedules.epsilon(10_000) == pytest.approx(0.1)
    assert schedules.beta(350) == pytest.approx(0.4 + 0.6 * 0.5)  # β anneals to 1 over the run
    assert schedules.lr(350) == pytest.approx(1e-3 + (1e-4 - 1e-3) * 0.5)
    assert Schedules.of(tiny("dqn")).lr(350) == 1e-3  # no learning_rate_final: constant
    # elementwise: a population's per-member values give each member its own schedule
    starts, ends, durations = np.array([1.0, 1.0, 0.5]), np.array([0.1, 0.05, 0.5]), np.array([100.0, 0.0, 50.0])
    for step in (0, 30, 100, 500):
        together = linear_schedule(starts, ends, durations, step)
        alone = [linear_schedule(float(s), float(e), float(d), step) for s, e, d in zip(starts, ends, durations)]
        np.testing.assert_allclose(together, alone)


# --- target sync: one behaviour ----------------------------------------------------------------------------


def bn_network(kind: str) -> dict:
    """Each kind's network with a BatchNorm layer, whose running statistics are buffers."""
    if kind == "dqn":
        return {"type": "mlp", "hidden": [8], "norm": "batch"}
    return {"type": "gru", "hidden_size": 8, "pre": {"type": "mlp", "hidden": [8], "norm": "batch"}}


def learner_for(kind: str, **overrides):
    config = tiny(kind, network=bn_network(kind), **overrides)
    env = make_env(config, 1, 0)
    torch.manual_seed(0)
    return config, KINDS[kind].Learner(config, KINDS[kind].build_q_network(config, env), torch.device("cpu"))


def nudge(module: nn.Module, by: float) -> None:
    with torch.no_grad():
        for tensor in [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]:
            tensor.add_(by)


@pytest.mark.parametrize("kind", KINDS)
def test_target_sync_copies_or_averages_the_same_way_for_every_kind(kind):
    config, learner = learner_for(kind, tau=1.0, target_update_interval=10)
    online, target = learner.q_net, learner.target_net
    sync, counters = offpolicy.TargetSync(config, learner), Counters(vec_steps=10)
    nudge(online, 0.5)  # as after a resume: the online net moved on since the target's last copy
    sync(counters)  # the first sync after a start or a resume always copies
    for a, b in zip(target.state_dict().values(), online.state_dict().values()):
        assert torch.equal(a, b)
    nudge(target, 1.0)
    sync(counters)  # no update since the last copy: the copy would change nothing, so it is skipped
    assert not torch.equal(next(target.parameters()), next(online.parameters()))
    counters.updates += 1
    sync(counters)
    assert torch.equal(next(target.parameters()), next(online.parameters()))

    config, learner = learner_for(kind, tau=0.25, target_update_interval=10)
    online, target = learner.q_net, learner.target_net
    before = {name: t.clone() for name, t in target.state_dict().items()}
    nudge(online, 1.0)
    offpolicy.TargetSync(config, learner)(Counters(vec_steps=10))  # Polyak runs with or without updates
    params = dict(online.named_parameters())
    for name, value in target.state_dict().items():
        if name in params:  # θ' <- τ θ + (1 − τ) θ'
            torch.testing.assert_close(value, 0.25 * params[name].detach() + 0.75 * before[name])
        else:  # buffers (BatchNorm statistics) are copied
            assert torch.equal(value, online.state_dict()[name]), name
    assert any("running_mean" in name for name in target.state_dict())


def test_sync_target_is_a_lerp_that_takes_a_tau_per_member():
    target, online = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = [0.3 * o.detach() + 0.7 * t.detach() for t, o in zip(target.parameters(), online.parameters())]
    offpolicy.sync_target(target, online, 0.3)
    for value, want in zip(target.parameters(), expected):
        torch.testing.assert_close(value.detach(), want)
    offpolicy.sync_target(target, online, 1.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


# --- the end of a run, a tracker's stop, the charts --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_ends_with_an_evaluation_and_a_checkpoint_at_its_last_step(kind, tmp_path):
    summary, records = train(kind, tmp_path)  # 700 steps, evaluations every 300
    assert [r["step"] for r in records if "eval/mean_return" in r] == [300, 600, 700]
    assert summary["global_step"] == 700
    assert summary["eval/mean_return"] == records[-1]["eval/mean_return"]  # the summary's is the last step's
    assert load_latest(tmp_path)[1]["step"] == 700


class StopAfter(LocalTracker):
    """A tracker whose run is stopped from outside (as a sweep's scheduler does) after `calls` env steps."""

    def __init__(self, folder, calls: int):
        super().__init__(folder)
        self.calls = calls

    def should_stop(self) -> bool:
        self.calls -= 1
        return self.calls < 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_stopped_run_checkpoints_where_it_stopped(kind, tmp_path):
    summary, _ = train(kind, tmp_path, tracker=StopAfter(tmp_path, calls=250), checkpoint_every=10_000)
    assert 200 < summary["global_step"] < 700
    tree, meta = load_latest(tmp_path)
    assert meta["step"] == summary["global_step"] == tree["counters"]["step"]


@pytest.mark.parametrize("kind", KINDS)
def test_resuming_a_run_that_reached_total_steps_ends_it_with_its_summary(kind, tmp_path):
    # a run cut off after its last checkpoint but before its summary: the resume has no step left to take
    summary, _ = train(kind, tmp_path / "first", total_steps=300, eval_every=1000, checkpoint_every=1000)
    tree, _ = load_latest(tmp_path / "first")
    tracker = LocalTracker(tmp_path / "resumed")
    resumed = KINDS[kind].train(
        tiny(kind, total_steps=300, eval_every=1000, checkpoint_every=1000), tracker, resume=tree
    )
    tracker.close()
    assert resumed["global_step"] == 300
    for key in ("charts/episodes", "charts/updates"):
        assert resumed[key] == summary[key] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_logs_the_same_charts(kind, tmp_path):
    _, records = train(kind, tmp_path, nan_policy="skip")
    periodic = [r for r in records if "charts/epsilon" in r]
    assert [r["step"] for r in periodic] == list(range(100, 701, 100))
    for record in periodic:
        assert {"charts/epsilon", "charts/learning_rate", "charts/sps", "charts/updates"} <= set(record)
        assert "losses/skipped_updates" in record
    assert periodic[0]["charts/epsilon"] == 1.0  # step 100 began before learning_starts: it acted at random
    assert all("losses/td_loss" in r and "losses/q_values" in r for r in periodic[1:])


# --- the non-finite check ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_non_finite_loss_stops_the_run_with_its_update_and_step(kind, tmp_path, monkeypatch):
    real, calls = losses.td_loss, [0]

    def td_loss(*args, **kwargs):  # a diverging run: NaN from the 120th update on
        calls[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls[0] >= 120 else loss

    monkeypatch.setattr(losses, "td_loss", td_loss)
    tracker = LocalTracker(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"by update 120 \(env step (\d+)\)") as error:
        KINDS[kind].train(tiny(kind, checkpoint_every=100, eval_every=0), tracker)
    tracker.close()
    diverged_at = int(error.value.args[0].split("env step ")[1].split(")")[0])
    tree, meta = load_latest(tmp_path)
    assert meta["step"] == (diverged_at - 1) // 100 * 100  # the last periodic checkpoint before the NaN, finite
    assert non_finite_leaf(tree) is None


# --- declared interfaces -----------------------------------------------------------------------------------


def test_the_trackers_and_replays_have_the_declared_interfaces(tmp_path):
    tracker = LocalTracker(tmp_path)
    assert isinstance(tracker, Tracker)
    for name in ("log", "image", "video", "checkpoint", "summary", "should_stop"):
        declared = inspect.signature(getattr(Tracker, name)).parameters
        assert inspect.signature(getattr(LocalTracker, name)).parameters.keys() == declared.keys(), name
    tracker.close()
    replays = [
        ReplayBuffer(64, (4,), np.float32, 1, gamma=0.99),
        FrameReplay(
            capacity=64, num_envs=1, frame_shape=(8, 8), stack=2, n_actions=2, n_step=1, gamma=0.99, device="cpu"
        ),
        EpisodeReplay(capacity=64, num_envs=1, obs_shape=(4,), burn_in=1, seq_len=2),
    ]
    for replay in replays:
        assert isinstance(replay, Replay) and not replay.can_sample(1), type(replay).__name__


# --- evaluation of a recurrent policy ----------------------------------------------------------------------


def test_run_episodes_tells_a_stateful_policy_where_each_episode_starts():
    seen = []

    class Recording:
        def episode_start(self, starting):
            self.starting = starting.copy()

        def __call__(self, obs):
            seen.append((self.starting, obs[:, 1] == 0))
            return np.zeros(len(obs), dtype=np.int64)

    counted = [lambda: gym.wrappers.RecordEpisodeStatistics(Numbered())] * 3  # obs (episode, step in episode)
    env = gym.vector.SyncVectorEnv(counted, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    run_episodes(env, Recording(), episodes=12, seed=0)
    starts = sum(int(first.sum()) for first, _ in seen)
    assert starts >= 12 and all(np.array_equal(told, first) for told, first in seen)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_is_the_same_for_every_kind(kind, tmp_path):
    train(kind, tmp_path, total_steps=300)
    tree, _ = load_latest(tmp_path)
    config = tiny(kind)
    first = KINDS[kind].evaluate(config, tree, episodes=3, seed=5)
    again = KINDS[kind].evaluate(config, tree, episodes=3, seed=5, video_path=tmp_path / "video.mp4")
    assert first["returns"] == again["returns"] and first["episodes"] == 3
    assert (tmp_path / "video.mp4").read_bytes()[4:8] == b"ftyp"
