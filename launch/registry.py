"""Trainer kinds by name. Each value is the module that implements that kind.

A trainer module exposes `Config` (a dataclass), `train(config, tracker, *, resume=None)`, and
optionally `evaluate(config, tree, *, episodes, seed, video_path)` (agents) and
`generate(config, tree, *, n, seed)` (generators). Modules are imported on first use, so the CLI
starts fast and a broken optional dependency only affects its own kind.
"""

from __future__ import annotations

import importlib
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
    module = importlib.import_module(TRAINERS[kind])
    if module.__name__.startswith("generative."):  # `data: env:<id>` collects frames through envs.make,
        from generative.data import register_env_factory  # which generative/ may not import itself

        register_env_factory(lambda *args, **kwargs: importlib.import_module("envs").make(*args, **kwargs))
    return module
