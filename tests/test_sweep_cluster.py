"""A sweep that cannot start or join Ray says why, in one line, within about 20 seconds.

Exit code 2 for a bad address (nothing there, something that does not answer, another service on the port),
1 for a machine or cluster that cannot run the sweep (loopback down, another Ray version, a Ray that never
finishes starting). Real processes, real sockets, a real `ray start` cluster; all on loopback.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from test_sweep_cli import DLFORGE, _wait_for_port, env, free_port, start_node, stop_nodes, write_sweep

pytestmark = pytest.mark.slow

SWEEP = {"base": {"kind": "sweeptest", "total_steps": 20}, "metric": "eval/score"}


def run_sweep(tmp_path, *flags, prefix=(), driver=DLFORGE, timeout=90, **extra_env):
    path = write_sweep(tmp_path / "s.yaml", **SWEEP)
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, *driver, "sweep", str(path), "--out", str(tmp_path / "runs"), *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra_env),
        cwd=tmp_path,
    )
    return done, time.monotonic() - started


def assert_one_line(done, code: int, start: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
    assert lines and lines[-1].startswith(start), done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]


def _unshare_without_loopback() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    done = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"unshare -n is not permitted here: {done.stderr.strip()}"


def test_loopback_down(tmp_path):
    reason = _unshare_without_loopback()
    if reason:
        pytest.skip(reason)
    # A fresh network namespace: its loopback interface exists but is down (Ray alone waits minutes there).
    done, seconds = run_sweep(tmp_path, prefix=("unshare", "-n"))
    assert_one_line(done, 1, "failed: ray: cannot start a local Ray cluster: the loopback interface does not work")
    assert seconds < 20
    assert not (tmp_path / "runs").exists()


class _NotRay(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_port_held_by_another_service(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _NotRay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        done, seconds = run_sweep(tmp_path, "--address", f"127.0.0.1:{port}")
    finally:
        server.shutdown()
    assert_one_line(done, 2, f"error: --address: 127.0.0.1:{port} is not a Ray cluster (it answered")
    assert seconds < 20
    assert not (tmp_path / "runs").exists()


def test_an_address_that_does_not_answer(tmp_path):
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        done, seconds = run_sweep(tmp_path, "--address", f"127.0.0.1:{port}")
    assert_one_line(done, 2, f"error: --address: cannot reach a Ray cluster at 127.0.0.1:{port} (no answer within 5 s)")
    assert seconds < 20


def test_a_ray_that_never_finishes_joining_is_given_up(tmp_path):
    """Something that answers like a Ray cluster (HTTP/2) and then says nothing: Ray would wait for minutes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        held = []

        def answer_then_hang():
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                held.append(connection)
                connection.sendall(struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))  # SETTINGS

        threading.Thread(target=answer_then_hang, daemon=True).start()
        port = listener.getsockname()[1]
        done, seconds = run_sweep(tmp_path, "--address", f"127.0.0.1:{port}")
    assert_one_line(done, 1, f"failed: ray: could not join the Ray cluster at 127.0.0.1:{port} within 30 s")
    assert seconds < 45
    assert not (tmp_path / "runs").exists()


def test_a_cluster_of_another_ray_version(tmp_path):
    import ray

    ip, port = "127.0.0.1", free_port()
    head = start_node(
        [
            "--head",
            f"--port={port}",
            f"--node-ip-address={ip}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ],
        tmp_path / "head.log",
        "0",
    )
    try:
        _wait_for_port(ip, port, head, tmp_path / "head.log")
        # This driver calls itself Ray 2.0.0; Ray compares versions when it joins.
        older = [DLFORGE[0], "-c", "import ray; ray.__version__ = '2.0.0'; " + DLFORGE[2]]
        done, seconds = run_sweep(tmp_path, "--address", f"{ip}:{port}", driver=older, RAY_AUTH_MODE="token")
    finally:
        stop_nodes([head])
    assert_one_line(
        done,
        1,
        f"failed: ray: cannot join the Ray cluster at {ip}:{port}: Version mismatch: "
        f"The cluster was started with: Ray: {ray.__version__}",
    )
    assert "This process on node" in done.stderr and "Ray: 2.0.0" in done.stderr
    assert seconds < 20
    assert not (tmp_path / "runs").exists()
