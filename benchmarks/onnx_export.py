"""ONNX export of trained policies: parity with torch, and time per action (torch eager vs onnxruntime).

    python benchmarks/onnx_export.py                      # trains three small runs first (about a minute)
    python benchmarks/onnx_export.py --runs RUN_DIR ...   # or export runs you have

For each run: `dlforge export --format onnx`, then 1,000 observations from the run's env (random actions; the drqn
run is stepped with its LSTM state carried and zeroed at episode starts) through both torch and onnxruntime:
the share of identical greedy actions and the largest |Q difference|. Then the time per action at batch 1 and
batch 256, torch eager (inference_mode) against onnxruntime, both on one thread, measured side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import agents
from launch.config import load_config
from launch.export import export_run
from launch.run import train_run

REPO = Path(__file__).resolve().parents[1]
SMALL = {  # config, overrides: enough training for non-trivial Q-values, small enough for a minute
    "mlp-cartpole": ("configs/dqn/cartpole.yaml", ["total_steps=3000", "stop_at_return=null"]),
    "cnn-minigrid": ("configs/dqn/minigrid-doorkey.yaml", ["total_steps=2000", "learning_starts=500"]),
    "lstm-drqn": ("configs/drqn/cartpole-novel.yaml", ["total_steps=2000", "learning_starts=500"]),
}
QUIET = ["tracking.wandb=disabled", "eval_episodes=2", "buffer_size=5000"]


def parity(policy, session, obs: np.ndarray, starts: np.ndarray) -> tuple[float, float]:
    """(share of identical actions, largest |Q difference|) over `obs`."""
    if policy.kind != "drqn":
        actions, q = session.run(None, {"obs": obs})
        return float((actions == policy.predict(obs)[0]).mean()), float(np.abs(q - policy.q_values(obs)).max())
    same, largest, torch_state, onnx_state = 0, 0.0, None, policy.initial_state(1)
    for x, start in zip(obs, starts):
        q_torch = policy.q_values(x, torch_state, episode_start=start)
        action, torch_state = policy.predict(x, torch_state, episode_start=start)
        onnx_state = policy.initial_state(1) if start else onnx_state
        a, q, *onnx_state = session.run(None, {"obs": x[None], "h": onnx_state[0], "c": onnx_state[1]})
        same += int(a[0] == action)
        largest = max(largest, float(np.abs(q[0] - q_torch).max()))
    return same / len(obs), largest


def per_action(fn, batch: int, seconds: float = 1.0) -> float:
    """Microseconds per action of `fn()` (one call acts on `batch` observations), over about `seconds`."""
    fn()  # warm up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls / batch * 1e6


def timings(policy, session, obs: np.ndarray) -> dict[str, float]:
    graph = policy.graph()
    out = {}
    for batch in (1, 256):
        x = np.resize(obs, (batch, *obs.shape[1:])).astype(obs.dtype)
        inputs = {"obs": x}
        torch_inputs = [torch.from_numpy(x)]
        if policy.kind == "drqn":
            state = policy.initial_state(batch)
            inputs.update(h=state[0], c=state[1])
            torch_inputs += [torch.from_numpy(s) for s in state]

        def eager(inputs=torch_inputs):
            with torch.inference_mode():
                graph.module(*inputs)

        out[f"torch b{batch}"] = per_action(eager, batch)
        out[f"onnxruntime b{batch}"] = per_action(lambda inputs=inputs: session.run(None, inputs), batch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=None, help="run folders (default: train three small ones)")
    parser.add_argument("--n", type=int, default=1000, help="observations for the parity check")
    args = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(1)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    workdir = Path(tempfile.mkdtemp(prefix="dlforge-onnx-bench-"))
    runs = [Path(r) for r in args.runs] if args.runs else []
    for name, (config, overrides) in ({} if args.runs else SMALL).items():
        train_run(load_config(REPO / config, [*overrides, *QUIET]), workdir / name)
        runs.append(workdir / name)

    columns = ["run", "network", "export s", "same actions", "max abs Q diff"]
    columns += ["torch b1 us", "ort b1 us", "torch b256 us", "ort b256 us"]  # microseconds per action
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for run_dir in runs:
        policy = agents.load(run_dir)
        start = time.perf_counter()
        path, _ = export_run(run_dir, "onnx", out=workdir / f"{run_dir.name}.onnx")
        seconds = time.perf_counter() - start
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        obs, starts = policy.env_observations(args.n)
        same, largest = parity(policy, session, obs, starts)
        t = timings(policy, session, obs)
        network = policy.config.network.get("type", "?")
        print(
            f"| {run_dir.name} | {network} | {seconds:.1f} | {same:.1%} | {largest:.1e} | {t['torch b1']:.0f} | "
            f"{t['onnxruntime b1']:.0f} | {t['torch b256']:.2f} | {t['onnxruntime b256']:.2f} |"
        )


if __name__ == "__main__":
    main()
