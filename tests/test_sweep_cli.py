"""`dlforge sweep` as a user runs it: bad input, an interrupted sweep resumed, and a real `ray start` cluster.

Every Ray process here talks over loopback. The embedded clusters bind to 127.0.0.1
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). The two-node cluster runs on 127.0.0.2: Ray refuses a second
`ray start` node while that variable is 0, and rewrites 127.0.0.1 to the machine's network address
once it is 1, but it leaves other loopback addresses alone.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from wandb_reader import history, offline_runs

from launch.tracking import read_metrics

TESTS = Path(__file__).resolve().parent
RAY = Path(sys.executable).with_name("ray")
# `dlforge` with the sweeptest kind registered (tests/sweep_trainer.py; workers find it on PYTHONPATH).
DLFORGE = [
    sys.executable,
    "-c",
    "import sys; from launch.registry import TRAINERS; "
    "TRAINERS['sweeptest'] = 'sweep_trainer'; from launch.cli import main; sys.exit(main(sys.argv[1:]))",
]

pytestmark = pytest.mark.slow


def env(**extra) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "WANDB_SILENT": "true",
        "WANDB_MODE": "offline",
        **extra,
    }


def write_sweep(path: Path, **document) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLASSIFY = {"kind": "classify", "total_steps": 10, "eval_every": 10, "batch_size": 32}


@pytest.mark.parametrize(
    "case",
    [
        "unknown type",
        "empty grid",
        "unknown metric",
        "gpu",
        "unreachable address",
        "wandb online, no key",
        "pack without populations",
        "bad seeds",
    ],
)
def test_bad_input_exits_2_with_one_line_within_30s(tmp_path, case):
    sweep = {"base": CLASSIFY, "metric": "eval/accuracy", "space": {"lr": {"grid": [1e-3]}}}
    flags, overrides, expected = [], [], ""
    if case == "unknown type":
        sweep["space"] = {"lr": {"logunifrom": [1e-4, 1e-2]}}
        expected = "error: space.lr: unknown search-space type 'logunifrom' (did you mean 'loguniform'?)"
    elif case == "empty grid":
        sweep["space"] = {"lr": {"grid": []}}
        expected = "error: space.lr.grid: is empty"
    elif case == "unknown metric":  # checked against the trainer's METRICS (test_sweep.py: without them)
        sweep = {**sweep, "base": {"kind": "sweeptest"}, "metric": "eval/scor", "space": {}}
        expected = "error: metric: 'eval/scor' is never reported by the sweeptest trainer (did you mean 'eval/score'?)"
    elif case == "gpu":
        flags, expected = (
            ["--gpus-per-trial", "0.5"],
            "error: resources.gpu: 0.5 GPU per trial, but the Ray cluster has no GPU",
        )
    elif case == "pack without populations":
        flags, expected = ["--pack", "seeds"], "error: pack: seeds needs a trainer that trains populations"
    elif case == "bad seeds":
        flags, expected = ["--seeds", "0,1,x"], "error: seeds[2]: expected an integer"
    elif case == "unreachable address":
        flags, expected = ["--address", f"127.0.0.1:{free_port()}"], "error: --address: cannot reach a Ray cluster"
    else:
        overrides, expected = ["tracking.wandb=online"], "error: tracking.wandb: online needs a W&B API key"
    path = write_sweep(tmp_path / "bad.yaml", **sweep)
    start = time.monotonic()
    done = subprocess.run(
        [*DLFORGE, "sweep", str(path), *overrides, "--out", str(tmp_path / "runs"), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in env().items() if k != "WANDB_API_KEY"},
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    assert elapsed < 30
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(expected), lines[-1]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert not (tmp_path / "runs").exists()  # no sweep folder left behind


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    path = write_sweep(
        tmp_path / "slow.yaml",
        base={"kind": "sweeptest", "total_steps": 40, "eval_every": 10, "sleep_s": 0.3},
        metric="eval/score",
        space={"quality": {"grid": [0.2, 0.5, 0.8]}},
        max_concurrent=1,
    )
    out = tmp_path / "runs"
    trials = out / "sweeps" / "slow" / "trials"
    command = [*DLFORGE, "sweep", str(path), "--out", str(out)]
    sweep = subprocess.Popen(
        command, env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        # One trial at a time: once the second has started, Tune has taken the first as finished.
        while len(list(trials.glob("*/config.yaml"))) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, "sweep ended before the interrupt"
            time.sleep(0.2)
        sweep.send_signal(signal.SIGINT)  # Ctrl+C
        output, _ = sweep.communicate(timeout=90)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, output[-3000:]
    assert "--resume" in output
    # What the interrupted sweep counted as finished (a trial whose last result Tune had not yet taken in
    # when Ctrl+C came is unfinished, and continues from its last checkpoint).
    interrupted = json.loads((out / "sweeps" / "slow" / "results.json").read_text())["trials"]
    finished = {
        t["trial"]: (trials / t["trial"] / "metrics.jsonl").stat().st_mtime_ns
        for t in interrupted
        if t["status"] == "done"
    }
    assert 1 <= len(finished) < 3 and {t["status"] for t in interrupted} == {"done", "unfinished"}

    resumed = subprocess.run(
        [*command, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    results = json.loads((out / "sweeps" / "slow" / "results.json").read_text())["trials"]
    assert sorted(t["status"] for t in results) == ["done"] * 3
    for name, mtime in finished.items():  # finished trials were not run again
        assert (trials / name / "metrics.jsonl").stat().st_mtime_ns == mtime
        assert len(offline_runs(trials / name)) == 1
    for trial in results:  # every trial logged each step once, and W&B holds them all
        run_dir = Path(trial["run_dir"])
        steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
        assert steps == list(range(10, 41, 10))
        assert sorted({r["global_step"] for f in offline_runs(run_dir) for r in history(f)}) == steps
    assert json.loads((out / "sweeps" / "slow" / "best.json").read_text())["params"]["quality"] == 0.8


def start_node(args: list[str], log: Path, enable_cluster: str) -> subprocess.Popen:
    """`ray start --block` in its own process group, so the test can stop exactly that node."""
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--disable-usage-stats", *args],
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": enable_cluster, "RAY_AUTH_MODE": "token"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=log.parent,
    )


def stop_nodes(nodes: list[subprocess.Popen], grace_s: float = 10) -> None:
    """SIGTERM each node's process group at once; SIGKILL whatever is still draining after `grace_s`."""
    for node in nodes:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for node in nodes:  # the group, not just the `ray start` process: raylet, GCS and workers too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=10)
    deadline = time.monotonic() + 10
    for node in nodes:  # nothing of the cluster is left
        while _group_alive(node.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(node.pid), f"process group {node.pid} still has processes"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sweep_on_a_ray_start_cluster_with_a_separate_worker(tmp_path):
    ip, port = "127.0.0.2", free_port()
    address = f"{ip}:{port}"
    common = [f"--node-ip-address={ip}", "--num-cpus=1"]
    nodes = []
    try:
        nodes.append(
            start_node(
                [
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=false",
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}",
                    *common,
                ],
                tmp_path / "head.log",
                "0",
            )
        )
        _wait_for_port(ip, port, nodes[0], tmp_path / "head.log")
        nodes.append(
            start_node(
                [
                    f"--address={address}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}",
                    *common,
                ],
                tmp_path / "worker.log",
                "1",
            )
        )
        _wait_for_log(nodes[1], tmp_path / "worker.log", "Ray runtime started")

        path = write_sweep(
            tmp_path / "remote.yaml",
            base={**CLASSIFY, "total_steps": 20},
            metric="eval/accuracy",
            space={"lr": {"grid": [1e-3, 3e-3]}},
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "launch.cli",
                "sweep",
                str(path),
                "--address",
                address,
                "--out",
                str(tmp_path / "runs"),
            ],
            env=env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"ray: joined {address}" in done.stdout
        sweep_dir = tmp_path / "runs" / "sweeps" / "remote"
        results = json.loads((sweep_dir / "results.json").read_text())["trials"]
        assert [t["status"] for t in results] == ["done", "done"]
        for trial in results:
            run_dir = Path(trial["run_dir"])
            steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
            assert sorted({r["global_step"] for f in offline_runs(run_dir) for r in history(f)}) == sorted(set(steps))
        assert json.loads((sweep_dir / "best.json").read_text())["checkpoint"].endswith(".safetensors")
    finally:
        stop_nodes(nodes)


def _wait_for_port(host: str, port: int, node: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.poll() is None, log.read_text()[-2000:]
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"Ray head did not open {host}:{port}: {log.read_text()[-2000:]}")


def _wait_for_log(node: subprocess.Popen, log: Path, line: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.poll() is None, log.read_text()[-2000:]
        if line in log.read_text():
            return
        time.sleep(0.5)
    pytest.fail(f"the worker node did not join: {log.read_text()[-2000:]}")


def test_an_interrupted_packed_sweep_resumes_its_populations(tmp_path):
    """pack: seeds on CartPole, one population trial at a time: Ctrl+C once the second has started, then --resume.
    The finished population is not run again; the interrupted one continues from the newest step all its members
    saved; every member logs each evaluation step once, and its W&B runs hold them all."""
    base = {
        "kind": "dqn",
        "env_id": "CartPole-v1",
        "total_steps": 3000,
        "eval_every": 500,
        "checkpoint_every": 500,
        "eval_episodes": 2,
        "learning_starts": 50,
        "batch_size": 32,
        "buffer_size": 5000,
        "network": {"type": "mlp", "hidden": [16]},
        "torch_threads": 1,
    }
    path = write_sweep(
        tmp_path / "packed.yaml",
        base=base,
        metric="eval/mean_return",
        space={"learning_rate": {"grid": [1e-3, 3e-3]}},
        seeds=[0, 1],
        max_concurrent=1,
    )
    out = tmp_path / "runs"
    trials = out / "sweeps" / "packed" / "trials"
    command = [*DLFORGE, "sweep", str(path), "--out", str(out)]
    sweep = subprocess.Popen(
        command, env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not list(trials.glob("packed-001/members/*/checkpoints/step-*.json")):  # the second one saved
            assert sweep.poll() is None and time.monotonic() < deadline, "sweep ended before the interrupt"
            time.sleep(0.2)
        sweep.send_signal(signal.SIGINT)
        output, _ = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, output[-3000:]
    interrupted = json.loads((out / "sweeps" / "packed" / "results.json").read_text())["trials"]
    assert [t["status"] for t in interrupted] == ["done", "done", "unfinished", "unfinished"]
    finished = {t["run_dir"]: Path(t["run_dir"], "metrics.jsonl").stat().st_mtime_ns for t in interrupted[:2]}

    resumed = subprocess.run(
        [*command, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    results = json.loads((out / "sweeps" / "packed" / "results.json").read_text())["trials"]
    assert [t["trial"] for t in results] == [
        "packed-000/seed0",
        "packed-000/seed1",
        "packed-001/seed0",
        "packed-001/seed1",
    ]
    assert {t["status"] for t in results} == {"done"}
    for run_dir, mtime in finished.items():  # the finished population was not run again
        assert Path(run_dir, "metrics.jsonl").stat().st_mtime_ns == mtime
    for trial in results:
        run_dir = Path(trial["run_dir"])
        steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "eval/mean_return" in r]
        assert steps == list(range(500, 3001, 500))
        logged = sorted({r["step"] for r in read_metrics(run_dir / "metrics.jsonl")})
        assert sorted({r["global_step"] for f in offline_runs(run_dir) for r in history(f)}) == logged
