"""Reading network specs: one-line ConfigErrors with did-you-mean, so a typo never becomes a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from networks.errors import ConfigError


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'relu'?)' when something in `allowed` is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word), list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choice(field: str, value: Any, allowed: Iterable[str], what: str = "value") -> str:
    """`value` if it is one of `allowed`, else ConfigError naming the field and the allowed values."""
    allowed = list(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    raise ConfigError(
        field, f"unknown {what} {value!r}{did_you_mean(str(value), allowed)}; allowed: {', '.join(allowed)}"
    )


def check_fields(field: str, spec: Mapping[str, Any], allowed: Iterable[str], kind: str) -> None:
    """Every key of `spec` must be in `allowed`; the error names the first stranger and the allowed keys."""
    allowed = list(allowed)
    for key in spec:
        if key not in allowed:
            raise ConfigError(
                f"{field}.{key}",
                f"unknown field for {kind}{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}",
            )


def int_list(field: str, value: Any, *, minimum: int = 1) -> list[int]:
    """A list of ints, each >= minimum (layer widths)."""
    if not isinstance(value, list | tuple) or not all(_is_int(v) and v >= minimum for v in value):
        raise ConfigError(field, f"must be a list of integers >= {minimum}, got {value!r}")
    return [int(v) for v in value]


def positive_int(field: str, value: Any, *, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(field, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(field: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(field, f"must be a number in [0, 1), got {value!r}")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
