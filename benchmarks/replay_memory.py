"""Memory per transition of the compact frame replay, filled with real Atari transitions.

    python benchmarks/replay_memory.py --env ALE/Pong-v5 --capacity 50000 --steps 60000

Plays a random policy in `--num-envs` preprocessed envs (84x84 grayscale, frame stack 4), stores every
transition the way dqn does (autoreset steps skipped), runs past the capacity so the buffer has wrapped around,
then reports the bytes the replay holds per stored transition, its resident memory, and the extrapolation to
1M transitions next to the two stacked layouts (naive: obs and next_obs stacks per transition; SB3's
optimize_memory_usage: one stack per transition). Sampling speed is measured on the full buffer.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

from agents.frame_replay import FrameReplay
from envs.atari import make_single


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--capacity", type=int, default=50_000, help="frame slots in the replay")
    parser.add_argument("--steps", type=int, default=60_000, help="vector-env steps to play")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gym.vector.SyncVectorEnv(
        [lambda: make_single(args.env) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    frame_shape = env.single_observation_space.shape[1:]
    rss_before = resident_bytes()
    replay = FrameReplay(
        capacity=args.capacity,
        num_envs=args.num_envs,
        frame_shape=frame_shape,
        n_actions=int(env.single_action_space.n),
        seed=args.seed,
    )
    rng = np.random.default_rng(args.seed)
    obs, _ = env.reset(seed=args.seed)
    after_end = np.zeros(args.num_envs, dtype=bool)
    added, episodes, add_time, start = 0, 0, 0.0, time.perf_counter()
    for _ in range(args.steps // args.num_envs):
        actions = rng.integers(env.single_action_space.n, size=args.num_envs)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        tick = time.perf_counter()
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid=~after_end)
        add_time += time.perf_counter() - tick
        added += int((~after_end).sum())
        after_end = terminated | truncated
        episodes += int(after_end.sum())
        obs = next_obs
    fill_seconds = time.perf_counter() - start
    rss_growth = resident_bytes() - rss_before
    env.close()

    held = len(replay)
    frame = int(np.prod(frame_shape))
    per_transition = replay.nbytes / held
    rss_per_transition = rss_growth / held
    tick = time.perf_counter()
    for _ in range(50):
        replay.sample(32)
    sample_ms = (time.perf_counter() - tick) / 50 * 1e3

    print(f"env {args.env}  frames {frame_shape}  num_envs {args.num_envs}")
    print(
        f"played {added} transitions in {fill_seconds:.1f} s ({episodes} episodes ended), "
        f"add() {add_time / added * 1e6:.1f} us per transition"
    )
    print(f"replay holds {held} transitions in {args.capacity} slots (wrapped {added / args.capacity:.2f}x)")
    print(
        f"arrays: {replay.nbytes / 1e6:.1f} MB = {per_transition:.0f} bytes/transition "
        f"({per_transition / frame:.4f} frames of {frame} bytes)"
    )
    print(f"resident memory grew {rss_growth / 1e6:.1f} MB = {rss_per_transition:.0f} bytes/transition")
    print(f"sample(32): {sample_ms:.2f} ms")
    print("extrapolated to 1M transitions:")
    print(f"  dlforge FrameReplay           {per_transition * 1e6 / 1e9:6.2f} GB   (goal <= 7.1 GB)")
    print(f"  SB3 optimize_memory_usage     {4 * frame * 1e6 / 1e9:6.2f} GB   (one 4-frame stack each)")
    print(f"  naive obs + next_obs stacks   {8 * frame * 1e6 / 1e9:6.2f} GB")
    print(f"goal met: {per_transition * 1e6 / 1e9 <= 7.1}")


if __name__ == "__main__":
    main()
