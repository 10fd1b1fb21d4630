"""Where a sweep runs: an embedded Ray cluster on this machine, or a running cluster it joins.

Ray waits a long time, in its C++ core, when it cannot reach itself or a cluster (minutes, seen here, with the
loopback interface down or an address where something other than Ray listens). So what can be checked
without Ray is checked first, in seconds, and said in one line: the loopback interface works; an address is
host:port, answers, and speaks HTTP/2 as a Ray cluster's GCS does. Bad input (the address) is a ConfigError
(exit 2); a machine or cluster that cannot run the sweep is a ClusterUnavailable (exit 1). The command line
also bounds Ray's start with a deadline, for causes no check foresees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
import threading
from pathlib import Path

from launch.sweep_config import SweepPlan
from networks.errors import ConfigError

PROBE_TIMEOUT_S = 5.0  # how long an address may take to accept a connection, then to answer
START_DEADLINE_S = 60.0  # an embedded cluster starts in 5-15 s here, even on a busy machine
JOIN_DEADLINE_S = 30.0  # joining a cluster that answered the probe: connect, check versions, ship the code

# HTTP/2's client preface and an empty SETTINGS frame (RFC 9113, section 3.4): a GCS (gRPC) answers with
# its own SETTINGS frame, whatever else listens answers otherwise or not at all.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0)
_SETTINGS_FRAME = 4


class ClusterUnavailable(RuntimeError):
    """Ray could not be started or joined, for a reason outside the sweep's input (exit code 1)."""


@contextlib.contextmanager
def cluster_environment(address: str | None):
    """The environment Ray must see from its import on: token auth while joining a cluster.

    `ray start --head` turns on token auth in Ray 2.60, and Ray reads RAY_AUTH_MODE when it is imported.
    It is set for this block only: left behind, it would also reach the GCS of a later embedded cluster in
    the same process, whose driver (imported without it) would then be refused.
    """
    joining = bool(address or os.environ.get("RAY_ADDRESS"))
    saved = os.environ.get("RAY_AUTH_MODE")
    if joining:
        os.environ["RAY_AUTH_MODE"] = saved or "token"
    try:
        yield
    finally:
        if joining and saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)


def connect(address: str | None, plan: SweepPlan, *, bounded: bool = False) -> bool:
    """Start an embedded cluster or join `address` (or RAY_ADDRESS). True if this call started Ray.

    `bounded` (the command line): if Ray has not started within START_DEADLINE_S (joined within
    JOIN_DEADLINE_S), say so and end the process, since Ray's start cannot be interrupted from Python.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False  # a caller (a notebook, the tests) already chose the cluster
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        if plan.settings.resources.gpu > 0:
            import torch

            if torch.cuda.device_count() == 0:
                raise ConfigError("resources.gpu", no_gpu(plan.settings.resources.gpu))
        check_loopback()
        with _deadline(START_DEADLINE_S if bounded else None, "start a local Ray cluster"):
            _start_local()
        print(f"ray: embedded local cluster, {machine_cpus()} CPUs")
        return True
    if address.startswith("ray://"):
        raise ConfigError(
            "--address",
            "Ray Client (ray://) does not suit Tune; give the cluster's GCS address "
            "host:port, as `ray start --head` prints it",
        )
    if address != "auto":
        check_address(address)
    with _deadline(JOIN_DEADLINE_S if bounded else None, f"join the Ray cluster at {address}"):
        _join(address)
    print(f"ray: joined {address}")
    return True


def check_loopback() -> None:
    """An embedded cluster talks to itself over 127.0.0.1; without a working loopback Ray waits for minutes."""
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            socket.create_connection(server.getsockname(), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterUnavailable(
            "ray: cannot start a local Ray cluster: the loopback interface does not work "
            f"(127.0.0.1: {e.strerror or e}); bring it up (`ip link set lo up`) or join a cluster with --address"
        ) from None


def check_address(address: str) -> None:
    """`address` is host:port, accepts a connection and answers as a Ray cluster's GCS (HTTP/2), in seconds."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError("--address", f"expected host:port (e.g. 127.0.0.1:6379) or auto, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S) as connection:
            connection.sendall(_HTTP2_PREFACE)
            reply = _receive(connection, 9)  # a frame header: length (3 bytes), type, flags, stream id
    except TimeoutError:
        raise ConfigError(
            "--address",
            f"cannot reach a Ray cluster at {address} (no answer within {PROBE_TIMEOUT_S:g} s); start one with "
            "`ray start --head`, or leave out --address for a local cluster",
        ) from None
    except OSError as e:
        raise ConfigError(
            "--address",
            f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with "
            "`ray start --head`, or leave out --address for a local cluster",
        ) from None
    if len(reply) < 9 or reply[3] != _SETTINGS_FRAME:
        heard = reply.split(b"\r\n")[0].decode("ascii", "replace") if reply else "it closed the connection"
        raise ConfigError(
            "--address",
            f"{address} is not a Ray cluster (it answered {heard!r}, another service holds that port); "
            "give the GCS address that `ray start --head` prints",
        )


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _stay_on_loopback() -> None:
    """Keep Ray's traffic on 127.0.0.1, for an embedded cluster or one that listens on a loopback address.

    Without this variable set before Ray is imported, an embedded cluster listens on every interface and routes
    its own traffic through the machine's network address, and a driver rewrites a 127.0.0.1 address to that
    network address (Ray 2.60). A cluster on the network needs Ray's default, so it is set only here.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _start_local() -> None:
    _stay_on_loopback()
    import ray

    try:
        ray.init(
            address="local",
            num_cpus=machine_cpus(),
            include_dashboard=False,
            logging_level=logging.ERROR,
            runtime_env=_worker_env() or None,
        )
    except Exception as e:  # Ray's reasons are many; the user needs its own words, on one line
        raise ClusterUnavailable(f"ray: cannot start a local Ray cluster: {_one_line(e)}") from None


def _join(address: str) -> None:
    host = address.rpartition(":")[0]
    if host == "localhost" or host.startswith("127.") or host == "::1":
        _stay_on_loopback()
    # Ray's core logs each retry of an unanswered call on stderr; the deadline says it in one line instead.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    import ray

    root = Path(__file__).resolve().parents[1]
    packages = [str(root / p) for p in ("networks", "envs", "agents", "generative", "launch")]
    runtime_env = {"py_modules": packages, "excludes": ["__pycache__", "*.pyc"], **_worker_env()}
    hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else " (a token-auth cluster needs RAY_AUTH_MODE=token)"
    try:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.ERROR)
    except ConnectionError as e:  # nothing to join there (`auto` with no cluster running)
        raise ConfigError("--address", f"cannot join a Ray cluster at {address}: {_one_line(e)}{hint}") from None
    except Exception as e:  # a version mismatch, refused authentication, ...
        raise ClusterUnavailable(f"ray: cannot join the Ray cluster at {address}: {_one_line(e)}{hint}") from None


def _worker_env() -> dict:
    """W&B settings (WANDB_*) for the trial workers, which may run on other machines."""
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    return {"env_vars": env_vars} if env_vars else {}


@contextlib.contextmanager
def _deadline(seconds: float | None, what: str):
    """Within `seconds`, or the process ends with one line and exit code 1 (no deadline when None)."""
    if seconds is None:
        yield
        return

    def expire() -> None:
        print(
            f"failed: ray: could not {what} within {seconds:g} s; Ray's logs are in /tmp/ray/session_latest/logs",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def check_resources(plan: SweepPlan) -> None:
    """Refuse trials the cluster can never place, instead of leaving them pending forever."""
    import ray

    want = plan.settings.resources
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if want.gpu > 0 and most_gpus == 0:
        raise ConfigError("resources.gpu", no_gpu(want.gpu))
    if want.gpu > most_gpus:
        raise ConfigError("resources.gpu", f"{want.gpu:g} GPUs per trial, but no node has more than {most_gpus:g}")
    if want.cpu > most_cpus:
        raise ConfigError(
            "resources.cpu",
            f"{want.cpu:g} CPUs per trial, but no node has more than "
            f"{most_cpus:g}; lower resources.cpu (or --cpus-per-trial)",
        )


def no_gpu(gpu: float) -> str:
    return f"{gpu:g} GPU per trial, but the Ray cluster has no GPU; set resources.gpu: 0 (or --gpus-per-trial 0)"


def machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
