"""The one env factory: `make(env_id, num_envs, seed, ...)` -> a seeded Gymnasium vector env.

Every agent builds its environments here, so vectorisation, seeding and episode statistics are done
one way. An env with a native vector entry point (CartPole: `CartPoleVectorEnv`, all copies stepped by
one NumPy call) uses it when that is faster (from NATIVE_FROM copies up); otherwise the copies are
wrapped in `SyncVectorEnv` (or `AsyncVectorEnv` when asked).
Either way the env autoresets in `NEXT_STEP` mode: the step after an episode ends is a reset step
whose action is ignored, and `info["episode"]` holds the finished episode's return and length.

Families that need their own preprocessing plug in by id prefix: `ALE/...` (envs/atari.py) and
`MiniGrid-...` (envs/minigrid.py) provide `make_single(env_id, render_mode=None, **kwargs) -> gym.Env`,
ids under `dlforge/` are registered by envs/novel.py and ids under `MinAtar/` by envs/minatar.py. They are
imported only when asked for.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.wrappers.vector import RecordEpisodeStatistics

# The one shared error type lives in networks/errors.py (a leaf module with no imports of ours).
from networks.errors import ConfigError

# id prefix -> module that builds one preprocessed env with `make_single(env_id, render_mode, **kwargs)`
FAMILIES = {"ALE/": "envs.atari", "MiniGrid-": "envs.minigrid"}
# id prefix -> module whose import registers those ids with Gymnasium
REGISTERING_MODULES = {"dlforge/": "envs.novel", "MinAtar/": "envs.minatar"}
# a package that ships as one of dlforge's optional extras -> the extra that installs it
EXTRAS = {"minatar": "minatar"}
VECTORIZATION = ("auto", "vector", "sync", "async")
# `auto` takes an env's native vector entry point from this many copies up. Below it, stepping separate envs
# costs less: CartPole, 1 env: sync 17 us/step, native 34 us/step; they cross at 4 envs; 16 envs: 100 vs 42.
NATIVE_FROM = 4


def make(
    env_id: str,
    num_envs: int = 1,
    seed: int = 0,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    render_mode: str | None = None,
    *,
    vectorization: str = "auto",
    **env_kwargs: Any,
) -> VectorEnv:
    """A vector env of `num_envs` copies of `env_id`, seeded with `seed` and recording episode statistics.

    `wrappers` are applied to each single env (this rules out a native vector entry point).
    `vectorization`: auto (the native vector env where there is one and num_envs >= NATIVE_FROM, else sync)
    | vector (the native one) | sync | async.
    `env_kwargs` go to the env constructor (e.g. `max_episode_steps=200`).
    The first `reset()` without a seed uses `seed`; the action spaces are seeded with it too.
    """
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError("env_id", f"expected an environment id such as 'CartPole-v1', got {env_id!r}")
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError("num_envs", f"must be an integer >= 1, got {num_envs!r}")
    if vectorization not in VECTORIZATION:
        raise ConfigError("vectorization", f"expected one of {', '.join(VECTORIZATION)}; got '{vectorization}'")

    family = next((module for prefix, module in FAMILIES.items() if env_id.startswith(prefix)), None)
    if family is not None:
        make_single = _import(family, env_id).make_single

        def make_one() -> gym.Env:
            return make_single(env_id, render_mode=render_mode, **env_kwargs)

        env = _vectorize([make_one] * num_envs, wrappers, vectorization)
    else:
        spec = find_spec(env_id)
        native = vectorization == "vector" or (vectorization == "auto" and num_envs >= NATIVE_FROM)
        if native and spec.vector_entry_point is not None and not wrappers:
            env = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="vector_entry_point",
                render_mode=render_mode,
                **env_kwargs,
            )
        else:

            def make_one() -> gym.Env:
                return gym.make(env_id, render_mode=render_mode, **env_kwargs)

            env = _vectorize([make_one] * num_envs, wrappers, vectorization)

    if env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.NEXT_STEP:
        raise ConfigError("env_id", f"'{env_id}' does not autoreset in NEXT_STEP mode, which dlforge expects")
    env = _SeedOnFirstReset(RecordEpisodeStatistics(env), seed)
    env.action_space.seed(seed)
    env.single_action_space.seed(seed)
    return env


def find_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, or ConfigError with a did-you-mean."""
    for prefix, module in REGISTERING_MODULES.items():
        if env_id.startswith(prefix):
            _import(module, env_id)
    if env_id not in gym.registry:
        raise ConfigError("env_id", f"unknown environment '{env_id}'{did_you_mean(env_id, gym.registry)}")
    return gym.spec(env_id)


def did_you_mean(name: str, choices: Any) -> str:
    """' (did you mean 'X'?)' for the closest choice, or ''."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:  # only the case differs
        return f" (did you mean '{lowered[name.lower()]}'?)"
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _vectorize(env_fns: list[Callable[[], gym.Env]], wrappers: Sequence[Callable], mode: str) -> VectorEnv:
    def build(make_one: Callable[[], gym.Env]) -> Callable[[], gym.Env]:
        def thunk() -> gym.Env:
            env = make_one()
            for wrapper in wrappers:
                env = wrapper(env)
            return env

        return thunk

    thunks = [build(fn) for fn in env_fns]
    if mode == "async":
        return gym.vector.AsyncVectorEnv(thunks, autoreset_mode=AutoresetMode.NEXT_STEP)
    return gym.vector.SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.NEXT_STEP)


def _import(module: str, env_id: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # the family's own dependency is missing: say which
            hint = f": pip install 'dlforge[{EXTRAS[e.name]}]'" if e.name in EXTRAS else ""
            raise ConfigError(
                "env_id", f"'{env_id}' needs the package '{e.name}', which is not installed{hint}"
            ) from None
        path = module.replace(".", "/") + ".py"
        raise ConfigError("env_id", f"'{env_id}' needs {path}, which this install lacks") from None


class _SeedOnFirstReset(VectorWrapper):
    """Uses the factory's seed for the first `reset()` that gets none, so `make(..., seed=s)` is reproducible."""

    def __init__(self, env: VectorEnv, seed: int):
        super().__init__(env)
        self._pending_seed: int | None = seed

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)
