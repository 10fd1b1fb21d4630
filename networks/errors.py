"""Errors shared by every layer of dlforge.

`ConfigError` is bad input: the CLI turns it into exit code 2 and prints its message as one line,
so the message must name the field and what is allowed. `CheckpointError` is a file that cannot be
trusted or does not match what it claims to hold.
"""


class ConfigError(ValueError):
    """Bad user input. The message names the field and what is allowed, in one line."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, malformed, or does not match the config."""
