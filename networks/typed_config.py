"""YAML mappings -> typed, validated dataclasses: the generic half of config loading.

`from_dict(cls, mapping, prefix)` builds dataclass `cls`, checking every key, type and range (from a field's
`metadata`: gt, ge, lt, le) and calling an optional `validate()`; each failure is a one-line `ConfigError` naming
the field and what is allowed. Nothing is ever evaluated as code. launch/config.py adds the trainer registry and
overrides on top; agents.load and generative.load use this to rebuild a run's config from its config.yaml.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from networks.errors import ConfigError
from networks.spec import did_you_mean as _suggest

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError("config", f"file not found: {path}")
    if path.is_dir():
        raise ConfigError("config", f"{path} is a folder; expected a YAML file")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError("config", f"malformed YAML in {path}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not a text file") from None
    if not isinstance(document, dict):
        raise ConfigError("config", f"{path} must hold a YAML mapping (key: value), got {_kind_of(document)}")
    return document


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and ranges."""
    where = prefix or "config"
    if not isinstance(data, dict):
        raise ConfigError(where, f"expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(_join(prefix, str(key)), f"unknown key{_suggest(str(key), fields)}; allowed: {allowed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        path = _join(prefix, name)
        if name in data:
            value = _convert(data[name], hints[name], path)
            _check_range(value, f.metadata, path)
            values[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, "missing required field")
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def to_dict(instance: Any) -> dict:
    """A dataclass as plain YAML-able data (tuples become lists)."""
    return _plain(dataclasses.asdict(instance))


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# --- conversion ------------------------------------------------------------------------------


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, path)
            except ConfigError as e:
                errors.append(str(e).split(": ", 1)[-1])
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(path, f"expected {allowed}, got {_show(value)}")
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        choices = ", ".join(str(a) for a in args)
        raise ConfigError(path, f"got {_show(value)}{_suggest(str(value), [str(a) for a in args])}; allowed: {choices}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e5 as a string
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(path, f"expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {_show(value)}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"expected a list of {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {_show(value)}")
        return value
    raise TypeError(f"config field {path} has a type the loader does not support: {tp}")


def _check_range(value: Any, metadata: typing.Mapping, path: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    rules = [
        ("gt", ">", lambda v, b: v > b),
        ("ge", ">=", lambda v, b: v >= b),
        ("lt", "<", lambda v, b: v < b),
        ("le", "<=", lambda v, b: v <= b),
    ]
    failed = [(sym, metadata[key]) for key, sym, ok in rules if key in metadata and not ok(value, metadata[key])]
    if failed or value != value:  # NaN fails every range
        bounds = " and ".join(f"{sym} {metadata[key]}" for key, sym, _ in rules if key in metadata)
        raise ConfigError(path, f"must be {bounds or 'a finite number'}, got {value}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
