"""Device choice, seeding and RNG state capture: the few runtime helpers every trainer needs."""

from __future__ import annotations

import random

import numpy as np
import torch

from networks.errors import CheckpointError, ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present (honouring CUDA_VISIBLE_DEVICES set by Ray), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"'{name}' asked for, but no CUDA device is available (use auto or cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError("device", f"expected one of auto, cpu, cuda[:N]; got '{name}'")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    """Seeds Python, NumPy and torch; returns a NumPy Generator for the caller's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(generator: np.random.Generator | None = None) -> dict:
    """All RNG states as a checkpoint tree (tensors and JSON values only, nothing pickled)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy_global": _numpy_global_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    if generator is not None:
        state["numpy"] = generator.bit_generator.state
    return state


def restore_rng_state(state: dict, generator: np.random.Generator | None = None) -> None:
    """Undo `rng_state`. A state of the wrong shape (a checkpoint from elsewhere) is a CheckpointError."""
    try:
        _restore_rng_state(state, generator)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"rng: checkpoint RNG state does not fit ({type(e).__name__}: {e})") from None


def _restore_rng_state(state: dict, generator: np.random.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    kind, keys, pos, has_gauss, cached = state["numpy_global"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if generator is not None and "numpy" in state:
        generator.bit_generator.state = state["numpy"]


def _numpy_global_state() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
