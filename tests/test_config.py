"""The config loader: types, ranges, did-you-mean, overrides, malformed YAML — one line each."""

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from launch.config import apply_overrides, from_dict, read_yaml, to_dict
from networks.errors import ConfigError


@dataclass
class Buffer:
    size: int = field(default=1000, metadata={"ge": 1})
    alpha: float = field(default=0.6, metadata={"ge": 0, "le": 1})


@dataclass
class Example:
    total_steps: int = field(default=100, metadata={"gt": 0})
    learning_rate: float = field(default=1e-3, metadata={"gt": 0})
    loss: Literal["huber", "mse"] = "huber"
    double_q: bool = True
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    network: dict[str, Any] = field(default_factory=lambda: {"type": "mlp"})
    device: str = "auto"
    note: str | None = None
    buffer: Buffer = field(default_factory=Buffer)

    def validate(self) -> None:
        if self.buffer.size < 2 * len(self.hidden):
            raise ConfigError("buffer.size", "must be at least twice the number of hidden layers")


def test_defaults_and_conversions():
    cfg = from_dict(
        Example, {"total_steps": "1e5", "learning_rate": 1, "hidden": [8], "note": None, "buffer": {"alpha": 0}}, ""
    )
    assert cfg.total_steps == 100_000 and isinstance(cfg.total_steps, int)
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.buffer == Buffer(size=1000, alpha=0.0)
    assert to_dict(cfg)["buffer"] == {"size": 1000, "alpha": 0.0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"learnin_rate": 0.1}, "learnin_rate: unknown key (did you mean 'learning_rate'?)"),
        ({"learning_rate": -1}, "learning_rate: must be > 0, got -1"),
        ({"learning_rate": "fast"}, "learning_rate: expected a number, got 'fast'"),
        ({"total_steps": 1.5}, "total_steps: expected an integer, got 1.5"),
        ({"total_steps": True}, "total_steps: expected an integer, got true"),
        ({"loss": "hubr"}, "loss: got 'hubr' (did you mean 'huber'?); allowed: huber, mse"),
        ({"double_q": "yes"}, "double_q: expected true or false, got 'yes'"),
        ({"hidden": 64}, "hidden: expected a list, got 64"),
        ({"hidden": [64, "x"]}, "hidden[1]: expected an integer, got 'x'"),
        ({"buffer": {"alpha": 2}}, "buffer.alpha: must be >= 0 and <= 1, got 2"),
        ({"buffer": {"siz": 2}}, "buffer.siz: unknown key (did you mean 'size'?)"),
        ({"buffer": 5}, "buffer: expected a mapping, got 5"),
        ({"network": [1]}, "network: expected a mapping"),
        ({"buffer": {"size": 1}}, "buffer.size: must be at least twice"),
        ({"learning_rate": float("nan")}, "learning_rate: must be > 0, got nan"),
    ],
)
def test_each_bad_value_is_one_line_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Example, data, "")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_set_nested_keys_parsed_as_yaml():
    doc = apply_overrides({"a": 1, "net": {"hidden": [4]}}, ["a=2.5", "net.hidden=[8, 8]", "new.deep=x"])
    assert doc == {"a": 2.5, "net": {"hidden": [8, 8]}, "new": {"deep": "x"}}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="cannot set a sub-key"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: dqn\n  learning_rate: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML .* at line \d+"):
        read_yaml(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        read_yaml(bad)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("kind: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        read_yaml(evil)
    assert not (tmp_path / "pwned").exists()
