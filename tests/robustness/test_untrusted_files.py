"""Guarantee 3: files from elsewhere are data, not code.

A checkpoint carrying a pickle payload (whose `__reduce__` would create a marker file), a truncated safetensors
file, tensors whose shapes do not fit the config and a JSON sidecar with wrong types are each refused by
`dlforge eval`, `dlforge generate` and `dlforge train --resume`: exit 2, one line saying what is wrong, and the
marker never appears. Plus a source scan: no project code unpickles, evaluates or loads YAML unsafely.
"""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from robustkit import REPO, TINY, assert_one_line_error, snapshot_files

from launch.cli import main
from launch.registry import TRAINERS
from networks import io

MARKER_NAME = "PAYLOAD-RAN"


class Payload:
    """Unpickling this creates the marker file: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _stems(run_dir: Path) -> list[Path]:
    return sorted(p.with_suffix("") for p in (run_dir / "checkpoints").glob("*.json"))


def _rewrite_sidecar(stem: Path, change) -> None:
    sidecar_path = stem.with_name(stem.name + ".json")
    sidecar = json.loads(sidecar_path.read_text())
    change(sidecar)
    sidecar_path.write_text(json.dumps(sidecar))


def _describe(stem: Path) -> None:
    """Make the sidecar's checksum match whatever the tensor file now holds (an attacker controls both)."""
    data = stem.with_name(stem.name + ".safetensors").read_bytes()
    _rewrite_sidecar(stem, lambda s: s.update(sha256=hashlib.sha256(data).hexdigest()))


def _torch_pickle(marker: Path) -> bytes:
    import io as bytes_io

    buffer = bytes_io.BytesIO()
    torch.save({"q_net": Payload(marker)}, buffer)
    return buffer.getvalue()


# Each attack damages every checkpoint of the run (one damaged among good ones is skipped: see the last test).
def pickle_as_tensors(stem: Path, marker: Path) -> None:
    stem.with_name(stem.name + ".safetensors").write_bytes(_torch_pickle(marker))


def pickle_as_tensors_with_checksum(stem: Path, marker: Path) -> None:
    pickle_as_tensors(stem, marker)
    _describe(stem)


def raw_pickle_with_checksum(stem: Path, marker: Path) -> None:
    stem.with_name(stem.name + ".safetensors").write_bytes(pickle.dumps(Payload(marker)))
    _describe(stem)


def pickle_as_sidecar(stem: Path, marker: Path) -> None:
    stem.with_name(stem.name + ".json").write_bytes(pickle.dumps(Payload(marker)))


def truncated_tensors(stem: Path, marker: Path) -> None:
    path = stem.with_name(stem.name + ".safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncated_tensors_with_checksum(stem: Path, marker: Path) -> None:
    truncated_tensors(stem, marker)
    _describe(stem)


def shapes_do_not_fit(stem: Path, marker: Path) -> None:
    """A valid dlforge checkpoint whose every float tensor has one more row: the checksum is right."""
    tree, meta = io.load(stem)

    def grow(node):
        if isinstance(node, torch.Tensor) and node.is_floating_point() and node.dim() >= 1 and node.numel() > 1:
            return torch.cat([node, node[:1]])
        if isinstance(node, dict):
            return {k: grow(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return type(node)(grow(v) for v in node)
        return node

    io.save(stem, grow(tree), meta)


def sidecar_checksum_not_a_string(stem: Path, marker: Path) -> None:
    _rewrite_sidecar(stem, lambda s: s.update(sha256=12345))


def sidecar_tree_is_a_list(stem: Path, marker: Path) -> None:
    _rewrite_sidecar(stem, lambda s: s.update(tree=[1, 2, 3]))


def sidecar_not_json(stem: Path, marker: Path) -> None:
    stem.with_name(stem.name + ".json").write_text("{'format': 'dlforge'")


def sidecar_points_at_a_missing_tensor(stem: Path, marker: Path) -> None:
    def change(sidecar):
        sidecar["tree"] = {"q_net": {"__tensor__": "nowhere"}, "model": {"__tensor__": "nowhere"}}

    _rewrite_sidecar(stem, change)


def tree_parts_have_wrong_types(stem: Path, marker: Path) -> None:
    """A valid pair whose tree holds text where networks, optimizers, counters and RNG state belong."""
    tree, meta = io.load(stem)
    io.save(stem, {key: "not what you think" for key in tree}, meta)


def rng_state_has_wrong_types(stem: Path, marker: Path) -> None:
    """Everything fits except the RNG state, which holds text (wherever the tree keeps it)."""
    tree, meta = io.load(stem)

    def spoil(node):
        if isinstance(node, dict):
            return {
                k: ({"torch": "x", "numpy_global": 5, "python": [1]} if k == "rng" else spoil(v))
                for k, v in node.items()
            }
        return node

    io.save(stem, spoil(tree), meta)


def sidecar_step_is_text(stem: Path, marker: Path) -> None:
    _rewrite_sidecar(stem, lambda s: s["meta"].update(step="twelve"))


ATTACKS = {
    "pickle as tensors": (pickle_as_tensors, "checksum does not match"),
    "pickle as tensors, checksum fixed": (pickle_as_tensors_with_checksum, "not a valid safetensors file"),
    "raw pickle, checksum fixed": (raw_pickle_with_checksum, "not a valid safetensors file"),
    "pickle as sidecar": (pickle_as_sidecar, "not valid JSON"),
    "truncated tensors": (truncated_tensors, "checksum does not match"),
    "truncated tensors, checksum fixed": (truncated_tensors_with_checksum, "not a valid safetensors file"),
    "shapes do not fit": (shapes_do_not_fit, "does not match"),
    "sidecar checksum not a string": (sidecar_checksum_not_a_string, "'sha256' must be a string"),
    "sidecar tree is a list": (sidecar_tree_is_a_list, "'tree' must be an object"),
    "sidecar not JSON": (sidecar_not_json, "not valid JSON"),
    "sidecar points at a missing tensor": (sidecar_points_at_a_missing_tensor, "lacks"),
    "tree parts have wrong types": (tree_parts_have_wrong_types, ""),
}
RESUME_ONLY = {  # eval and generate do not use the step or the RNG state
    "sidecar step is text": (sidecar_step_is_text, "meta.step"),
    "rng state has wrong types": (rng_state_has_wrong_types, "rng"),
}


def _agent_kind() -> str | None:
    return next((k for k in ("dqn", "drqn", "qlearning") if k in TRAINERS and k in TINY), None)


def _generator_kind() -> str | None:
    return next((k for k in ("gan", "vae", "ae", "dcgan") if k in TRAINERS and k in TINY), None)


COMMANDS = {
    "eval": (_agent_kind, lambda run: ["eval", run, "--episodes", "1"]),
    "generate": (_generator_kind, lambda run, out=None: ["generate", run, "--n", "2", "--out", run / "g.npz"]),
    "train --resume": (_agent_kind, lambda run: ["train", "--resume", run]),
    "train --resume (generator)": (_generator_kind, lambda run: ["train", "--resume", run]),
}


def _cases():
    for command in COMMANDS:
        attacks = {**ATTACKS, **(RESUME_ONLY if "resume" in command else {})}
        for attack in attacks:
            yield pytest.param(command, attack, id=f"{command}: {attack}")


@pytest.mark.parametrize("command, attack", list(_cases()))
def test_untrusted_checkpoint_is_refused_and_never_runs(command, attack, run_copy, tmp_path, capsys, monkeypatch):
    pick_kind, argv = COMMANDS[command]
    kind = pick_kind()
    if kind is None:
        pytest.skip(f"no registered kind for {command}")
    run_dir = run_copy(kind)
    marker = tmp_path / MARKER_NAME
    monkeypatch.chdir(tmp_path)
    damage, expected = {**ATTACKS, **RESUME_ONLY}[attack]
    for stem in _stems(run_dir):
        damage(stem, marker)
    before = snapshot_files(run_dir)
    code = main([str(a) for a in argv(run_dir)])
    captured = capsys.readouterr()
    assert not marker.exists(), "the pickle payload ran"
    assert code == 2, f"exit {code}: {captured.err}"
    line = assert_one_line_error(captured.err, expected)
    assert "Traceback" not in captured.out
    if "shapes" in attack:
        assert "checkpoint shape" in line  # names the tensor and both shapes
    assert snapshot_files(run_dir) == before, "a refused command changed the run folder"


def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_with_a_warning(run_copy, tmp_path, capsys):
    kind = _agent_kind()
    if kind is None:
        pytest.skip("no agent kind registered")
    run_dir = run_copy(kind)
    marker = tmp_path / MARKER_NAME
    newest = max((s for s in _stems(run_dir) if s.name.startswith("step-")), key=lambda s: s.name)
    pickle_as_tensors_with_checksum(newest, marker)
    code = main(["eval", str(run_dir), "--episodes", "1", "--checkpoint", "last"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert not marker.exists()
    assert "warning: skipped 1 damaged checkpoint" in err and newest.name in err


def test_trainer_checkpoints_hold_only_tensors_and_json(finished_runs):
    """What every kind saves reloads through io.load alone (no pickled leaves): a round trip of the sidecar."""
    for kind in TRAINERS:
        if kind not in TINY:
            continue
        for stem in _stems(finished_runs(kind)):
            tree, meta = io.load(stem)
            assert isinstance(tree, dict) and isinstance(meta, dict)
            json.dumps(io.read_sidecar(stem))


# --- nothing in the project unpickles, evaluates or loads YAML unsafely ---------------------------------------

PROJECT_DIRS = ("networks", "agents", "envs", "generative", "launch", "benchmarks")
UNPICKLING = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "marshal",
    "shelve",
    "jsonpickle",
}


def _violations(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def where(node) -> str:
        return f"{path.relative_to(root)}:{node.lineno}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{where(node)} imports {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLING]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLING:
            found.append(f"{where(node)} imports from {node.module}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            keywords = {k.arg: k.value for k in node.keywords}
            if isinstance(func, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
                found.append(f"{where(node)} calls {name}()")
            elif owner == "torch" and name == "load":
                weights_only = keywords.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{where(node)} calls torch.load without weights_only=True")
            elif owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"):
                found.append(f"{where(node)} calls yaml.{name} (use yaml.safe_load)")
            elif owner in ("np", "numpy") and name == "load":
                allow = keywords.get("allow_pickle")
                if (
                    isinstance(allow, ast.Constant)
                    and allow.value is True
                    or allow is not None
                    and not isinstance(allow, ast.Constant)
                ):
                    found.append(f"{where(node)} calls np.load with allow_pickle")
            elif name in ("read_pickle", "Unpickler"):
                found.append(f"{where(node)} calls {name}")
    return found


def test_no_project_code_unpickles_evaluates_or_loads_yaml_unsafely():
    files = [p for folder in PROJECT_DIRS for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 20
    problems = [v for path in files for v in _violations(path)]
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pickle\nimport torch, yaml, numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nyaml.load('a')\neval('1')\nexec('1')\n"
        "np.load('x', allow_pickle=True)\nmodel.eval()\ntorch.load('x', weights_only=True)\nyaml.safe_load('a')\n"
    )
    found = _violations(probe, root=tmp_path)
    assert len(found) == 7, found  # the import, two torch.load, yaml.load, eval, exec, np.load
