"""Tiny trained runs that several test files load, export and report: each trained once per test session.

The runs are real (the bundled configs through launch.run.train_run, on tiny budgets); tests must not change
them: copy a run before damaging it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET = ["tracking.wandb=disabled"]
TINY = {
    # an MLP on CartPole's (4,) float observations
    "cartpole-mlp": (
        "configs/dqn/cartpole.yaml",
        ["total_steps=1500", "learning_starts=300", "eval_every=500", "eval_episodes=2", "checkpoint_every=500"]
        + ["stop_at_return=null"],
    ),
    # a CNN on MiniGrid's (3, 7, 7) uint8 view: pixels scaled inside the network
    "doorkey-cnn": (
        "configs/dqn/minigrid-doorkey.yaml",
        ["total_steps=400", "num_envs=2", "learning_starts=200", "buffer_size=1000", "eval_every=400"]
        + ["eval_episodes=1", "checkpoint_every=400"],
    ),
    # an LSTM on CartPole without velocities: the state must be carried
    "novel-drqn": (
        "configs/drqn/cartpole-novel.yaml",
        ["total_steps=600", "num_envs=2", "learning_starts=200", "buffer_size=2000", "batch_size=8"]
        + ["eval_every=600", "eval_episodes=2", "checkpoint_every=600"],
    ),
    # a PQN run: the same MLP kind of policy, from a rollout learner without a target network
    "cartpole-pqn": (
        "configs/pqn/cartpole.yaml",
        ["total_steps=1000", "eval_every=500", "eval_episodes=2", "checkpoint_every=500", "stop_at_return=null"],
    ),
    # a Q-table on FrozenLake
    "frozenlake-q": ("configs/qlearning/frozenlake.yaml", ["total_steps=3000", "eval_episodes=10"]),
    # generative kinds on the 8x8 digits
    "digits-gan": ("configs/gan/digits.yaml", ["total_steps=20", "eval_every=20", "eval_samples=50", "judge_steps=0"]),
    "digits-dcgan": (
        "configs/dcgan/mnist5k.yaml",
        ["data=digits", "image_size=16", "ngf=8", "ndf=8", "latent_dim=16", "total_steps=10", "eval_every=10"]
        + ["eval_samples=50", "judge_steps=0"],
    ),
    "digits-vae": ("configs/vae/mnist5k.yaml", ["data=digits", "total_steps=20", "eval_every=20"]),
    "digits-ae": ("configs/ae/mnist5k-conv.yaml", ["data=digits", "total_steps=20", "eval_every=20"]),
    "sines-seq2seq": ("configs/seq2seq_ae/sines.yaml", ["n_sequences=100", "total_steps=20", "eval_every=20"]),
    "digits-classify": ("configs/classify/digits-lenet.yaml", ["total_steps=20", "eval_every=20"]),
}
_root: Path | None = None


def tiny_run(name: str) -> Path:
    """The run folder of TINY[name], trained on first use."""
    global _root
    from launch.config import load_config
    from launch.run import train_run

    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="dlforge-tiny-runs-"))
        atexit.register(shutil.rmtree, _root, True)
    run_dir = _root / name
    if not (run_dir / "summary.json").exists():
        config, overrides = TINY[name]
        train_run(load_config(REPO / config, [*overrides, *QUIET]), run_dir)
    return run_dir


def artifact_folder(run_dir: Path, out: Path, stem: str | None = None) -> Path:
    """A folder shaped like a downloaded W&B model artifact: config.yaml and one checkpoint pair (the best one,
    else the newest), optionally renamed to `stem`."""
    from networks.run_folder import checkpoint_stems

    out.mkdir(parents=True)
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    chosen = (checkpoint_stems(run_dir, "best") or checkpoint_stems(run_dir, "any"))[0]
    (out / "checkpoints").mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(f"{chosen}{suffix}", out / "checkpoints" / f"{stem or chosen.name}{suffix}")
    return out
