"""RL agents: one module per algorithm (dqn, ...), each exposing Config, train and evaluate."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or Q-value stopped training (nan_policy: stop); the last checkpoint is the last good one."""
