"""`tracking.wandb: online` when the W&B server cannot be reached: at start, and midway through a run.

No W&B server exists on a test machine, so the endpoint (WANDB_BASE_URL) points at a closed local port, or at
`FakeWandb`: a few lines of HTTP that answer what wandb asks to start and stream a run, until the test stops it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from robustkit import REPO, assert_one_line_error, env
from wandb_reader import history, online_runs

from launch import wandb_run
from launch.cli import main
from launch.tracking import read_metrics

DLFORGE = str(Path(sys.executable).parent / "dlforge")
CARTPOLE = str(REPO / "configs/dqn/cartpole.yaml")
TINY = ["learning_starts=200", "eval_every=1000", "eval_episodes=2", "checkpoint_every=1000", "stop_at_return=null"]
API_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the form of a W&B key; no server checks it


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


class FakeWandb:
    """A local stand-in for the W&B server: GraphQL `UpsertBucket` (start a run) and `CreateRunFiles` (where
    to put files), the file stream and uploads, each answered as the real server's shape requires; `stop()`
    closes the port, as a lost network does."""

    def __init__(self):
        self.requests: list[str] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/graphql":
                    fake.requests.append(f"POST {self.path}")
                    return self._reply({})
                query = json.loads(body)
                name, variables = query.get("operationName"), query.get("variables") or {}
                fake.requests.append(str(name))
                if name == "UpsertBucket":
                    entity = {"id": "RW50aXR5OjE=", "name": "tester"}
                    project = {"id": "UHJvamVjdDox", "name": variables.get("project") or "dlforge", "entity": entity}
                    bucket = {"id": "UnVuOjE=", "name": variables.get("name"), "displayName": variables.get("name")}
                    bucket.update(historyLineCount=0, eventsLineCount=0, config="{}", summaryMetrics="{}")
                    return self._reply(
                        {"data": {"upsertBucket": {"inserted": True, "bucket": {**bucket, "project": project}}}}
                    )
                if name == "CreateRunFiles":
                    files = [{"name": f, "uploadUrl": f"{fake.url}/upload/{f}"} for f in variables["files"]]
                    return self._reply(
                        {"data": {"createRunFiles": {"runID": "UnVuOjE=", "uploadHeaders": [], "files": files}}}
                    )
                return self._reply({"data": {}})

            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(f"PUT {self.path}")
                self._reply({})

            def _reply(self, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def test_an_unreachable_server_stops_the_run_at_start_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    variables = env(WANDB_BASE_URL=url, WANDB_API_KEY=API_KEY, HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path))
    argv = [DLFORGE, "train", CARTPOLE, "total_steps=500", "tracking.wandb=online", "--out", str(tmp_path / "runs")]
    started = time.perf_counter()
    done = subprocess.run([*argv, "--name", "online"], capture_output=True, text=True, env=variables, timeout=120)
    seconds = time.perf_counter() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert_one_line_error(
        done.stderr,
        f"tracking.wandb: online, but the W&B server at {url} could not be reached within 10 s",
        "use tracking.wandb=offline",
        "`wandb sync`",
    )
    # init_timeout is 10 s; the rest is starting Python, torch and wandb (slow on a loaded two-core machine)
    assert seconds < 25, f"took {seconds:.1f} s to give up (the target is about 15)"
    assert not (tmp_path / "runs" / "online").exists()


def test_a_run_that_loses_the_server_midway_keeps_training_and_says_what_was_not_sent(tmp_path, monkeypatch, capsys):
    fake = FakeWandb()
    monkeypatch.setenv("WANDB_BASE_URL", fake.url)
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb_run, "FINISH_TIMEOUT_S", 5.0)  # the default (60 s) is for real uploads
    run_dir = tmp_path / "runs" / "midway"
    stopped_after: list[int] = []

    def stop_after_the_first_records():  # the network goes once the run has started and logged
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(read_metrics(run_dir / "metrics.jsonl")) < 3:
            time.sleep(0.05)
        stopped_after.append(len(read_metrics(run_dir / "metrics.jsonl")))
        fake.stop()

    watcher = threading.Thread(target=stop_after_the_first_records, daemon=True)
    watcher.start()
    argv = ["train", CARTPOLE, "total_steps=3000", *TINY, "tracking.wandb=online", "--out", str(tmp_path / "runs")]
    code = main([*argv, "--name", "midway"])
    watcher.join(timeout=5)
    err = capsys.readouterr().err

    assert code == 0, err
    assert "UpsertBucket" in fake.requests  # the run did start online
    records = read_metrics(run_dir / "metrics.jsonl")
    assert records[-1]["step"] == 3000 and len(records) > stopped_after[0]  # training went on, all of it kept
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: W&B could not send all of this run"), err
    line = lines[0]
    assert f"the model artifacts were not logged ({fake.url} does not answer" in line
    sync_dir = Path(line.rsplit("`wandb sync ", 1)[1].rstrip("`"))
    (wandb_file,) = online_runs(run_dir)
    assert wandb_file.parent == sync_dir  # what `wandb sync` would send: every logged row
    logged = [row["global_step"] for row in history(wandb_file)]
    assert logged == [r["step"] for r in records]
    assert f"what W&B holds ({len(logged)} logged rows up to step 3000) is kept in" in line
