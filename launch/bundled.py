"""The configs that ship with dlforge, usable by name: `dlforge train dqn/cartpole`.

They live in the package as launch/configs, so a wheel carries them (pyproject's package-data). In a checkout
launch/configs is a link to the repo's configs/ folder, where users look for them: one copy of each file.
"""

from __future__ import annotations

import os
from pathlib import Path

from networks.errors import ConfigError
from networks.spec import did_you_mean

BUNDLED = Path(__file__).resolve().parent / "configs"
SUFFIXES = (".yaml", ".yml")


def bundled_configs() -> dict[str, Path]:
    """Every bundled config by name (`dqn/cartpole`), sorted."""
    found = {p.relative_to(BUNDLED).with_suffix("").as_posix(): p for p in BUNDLED.rglob("*.yaml")}
    return dict(sorted(found.items()))


def resolve_config(name_or_path: str | Path) -> Path:
    """A YAML path as given when that file exists; else the bundled config of that name (`dqn/cartpole`,
    `dqn/cartpole.yaml` or `configs/dqn/cartpole.yaml`). ConfigError naming the closest bundled name otherwise."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = path.as_posix().removeprefix("configs/")
    name = name.removesuffix(path.suffix) if path.suffix in SUFFIXES else name
    configs = bundled_configs()
    if name in configs:
        return configs[name]
    suggestion = did_you_mean(name, configs)
    raise ConfigError("config", f"file not found: {path}, nor a bundled config '{name}'{suggestion}; see dlforge list")


def shown(path: Path) -> str:
    """`path` relative to the working folder when it lies below it, else absolute."""
    relative = os.path.relpath(path.resolve())  # in a checkout: configs/..., the link followed
    return relative if not relative.startswith("..") else str(path.resolve())
