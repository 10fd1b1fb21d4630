"""MinAtar through envs.make: spaces, dtype, seeding, sticky actions, vector autoreset, episode statistics, render."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs
from envs.minatar import CELL_PIXELS, GAMES, MAX_EPISODE_STEPS, MinAtarEnv

# channels and minimal action sets of the minatar package (its games' state_shape and minimal_action_set)
SHAPES = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
MINIMAL_ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


def play(env: gym.vector.VectorEnv, steps: int, seed: int = 0) -> list[tuple]:
    """`steps` random steps (actions from a seeded generator); every step's outputs, copied."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    trace = [(obs.copy(),)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.integers(env.single_action_space.n, size=env.num_envs))
        trace.append((obs.copy(), reward.copy(), terminated.copy(), truncated.copy()))
    return trace


@pytest.mark.parametrize("name", list(GAMES))
def test_observations_are_channels_first_uint8_cells_of_0_or_255(name):
    env = envs.make(f"MinAtar/{name}-v1", num_envs=2, seed=0)
    space = env.single_observation_space
    assert space == gym.spaces.Box(0, 255, (SHAPES[name], 10, 10), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(MINIMAL_ACTIONS[name])
    assert gym.spec(f"MinAtar/{name}-v1").max_episode_steps == MAX_EPISODE_STEPS
    for obs, *_ in play(env, 50):
        assert obs.dtype == np.uint8 and obs.shape == (2, SHAPES[name], 10, 10)
        assert set(np.unique(obs)) <= {0, 255} and all(space.contains(o) for o in obs)
    full = envs.make(f"MinAtar/{name}-v1", num_envs=1, seed=0, minimal_actions=False)
    assert full.single_action_space == gym.spaces.Discrete(6)  # the paper's action set


def test_observation_is_the_games_state_transposed():
    env = MinAtarEnv("breakout")
    obs, _ = env.reset(seed=0)
    state = env.game.state()  # (10, 10, 4) bool: paddle, ball, trail, brick
    np.testing.assert_array_equal(obs, state.transpose(2, 0, 1).astype(np.uint8) * 255)
    assert obs[0, 9].sum() == 255 and obs[3, 1:4].all()  # one paddle cell on the bottom row; 3 rows of bricks


@pytest.mark.parametrize("name", ["Breakout", "Seaquest", "Asterix"])
def test_the_seed_fixes_the_whole_run_across_autoresets(name):
    first = play(envs.make(f"MinAtar/{name}-v1", num_envs=3, seed=7), 300)
    again = play(envs.make(f"MinAtar/{name}-v1", num_envs=3, seed=7), 300)
    other = play(envs.make(f"MinAtar/{name}-v1", num_envs=3, seed=8), 300)
    assert sum(step[2].sum() for step in first[1:]) > 0  # episodes ended, so resets are covered
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_a_seeded_reset_replays_the_episode():
    env = MinAtarEnv("seaquest")
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        frames = [obs]
        for action in [0, 1, 2, 3, 4, 5] * 20:
            frames.append(env.step(action)[0])
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])


def paddle(env: MinAtarEnv) -> int:
    return int(np.flatnonzero(env.game.state()[9, :, 0])[0])  # column of the paddle on the bottom row


def test_sticky_actions_repeat_the_previous_action():
    left = 1  # Breakout's minimal actions: no-op, left, right
    always = MinAtarEnv("breakout", sticky_action_prob=1.0)
    always.reset(seed=0)
    start = paddle(always)
    for _ in range(3):
        always.step(left)
    assert paddle(always) == start  # every step repeats the no-op an episode starts with

    never = MinAtarEnv("breakout", sticky_action_prob=0.0)
    never.reset(seed=0)
    never.step(left)
    assert paddle(never) == start - 1

    default = MinAtarEnv("breakout")  # the paper's 0.1
    default.reset(seed=0)
    wanted = np.tile([1, 3], 1500)  # left, right (the package's action codes) alternating: any repeat shows
    executed = []
    for action in wanted:
        _, _, terminated, _, _ = default.step(1 if action == 1 else 2)
        executed.append(default.game.last_action)  # what the game did
        if terminated:
            default.reset()
    repeated = np.mean(np.array(executed) != wanted)
    assert 0.08 < repeated < 0.12, repeated  # 0.1 ± 3.6 standard deviations of 3000 draws


def test_the_sticky_action_restarts_as_no_op_at_reset():
    env = MinAtarEnv("breakout", sticky_action_prob=1.0)
    env.reset(seed=0)
    env.game.last_action = 3  # as if the last episode ended moving right
    env.reset()
    start = paddle(env)
    env.step(0)
    assert paddle(env) == start


def test_vector_env_autoresets_next_step_and_records_episodes():
    env = envs.make("MinAtar/Breakout-v1", num_envs=4, seed=0, vectorization="auto")
    assert isinstance(env.unwrapped, SyncVectorEnv) and env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    rng = np.random.default_rng(0)
    env.reset()
    returns, lengths, finished = np.zeros(4), np.zeros(4, int), 0
    ended = np.zeros(4, bool)
    while finished < 8:
        obs, reward, terminated, truncated, info = env.step(rng.integers(3, size=4))
        # the step after an episode's end only resets: reward 0, not done, a fresh start
        assert not (reward[ended] != 0).any() and not terminated[ended].any()
        returns[~ended] += reward[~ended]
        lengths[~ended] += 1
        for i in np.flatnonzero(info.get("_episode", ())):
            assert terminated[i]  # random Breakout play ends by losing the ball, far before the time limit
            assert info["episode"]["r"][i] == returns[i] and info["episode"]["l"][i] == lengths[i]
            returns[i], lengths[i], finished = 0, 0, finished + 1
        ended = terminated | truncated


def test_the_time_limit_truncates_and_can_be_changed():
    env = envs.make("MinAtar/Freeway-v1", num_envs=1, seed=0, max_episode_steps=5)  # Freeway lasts 2500 steps
    env.reset()
    truncated = [env.step(np.zeros(1, np.int64))[3][0] for _ in range(5)]
    assert truncated == [False] * 4 + [True]


def test_rgb_array_render_draws_each_cell_as_a_square():
    env = MinAtarEnv("breakout", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (10 * CELL_PIXELS, 10 * CELL_PIXELS, 3) and frame.dtype == np.uint8
    cells = frame[::CELL_PIXELS, ::CELL_PIXELS]  # one pixel per cell
    occupied = obs.any(axis=0)
    assert (cells[~occupied] == 0).all() and (cells[occupied].max(axis=-1) > 0).all()
    assert (frame.reshape(10, CELL_PIXELS, 10, CELL_PIXELS, 3) == cells[:, None, :, None]).all()  # flat squares
    assert MinAtarEnv("breakout").render() is None


def test_unknown_ids_and_bad_kwargs_are_refused():
    with pytest.raises(envs.factory.ConfigError, match="did you mean 'MinAtar/Breakout-v1'"):
        envs.make("MinAtar/Breakout-v0")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        MinAtarEnv("breakout", sticky_action_prob=1.5)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["minatar-breakout", "minatar-space-invaders"])
def test_dqn_config_trains_through_the_cli_and_evaluates_with_video(tmp_path, config):
    import json
    from pathlib import Path

    from launch.cli import main

    path = str(Path(__file__).resolve().parents[1] / "configs/dqn" / f"{config}.yaml")
    tiny = ["total_steps=600", "learning_starts=300", "eval_every=0", "eval_episodes=2", "tracking.wandb=disabled"]
    assert main(["train", path, *tiny, "--out", str(tmp_path), "--name", "run"]) == 0
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == 600 and summary["charts/updates"] == 300  # one update per frame after 300
    assert main(["eval", str(run_dir), "--episodes", "2", "--checkpoint", "last", "--video"]) == 0
    video = Path(json.loads((run_dir / "eval.json").read_text())["video"])
    assert video.suffix == ".mp4" and video.stat().st_size > 1000


def test_without_the_minatar_extra_a_minatar_id_names_the_extra(tmp_path):
    """The minatar package is an opt-in extra (GPL-3.0): without it, a MinAtar id is one line naming the extra."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['minatar'] = None\n"  # what an install without the extra sees
        "import envs\n"
        "from networks.errors import ConfigError\n"
        "try:\n"
        "    envs.make('MinAtar/Breakout-v1')\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "needs the package 'minatar'" in out and "pip install 'dlforge[minatar]'" in out
