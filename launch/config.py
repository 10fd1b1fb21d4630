"""YAML configs -> typed, validated trainer configs.

A config file is one YAML mapping: `kind` picks the trainer, `tracking` configures metrics and W&B,
and every other key is a field of that trainer's `Config` dataclass. Command-line overrides look like
`key=value` or `key.sub=value`; the value is parsed as YAML (`lr=3e-4`, `network.hidden=[64,64]`).

Everything is checked once, here, at the edge. Each failure raises `ConfigError` whose one-line message
names the field and what is allowed: an unknown key (with a did-you-mean), a wrong type, a value out of
range (from the field's `metadata`: gt, ge, lt, le), a missing file, malformed YAML or an unknown kind.
Cross-field rules live in an optional `Config.validate()` method. Nothing is ever evaluated as code.
The generic half (`read_yaml`, `from_dict`, `to_dict`) lives in networks/typed_config.py, so agents/ and
generative/ can rebuild a run's config too; its names are importable from here as before.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from launch.registry import TRAINERS, trainer_module
from networks.errors import ConfigError
from networks.spec import did_you_mean as _suggest
from networks.typed_config import _kind_of, field_names, from_dict, read_yaml, to_dict

__all__ = [  # read_yaml, from_dict, to_dict and field_names are re-exported from networks/typed_config.py
    "RunSpec",
    "TrackingConfig",
    "apply_overrides",
    "field_names",
    "from_dict",
    "load_config",
    "parse_config",
    "read_yaml",
    "to_dict",
]


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


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
