"""RL agents: one module per algorithm (dqn, ...), each exposing Config, train and evaluate."""
