"""RL agents: one module per algorithm (dqn, ...), each exposing Config, train and evaluate.

`agents.load(run_dir)` returns a trained agent as a policy with stable-baselines3's `predict` (agents/policy.py).
"""

from __future__ import annotations


def load(run_dir, checkpoint: str = "best", device: str = "cpu"):
    """The agent saved in `run_dir` (a run folder or a downloaded model artifact) as an agents.policy.Policy."""
    from agents.policy import load as load_policy  # imported on use: `import agents.replay` stays light

    return load_policy(run_dir, checkpoint=checkpoint, device=device)
