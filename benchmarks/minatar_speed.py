"""Is MinAtar stepping the bottleneck? Env steps/s against the cost of the small CNN that learns on it.

    .venv/bin/python -P benchmarks/minatar_speed.py               # about 1 minute
    .venv/bin/python -P benchmarks/minatar_speed.py --seconds 0.5 # quicker, noisier

For each game: `envs.make("MinAtar/<Game>-v1")` with 1 and with 64 envs (sync vector env, random actions,
autoreset included), next to the bare `minatar` game (act + state, no wrappers). Then the MinAtar paper's
network (one conv of 16 3x3 filters, 128 hidden; built by `networks.build`) at one torch thread: a greedy
forward pass for 1 and for 64 observations, and one forward + backward + optimizer step at minibatch 32
(DQN's) and 128 (PQN's on MinAtar: 128 envs x 32 steps / 32 minibatches). All figures are per observation, so
they add up: an agent step costs one env step plus its share of the network's work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import envs
import networks
from envs.minatar import GAMES


def per_second(fn, seconds: float, items_per_call: int) -> float:
    """Calls of `fn` for about `seconds` (after one warm-up call) -> items per second."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls * items_per_call / elapsed


def env_rate(env_id: str, num_envs: int, seconds: float) -> float:
    env = envs.make(env_id, num_envs=num_envs, seed=0, vectorization="sync")
    env.reset()
    rng = np.random.default_rng(0)
    n = env.single_action_space.n

    def step():
        env.step(rng.integers(n, size=num_envs))

    rate = per_second(step, seconds, num_envs)
    env.close()
    return rate


def bare_game_rate(game: str, seconds: float) -> float:
    from minatar import Environment

    env = Environment(game, sticky_action_prob=0.1)
    env.seed(0)
    env.reset()
    actions = env.minimal_action_set()
    rng = np.random.default_rng(0)

    def step():
        _, terminal = env.act(actions[rng.integers(len(actions))])
        env.state()
        if terminal:
            env.reset()

    return per_second(step, seconds, 1)


def network_rates(seconds: float) -> dict[str, float]:
    spec = {"type": "cnn", "conv": [[16, 3, 1]], "hidden": [128]}  # Young & Tian 2019
    net = networks.build(spec, (4, 10, 10), output_dim=3)
    optimizer = torch.optim.RAdam(net.parameters(), lr=1e-4)
    rates = {}
    for batch in (1, 64):
        x = torch.rand(batch, 4, 10, 10)

        def forward(x=x):
            with torch.no_grad():
                net(x).argmax(-1)

        rates[f"forward, batch {batch}"] = per_second(forward, seconds, batch)
    for batch in (32, 128):
        x, actions, targets = torch.rand(batch, 4, 10, 10), torch.randint(3, (batch,)), torch.rand(batch)

        def update(x=x, actions=actions, targets=targets):
            q = net(x).gather(1, actions[:, None]).squeeze(1)
            loss = torch.nn.functional.mse_loss(q, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        rates[f"update, minibatch {batch}"] = per_second(update, seconds, batch)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"{'game':15s} {'1 env':>12s} {'64 envs':>12s} {'bare game':>12s}   (steps/s; us per step)")
    for name, game in GAMES.items():
        one = env_rate(f"MinAtar/{name}-v1", 1, args.seconds)
        many = env_rate(f"MinAtar/{name}-v1", 64, args.seconds)
        bare = bare_game_rate(game, args.seconds)
        print(
            f"{name:15s} {one:12,.0f} {many:12,.0f} {bare:12,.0f}   "
            f"({1e6 / one:.0f}; {1e6 / many:.0f}; {1e6 / bare:.0f} us)"
        )
    print("\nthe paper's CNN, one torch thread (observations/s; us per observation)")
    for what, rate in network_rates(args.seconds).items():
        print(f"  {what:22s} {rate:12,.0f}   ({1e6 / rate:.1f} us)")


if __name__ == "__main__":
    main()
