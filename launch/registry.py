"""Trainer kinds by name. Each value is the module that implements that kind.

A trainer module exposes `Config` (a dataclass), `train(config, tracker, *, resume=None)`, and
optionally `evaluate(config, tree, *, episodes, seed, video_path)` (agents) and
`generate(config, tree, *, n, seed)` (generators). Modules are imported on first use, so the CLI
starts fast and a broken optional dependency only affects its own kind.

A `train` or `generate` that takes a keyword `make_env` reads `data: env:<env_id>` frames; generative/ may not
import envs/, so launch/ hands it envs.make through `with_env_factory`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from types import ModuleType

TRAINERS: dict[str, str] = {
    "classify": "generative.classifier",
    "dqn": "agents.dqn",
    "drqn": "agents.drqn",
    "pqn": "agents.pqn",
    "qlearning": "agents.qlearning",
    "gan": "generative.gan",
    "dcgan": "generative.dcgan",
    "ae": "generative.ae",
    "vae": "generative.vae",
    "seq2seq_ae": "generative.seq2seq_ae",
}


def trainer_module(kind: str) -> ModuleType:
    return importlib.import_module(TRAINERS[kind])


def make_env(*args, **kwargs):
    """envs.make, imported when first called (Gymnasium stays out of runs that never make an env)."""
    from envs import make

    return make(*args, **kwargs)


def with_env_factory(function: Callable) -> Callable:
    """`function` with `make_env=envs.make` bound when it takes that keyword, else `function` itself."""
    if "make_env" in inspect.signature(function).parameters:
        return functools.partial(function, make_env=make_env)
    return function
