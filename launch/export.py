"""`dlforge export RUN --format onnx|torchscript|hub`: a trained policy or generator as a file others can run.

An agent's graph maps the observation, exactly as the env returns it (uint8 pixels are scaled inside), to the
greedy action and the Q-values; drqn's graph also takes the LSTM/GRU state and returns the next one (zero it where
an episode starts). A generator's graph maps z to an image in [0, 1]. The batch axis is dynamic.

    onnx         RUN/export/policy.onnx (or generator.onnx); checked against torch with onnxruntime once written
    torchscript  RUN/export/policy.pt, for `torch.jit.load`
    hub          RUN/hub: a folder for `hf upload` (launch/hub.py)

ONNX and hub need the optional extra `pip install 'dlforge[export]'` (onnx, onnxruntime, onnxscript,
huggingface_hub). Bad input (a run without a policy or generator, a missing or corrupt checkpoint, a missing
extra) is exit 2 with one line, and nothing is written: files are written beside the target and renamed into place.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from networks.errors import ConfigError
from networks.export_graph import ExportGraph
from networks.run_folder import read_run_config

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "hub": ""}
EXTRA = "pip install 'dlforge[export]'"
NEEDS = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "hub": ("onnx", "onnxruntime", "onnxscript", "huggingface_hub")}
AGENT_KINDS = ("dqn", "drqn", "qlearning", "pqn")
GENERATOR_KINDS = ("gan", "dcgan", "vae", "ae")


def main(args) -> int:
    if args.episodes < 1:
        raise ConfigError("--episodes", f"must be >= 1, got {args.episodes}")
    options = {"out": args.out, "checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed}
    try:
        path, note = export_run(Path(args.run_dir), args.format, **options)
    except RuntimeError as e:  # a failure while exporting (not bad input): one line, exit 1
        print(f"failed: {e}", file=sys.stderr)
        return 1
    if note:
        print(note)
    print(f"wrote: {path}")
    return 0


def export_run(
    run_dir: Path,
    fmt: str,
    *,
    out: str | Path | None = None,
    checkpoint: str = "best",
    episodes: int = 10,
    seed: int = 12345,
) -> tuple[Path, str]:
    """Export `run_dir` in format `fmt`; returns (the path written, a one-line note on what was checked)."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"unknown format '{fmt}'; allowed: {', '.join(FORMATS)}")
    require_extra(fmt)
    model = load_exportable(run_dir, checkpoint)
    is_agent = model.kind in AGENT_KINDS
    if fmt == "hub":
        if not is_agent:
            message = f"hub folders hold agents ({', '.join(AGENT_KINDS)}); export a '{model.kind}' run"
            raise ConfigError("--format", f"{message} with --format onnx or torchscript")
        from launch.hub import write_hub_folder

        target = Path(out) if out else run_dir / "hub"
        return write_hub_folder(model, target, episodes=episodes, seed=seed), f"evaluated over {episodes} episodes"
    name = "policy" if is_agent else "generator"
    target = Path(out) if out else run_dir / "export" / f"{name}{FORMATS[fmt]}"
    if target.suffix != FORMATS[fmt]:
        raise ConfigError("--out", f"a {fmt} file ends in {FORMATS[fmt]}, got '{target}'")
    if target.is_dir():
        raise ConfigError("--out", f"{target} is a folder; give a file path ending in {FORMATS[fmt]}")
    graph = model.graph()
    with staged_file(target) as staging:
        if fmt == "onnx":
            write_onnx(graph, staging, metadata={"dlforge.kind": model.kind, **describe(model)})
            difference = onnx_parity(graph, staging)
            note = f"onnxruntime matches torch on 256 sample inputs (largest difference {difference:.1e})"
        else:
            write_torchscript(graph, staging)
            note = ""
    return target, note


def require_extra(fmt: str) -> None:
    missing = []
    for name in NEEDS.get(fmt, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError("--format", f"{fmt} export needs {', '.join(missing)}: {EXTRA}")


def load_exportable(run_dir: Path, checkpoint: str) -> Any:
    """The run's policy (agents.load) or generator (generative.load); ConfigError for any other kind."""
    kind = read_run_config(run_dir).get("kind")
    if kind in AGENT_KINDS:
        import agents

        return agents.load(run_dir, checkpoint=checkpoint)
    if kind in GENERATOR_KINDS:
        import generative

        return generative.load(run_dir, checkpoint=checkpoint)
    kinds = ", ".join(AGENT_KINDS + GENERATOR_KINDS)
    message = f"{run_dir} is a '{kind}' run, which holds no policy or generator"
    raise ConfigError("run", f"{message}; export takes {kinds} runs")


def describe(model: Any) -> dict[str, str]:
    """What the graph's users need to know, stored in the ONNX file's metadata."""
    facts = {"dlforge.step": str(model.checkpoint.get("step"))}
    if hasattr(model, "observation_space"):
        space = model.observation_space
        facts["dlforge.env_id"] = model.config.env_id
        facts["dlforge.observation"] = f"{space.dtype} {tuple(space.shape)}" + (
            " (pixels: scaled by 1/255 inside the graph)" if space.dtype == np.uint8 else ""
        )
    return facts


# --- formats ----------------------------------------------------------------------------------------------


def write_onnx(graph: ExportGraph, path: Path, metadata: dict[str, str] | None = None) -> None:
    """The graph as ONNX (torch.onnx's dynamo exporter), batch axis dynamic, `metadata` in its properties."""
    import onnx

    batch = torch.export.Dim("batch")
    dynamic = {name: {axis: batch} for name, axis in graph.batch_axes.items()}
    with _quiet_exporter():
        program = torch.onnx.export(
            graph.module,
            tuple(graph.inputs.values()),
            input_names=list(graph.inputs),
            output_names=graph.outputs,
            dynamic_shapes=dynamic,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def onnx_parity(graph: ExportGraph, path: Path, n: int = 256, tolerance: float = 1e-4) -> float:
    """The largest |torch - onnxruntime| over every output for `n` inputs like the example ones; RuntimeError when
    it exceeds `tolerance` times the largest output magnitude (at least 1)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {name: _like(example, n, graph.batch_axes[name]) for name, example in graph.inputs.items()}
    with torch.no_grad():
        expected = graph.module(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {name: x.numpy() for name, x in inputs.items()})
    largest = max(float(np.abs(np.asarray(g, np.float64) - e.double().numpy()).max()) for g, e in zip(got, expected))
    scale = max(1.0, *(float(e.double().abs().max()) for e in expected))
    if largest > tolerance * scale:
        raise RuntimeError(f"onnxruntime differs from torch by {largest:.2g} (outputs up to {scale:.3g}); not written")
    return largest


def write_torchscript(graph: ExportGraph, path: Path) -> None:
    with _quiet_exporter():
        traced = torch.jit.trace(graph.module, tuple(graph.inputs.values()))
    traced.save(str(path))


def _like(example: torch.Tensor, n: int, axis: int) -> torch.Tensor:
    """`n` inputs shaped like `example` along its batch axis: random values in the example's dtype and range."""
    shape = list(example.shape)
    shape[axis] = n
    generator = torch.Generator().manual_seed(0)
    if example.dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    if not example.is_floating_point():
        return torch.randint(int(example.min()), int(example.max()) + 1, shape, generator=generator).to(example.dtype)
    return torch.randn(shape, generator=generator).to(example.dtype)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters warn about internals (deprecations, missing torchvision ops): not the user's concern."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it on success; on failure nothing is left behind
    (not even the folders this call created)."""
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("--out", f"cannot create {target.parent} ({e.strerror})") from None
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    staging = Path(name)
    os.close(fd)
    try:
        yield staging
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        for folder in created:  # innermost first
            shutil.rmtree(folder, ignore_errors=True)
        raise
