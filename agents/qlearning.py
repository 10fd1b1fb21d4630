"""Tabular Q-learning (kind `qlearning`) on discrete observation and action spaces.

Watkins' update, one line (`q_update`):

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * max_a' Q(s', a') * (1 - terminated) - Q(s, a))

A truncated episode (time limit) still bootstraps; a terminated one does not. Acting is epsilon-greedy with
epsilon decaying linearly, named as in dqn (exploration_initial_eps -> exploration_final_eps over
exploration_fraction of the run). The table is the whole model: it is saved with the step counter and RNG state
through `tracker.checkpoint`, and `evaluate` plays it greedily. `plot_q_table` draws it as a heat map, with the
greedy policy as arrows on the map for grid worlds (FrozenLake, CliffWalking).

The cadence is the off-policy agents' (agents/bookkeeping.py `Bookkeeping`): episode statistics, log / evaluate /
checkpoint every so many steps, a best-* checkpoint at each new best evaluation, an evaluation at the last step,
the summary. Evaluation plays the table on envs/evaluation.py's seeded envs, as dqn does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.bookkeeping import Bookkeeping
from agents.checkpoints import Counters
from agents.evaluation import EVAL_SEED_OFFSET, MAX_EVAL_ENVS, make_env, play
from agents.schedules import linear_schedule
from envs.evaluation import Policy
from networks.errors import CheckpointError, ConfigError
from networks.interfaces import Tracker
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything


@dataclass
class Config:
    """Tabular Q-learning. Defaults are textbook values (Sutton & Barto 2018, ch. 6.5)."""

    env_id: str = "FrozenLake-v1"  # any env with Discrete observation and action spaces (toy-text)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env, e.g. {is_slippery: true}
    total_steps: int = field(default=200_000, metadata={"ge": 1})  # env steps
    seed: int = 0  # seeds the env, the action sampling and the tie-breaking
    device: str = "auto"  # validated as every kind's (auto | cpu | cuda[:N]); the table itself lives in NumPy
    learning_rate: float = field(default=0.1, metadata={"gt": 0, "le": 1})  # alpha
    learning_rate_final: float | None = field(default=None, metadata={"gt": 0, "le": 1})  # linear decay to this
    gamma: float = field(default=0.99, metadata={"ge": 0, "le": 1})  # discount
    initial_q: float = 0.0  # starting value of every entry (optimistic > 0 explores more)
    exploration_fraction: float = field(default=0.5, metadata={"gt": 0, "le": 1})  # share of the run eps decays
    exploration_initial_eps: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    exploration_final_eps: float = field(default=0.05, metadata={"ge": 0, "le": 1})
    eval_every: int = field(default=0, metadata={"ge": 0})  # env steps between greedy evaluations; 0 = only at end
    eval_episodes: int = field(default=100, metadata={"ge": 1})
    checkpoint_every: int = field(default=50_000, metadata={"ge": 1})  # env steps between checkpoints
    log_every: int = field(default=1_000, metadata={"ge": 1})  # env steps between chart points

    def validate(self) -> None:
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError(
                "exploration_final_eps",
                f"must be <= exploration_initial_eps ({self.exploration_initial_eps}), "
                f"got {self.exploration_final_eps}",
            )


# --- the maths ---------------------------------------------------------------------------------


def q_update(
    q_table: np.ndarray,
    state: int,
    action: int,
    reward: float,
    next_state: int,
    terminated: bool,
    *,
    alpha: float,
    gamma: float,
) -> float:
    """One Q-learning update in place. Returns the TD error (before scaling by alpha)."""
    bootstrap = 0.0 if terminated else gamma * float(q_table[next_state].max())
    td_error = reward + bootstrap - float(q_table[state, action])
    q_table[state, action] += alpha * td_error
    return td_error


def greedy_action(q_row: np.ndarray, rng: np.random.Generator) -> int:
    """argmax with random tie-breaking (an untouched row would otherwise always pick action 0)."""
    best = np.flatnonzero(q_row == q_row.max())
    return int(best[0] if len(best) == 1 else rng.choice(best))


# --- training -----------------------------------------------------------------------------------


def table_shape(env: gym.vector.VectorEnv, env_id: str) -> tuple[int, int]:
    """(n_states, n_actions), or ConfigError when a space is not Discrete."""
    obs_space, action_space = env.single_observation_space, env.single_action_space
    for space, what in ((obs_space, "observation"), (action_space, "action")):
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(
                "env_id",
                f"tabular Q-learning needs a Discrete {what} space; '{env_id}' has {space} (use dqn instead)",
            )
    return int(obs_space.n), int(action_space.n)


def train(config: Config, tracker: Tracker, *, resume: dict | None = None) -> dict[str, float]:
    config.validate()
    resolve_device(config.device)  # bad input fails as for every kind, though the table needs no device
    rng = seed_everything(config.seed)
    env = make_env(config, 1, config.seed)
    n_states, n_actions = table_shape(env, config.env_id)
    q_table = np.full((n_states, n_actions), config.initial_q, dtype=np.float64)
    counters = Counters()
    if resume is not None:
        q_table = _restore(resume, q_table.shape)
        counters.step, counters.best_eval = int(resume["step"]), float(resume.get("best_eval", -np.inf))
        restore_rng_state(resume["rng"], rng)

    alpha_final = config.learning_rate if config.learning_rate_final is None else config.learning_rate_final
    eps_decay_steps = config.exploration_fraction * config.total_steps
    returns: list[float] = []
    td_errors: list[float] = []

    def epsilon_at(step: int) -> float:
        return linear_schedule(config.exploration_initial_eps, config.exploration_final_eps, eps_decay_steps, step)

    def alpha_at(step: int) -> float:
        return linear_schedule(config.learning_rate, alpha_final, config.total_steps, step)

    def metrics(step: int) -> dict:
        charts = {
            "charts/epsilon": epsilon_at(step),
            "charts/learning_rate": alpha_at(counters.step),
            "losses/td_error_abs": float(np.mean(np.abs(td_errors))),
            "losses/q_values": float(q_table.max(axis=1).mean()),
        }
        td_errors.clear()
        return charts

    book = Bookkeeping(
        config,
        tracker,
        counters,
        metrics=metrics,
        evaluate=lambda: _evaluate_table(config, q_table, config.eval_episodes, config.seed + EVAL_SEED_OFFSET),
        snapshot=lambda _: _tree(q_table, counters, rng),
    )
    obs, _ = env.reset()
    after_end = np.zeros(1, dtype=bool)  # NEXT_STEP autoreset: the step after an episode's end is a reset step
    while counters.step < config.total_steps:
        before, state = counters.step, int(obs[0])
        # (1) act: ε-greedy, ties broken at random
        if rng.random() < epsilon_at(counters.step):
            action = int(rng.integers(n_actions))
        else:
            action = greedy_action(q_table[state], rng)
        # (2) step, and learn from the transition at once (a reset step's action was ignored: no transition)
        obs, reward, terminated, truncated, info = env.step(np.array([action]))
        valid, after_end = ~after_end, terminated | truncated
        if not book.record_step(valid, info):
            continue
        alpha = alpha_at(counters.step)
        td_error = q_update(
            q_table, state, action, float(reward[0]), int(obs[0]), bool(terminated[0]), alpha=alpha, gamma=config.gamma
        )
        td_errors.append(td_error)
        counters.updates += 1
        if after_end[0]:
            returns.append(float(info["episode"]["r"][0]))
        # (3) log, evaluate, checkpoint
        if book.after_step(before):
            break

    # The table as a heat map (with the greedy policy on grid worlds), where `dlforge report` finds run media.
    picture = q_table_image(q_table, config.env_id, config.env_kwargs)
    tracker.image("q_table", picture, counters.step, caption=f"Q-table of {config.env_id} at step {counters.step}")
    last_100 = float(np.mean(returns[-100:])) if returns else float("nan")
    return book.finish(env, extra={"charts/mean_return_last_100": last_100})


def _tree(q_table: np.ndarray, counters: Counters, rng: np.random.Generator) -> dict:
    return {"q_table": q_table.copy(), "step": counters.step, "best_eval": counters.best_eval, "rng": rng_state(rng)}


def _restore(tree: dict, shape: tuple[int, int]) -> np.ndarray:
    q_table = tree.get("q_table") if isinstance(tree, dict) else None
    if q_table is None:
        raise CheckpointError("checkpoint holds no 'q_table' (is it a qlearning run?)")
    q_table = np.asarray(q_table, dtype=np.float64).copy()
    if q_table.shape != shape:
        raise CheckpointError(f"q_table: checkpoint shape {q_table.shape} does not match the env's {shape}")
    return q_table


# --- evaluation ---------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the saved table (ties broken by action order, so runs repeat exactly)."""
    env = make_env(config, 1, seed)
    shape = table_shape(env, config.env_id)
    env.close()
    return _evaluate_table(config, _restore(tree, shape), episodes, seed, video_path, trajectories)


def _evaluate_table(
    config: Config,
    q_table: np.ndarray,
    episodes: int,
    seed: int,
    video_path: Path | None = None,
    trajectories: bool = False,
) -> dict:
    """`episodes` greedy episodes on sync envs seeded seed + i (agents/evaluation.py `play`)."""

    def greedy() -> Policy:
        return lambda obs: q_table[obs].argmax(axis=1)  # obs (n,) states -> (n,) actions, first best on ties

    env = make_env(config, min(episodes, MAX_EVAL_ENVS), seed, vectorization="sync")
    return play(config, env, greedy, episodes, seed, video_path, trajectories)


# --- report -------------------------------------------------------------------------------------

# Arrow (dx, dy) per action for grid worlds, in the image's coordinates (y grows downwards).
_GRID_ARROWS = {
    "FrozenLake": {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)},  # left, down, right, up
    "CliffWalking": {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)},  # up, right, down, left
}
_ACTION_NAMES = {
    "FrozenLake": ["left", "down", "right", "up"],
    "CliffWalking": ["up", "right", "down", "left"],
    "Taxi": ["south", "north", "east", "west", "pickup", "drop"],
}


def plot_q_table(
    tree_or_table: dict | np.ndarray, env_id: str, path: str | Path, env_kwargs: dict | None = None
) -> Path:
    """PNG of the Q-table as a heat map; for grid worlds also max_a Q per cell with greedy-policy arrows."""
    import matplotlib.pyplot as plt

    q_table = tree_or_table["q_table"] if isinstance(tree_or_table, dict) else tree_or_table
    fig = _figure(q_table, env_id, env_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def q_table_image(q_table: np.ndarray, env_id: str, env_kwargs: dict | None = None) -> np.ndarray:
    """`plot_q_table`'s picture as an (H, W, 3) uint8 array, for `tracker.image`."""
    import matplotlib.pyplot as plt

    fig = _figure(q_table, env_id, env_kwargs)
    fig.set_dpi(100)
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture


def _figure(q_table: np.ndarray, env_id: str, env_kwargs: dict | None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q_table = np.asarray(q_table, dtype=np.float64)
    family = env_id.split("/")[-1].split("-")[0]
    grid = _grid_layout(env_id, family, q_table.shape[0], env_kwargs or {})

    fig, axes = plt.subplots(1, 2 if grid is not None else 1, figsize=(12 if grid is not None else 6, 5), squeeze=False)
    ax = axes[0, 0]
    image = ax.imshow(q_table, aspect="auto", cmap="viridis", interpolation="nearest")
    names = _ACTION_NAMES.get(family, [str(a) for a in range(q_table.shape[1])])
    ax.set_xticks(range(q_table.shape[1]), names[: q_table.shape[1]], rotation=45 if len(names) > 4 else 0)
    ax.set_xlabel("action")
    ax.set_ylabel("state")
    ax.set_title(f"Q(s, a): {env_id}")
    fig.colorbar(image, ax=ax)

    if grid is not None:
        desc, arrows = grid
        rows, cols = desc.shape
        values = q_table.max(axis=1).reshape(rows, cols)
        ax = axes[0, 1]
        image = ax.imshow(values, cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax)
        for index in range(rows * cols):
            r, c = divmod(index, cols)
            label = desc[r, c]
            if label in ("H", "G", "C"):  # hole, goal, cliff: no action matters there
                ax.text(c, r, label, ha="center", va="center", color="white", fontsize=12, weight="bold")
                continue
            if np.all(q_table[index] == q_table[index, 0]):
                continue  # never updated: no preference to draw
            dx, dy = arrows[int(np.argmax(q_table[index]))]
            ax.arrow(c - 0.25 * dx, r - 0.25 * dy, 0.4 * dx, 0.4 * dy, head_width=0.15, color="white")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("max_a Q(s, a) and the greedy policy")
    fig.tight_layout()
    return fig


def _grid_layout(env_id: str, family: str, n_states: int, env_kwargs: dict) -> tuple[np.ndarray, dict] | None:
    """(cell labels (rows, cols) of str, arrows per action) for a grid world, else None."""
    if family not in _GRID_ARROWS:
        return None
    try:
        env = gym.make(env_id, **env_kwargs)
    except Exception:
        return None
    unwrapped = env.unwrapped
    if family == "FrozenLake":
        desc = np.array([[ch.decode() for ch in row] for row in unwrapped.desc])
    else:  # CliffWalking: 4x12, start bottom-left, cliff along the bottom, goal bottom-right
        rows, cols = unwrapped.shape
        desc = np.full((rows, cols), ".", dtype=object)
        desc[rows - 1, 1:-1] = "C"
        desc[rows - 1, -1] = "G"
    env.close()
    if desc.size != n_states:
        return None
    return desc, _GRID_ARROWS[family]
