"""Deterministic evaluation episodes and their video, for any agent that maps observations to actions.

`run_episodes(env, policy, episodes, seed)` plays `episodes` episodes on a vector env made with
`vectorization="sync"`: env i is a separate env seeded `seed + i`, so what happens in env 0 does not
depend on how many envs run beside it, and `record_episode` (one env, seeded `seed`) films exactly the
first of them. The episodes are split across the envs as SB3's `evaluate_policy` does (env i plays
`(episodes + i) // n`), so short episodes are not over-counted. `policy(obs (n, ...)) -> actions (n,)`; a policy
with a state per env (a recurrent net's) also has `episode_start(starting (n,) bool)`, called before each step
with the envs whose observation is the first of an episode, so it can reset their state there.

`run_episodes(..., trajectories=True)` also returns the steps of the episodes it counted, flat, ordered as the
returns: `obs` (N, *obs_shape), the observation each action was taken on; `actions` (N,); `rewards` (N,) float32;
`dones` (N,) bool, true on the last step of each episode (terminated or truncated). The reset step that follows an
episode's end (its action is ignored) is no step of any episode, so it is left out; so are the steps of episodes
an env plays past its share while the others finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from envs.members import MemberEnvs

Policy = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class StatefulPolicy(Protocol):
    """A policy that carries a state per env, reset where an episode starts."""

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def episode_start(self, starting: np.ndarray) -> None: ...


def run_episodes(
    env: gym.vector.VectorEnv, policy: Policy, episodes: int, seed: int, *, trajectories: bool = False
) -> dict:
    """{"mean_return", "std_return", "episodes", "returns"}: the returns ordered by env, then episode; with
    `trajectories`, also "trajectories": the counted episodes' steps (see the module docstring)."""
    recorder = TrajectoryRecorder(env.num_envs) if trajectories else None
    (result,) = run_member_episodes(MemberEnvs([env]), _OneMember(policy), episodes, [seed], recorder=recorder)
    return result if recorder is None else {**result, "trajectories": recorder.arrays()}


def run_member_episodes(
    env: MemberEnvs,
    policy: Policy,
    episodes: int,
    seeds: Sequence[int],
    *,
    recorder: TrajectoryRecorder | None = None,
) -> list[dict]:
    """`run_episodes` for every member of `env` at once: member k's envs seeded seeds[k] + i, one policy call per
    step for all of them (obs (M, n, ...) -> actions (M, n); a stateful policy's `episode_start` takes (M, n)).
    A member stops stepping once its envs have their episodes, as its own `run_episodes` would, so member k's result
    is the one `run_episodes` gives on its env alone with a policy that acts as row k. `recorder`: one member's steps.
    """
    members, n = env.members, env.num_envs
    wanted = [(episodes + i) // n for i in range(n)]
    returns: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(members)]
    obs, _ = env.reset(seeds)
    stateful = isinstance(policy, StatefulPolicy)
    starting = np.ones((members, n), dtype=bool)  # envs whose obs starts an episode: after a reset, or a step after
    ended = np.zeros((members, n), dtype=bool)  # an end (NEXT_STEP autoreset: that step is the reset step)
    playing = np.full(members, any(want > 0 for want in wanted))
    while playing.any():
        if stateful:
            policy.episode_start(starting)
        actions = policy(obs)
        next_obs, rewards, terminated, truncated, infos = env.step(actions, playing)
        done = terminated | truncated
        if recorder is not None:
            recorder.add(~ended[0], obs[0], actions[0], rewards[0], done[0])  # where `ended`, a reset step
        obs, starting, ended = (
            next_obs,
            np.where(playing[:, None], ended, starting),
            np.where(playing[:, None], done, ended),
        )
        for k in np.flatnonzero(playing):
            got = returns[k]
            counted = [i for i in np.flatnonzero(infos[k].get("_episode", ())) if len(got[i]) < wanted[i]]
            for i in counted:
                got[i].append(float(infos[k]["episode"]["r"][i]))
            if recorder is not None:
                recorder.end_episodes(ended[0], counted)
            playing[k] = any(len(per_env) < want for per_env, want in zip(got, wanted))
    results = []
    for per_member in returns:
        flat = [r for per_env in per_member for r in per_env]
        results.append(
            {
                "mean_return": float(np.mean(flat)),
                "std_return": float(np.std(flat)),
                "episodes": len(flat),
                "returns": flat,
            }
        )
    return results


class _OneMember:
    """A policy on (n, ...) observations as one on (1, n, ...): a vector env as a population of one."""

    def __init__(self, policy: Policy):
        self.policy, self.stateful = policy, isinstance(policy, StatefulPolicy)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.policy(obs[0])[None]

    def episode_start(self, starting: np.ndarray) -> None:
        if self.stateful:
            self.policy.episode_start(starting[0])


class TrajectoryRecorder:
    """The steps of each env's episode under way; an episode's steps are kept when it ends and is counted."""

    def __init__(self, n: int):
        self.under_way: list[list[tuple]] = [[] for _ in range(n)]
        self.kept: list[list[tuple]] = [[] for _ in range(n)]  # per env, its counted episodes' steps in order

    def add(
        self, acting: np.ndarray, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, done: np.ndarray
    ) -> None:
        """One vector step; `acting` (n,) bool leaves out the envs whose step was a reset step."""
        for i in np.flatnonzero(acting):
            self.under_way[i].append((np.array(obs[i]), actions[i], rewards[i], done[i]))

    def end_episodes(self, ended: np.ndarray, counted: list[int]) -> None:
        for i in counted:
            self.kept[i] += self.under_way[i]
        for i in np.flatnonzero(ended):
            self.under_way[i] = []

    def arrays(self) -> dict[str, np.ndarray]:
        obs, actions, rewards, dones = zip(*(step for per_env in self.kept for step in per_env))
        return {
            "obs": np.stack(obs),
            "actions": np.asarray(actions),
            "rewards": np.asarray(rewards, dtype=np.float32),
            "dones": np.asarray(dones, dtype=bool),
        }


def record_episode(env: gym.vector.VectorEnv, policy: Policy, seed: int, path: Path) -> Path:
    """Play one episode on `env` (one env, render_mode="rgb_array") and write it to `path` as an mp4."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()[0]]
    stateful, starting = isinstance(policy, StatefulPolicy), np.ones(1, dtype=bool)
    while True:
        if stateful:
            policy.episode_start(starting)
            starting = np.zeros(1, dtype=bool)
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        frames.append(env.render()[0])
        if terminated[0] or truncated[0]:
            break
    return write_mp4(frames, path, fps=env.metadata.get("render_fps") or 30)


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    """H.264 mp4 of (H, W, 3) uint8 frames, through the static ffmpeg that ships with imageio-ffmpeg (offline)."""
    import imageio_ffmpeg

    height, width = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2  # yuv420p needs even sizes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, macro_block_size=1, output_params=["-loglevel", "error"]
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame[:height, :width, :3]))
    writer.close()
    return path
