"""The one checkpoint format: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint is a *tree*: nested dicts and lists whose leaves are tensors, NumPy arrays or JSON
values (numbers, strings, bools, None). `save(stem, tree)` writes `stem.safetensors` (every tensor,
keyed by its path in the tree) and `stem.json` (the tree with tensors replaced by references, the
SHA-256 of the safetensors file, and free-form `meta`). Each file is written to a temporary name,
fsynced and renamed, so a reader sees the old file or the new one, never half of one; the JSON is
written last and its checksum ties the pair together. Loading never unpickles anything: safetensors
holds raw tensor bytes, and the sidecar is plain JSON validated before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from networks.errors import CheckpointError

FORMAT = "dlforge-checkpoint/1"
_TENSOR, _NDARRAY, _INTKEYS, _TUPLE = "__tensor__", "__ndarray__", "__intkeys__", "__tuple__"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(stem: str | Path, tree: dict, meta: dict | None = None) -> Path:
    """Save `tree` as `stem.safetensors` + `stem.json`. Returns the stem."""
    stem = Path(stem)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(tree, "", tensors)
    blob = st_save(tensors) if tensors else st_save({"__empty__": torch.zeros(0)})
    sidecar = {
        "format": FORMAT,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "tree": skeleton,
        "meta": meta or {},
    }
    text = json.dumps(sidecar, allow_nan=True)  # NaN is legal in configs/metrics; JSON reads it back
    tensor_path, sidecar_path = _paths(stem)
    atomic_write_bytes(tensor_path, blob)
    atomic_write_text(sidecar_path, text)
    return stem


def load(stem: str | Path) -> tuple[dict, dict]:
    """Load a checkpoint saved by `save`. Returns (tree, meta). Raises CheckpointError."""
    sidecar, blob = _checked(stem)
    tensor_path, _ = _paths(stem)
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises several error types on garbage input
        raise CheckpointError(f"{tensor_path}: not a valid safetensors file ({e})") from None
    tree = _decode(sidecar["tree"], tensors, "")
    return tree, sidecar["meta"]


def copy(stem: str | Path, dest: str | Path) -> str:
    """Copy checkpoint `stem` to `dest` byte for byte (atomically, sidecar last) once its tensor file matches
    its sidecar's checksum. Returns that SHA-256, which the copy shares. Raises CheckpointError."""
    _, blob = _checked(stem)
    _, sidecar_path = _paths(stem)
    dest_tensors, dest_sidecar = _paths(dest)
    atomic_write_bytes(dest_tensors, blob)
    atomic_write_bytes(dest_sidecar, sidecar_path.read_bytes())
    return hashlib.sha256(blob).hexdigest()


def _checked(stem: str | Path) -> tuple[dict, bytes]:
    """(sidecar, tensor bytes), the bytes checked against the sidecar's SHA-256."""
    sidecar = read_sidecar(stem)
    tensor_path, _ = _paths(stem)
    try:
        blob = tensor_path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{tensor_path}: cannot read ({e.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != sidecar["sha256"]:
        raise CheckpointError(f"{tensor_path}: checksum does not match its JSON sidecar (truncated or replaced)")
    return sidecar, blob


def read_sidecar(stem: str | Path) -> dict:
    """Read and validate the JSON sidecar alone (cheap: no tensors are read)."""
    _, path = _paths(stem)
    try:
        sidecar = json.loads(path.read_text())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dlforge checkpoint (expected format '{FORMAT}')")
    if not isinstance(sidecar.get("sha256"), str) or not isinstance(sidecar.get("meta", {}), dict):
        raise CheckpointError(f"{path}: 'sha256' must be a string and 'meta' an object")
    if not isinstance(sidecar.get("tree"), dict):
        raise CheckpointError(f"{path}: 'tree' must be an object")
    sidecar.setdefault("meta", {})
    return sidecar


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """`module.load_state_dict(state)` with a one-line CheckpointError on missing keys or shapes."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{what}: expected a mapping of tensors, got {type(state).__name__}")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: checkpoint does not match the network (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{what}.{key}: expected a tensor, got {type(tensor).__name__}")
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{what}.{key}: checkpoint shape {tuple(tensor.shape)} does not match the network's "
                f"{tuple(own[key].shape)} (was it trained with another config?)"
            )
    module.load_state_dict(state)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, what: str = "optimizer") -> None:
    """`optimizer.load_state_dict` with a one-line CheckpointError when the state does not fit.

    The moments and step counts come from the checkpoint; the hyperparameters (learning rate, betas, ...)
    stay those the optimizer was built with, so a resume with `learning_rate=...` uses the new value.
    """
    hyperparameters = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{what}: checkpoint state does not fit this optimizer ({e})") from None
    for group, kept in zip(optimizer.param_groups, hyperparameters):
        group.update(kept)


# --- tree encoding ---------------------------------------------------------------------------


def _encode(node: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        _claim(path, tensors)
        tensors[path] = node.detach().to("cpu").contiguous().clone()
        return {_TENSOR: path}
    if isinstance(node, np.ndarray):
        _claim(path, tensors)
        tensors[path] = torch.from_numpy(np.ascontiguousarray(node)).clone()
        return {_NDARRAY: path}
    if isinstance(node, dict):
        if node and all(isinstance(k, int) and not isinstance(k, bool) for k in node):
            return {_INTKEYS: {str(k): _encode(v, f"{path}.{k}", tensors) for k, v in node.items()}}
        bad = [k for k in node if not isinstance(k, str)]
        if bad:
            raise TypeError(f"checkpoint tree keys must be str or int, got {bad[0]!r} at '{path}'")
        return {k: _encode(v, f"{path}.{k}" if path else k, tensors) for k, v in node.items()}
    if isinstance(node, tuple):
        return {_TUPLE: [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(node)]}
    if isinstance(node, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, bool | int | float | str):
        return node
    raise TypeError(f"cannot store {type(node).__name__} at '{path}' in a checkpoint (tensors and JSON only)")


def _claim(path: str, tensors: dict[str, torch.Tensor]) -> None:
    """Tensor names are dotted tree paths; refuse a second leaf at the same name instead of overwriting."""
    if path in tensors:
        raise TypeError(f"two tensors share the checkpoint name '{path}' (a key with a '.' clashes with a nested key)")


def _paths(stem: str | Path) -> tuple[Path, Path]:
    """(stem.safetensors, stem.json). Appends rather than replaces, so stems may hold dots ('lr-1e-3.v2')."""
    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _decode(node: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(node, dict):
        if len(node) == 1 and (_TENSOR in node or _NDARRAY in node):
            key = node.get(_TENSOR, node.get(_NDARRAY))
            if not isinstance(key, str) or key not in tensors:
                raise CheckpointError(f"checkpoint sidecar refers to a tensor '{key}' the safetensors file lacks")
            return tensors[key] if _TENSOR in node else tensors[key].numpy()
        if len(node) == 1 and _INTKEYS in node and isinstance(node[_INTKEYS], dict):
            try:
                return {int(k): _decode(v, tensors, f"{path}.{k}") for k, v in node[_INTKEYS].items()}
            except ValueError:
                raise CheckpointError(f"checkpoint sidecar: non-integer key under '{path}'") from None
        if len(node) == 1 and _TUPLE in node and isinstance(node[_TUPLE], list):
            return tuple(_decode(v, tensors, f"{path}.{i}") for i, v in enumerate(node[_TUPLE]))
        return {k: _decode(v, tensors, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, tensors, f"{path}.{i}") for i, v in enumerate(node)]
    return node


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
