"""YAML configs -> typed, validated trainer configs.

A config file is one YAML mapping: `kind` picks the trainer, `tracking` configures metrics and W&B,
and every other key is a field of that trainer's `Config` dataclass. Command-line overrides look like
`key=value` or `key.sub=value`; the value is parsed as YAML (`lr=3e-4`, `network.hidden=[64,64]`).

Everything is checked once, here, at the edge. Each failure raises `ConfigError` whose one-line message
names the field and what is allowed: an unknown key (with a did-you-mean), a wrong type, a value out of
range (from the field's `metadata`: gt, ge, lt, le), a missing file, malformed YAML or an unknown kind.
Cross-field rules live in an optional `Config.validate()` method. Nothing is ever evaluated as code.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from launch.registry import TRAINERS, trainer_module
from networks.errors import ConfigError
from networks.spec import did_you_mean as _suggest

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class TrackingConfig:
    """Where metrics go. metrics.jsonl is always written; W&B according to `wandb`."""

    wandb: Literal["offline", "online", "disabled"] = "offline"  # offline: no account, `wandb sync` later
    project: str = "dlforge"  # W&B project
    group: str | None = None  # W&B group (sweeps set it to the sweep name)
    tags: list[str] = field(default_factory=list)  # W&B tags
    entity: str | None = None  # W&B team or user; None = the API key's default


@dataclass
class RunSpec:
    """A loaded config: which trainer, its typed config, tracking, and the resolved mapping."""

    kind: str
    config: Any
    tracking: TrackingConfig
    resolved: dict  # kind + tracking + every trainer field, as written to the run's config.yaml
    source: Path | None = None


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> RunSpec:
    """Read a YAML config file, apply `key.sub=value` overrides, and validate it."""
    document = read_yaml(path)
    return parse_config(apply_overrides(document, overrides), source=Path(path))


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


def apply_overrides(document: dict, overrides: typing.Sequence[str] | typing.Mapping[str, Any]) -> dict:
    """Return a copy of `document` with each override applied: `a.b.c=value` strings from the command line
    (the value parsed as YAML), or a mapping of dotted keys to values (a sweep's overrides and sampled points).
    Mappings on the way are created; a key that runs through a value that is not a mapping is refused."""
    document = _deep_copy(document)
    pairs = overrides.items() if isinstance(overrides, typing.Mapping) else map(_parse_override, overrides)
    for key, value in pairs:
        key = str(key)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(key or "override", "expected a dotted key like a.b.c")
        node = document
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(key, f"cannot set a sub-key: '{part}' holds {_kind_of(child)}, not a mapping")
            node = child
        node[leaf] = value
    return document


def _parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value parsed as YAML; a value YAML cannot parse stays a string)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("override", f"expected key=value or key.sub=value, got '{item}'")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return key, raw


def parse_config(document: dict, source: Path | None = None) -> RunSpec:
    """Validate a config mapping and build the trainer's typed Config."""
    document = _deep_copy(document)
    kind = document.pop("kind", None)
    if kind is None:
        raise ConfigError("kind", f"missing; every config names its trainer: {', '.join(TRAINERS)}")
    if not isinstance(kind, str) or kind not in TRAINERS:
        raise ConfigError(
            "kind", f"unknown trainer '{kind}'{_suggest(str(kind), TRAINERS)}; allowed: {', '.join(TRAINERS)}"
        )
    tracking_doc = document.pop("tracking", None) or {}
    tracking = from_dict(TrackingConfig, tracking_doc, "tracking")
    config_cls = trainer_module(kind).Config
    config = from_dict(config_cls, document, "")
    resolved = {"kind": kind, "tracking": to_dict(tracking), **to_dict(config)}
    return RunSpec(kind=kind, config=config, tracking=tracking, resolved=resolved, source=source)


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


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
