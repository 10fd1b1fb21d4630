"""`dlforge export RUN --format hub --out DIR`: a folder ready for `hf upload USER/REPO DIR`, written offline.

    README.md                    the model card; its YAML metadata follows the Hub's conventions for RL models
                                 (library_name, tags, model-index with mean_reward "x +/- y"), as rl-baselines3-zoo
    config.yaml                  the run's config (kind and trainer fields)
    checkpoints/model.*          the weights (safetensors + JSON sidecar, `meta.evaluation` the fresh evaluation):
                                 the folder loads with `agents.load(DIR)` like a run folder
    pretrained/<stem>.*          for a network started from another run's encoder: the run's copy of that checkpoint
    eval.json                    a fresh deterministic evaluation of the weights (returns per episode)
    replay.mp4                   the first evaluation episode
    policy.onnx                  observation -> (action, Q-values), as `dlforge export --format onnx`

Nothing is uploaded. The folder is built under a temporary name beside DIR and renamed at the end, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from launch.registry import trainer_module
from networks import io, pretrained
from networks.errors import ConfigError
from networks.typed_config import to_dict

LIBRARY = "dlforge"
ALGORITHMS = {  # kind -> (display name, the Hub tag for the algorithm)
    "dqn": ("DQN", "deep-q-learning"),
    "drqn": ("DRQN", "deep-q-learning"),
    "qlearning": ("Q-learning", "q-learning"),
    "pqn": ("PQN", "deep-q-learning"),
}


def write_hub_folder(policy: Any, target: Path, *, episodes: int, seed: int) -> Path:
    """Evaluate `policy` (an agents.load policy) and write its Hub folder at `target`; returns `target`."""
    from launch.export import describe, write_onnx

    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError("--out", f"{target} exists and is not empty; give a new folder for the Hub files")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("--out", f"cannot create {target.parent} ({e.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        weights = policy.weights()
        result = trainer_module(policy.kind).evaluate(
            policy.config, weights, episodes=episodes, seed=seed, video_path=staging / "replay.mp4"
        )
        evaluation = {
            "mean_return": result["mean_return"],
            "std_return": result["std_return"],
            "episodes": result["episodes"],
            "returns": result["returns"],
            "seed": seed,
            "deterministic": True,
            "checkpoint": policy.checkpoint,
        }
        io.save(staging / "checkpoints" / "model", weights, meta={**policy.checkpoint, "evaluation": evaluation})
        network = getattr(policy.config, "network", None)
        if isinstance(network, dict) and isinstance(network.get("init_from"), str) and network.get("sha256"):
            kept = Path(network["init_from"])  # the run's pretrained/ copy: agents.load points the config at it
            io.copy(kept, staging / pretrained.COPIES / kept.name)  # so the folder builds its network anywhere
        document = {"kind": policy.kind, **to_dict(policy.config)}
        io.atomic_write_text(staging / "config.yaml", yaml.safe_dump(document, sort_keys=False))
        io.atomic_write_text(staging / "eval.json", json.dumps(evaluation, indent=2))
        write_onnx(policy.graph(), staging / "policy.onnx", metadata={"dlforge.kind": policy.kind, **describe(policy)})
        io.atomic_write_text(staging / "README.md", model_card(policy, evaluation))
        if target.exists():
            target.rmdir()  # empty, checked above
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def model_card(policy: Any, evaluation: dict) -> str:
    """README.md: YAML metadata (huggingface_hub's ModelCardData) and a short page on what the folder holds."""
    from huggingface_hub import EvalResult, ModelCardData

    env_id, (algorithm, tag) = policy.config.env_id, ALGORITHMS[policy.kind]
    score = f"{evaluation['mean_return']:.2f} +/- {evaluation['std_return']:.2f}"
    data = ModelCardData(
        library_name=LIBRARY,
        tags=["reinforcement-learning", tag, env_id, LIBRARY],
        model_name=f"{algorithm} {env_id}",
        eval_results=[
            EvalResult(
                task_type="reinforcement-learning",
                task_name="reinforcement-learning",
                dataset_type=env_id,
                dataset_name=env_id,
                metric_type="mean_reward",
                metric_name="mean_reward",
                metric_value=score,
                verified=False,
            )
        ],
    )
    step, which = policy.checkpoint["step"], policy.checkpoint["which"]
    space = policy.observation_space
    return f"""---
{data.to_yaml()}
---

# {algorithm} agent for {env_id}

A {algorithm} agent trained with dlforge (kind `{policy.kind}`), {which} checkpoint at step {step}.
Greedy evaluation: mean return **{score}** over {evaluation["episodes"]} episodes (seed {evaluation["seed"]}).

## Files

| file | what it holds |
|---|---|
| `config.yaml` | the training config: `dlforge train config.yaml` trains it again |
| `checkpoints/model.safetensors`, `.json` | the weights, and a sidecar whose `meta` holds the evaluation |
| `policy.onnx` | observation `{space.dtype} (N, {", ".join(map(str, space.shape))})` -> (action, Q-values) |
| `eval.json` | the evaluation, episode by episode |
| `replay.mp4` | the first evaluation episode |

## Use

```python
import agents  # pip install dlforge

policy = agents.load("this-folder")
action, state = policy.predict(obs, deterministic=True)
```

Without dlforge, with onnxruntime (`pip install onnxruntime`):

```python
import onnxruntime

session = onnxruntime.InferenceSession("policy.onnx")
action, q_values = session.run(None, {{"obs": obs[None]}})
```

## Upload

```bash
hf upload USER/REPO this-folder .
```
"""
