"""DQN through the CLI: train, eval (with video), resume, and one-line bad input with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch.cli import main
from launch.tracking import read_metrics

REPO = Path(__file__).resolve().parents[1]
DLFORGE = str(Path(sys.executable).parent / "dlforge")
CARTPOLE = str(REPO / "configs/dqn/cartpole.yaml")
TINY = [
    "total_steps=1500",
    "learning_starts=300",
    "eval_every=500",
    "eval_episodes=2",
    "checkpoint_every=500",
    "stop_at_return=null",
    "tracking.wandb=disabled",
]


def test_train_eval_and_resume_through_the_cli(tmp_path, capsys):
    assert main(["train", CARTPOLE, *TINY, "--out", str(tmp_path), "--name", "cp"]) == 0
    run_dir = tmp_path / "cp"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run: {run_dir}"
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 1500

    assert main(["eval", str(run_dir), "--episodes", "3", "--checkpoint", "last", "--seed", "4", "--video"]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("mean_return=") and last_line.endswith("episodes=3")
    result = json.loads((run_dir / "eval.json").read_text())
    assert Path(result["video"]).stat().st_size > 1000
    assert main(["eval", str(run_dir), "--episodes", "3", "--checkpoint", "last", "--seed", "4"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last_line  # same seed, same numbers

    assert main(["train", "--resume", str(run_dir), "total_steps=2000"]) == 0
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
    assert max(steps) == 2000 and steps == sorted(steps)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("env_id=Pendulum-v1", "error: env_id: DQN needs a discrete action space; Pendulum-v1 has Box("),
        ("buffer_size=10", "error: buffer_size: must be >= batch_size ("),
        ("n_step=0", "error: n_step: must be >= 1"),
        ("network.conv=[[8,3,1,valid]]", "error: network"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_run_folder(tmp_path, override, message):
    extra = ["network.type=cnn"] if override.startswith("network") else []
    done = subprocess.run(
        [DLFORGE, "train", CARTPOLE, override, *extra, "--out", str(tmp_path), "--name", "bad"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(message) and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "bad").exists()
