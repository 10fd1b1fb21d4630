"""Property-based: broken configs for every trainer kind give one ConfigError line naming the field."""

import dataclasses
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launch.config import parse_config
from launch.registry import TRAINERS, trainer_module
from networks.errors import ConfigError

KINDS = sorted(TRAINERS)


def _fields(kind: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(trainer_module(kind).Config) if f.init}


def _wrong_value(tp) -> st.SearchStrategy:
    """Values that can never convert to `tp` (its base type, ignoring Optional)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and args else tp
    origin = typing.get_origin(base)
    if base is bool:
        return st.sampled_from(["yes", 3, [True], {"a": 1}])
    if base in (int, float):
        return st.sampled_from(["fast", [1], {"a": 1}, True])
    if base is str:
        return st.sampled_from([3, [1], {"a": 1}, True])
    if origin is typing.Literal:
        return st.sampled_from(["not-a-choice", 12345])
    if origin in (list, tuple):
        return st.sampled_from(["text", 7, {"a": 1}])
    if dataclasses.is_dataclass(base) or origin is dict:
        return st.sampled_from([5, "text", [1, 2]])
    return st.nothing()


def _broken(kind: str) -> st.SearchStrategy:
    fields = _fields(kind)
    unknown = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).filter(lambda k: k not in fields)
    hints = typing.get_type_hints(trainer_module(kind).Config)
    typed = [st.tuples(st.just(name), _wrong_value(hints[name])) for name in fields if name != "device"]
    ranged = [
        st.tuples(st.just(name), st.just(f.metadata[key] - 1 if key in ("gt", "ge") else f.metadata[key] + 1))
        for name, f in fields.items()
        for key in ("gt", "ge", "lt", "le")
        if key in f.metadata
    ]
    return st.one_of(st.tuples(unknown, st.integers()), *typed, *ranged)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_broken_field_is_one_line_naming_it(kind, data):
    key, value = data.draw(_broken(kind))
    with pytest.raises(ConfigError) as info:
        parse_config({"kind": kind, key: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(key), message


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_parses_its_defaults(kind):
    spec = parse_config({"kind": kind})
    assert spec.kind == kind
    assert {"total_steps", "seed", "device"} <= set(_fields(kind)), "every Config has total_steps, seed, device"


def _nested(kind: str) -> st.SearchStrategy:
    """Broken values for the fields of nested dataclasses (dqn.prioritized.alpha, gan.stability...)."""
    hints = typing.get_type_hints(trainer_module(kind).Config)
    cases = []
    for name, tp in hints.items():
        if not dataclasses.is_dataclass(tp):
            continue
        inner = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            cases.append(st.tuples(st.just(f"{name}.{f.name}"), _wrong_value(inner[f.name])))
            for key in ("gt", "ge", "lt", "le"):
                if key in f.metadata:
                    bound = f.metadata[key] - 1 if key in ("gt", "ge") else f.metadata[key] + 1
                    cases.append(st.tuples(st.just(f"{name}.{f.name}"), st.just(bound)))
    return st.one_of(*cases) if cases else st.nothing()


@pytest.mark.parametrize(
    "kind",
    [
        k
        for k in KINDS
        if any(dataclasses.is_dataclass(t) for t in typing.get_type_hints(trainer_module(k).Config).values())
    ],
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_broken_nested_field_is_one_line_naming_it(kind, data):
    key, value = data.draw(_nested(kind))
    parent, child = key.split(".")
    with pytest.raises(ConfigError) as info:
        parse_config({"kind": kind, parent: {child: value}})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(key), message


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_broken_override_through_the_cli_exits_2_without_a_run_folder(kind, data, tmp_path_factory, capsys):
    import yaml

    from launch.cli import main

    key, value = data.draw(_broken(kind))
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    out = tmp_path_factory.mktemp("fuzz")
    config = out / "c.yaml"
    config.write_text(f"kind: {kind}\n")
    code = main(["train", str(config), f"{key}={text}", "--out", str(out / "runs"), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (out / "runs" / "x").exists()
