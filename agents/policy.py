"""A trained agent as a policy object: `agents.load(run_dir)`, then stable-baselines3's `predict`.

    policy = agents.load("runs/cartpole", checkpoint="best")
    action, state = policy.predict(obs, deterministic=True)   # obs as the env returns it: one, or a batch (N, ...)
    q = policy.q_values(obs)                                   # (A,) or (N, A)

`run_dir` is any folder with a config.yaml and checkpoints/ (a run folder, or a downloaded W&B model artifact); a
network started from another run's encoder is built from the copy the folder keeps in pretrained/.
dqn, pqn and qlearning policies have no state (`state` comes back None); drqn carries its LSTM/GRU state: pass back
the state `predict` returned, with `episode_start` true where an episode begins (SB3's RecurrentPPO convention).
An observation of the wrong shape is refused with a one-line ConfigError (a ValueError).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import envs
from agents import dqn, drqn, evaluation, pqn, qlearning
from networks import io, pretrained
from networks.errors import CheckpointError, ConfigError
from networks.export_graph import ExportGraph
from networks.run_folder import load_checkpoint, read_run_config
from networks.runtime import resolve_device
from networks.typed_config import from_dict

State = tuple[np.ndarray, ...]


class Policy:
    """What every loaded agent shares: its config and spaces, and the observation checks."""

    kind = ""

    def __init__(self, config: Any, observation_space: gym.Space, action_space: gym.Space, meta: dict, which: str):
        self.config = config
        self.observation_space, self.action_space = observation_space, action_space
        self.checkpoint = {"which": which, "step": meta.get("step"), "metric": meta.get("metric")}
        self._rng = np.random.default_rng()

    def __repr__(self) -> str:
        step = self.checkpoint["step"]
        return f"<{self.kind} policy on {self.config.env_id}, {self.checkpoint['which']} checkpoint at step {step}>"

    def batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        """(obs as a batch (N, *shape) in the space's dtype, whether one observation was given)."""
        array = np.asarray(obs)
        shape = self.observation_space.shape
        if array.shape == shape:
            single = True
        elif array.ndim == len(shape) + 1 and array.shape[1:] == shape and len(array) > 0:
            single = False
        else:
            batched = f"(N, {', '.join(map(str, shape))})" if shape else "(N,)"
            raise ConfigError(
                "observation", f"expected shape {shape} or {batched} for {self.config.env_id}, got {array.shape}"
            )
        return array.astype(self.observation_space.dtype, copy=False).reshape(-1, *shape), single

    def step(self, obs: Any, state: Any, episode_start: Any) -> tuple[np.ndarray, Any, bool]:
        """(Q-values (N, A), the next state or None, whether one observation was given)."""
        raise NotImplementedError

    def graph(self) -> ExportGraph:
        """The greedy policy as one network for export: observation (as the env gives it) -> action, Q-values."""
        raise NotImplementedError

    def weights(self) -> dict:
        """The checkpoint tree that acting needs (the trainer's `evaluate` takes it), without the training state."""
        raise NotImplementedError

    def env_observations(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`n` observations from the policy's env under uniformly random actions, and whether each one starts an
        episode: inputs to check an exported graph against (or to calibrate it with)."""
        env = envs.make(self.config.env_id, num_envs=1, seed=seed, vectorization="sync", **self.config.env_kwargs)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        seen, starts, start = [], [], True
        while len(seen) < n:
            seen.append(obs[0])
            starts.append(start)
            obs, _, terminated, truncated, _ = env.step(rng.integers(self.action_space.n, size=1))
            start = bool(terminated[0] or truncated[0])
            if start:  # the vector env resets on the next step (autoreset), whose action is ignored
                obs, *_ = env.step(np.zeros(1, dtype=np.int64))
        env.close()
        return np.stack(seen), np.array(starts)

    def example_obs(self, n: int = 2) -> torch.Tensor:
        return torch.as_tensor(np.stack([self.observation_space.sample() for _ in range(n)]))

    def q_values(self, obs: Any) -> np.ndarray:
        """Q(obs, a) for every action: (A,) for one observation, (N, A) for a batch."""
        q, _, single = self.step(obs, None, None)
        return q[0] if single else q

    def predict(
        self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """(actions, next state), as stable-baselines3's `predict`: greedy, or ε-greedy with the run's final ε
        when `deterministic=False` (as SB3's DQN). One observation gives one action (a 0-d array)."""
        q, next_state, single = self.step(obs, state, episode_start)
        actions = q.argmax(axis=1)  # ties: the first action
        if not deterministic:
            random = self._rng.random(len(actions)) < self.config.exploration_final_eps
            actions = np.where(random, self._rng.integers(self.action_space.n, size=len(actions)), actions)
        return (actions[0] if single else actions), next_state


class NetworkPolicy(Policy):
    """A policy whose Q-function is a network: the checkpoint's `q_net`, rebuilt by the trainer's builder."""

    build_q_network = staticmethod(dqn.build_q_network)

    def __init__(self, config: dqn.Config, tree: dict, meta: dict, which: str, device: torch.device):
        env = evaluation.make_env(config, 1, config.seed)
        q_net = self.build_q_network(config, env)
        super().__init__(config, env.single_observation_space, env.single_action_space, meta, which)
        env.close()
        io.load_module_state(q_net, _part(tree, "q_net", self.kind), "q_net")
        self.q_net, self.device = q_net.to(device).eval(), device

    def weights(self) -> dict:
        return {"q_net": {k: v.detach().cpu() for k, v in self.q_net.state_dict().items()}}


class DQNPolicy(NetworkPolicy):
    kind = "dqn"

    def step(self, obs: Any, state: Any, episode_start: Any) -> tuple[np.ndarray, None, bool]:
        batch, single = self.batch(obs)
        with torch.inference_mode():
            q = self.q_net(torch.as_tensor(batch, device=self.device))  # (N, A)
        return q.cpu().numpy(), None, single

    def graph(self) -> ExportGraph:
        module = _Greedy(copy.deepcopy(self.q_net).cpu()).eval()
        return ExportGraph(module, {"obs": self.example_obs()}, ["action", "q_values"], {"obs": 0})


class PQNPolicy(DQNPolicy):
    """A PQN run acts as a DQN one: a feed-forward Q-network, greedy on its Q-values."""

    kind = "pqn"
    build_q_network = staticmethod(pqn.build_q_network)


class DRQNPolicy(NetworkPolicy):
    kind = "drqn"
    build_q_network = staticmethod(drqn.build_q_network)

    def initial_state(self, n: int = 1) -> State:
        """The all-zero state every episode starts from, as arrays (layers, n, hidden)."""
        return tuple(s.cpu().numpy() for s in self.q_net.initial_state(n))

    def step(self, obs: Any, state: State | None, episode_start: Any) -> tuple[np.ndarray, State, bool]:
        """One step from `state` (zeros when None), zeroed first where `episode_start` is true."""
        batch, single = self.batch(obs)
        n = len(batch)
        tensors = tuple(torch.as_tensor(np.asarray(s), device=self.device) for s in state or self.initial_state(n))
        if any(t.ndim != 3 or t.shape[1] != n for t in tensors):
            shapes = [tuple(t.shape) for t in tensors]
            raise ConfigError("state", f"expected arrays (layers, {n}, hidden) from the last predict, got {shapes}")
        starts = np.zeros(n, bool) if episode_start is None else np.broadcast_to(np.asarray(episode_start, bool), n)
        done = torch.tensor(starts, device=self.device)  # true: that slot's state is zeroed before the step
        with torch.inference_mode():
            q, next_state = self.q_net(torch.as_tensor(batch, device=self.device), tensors, done)  # (N, A)
        return q.cpu().numpy(), tuple(s.cpu().numpy() for s in next_state), single

    def q_values(self, obs: Any, state: State | None = None, episode_start: Any = None) -> np.ndarray:
        """Q-values from `state` (zeros when None); the next state comes from `predict`."""
        q, _, single = self.step(obs, state, episode_start)
        return q[0] if single else q

    def graph(self) -> ExportGraph:
        """(obs, h[, c]) -> (action, q_values, h_out[, c_out]): the caller carries the state and zeroes it
        where an episode starts."""
        module = _RecurrentGreedy(copy.deepcopy(self.q_net).cpu()).eval()
        names = ["h", "c"][: len(self.initial_state())]
        inputs = {"obs": self.example_obs(), **{k: torch.from_numpy(s) for k, s in zip(names, self.initial_state(2))}}
        outputs = ["action", "q_values", *(f"{k}_out" for k in names)]
        return ExportGraph(module, inputs, outputs, {"obs": 0, **dict.fromkeys(names, 1)})


class TabularPolicy(Policy):
    kind = "qlearning"

    def __init__(self, config: qlearning.Config, tree: dict, meta: dict, which: str, device: torch.device):
        env = envs.make(config.env_id, num_envs=1, seed=config.seed, **config.env_kwargs)
        super().__init__(config, env.single_observation_space, env.single_action_space, meta, which)
        env.close()
        table = np.asarray(_part(tree, "q_table", self.kind), dtype=np.float64)
        expected = (int(self.observation_space.n), int(self.action_space.n))
        if table.shape != expected:
            raise CheckpointError(f"q_table: checkpoint shape {table.shape} does not match the env's {expected}")
        self.q_table = table

    def step(self, obs: Any, state: Any, episode_start: Any) -> tuple[np.ndarray, None, bool]:
        batch, single = self.batch(obs)
        if ((batch < 0) | (batch >= self.observation_space.n)).any():
            raise ConfigError("observation", f"states of {self.config.env_id} are 0..{self.observation_space.n - 1}")
        return self.q_table[batch], None, single

    def weights(self) -> dict:
        return {"q_table": self.q_table.copy()}

    def graph(self) -> ExportGraph:
        module = _TableGreedy(torch.from_numpy(self.q_table)).eval()
        return ExportGraph(module, {"obs": self.example_obs()}, ["action", "q_values"], {"obs": 0})


class _Greedy(nn.Module):
    """obs (N, ...) -> (argmax_a Q (N,), Q (N, A)); a uint8 observation is scaled inside the Q-network."""

    def __init__(self, q_net: nn.Module):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_net(obs)
        return q.argmax(dim=1), q


class _RecurrentGreedy(nn.Module):
    """(obs (N, ...), h (layers, N, H)[, c for an LSTM]) -> (action (N,), Q (N, A), h_out[, c_out])."""

    def __init__(self, q_net: nn.Module):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        q, next_state = self.q_net(obs, (h,) if c is None else (h, c))
        return (q.argmax(dim=1), q, *next_state)


class _TableGreedy(nn.Module):
    """state index (N,) -> (action (N,), the table's row Q (N, A))."""

    def __init__(self, q_table: torch.Tensor):
        super().__init__()
        self.register_buffer("q_table", q_table)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_table[obs]
        return q.argmax(dim=1), q


POLICIES: dict[str, tuple[type, type[Policy]]] = {
    "dqn": (dqn.Config, DQNPolicy),
    "drqn": (drqn.Config, DRQNPolicy),
    "qlearning": (qlearning.Config, TabularPolicy),
    "pqn": (pqn.Config, PQNPolicy),
}


def load(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> Policy:
    """The agent of a run folder (or a downloaded artifact folder) as a policy; see the module docstring."""
    document = read_run_config(run_dir)
    kind = document.get("kind")
    if kind not in POLICIES:
        raise ConfigError(
            "run", f"{run_dir} is a '{kind}' run, which holds no policy; agents.load takes {', '.join(POLICIES)} runs"
        )
    config_cls, policy_cls = POLICIES[kind]
    config = from_dict(config_cls, {k: v for k, v in document.items() if k not in ("kind", "tracking")}, "")
    pretrained.use_kept_copy(config, run_dir)  # a network started from another run builds from the run's copy
    tree, meta, which = load_checkpoint(Path(run_dir), checkpoint)
    return policy_cls(config, tree, meta, which, resolve_device(device))


def _part(tree: dict, key: str, kind: str) -> Any:
    if not isinstance(tree, dict) or key not in tree:
        raise CheckpointError(f"checkpoint holds no '{key}' (is it a {kind} run?)")
    return tree[key]
