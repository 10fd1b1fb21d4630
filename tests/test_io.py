"""networks.io: the one checkpoint format (safetensors + JSON sidecar), round trips and refusals."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from networks import CheckpointError, io


def _trained_pair() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    for _ in range(2):
        optimizer.zero_grad()
        net(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
    return net, optimizer


def _assert_same(a: object, b: object) -> None:
    """Deep equality that keeps container types (tuple stays tuple; OrderedDict may come back a dict) and dtypes."""
    assert type(a) is type(b) or isinstance(a, dict) and type(b) is dict, (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_of_a_nested_tree(tmp_path: Path) -> None:
    net, optimizer = _trained_pair()
    tree = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),  # int keys in "state", tuple betas, None / bool options
        "counters": {"step": 200, "episodes": 7, "epsilon": 0.05, "done": False, "note": None},
        "replay": {"obs": np.arange(12, dtype=np.uint8).reshape(3, 4), "rewards": np.array([1.0, -0.5])},
        "shapes": (4, (84, 84), [1, 2]),
        "history": [torch.tensor(1.5), {"loss": float("nan")}],
        "by_action": {0: np.zeros(2, dtype=np.float32), 3: "left", -1: (1, 2)},
        "half": torch.ones(2, 2, dtype=torch.bfloat16),
        "empty": {},
    }
    stem = io.save(tmp_path / "ckpt" / "step-200", tree, meta={"kind": "dqn", "step": 200})
    loaded, meta = io.load(stem)
    assert meta == {"kind": "dqn", "step": 200}
    nan = loaded["history"][1].pop("loss")
    assert np.isnan(nan)
    del tree["history"][1]["loss"]
    _assert_same(tree, loaded)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-200.json", "step-200.safetensors"]


def test_restored_optimizer_continues_identically(tmp_path: Path) -> None:
    net, optimizer = _trained_pair()
    io.save(tmp_path / "c", {"model": net.state_dict(), "optimizer": optimizer.state_dict()})
    tree, _ = io.load(tmp_path / "c")
    twin = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    twin_optimizer = torch.optim.Adam(twin.parameters())
    io.load_module_state(twin, tree["model"])
    io.load_optimizer_state(twin_optimizer, tree["optimizer"])
    batch = torch.randn(5, 3)
    for model, opt in ((net, optimizer), (twin, twin_optimizer)):
        opt.zero_grad()
        model(batch).pow(2).mean().backward()
        opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_load_accepts_either_file_name_and_dotted_stems(tmp_path: Path) -> None:
    io.save(tmp_path / "model.a", {"w": torch.ones(1)})
    io.save(tmp_path / "model.b", {"w": torch.zeros(1)})  # must not overwrite model.a
    assert io.load(tmp_path / "model.a")[0]["w"].item() == 1.0
    assert io.load(tmp_path / "model.b.json")[0]["w"].item() == 0.0
    assert io.load(tmp_path / "model.a.safetensors")[0]["w"].item() == 1.0


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    for step in range(3):
        io.save(tmp_path / "last", {"w": torch.full((3,), float(step))}, meta={"step": step})
    io.atomic_write_text(tmp_path / "notes.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors", "notes.txt"]
    assert io.load(tmp_path / "last")[1] == {"step": 2}


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.txt"
    io.atomic_write_text(target, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    stem = io.save(tmp_path / "c", {"w": torch.randn(64)})
    tensor_file = tmp_path / "c.safetensors"
    blob = tensor_file.read_bytes()
    tensor_file.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="checksum does not match"):
        io.load(stem)
    # Even with a sidecar rewritten to match the truncated bytes, safetensors' own check refuses it.
    _rewrite_sidecar(tmp_path / "c.json", sha256=hashlib.sha256(blob[: len(blob) // 2]).hexdigest())
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        io.load(stem)


def test_copy_is_byte_for_byte_and_refuses_a_damaged_source(tmp_path: Path) -> None:
    stem = io.save(tmp_path / "source", {"w": torch.arange(6.0)}, {"step": 3})
    checksum = io.copy(stem, tmp_path / "copies" / "kept")
    assert checksum == hashlib.sha256((tmp_path / "source.safetensors").read_bytes()).hexdigest()
    for suffix in (".safetensors", ".json"):
        assert (tmp_path / "copies" / f"kept{suffix}").read_bytes() == (tmp_path / f"source{suffix}").read_bytes()
    data = (tmp_path / "source.safetensors").read_bytes()
    (tmp_path / "source.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum does not match"):
        io.copy(stem, tmp_path / "copies" / "again")
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["kept.json", "kept.safetensors"]


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    io.save(tmp_path / "a", {"w": torch.zeros(4)})
    io.save(tmp_path / "b", {"w": torch.ones(4)})
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())  # swapped weights
    with pytest.raises(CheckpointError, match="checksum does not match its JSON sidecar"):
        io.load(tmp_path / "a")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/9"}, "not a dlforge checkpoint"),
        ({"sha256": 12}, "'sha256' must be a string"),
        ({"meta": ["not", "a", "dict"]}, "'meta' an object"),
        ({"tree": [1, 2]}, "'tree' must be an object"),
        ({"tree": {"w": {"__tensor__": "nope"}}}, "refers to a tensor 'nope'"),
        ({"tree": {"w": {"__tensor__": 3}}}, "refers to a tensor '3'"),
        ({"tree": {"s": {"__intkeys__": {"x": 1}}}}, "non-integer key"),
    ],
)
def test_sidecar_with_wrong_types_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    io.save(tmp_path / "c", {"w": torch.zeros(2)})
    _rewrite_sidecar(tmp_path / "c.json", **change)
    with pytest.raises(CheckpointError, match=message):
        io.load(tmp_path / "c")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]"])
def test_sidecar_that_is_not_a_json_object_is_refused(tmp_path: Path, content: bytes) -> None:
    io.save(tmp_path / "c", {"w": torch.zeros(2)})
    (tmp_path / "c.json").write_bytes(content)
    with pytest.raises(CheckpointError):
        io.load(tmp_path / "c")


def test_missing_files_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        io.load(tmp_path / "nothing")
    io.save(tmp_path / "c", {"w": torch.zeros(2)})
    (tmp_path / "c.safetensors").unlink()
    with pytest.raises(CheckpointError, match="cannot read"):
        io.load(tmp_path / "c")


class _Payload:
    """Unpickling this would create the marker file: the test fails if that ever happens."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Payload(marker)})
    io.save(tmp_path / "c", {"w": torch.zeros(2)})
    (tmp_path / "c.safetensors").write_bytes(payload)
    _rewrite_sidecar(tmp_path / "c.json", sha256=hashlib.sha256(payload).hexdigest())  # checksum passes
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        io.load(tmp_path / "c")
    # A torch.save file (a zip of pickles) fares the same.
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.pt")
    blob = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(blob)
    _rewrite_sidecar(tmp_path / "c.json", sha256=hashlib.sha256(blob).hexdigest())
    with pytest.raises(CheckpointError):
        io.load(tmp_path / "c")
    # And a pickle where the JSON sidecar should be.
    (tmp_path / "c.json").write_bytes(payload)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        io.load(tmp_path / "c")
    assert not marker.exists()


def test_unstorable_trees_fail_at_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store object"):
        io.save(tmp_path / "c", {"x": object()})
    with pytest.raises(TypeError, match="keys must be str or int"):
        io.save(tmp_path / "c", {"x": {(1, 2): 3}})
    with pytest.raises(TypeError, match="keys must be str or int"):
        io.save(tmp_path / "c", {"x": {True: 3}})  # would come back as the string "True"
    with pytest.raises(TypeError, match="share the checkpoint name 'a.b'"):
        io.save(tmp_path / "c", {"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}})
    assert not list(tmp_path.iterdir())


def test_module_state_mismatch_is_a_checkpoint_error() -> None:
    small, big = nn.Linear(2, 3), nn.Linear(2, 4)
    with pytest.raises(CheckpointError, match=r"model.weight: checkpoint shape \(4, 2\) does not match"):
        io.load_module_state(small, big.state_dict())
    with pytest.raises(CheckpointError, match="missing"):
        io.load_module_state(nn.Sequential(small), big.state_dict())
    with pytest.raises(CheckpointError, match="does not fit this optimizer"):
        io.load_optimizer_state(torch.optim.Adam(small.parameters()), {"state": {}, "param_groups": []})


def _rewrite_sidecar(path: Path, **changes: object) -> None:
    sidecar = json.loads(path.read_text())
    sidecar.update(changes)
    path.write_text(json.dumps(sidecar))


def test_optimizer_state_loads_moments_but_keeps_the_configured_learning_rate():
    from networks.io import load_optimizer_state

    net = torch.nn.Linear(3, 2)
    trained = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(4, 3)).sum().backward()
    trained.step()
    resumed = torch.optim.Adam(net.parameters(), lr=0.5)  # a resume with learning_rate=0.5
    load_optimizer_state(resumed, trained.state_dict())
    assert resumed.param_groups[0]["lr"] == 0.5
    moments = resumed.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, trained.state_dict()["state"][0]["exp_avg"])
