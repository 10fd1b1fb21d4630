"""`dlforge train` of a population: its folder, population.json, one ordinary run folder (and W&B run) per member,
a member that diverges stopping alone, kill -9 and --resume, eval and report on members, bad configs.

The W&B runs are real offline runs read back from disk (tests/wandb_reader.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from robustness.robustkit import TINY as ROBUST_TINY
from wandb_reader import history, offline_runs, run_config

from agents.population import members
from launch.cli import main
from launch.config import load_config
from launch.population import resume_points
from launch.population_record import POPULATION_FILE, Progress, Record
from launch.report.data import find_runs, group_runs
from launch.tracking import read_metrics
from networks import io
from networks.run_folder import MEMBERS

DLFORGE = str(Path(sys.executable).parent / "dlforge")
TINY = {"kind": "dqn", "device": "cpu", **ROBUST_TINY["dqn"], "learning_rate": 5.0e-3}  # a few seconds per member


def write_config(folder: Path, **extra) -> Path:
    path = folder / "population.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra}, sort_keys=False))
    return path


def environment() -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_DATA_DIR"}
    return {**variables, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def dlforge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [DLFORGE, *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment())


def logged_steps(run_dir: Path) -> list[int]:
    return [record["step"] for record in read_metrics(run_dir / "metrics.jsonl")]


def assert_wandb_holds_every_step_once(member_dir: Path) -> None:
    """The member's kept offline W&B runs together hold every metrics.jsonl record once, in order."""
    rows = [row for path in offline_runs(member_dir) for row in history(path)]
    assert [row["global_step"] for row in rows] == logged_steps(member_dir)


def test_a_population_is_one_folder_of_ordinary_member_runs(tmp_path):
    config = write_config(tmp_path, population={"seeds": [3, 5, 7]}, tracking={"wandb": "offline"})
    done = dlforge("train", config, "--out", tmp_path / "runs", "--name", "pop")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = tmp_path / "runs" / "pop"
    assert "eval/mean_return=" in done.stdout and f"run: {run_dir}" in done.stdout

    document = json.loads((run_dir / POPULATION_FILE).read_text())
    assert [m["name"] for m in document["members"]] == ["seed3", "seed5", "seed7"]
    assert [m["seed"] for m in document["members"]] == [3, 5, 7]
    assert {m["status"] for m in document["members"]} == {"done"}
    assert [m["step"] for m in document["members"]] == [600, 600, 600]
    assert document["summary"]["members/done"] == 3
    assert "population" in yaml.safe_load((run_dir / "config.yaml").read_text())

    for member in document["members"]:
        member_dir = run_dir / member["folder"]
        member_config = yaml.safe_load((member_dir / "config.yaml").read_text())
        assert member_config["population"] is None and member_config["seed"] == member["seed"]
        assert member_config["tracking"]["group"] == "pop"
        steps = logged_steps(member_dir)
        assert steps[-1] == 600 and steps == sorted(steps)
        summary = json.loads((member_dir / "summary.json").read_text())
        assert summary["status"] == "done" and member["metrics"]["eval/mean_return"] == summary["eval/mean_return"]
        assert (member_dir / "checkpoints").is_dir()
        (wandb_file,) = offline_runs(member_dir)  # one W&B run per member, never averaged
        assert run_config(wandb_file)["seed"] == member["seed"]
        assert_wandb_holds_every_step_once(member_dir)

    # each member is a run like any other: eval, and the report groups the members as seeds of one config
    evaluated = dlforge("eval", run_dir / MEMBERS / "seed5", "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((run_dir / MEMBERS / "seed5" / "eval.json").read_text())["episodes"] == 2
    (group,) = group_runs(find_runs([run_dir]))
    assert sorted(run.name for run in group.runs) == ["seed3", "seed5", "seed7"]


def test_a_member_that_diverges_stops_alone_and_says_why(tmp_path, capsys):
    config = write_config(tmp_path, population={"seeds": [0, 1], "learning_rate": [5.0e-3, 1.0e30]})
    code = main(["train", str(config), "--out", str(tmp_path / "runs"), "--name", "pop", "tracking.wandb=disabled"])
    assert code == 0, capsys.readouterr().err
    run_dir = tmp_path / "runs" / "pop"
    healthy, diverged = json.loads((run_dir / POPULATION_FILE).read_text())["members"]
    assert healthy["status"] == "done" and healthy["step"] == 600
    assert diverged["status"] == "diverged" and 0 < diverged["step"] < 600
    assert "non-finite TD loss or Q-value" in diverged["reason"]
    assert f"env step {diverged['step']}" in diverged["reason"]
    summary = json.loads((run_dir / MEMBERS / "seed1" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["global_step"] == diverged["step"]
    assert logged_steps(run_dir / MEMBERS / "seed1")[-1] <= diverged["step"]
    assert logged_steps(run_dir / MEMBERS / "seed0")[-1] == 600

    # `dlforge eval` on the population's folder evaluates every member that holds a checkpoint (the diverged one:
    # its last good checkpoint, when it saved one before diverging)
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    evaluation = json.loads((run_dir / "eval.json").read_text())
    saved = [name for name in ("seed0", "seed1") if list((run_dir / MEMBERS / name / "checkpoints").glob("*.json"))]
    assert saved[0] == "seed0" and list(evaluation["members"]) == saved
    assert evaluation["skipped"] == [name for name in ("seed0", "seed1") if name not in saved]
    means = [evaluation["members"][name]["mean_return"] for name in saved]
    assert evaluation["mean_return"] == pytest.approx(sum(means) / len(means))
    assert all((run_dir / MEMBERS / name / "eval.json").is_file() for name in saved)

    # --save-trajectories on the population's folder: one file per member evaluated, PATH-<member>.npz
    capsys.readouterr()
    path = tmp_path / "episodes" / "steps.npz"
    assert main(["eval", str(run_dir), "--episodes", "2", "--save-trajectories", str(path)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trajectories: ")]
    assert printed == [f"trajectories: {path.with_name(f'steps-{name}.npz')}" for name in saved]
    assert sorted(p.name for p in path.parent.iterdir()) == [f"steps-{name}.npz" for name in saved]
    for name in saved:
        member_eval = json.loads((run_dir / MEMBERS / name / "eval.json").read_text())
        assert member_eval["trajectories"] == str(path.with_name(f"steps-{name}.npz"))
        with np.load(member_eval["trajectories"]) as steps:
            assert steps["dones"].sum() == 2 and steps["rewards"].sum() == pytest.approx(sum(member_eval["returns"]))
    bad = tmp_path / "elsewhere" / "steps.json"  # refused before any member is evaluated: nothing written
    assert main(["eval", str(run_dir), "--save-trajectories", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --save-trajectories: expected a .npz path")
    assert not bad.parent.exists()


@pytest.mark.parametrize(
    "population, field",
    [
        ({"size": 0}, "population.size"),
        ({"seeds": [1, 1]}, "population.seeds"),
        ({"size": 2, "gamma": [0.9]}, "population.gamma"),
        ({"size": 2, "batch_size": [16, 32]}, "population.batch_size"),
    ],
    ids=["size-0", "duplicate-seeds", "wrong-length", "shared-field"],
)
def test_a_bad_population_is_one_line_exit_2_and_no_folder(tmp_path, capsys, population, field):
    config = write_config(tmp_path, population=population)
    code = main(["train", str(config), "--out", str(tmp_path / "runs"), "--name", "bad"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), err
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.slow
def test_kill_9_then_resume_continues_every_member_from_one_step(tmp_path):
    """Member 2 diverges early (it stays ended); members 0 and 1 are killed mid-run and resume together."""
    population = {"seeds": [0, 1, 2], "learning_rate": [5.0e-3, 5.0e-3, 1.0e30]}
    config = write_config(tmp_path, population=population, total_steps=2000, tracking={"wandb": "offline"})
    run_dir = tmp_path / "runs" / "pop"
    argv = [DLFORGE, "train", str(config), "--out", str(tmp_path / "runs"), "--name", "pop"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment())
    members = [run_dir / MEMBERS / name for name in ("seed0", "seed1", "seed2")]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:  # kill once both survivors saved a few times
        saved = all(len(list((m / "checkpoints").glob("step-*.json"))) >= 2 for m in members[:2])
        if saved and min(logged_steps(m)[-1] for m in members[:2]) >= 700:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = [logged_steps(m)[-1] for m in members[:2]]

    starts = resume_points(members)
    (tree0, step0, _), (tree1, step1, _), (_, _, ended) = starts
    assert tree0["counters"]["vec_steps"] == tree1["counters"]["vec_steps"]  # no member ahead of another
    assert ended is not None and ended["status"] == "diverged"
    assert step0 <= killed_at[0] and step1 <= killed_at[1]

    done = dlforge("train", "--resume", run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((run_dir / POPULATION_FILE).read_text())
    assert [m["status"] for m in document["members"]] == ["done", "done", "diverged"]
    for member in members[:2]:
        records = read_metrics(member / "metrics.jsonl")
        keys = [(r["step"], key) for r in records for key in r if key != "step"]
        assert len(keys) == len(set(keys)), "a metric step was logged twice"
        periodic = [r["step"] for r in records if "charts/sps" in r]
        assert periodic == list(range(50, 2001, 50))  # every log step once
        assert_wandb_holds_every_step_once(member)
    diverged = members[2]
    assert logged_steps(diverged)[-1] <= document["members"][2]["step"]
    assert_wandb_holds_every_step_once(diverged)


def save_checkpoints(member_dir: Path, vec_steps: list[int]) -> None:
    """Checkpoints as the loop saves them (one env per member: env step = vector step), with a replay tensor."""
    for vec_step in vec_steps:
        tree = {"counters": {"vec_steps": vec_step, "step": vec_step}, "replay": {"obs": torch.zeros(64, 4)}}
        io.save(member_dir / "checkpoints" / f"step-{vec_step:09d}", tree, {"step": vec_step})


def test_resume_reads_sidecars_to_choose_the_step_and_loads_only_that_step(tmp_path, monkeypatch):
    members = [tmp_path / "seed0", tmp_path / "seed1"]
    save_checkpoints(members[0], [10, 20, 30])
    save_checkpoints(members[1], [10, 20])  # killed before its save at 30
    loaded = []

    def load(stem):
        loaded.append(Path(stem).relative_to(tmp_path).as_posix())
        return real_load(stem)

    real_load = io.load
    monkeypatch.setattr(io, "load", load)
    starts = resume_points(members)
    assert [(step, tree["counters"]["vec_steps"]) for tree, step, _ in starts] == [(20, 20), (20, 20)]
    assert loaded == ["seed0/checkpoints/step-000000020", "seed1/checkpoints/step-000000020"]
    assert not (members[0] / "checkpoints" / "step-000000030.json").exists()  # beyond the resume point

    # a damaged checkpoint at the newest common step: the next newest common one, loaded alone
    tensors = members[1] / "checkpoints" / "step-000000020.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-8])
    loaded.clear()
    starts = resume_points(members)
    assert [step for _, step, _ in starts] == [10, 10]
    assert loaded[-2:] == ["seed0/checkpoints/step-000000010", "seed1/checkpoints/step-000000010"]
    assert len(loaded) == 4  # 20 (both members, the second damaged), then 10


def test_the_progress_line_shows_members_alive_summed_steps_per_second_and_best_and_median_return(tmp_path):
    spec = load_config(write_config(tmp_path, population={"size": 3}))
    record = Record(tmp_path, spec, members(spec.config))
    progress = Progress(record, spec.config.total_steps)
    members_seen = [(100, 300, 20.0), (100, 200, 50.0), (50, 50, 10.0)]  # (first step, last step, latest return)
    for latest, (first, _, _) in zip(record.latest, members_seen):
        latest.update(step=first)
    progress.fields(1.0)  # the steps each member started from in this process
    for latest, (_, last, episodic_return) in zip(record.latest, members_seen):
        latest.update({"charts/episodic_return": episodic_return}, step=last)
    record.ended(2, {"status": "diverged", "global_step": 50})
    fields = progress.fields(2.0)
    progress.close()
    assert fields["alive"] == "2/3" and fields["completed"] == 550
    assert fields["sps"] == "150"  # (200 + 100 + 0) steps over 2 s, all members together
    assert fields["returns"] == "return best=50 median=20"
