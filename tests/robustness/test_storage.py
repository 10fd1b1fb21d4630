"""Guarantee 7: storage failures are clean.

- An output folder that cannot be written (under a regular file, in /proc, on a read-only mount) is refused in
  one line with exit 2, and nothing is created; a read-only run folder refuses `--resume` and `eval` the same way.
- A disk that fills up while a checkpoint is written (a size-limited tmpfs in a private mount namespace) stops
  the run with one `failed: ... No space left on device` line (exit 1); the previous checkpoint still loads,
  no temporary file is left, and once there is room again `--resume` finishes the run.
The mount cases run in `unshare -m` (root only), so nothing is mounted outside the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from robustkit import REPO, TINY, assert_one_line_error, env, snapshot_files, tiny_document

from launch.cli import main
from launch.registry import TRAINERS

KIND = next((k for k in ("dqn", "qlearning", "classify") if k in TRAINERS and k in TINY), None)


def _mount_namespace_works() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1) here"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, text=True
    )
    return None if done.returncode == 0 else f"cannot mount in a private namespace: {done.stderr.strip()}"


@pytest.fixture
def config(tmp_path):
    if KIND is None:
        pytest.skip("no agent or classifier kind registered")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_document(KIND)))
    return path


def test_an_output_folder_under_a_file_is_refused(config, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep")
    code = main(["train", str(config), "--out", str(blocker / "runs"), "--name", "r"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "--out: cannot write the run folder", "Not a directory")
    assert blocker.read_text() == "keep"


def test_an_output_folder_in_proc_is_refused(config, capsys):
    code = main(["train", str(config), "--out", "/proc/dlforge-runs", "--name", "r"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "--out: cannot write the run folder")


READ_ONLY = r"""
import json, subprocess, sys
from pathlib import Path
from launch.cli import main
root = Path(sys.argv[1])
subprocess.run(["mount", "--bind", str(root / "ro"), str(root / "ro")], check=True)
subprocess.run(["mount", "-o", "remount,ro,bind", str(root / "ro")], check=True)
result = {}
for name, argv in {
    "new run": ["train", str(root / "c.yaml"), "--out", str(root / "ro" / "runs"), "--name", "new"],
    "resume": ["train", "--resume", str(root / "ro" / "run")],
    "eval": ["eval", str(root / "ro" / "run"), "--episodes", "1"],
}.items():
    result[name] = main(argv)
print("RESULT " + json.dumps(result))
"""


def test_a_read_only_folder_is_refused_and_left_untouched(config, finished_runs, tmp_path):
    reason = _mount_namespace_works()
    if reason:
        pytest.skip(reason)
    (tmp_path / "ro").mkdir()
    shutil.copytree(finished_runs(KIND), tmp_path / "ro" / "run")
    before = snapshot_files(tmp_path / "ro")
    done = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", READ_ONLY, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env(),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result == {"new run": 2, "resume": 2, "eval": 2}, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and "Traceback" not in done.stderr, done.stderr
    assert "--out: cannot write the run folder" in errors[0] and "Read-only file system" in errors[0]
    assert "--resume: cannot write the run folder" in errors[1]
    assert "Read-only file system" in errors[2]
    assert snapshot_files(tmp_path / "ro") == before


DISK_FULL = r"""
import contextlib, io as text_io, json, subprocess, sys
from pathlib import Path
from launch.cli import main
from launch.tracking import load_latest
from networks import io
root, size = Path(sys.argv[1]), sys.argv[2]
disk = root / "disk"
disk.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True)
run_dir = disk / "run"
err = text_io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["train", str(root / "c.yaml"), "--out", str(disk), "--name", "run"])
result = {"exit": code, "stderr": err.getvalue()}
stems = sorted(p.name for p in (run_dir / "checkpoints").glob("*.json"))
result["checkpoints"] = stems
result["loads"] = []
for name in stems:
    tree, meta = io.load(run_dir / "checkpoints" / name)
    result["loads"].append(meta["step"])
result["leftovers"] = sorted(p.name for p in run_dir.rglob("*.tmp"))
subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # room again
err = text_io.StringIO()
with contextlib.redirect_stderr(err):
    result["resume_exit"] = main(["train", "--resume", str(run_dir)])
result["resume_stderr"] = err.getvalue()
result["final_step"] = load_latest(run_dir, prefix="any")[1]["step"]
print("RESULT " + json.dumps(result))
"""


def test_a_disk_that_fills_during_a_checkpoint_keeps_the_previous_one(tmp_path):
    reason = _mount_namespace_works()
    if reason:
        pytest.skip(reason)
    if "dqn" not in TRAINERS:
        pytest.skip("sized for dqn checkpoints")
    # [256, 256] Q-network: ~1.1 MB per checkpoint (online + target net + Adam moments); 1.6 MB holds one.
    document = tiny_document("dqn", network={"type": "mlp", "hidden": [256, 256]}, total_steps=400, eval_every=0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(document))
    done = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", DISK_FULL, str(tmp_path), "1600k"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env(),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["exit"] == 1, result
    message = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(message) == 1 and message[0].startswith("failed: ") and "No space left on device" in message[0]
    assert result["checkpoints"] == ["step-000000100.json"], result["checkpoints"]
    assert result["loads"] == [100], "the previous checkpoint no longer loads"
    assert result["leftovers"] == [], "a partial file was left on the full disk"
    assert result["resume_exit"] == 0, result["resume_stderr"]
    assert result["final_step"] == 400
