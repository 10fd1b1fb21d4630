"""Errors shared by every layer of dlforge.

`ConfigError` is bad input: the CLI turns it into exit code 2 and prints its message as one line,
so the message must name the field and what is allowed. `CheckpointError` is a file that cannot be
trusted or does not match what it claims to hold. `TrainingDiverged` is a run that went non-finite: the CLI
exits 1 and the run can be resumed from its last good checkpoint.
"""


class ConfigError(ValueError):
    """Bad user input. The message names the field and what is allowed, in one line."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, malformed, or does not match the config."""


class TrainingDiverged(RuntimeError):
    """Training met a NaN or infinite loss, Q-value or parameter and stopped (a `nan_policy: stop` trainer, or a
    checkpoint that would hold non-finite values); the newest checkpoint on disk is the last good one."""
