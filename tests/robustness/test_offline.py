"""Guarantee 6: no network is needed.

Every command runs inside a fresh network namespace (`unshare -n`: no interface but loopback, which is brought
up because an embedded Ray cluster talks to itself over 127.0.0.1), W&B offline included (`dlforge sweep` runs
so in test_sweep_workers.py), and an offline W&B run starts without waiting for the network.
`tracking.wandb: online` without an API key fails at start with one line (exit 2).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from robustkit import REPO, TINY, assert_one_line_error, env, tiny_document

from launch.cli import main
from launch.registry import TRAINERS

PROBE = r"""
import json, socket, sys, time
from pathlib import Path
root = Path(sys.argv[1])
result = {}
try:  # is the network really gone?
    socket.create_connection(("1.1.1.1", 443), timeout=3).close()
    result["network"] = "reachable"
except OSError as e:
    result["network"] = f"unreachable ({e.strerror or e})"
try:
    socket.getaddrinfo("pypi.org", 443)
    result["dns"] = "resolves"
except OSError:
    result["dns"] = "fails"

from launch.config import TrackingConfig
from launch.tracking import LocalTracker
started = time.perf_counter()
tracker = LocalTracker(root / "wandb-start", TrackingConfig(wandb="offline"))
tracker.log({"charts/x": 1.0}, step=1)  # W&B starts on the first record
result["wandb_offline_start_s"] = round(time.perf_counter() - started, 2)
tracker.close()

from launch.cli import main
commands = {
    "list": ["list"],
    "train agent": ["train", str(root / "agent.yaml"), "--out", str(root / "runs"), "--name", "agent"],
    "train generator": ["train", str(root / "generator.yaml"), "--out", str(root / "runs"), "--name", "generator"],
    "eval": ["eval", str(root / "runs" / "agent"), "--episodes", "2"],
    "generate": ["generate", str(root / "runs" / "generator"), "--n", "4"],
    "report": ["report", str(root / "runs"), "--out", str(root / "report")],
}  # sweep: test_sweep_workers.py runs a whole sweep (and kills a worker) in the same kind of namespace
for name, argv in commands.items():
    started = time.perf_counter()
    result[name] = {"exit": main(argv), "seconds": round(time.perf_counter() - started, 1)}
print("RESULT " + json.dumps(result))
"""


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    done = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"unshare -n is not permitted here: {done.stderr.strip()}"


@pytest.fixture(scope="module")
def offline_result(tmp_path_factory):
    reason = _unshare_works()
    if reason:
        pytest.skip(reason)
    agent = next((k for k in ("qlearning", "dqn") if k in TRAINERS), None)
    generator = next((k for k in ("vae", "ae", "gan") if k in TRAINERS), None)
    if agent is None or generator is None:
        pytest.skip("needs an agent kind and a generator kind registered")
    root = tmp_path_factory.mktemp("offline")
    offline = {"tracking": {"wandb": "offline"}}
    (root / "agent.yaml").write_text(yaml.safe_dump(tiny_document(agent, **offline)))
    (root / "generator.yaml").write_text(yaml.safe_dump(tiny_document(generator, **offline)))
    script = [
        "unshare",
        "-n",
        "sh",
        "-c",
        'ip link set lo up 2>/dev/null; exec "$0" "$@"',
        sys.executable,
        "-c",
        PROBE,
        str(root),
    ]
    done = subprocess.run(script, capture_output=True, text=True, timeout=600, cwd=REPO, env=env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT ")), root


def test_the_namespace_really_has_no_network(offline_result):
    result, _ = offline_result
    assert result["network"].startswith("unreachable"), result["network"]
    assert result["dns"] == "fails"


@pytest.mark.parametrize("command", ["list", "train agent", "train generator", "eval", "generate", "report"])
def test_every_command_works_without_network(offline_result, command):
    result, root = offline_result
    assert result[command]["exit"] == 0, result[command]
    if command.startswith("train"):
        run_dir = root / "runs" / command.split()[1]
        assert list(run_dir.glob("wandb/offline-run-*/run-*.wandb")), "no offline W&B run was written"


def test_an_offline_wandb_run_does_not_wait_for_the_network(offline_result):
    """A bound on hangs, not a speed figure: W&B's network retries last minutes, so a run that waited for the
    network would take far longer than this; a start at 1-3 s on an idle machine can reach several under load."""
    result, _ = offline_result
    assert result["wandb_offline_start_s"] < 20.0, result["wandb_offline_start_s"]


@pytest.mark.parametrize("kind", [k for k in ("qlearning", "dqn", "classify") if k in TINY][:1])
def test_online_without_an_api_key_is_one_line_at_start(kind, tmp_path, monkeypatch, capsys):
    if kind not in TRAINERS:
        pytest.skip(f"{kind} is not registered")
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    config = tmp_path / "online.yaml"
    config.write_text(yaml.safe_dump(tiny_document(kind, tracking={"wandb": "online"})))
    started = time.perf_counter()
    code = main(["train", str(config), "--out", str(tmp_path / "runs"), "--name", "online"])
    seconds = time.perf_counter() - started
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "tracking.wandb: online needs a W&B API key")
    assert seconds < 5, f"took {seconds:.1f} s to refuse"
    assert not (tmp_path / "runs" / "online").exists()
