"""Small text and number helpers shared by the report, the tracker and the sweeps: one of each."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here, nor are NaN and inf)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def short(value: Any) -> str:
    """A value as a table cell: floats to 3 significant digits, lists and mappings as JSON."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def slug(text: str) -> str:
    """`text` as a safe file-name part: runs of other characters become one `_` (never empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
