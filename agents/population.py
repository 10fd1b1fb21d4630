"""A population: several seeds (and per-member hyperparameters) of one dqn or drqn config, trained as one batched
network in one process.

    population: {seeds: [0, 1, 2, 3]}                        # or {size: 4}: seeds seed .. seed + 3
    population: {size: 4, learning_rate: [1e-3, 3e-3, 1e-2, 3e-2], prioritized: {alpha: [0.4, 0.5, 0.6, 0.7]}}
    population: {size: 4, exact: true}                       # members bit for bit their single runs (slower)

Each member is exactly the run its equivalent single-run config describes (`member_config`: the config without
`population`, with the member's seed and hyperparameters): the same losses and parameters, to float tolerance
(tests/test_population.py). Only the scalar hyperparameters that enter the maths as numbers (VARYING) may differ
between members; a field that changes shapes or control flow (network, batch_size, buffer_size, train_freq, n_step,
env_id, ...) is shared. A config without `population` is a population of one: the ordinary run.

The batched network's products may round differently from a single run's (networks/batched.py), so where two of a
member's Q-values nearly tie it may, after many updates, take another action than its single run and go on from
there. `exact: true` keeps every member bit for bit its single run on a CPU (the same transitions and decisions), at
a cost in speed (networks/batched.py `Linear`: 64 CartPole members took 1.2x the default's CPU time).

Checked once, at the edge (`check`, from the trainer config's `validate`): one line naming the field and what is
allowed. Populations also refuse what they do not support: `compile: true` and `compact_replay` (fast paths of a
single run), optimizers other than adam (per-member learning rates are Adam's elementwise step), and networks with
dropout, batch norm, resnet blocks or `init_from` (members must not share random draws or batch statistics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import networks
from networks.errors import ConfigError
from networks.spec import did_you_mean
from networks.typed_config import from_dict, to_dict

# The per-member fields: scalars that enter the maths as numbers. Dotted names live in a nested section.
VARYING = (
    "learning_rate",
    "learning_rate_final",
    "gamma",
    "tau",
    "max_grad_norm",
    "exploration_initial_eps",
    "exploration_final_eps",
    "exploration_fraction",
    "prioritized.alpha",
    "prioritized.beta0",
)
KEYS = ("seeds", "size", "exact", *dict.fromkeys(name.split(".")[0] for name in VARYING))


@dataclass(frozen=True)
class Member:
    """One member: its place in the batched network, its folder name, seed and per-member hyperparameters."""

    index: int
    name: str  # the member's folder under members/
    seed: int
    hyperparameters: dict[str, float]  # VARYING name -> value, for the fields the population lists


def members(config) -> list[Member]:
    """The members of `config`; a config without `population` is a population of one, with its own seed."""
    raw = getattr(config, "population", None)
    if raw is None:
        return [Member(0, f"seed{config.seed}", config.seed, {})]
    return _parse(raw, config)


def exact(config) -> bool:
    """Whether the population asked for members bit for bit their single runs (`exact: true`); a single run is."""
    raw = getattr(config, "population", None)
    return raw is not None and raw.get("exact", False)


def member_config(config, member: Member):
    """The equivalent single-run config of `member`: `config` without `population`, with the member's seed and
    hyperparameters. Range-checked and validated as any config (ConfigError names `population.<field>[i]`)."""
    document = {key: value for key, value in to_dict(config).items() if key != "population"}
    document["seed"] = member.seed
    for name, value in member.hyperparameters.items():
        section, _, leaf = name.rpartition(".")
        (document[section] if section else document)[leaf or name] = value
    try:
        return from_dict(type(config), document, "")
    except ConfigError as e:
        if e.field not in member.hyperparameters:
            raise
        reason = str(e).removeprefix(f"{e.field}: ")
        raise ConfigError(f"population.{e.field}[{member.index}]", reason) from None


def check(config) -> None:
    """Everything a population needs of its config, checked at the edge; nothing for a config without one."""
    if getattr(config, "population", None) is None:
        return
    for field, why in (
        ("compile", "a single run's compiled update"),
        ("compact_replay", "a single run's frame-sharing replay"),
    ):
        if getattr(config, field):
            raise ConfigError(field, f"is not supported with population: ({why}); set it to false")
    if config.optimizer != "adam":
        raise ConfigError(
            "optimizer", f"a population trains with adam (per-member learning rates), got {config.optimizer}"
        )
    if getattr(config, "optimizer_kwargs", None):
        raise ConfigError(
            "optimizer_kwargs", "a population's Adam takes torch's defaults; leave optimizer_kwargs empty"
        )
    _check_network(config.network, "network")
    for member in members(config):
        member_config(config, member)


def _parse(raw: Any, config) -> list[Member]:
    if not isinstance(raw, dict):
        raise ConfigError("population", f"expected a mapping such as {{seeds: [0, 1, 2]}} or {{size: 4}}, got {raw!r}")
    fields = {f.name for f in dataclasses.fields(config)}
    for key in raw:
        if key in KEYS:
            continue
        if key in fields:
            raise ConfigError(
                f"population.{key}",
                "is shared by every member (it changes shapes or control flow); per-member lists may be given "
                f"for {', '.join(VARYING)}",
            )
        raise ConfigError(f"population.{key}", f"unknown key{did_you_mean(str(key), KEYS)}; allowed: {', '.join(KEYS)}")
    if not isinstance(raw.get("exact", False), bool):
        raise ConfigError("population.exact", f"must be true or false, got {raw['exact']!r}")
    seeds = _seeds(raw, config.seed)
    lists = {name: _values(raw, name, len(seeds)) for name in VARYING}
    lists = {name: values for name, values in lists.items() if values is not None}
    unique = len(set(seeds)) == len(seeds)
    found = []
    for index, seed in enumerate(seeds):
        hyperparameters = {name: values[index] for name, values in lists.items()}
        name = f"seed{seed}" if unique else f"m{index:02d}-seed{seed}"
        found.append(Member(index, name, seed, hyperparameters))
    seen: dict[tuple, int] = {}
    for member in found:
        key = (member.seed, tuple(sorted(member.hyperparameters.items())))
        if key in seen:
            raise ConfigError(
                "population.seeds",
                f"members {seen[key]} and {member.index} are the same run (seed {member.seed}"
                f"{' and the same hyperparameters' if member.hyperparameters else ''}); give distinct seeds",
            )
        seen[key] = member.index
    return found


def _seeds(raw: dict, base_seed: int) -> list[int]:
    seeds, size = raw.get("seeds"), raw.get("size")
    if seeds is not None and size is not None:
        raise ConfigError("population", "give seeds or size, not both")
    if seeds is None and size is None:
        raise ConfigError("population", "needs seeds: [...] or size: N (seeds seed .. seed + N - 1)")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError("population.size", f"must be an integer >= 1, got {size!r}")
        return [base_seed + i for i in range(size)]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError("population.seeds", f"must be a non-empty list of integers, got {seeds!r}")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"population.seeds[{i}]", f"expected an integer, got {seed!r}")
    return list(seeds)


def _values(raw: dict, name: str, size: int) -> list[float] | None:
    section, _, leaf = name.rpartition(".")
    node = raw
    if section:
        node = raw.get(section)
        if node is None:
            return None
        if not isinstance(node, dict):
            raise ConfigError(f"population.{section}", f"expected a mapping of per-member lists, got {node!r}")
        allowed = [v.split(".")[1] for v in VARYING if v.startswith(section + ".")]
        for key in node:
            if key not in allowed:
                raise ConfigError(
                    f"population.{section}.{key}",
                    f"cannot vary per member; per-member lists may be given for {', '.join(VARYING)}",
                )
    values = node.get(leaf or name)
    if values is None:
        return None
    where = f"population.{name}"
    if not isinstance(values, list):
        raise ConfigError(where, f"expected a list of one number per member ({size}), got {values!r}")
    if len(values) != size:
        raise ConfigError(where, f"lists one value per member: {size} members, got {len(values)} values")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}[{i}]", f"expected a number, got {value!r}")
    return [float(value) for value in values]


def _check_network(spec: Any, field: str) -> None:
    """Refuse the layers whose members would share random draws or statistics (dropout, batch norm), and networks
    taken from another run."""
    resolved = networks.resolve(spec, field)
    kind = resolved.get("type")
    if kind == "pretrained":
        raise ConfigError(f"{field}.init_from", "is not supported with population: (members train from scratch)")
    if kind == "resnet":
        raise ConfigError(f"{field}.type", "resnet (batch norm inside) is not supported with population:")
    if resolved.get("norm") == "batch":
        raise ConfigError(f"{field}.norm", "batch is not supported with population: (use none or layer)")
    if resolved.get("dropout", 0):
        raise ConfigError(f"{field}.dropout", "must be 0 with population: (members must not share random draws)")
    if resolved.get("pre") is not None:
        _check_network(resolved["pre"], f"{field}.pre")
