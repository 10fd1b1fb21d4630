"""Sweeps on a real embedded Ray cluster (one per module), with W&B offline runs read back from disk.

The `classify` trainer runs the main sweep; `sweeptest` (tests/sweep_trainer.py, a contract-following
trainer that learns nothing) makes ASHA, retries and the metric check fast and deterministic.
"""

import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml
from wandb_reader import history, offline_runs, records

from launch.registry import TRAINERS
from launch.tracking import read_metrics
from networks.errors import ConfigError

ray = pytest.importorskip("ray")
TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One embedded local cluster for the module; workers import tests/ (for the sweeptest kind)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved) if p)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    TRAINERS["sweeptest"] = "sweep_trainer"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    TRAINERS.pop("sweeptest", None)
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def sweep(tmp_path, overrides=(), **settings):
    from launch.config import from_dict
    from launch.sweep import run_sweep
    from launch.sweep_config import SweepConfig, plan_sweep

    plan = plan_sweep(from_dict(SweepConfig, settings, ""), list(overrides), out=tmp_path, name="s")
    return run_sweep(plan)


def steps_in_wandb(run_dir: Path) -> list[int]:
    return sorted({row["global_step"] for f in offline_runs(run_dir) for row in history(f) if "global_step" in row})


def test_embedded_sweep_of_four_classifier_trials(cluster, tmp_path):
    outcome = sweep(
        tmp_path,
        base={"kind": "classify", "total_steps": 20, "eval_every": 10, "batch_size": 32},
        metric="eval/accuracy",
        space={"lr": {"grid": [1e-3, 3e-3]}},
        seeds=[0, 1],
    )
    sweep_dir = tmp_path / "sweeps" / "s"
    assert [row["status"] for row in outcome.rows] == ["done"] * 4
    assert sorted((r["params"]["lr"], r["params"]["seed"]) for r in outcome.rows) == [
        (1e-3, 0),
        (1e-3, 1),
        (3e-3, 0),
        (3e-3, 1),
    ]

    results = json.loads((sweep_dir / "results.json").read_text())
    assert len(results["trials"]) == 4 and all(0 <= t["eval/accuracy"] <= 1 for t in results["trials"])
    assert (sweep_dir / "results.csv").read_text().count("\n") == 5
    # The best point is the learning rate with the best mean over its two seeds.
    means = {}
    for t in results["trials"]:
        means.setdefault(t["params"]["lr"], []).append(t["eval/accuracy"])
    best_lr = max(means, key=lambda lr: sum(means[lr]))
    best = json.loads((sweep_dir / "best.json").read_text())
    assert best["params"] == {"lr": best_lr} and best["value"] == pytest.approx(sum(means[best_lr]) / 2)
    assert sorted(s["seed"] for s in best["seeds"]) == [0, 1] and best["aggregate"]["n"] == 2
    assert Path(best["checkpoint"]).exists() and Path(best["checkpoint"]).with_suffix(".json").exists()
    best_config = yaml.safe_load((sweep_dir / "best_config.yaml").read_text())
    assert best_config["lr"] == best_lr and "seed" not in best_config
    assert len(results["points"]) == 2 and "point_mean" in (sweep_dir / "results.csv").read_text()

    for row in outcome.rows:
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == sweep_dir / "trials" and (run_dir / "config.yaml").exists()
        logged = sorted({r["step"] for r in read_metrics(run_dir / "metrics.jsonl")})
        assert logged and steps_in_wandb(run_dir) == logged  # every reported step reached W&B
        (wandb_file,) = offline_runs(run_dir)
        run = next(r.run for r in records(wandb_file) if r.WhichOneof("record_type") == "run")
        assert run.run_group == "s" and "sweep:s" in run.tags and run.display_name == run_dir.name
        assert any(r.WhichOneof("record_type") == "exit" for r in records(wandb_file))  # finished cleanly


def test_asha_stops_a_clearly_bad_trial_early(cluster, tmp_path):
    outcome = sweep(
        tmp_path,
        base={"kind": "sweeptest", "total_steps": 100, "eval_every": 10, "sleep_s": 0.05},
        metric="eval/score",
        space={"quality": {"grid": [1.0, 0.9, 0.01]}},
        max_concurrent=2,  # the bad trial comes last and meets rungs the good ones filled
        scheduler={"type": "asha", "grace_period": 20, "reduction_factor": 2},
    )
    by_quality = {row["params"]["quality"]: row for row in outcome.rows}
    assert by_quality[1.0]["status"] == "done" and by_quality[1.0]["step"] == 100
    bad = by_quality[0.01]
    assert bad["status"] == "stopped" and bad["step"] < 100
    # The stopped trial's W&B run still holds every step it logged, and was finished.
    run_dir = Path(bad["run_dir"])
    assert steps_in_wandb(run_dir) == [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
    (wandb_file,) = offline_runs(run_dir)
    exits = [r.exit.exit_code for r in records(wandb_file) if r.WhichOneof("record_type") == "exit"]
    assert exits == [0]
    assert outcome.best["params"]["quality"] == 1.0


def test_a_trial_that_crashes_once_is_retried_and_one_that_always_fails_is_reported(cluster, tmp_path):
    marker = tmp_path / "crashed"
    outcome = sweep(
        tmp_path,
        base={"kind": "sweeptest", "total_steps": 100, "eval_every": 10, "crash_at": 50},
        metric="eval/score",
        # The second marker cannot be written (no such folder): that trial raises on every try.
        space={"crash_once": {"grid": [str(marker), str(tmp_path / "no-such-dir" / "marker")]}},
        max_failures=1,
    )
    by_marker = {row["params"]["crash_once"]: row for row in outcome.rows}
    retried, failed = by_marker[str(marker)], by_marker[str(tmp_path / "no-such-dir" / "marker")]

    assert marker.read_text() == "crashed at 50\n"
    assert retried["status"] == "done" and retried["step"] == 100 and retried["error"] is None
    run_dir = Path(retried["run_dir"])
    # The retry resumed from the step-40 checkpoint: no step lost or repeated in metrics.jsonl,
    # and the two W&B runs (first try, retry) hold every step between them.
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == list(range(10, 101, 10))
    first_try, retry = offline_runs(run_dir)
    assert steps_in_wandb(run_dir) == list(range(10, 101, 10))
    assert [r.exit.exit_code for r in records(first_try) if r.WhichOneof("record_type") == "exit"] == [1]
    assert [r.exit.exit_code for r in records(retry) if r.WhichOneof("record_type") == "exit"] == [0]

    assert failed["status"] == "error" and "FileNotFoundError" in failed["error"]
    assert outcome.best["trial"] == retried["trial"]
    table = json.loads((tmp_path / "sweeps" / "s" / "results.json").read_text())["trials"]
    assert any(t["status"] == "error" and "FileNotFoundError" in t["error"] for t in table)


def test_a_metric_the_trainer_never_reports_ends_the_sweep_as_bad_input(cluster, tmp_path):
    from launch.config import from_dict
    from launch.sweep import run_sweep
    from launch.sweep_config import SweepConfig, plan_sweep

    # A trainer that declares no METRICS is checked when its first trial ends (sweeptest declares
    # them, so the check at load time is skipped here by naming the metric after planning).
    settings = from_dict(SweepConfig, {"base": {"kind": "sweeptest", "total_steps": 20}, "metric": "eval/score"}, "")
    plan = plan_sweep(settings, out=tmp_path, name="s")
    plan.settings.metric = "eval/scor"
    with pytest.raises(ConfigError, match="^metric: 'eval/scor' was never reported by this trainer; it reported: "):
        run_sweep(plan)
    assert not (tmp_path / "sweeps" / "s").exists()


def test_optuna_search_repeats_each_point_per_seed(cluster, tmp_path):
    outcome = sweep(
        tmp_path,
        base={"kind": "sweeptest", "total_steps": 20, "eval_every": 10},
        metric="eval/score",
        space={"quality": {"uniform": [0.1, 1.0]}},
        seeds=[0, 1],
        num_samples=2,
        search="optuna",
    )
    assert len(outcome.rows) == 4 and all(row["status"] == "done" for row in outcome.rows)
    points = {}
    for row in outcome.rows:
        points.setdefault(row["params"]["quality"], set()).add(row["params"]["seed"])
    assert list(points.values()) == [{0, 1}, {0, 1}]
    assert all(math.isfinite(row["eval/score"]) for row in outcome.rows)


def test_tune_ends_a_stopped_trial_without_waiting_for_it_to_close(cluster, tmp_path):
    """Pins the Tune behaviour that `wait_for_stopped_trials` and `finish_cut_off_wandb` deal with. Tune stops
    these trials after two reports (as ASHA would), and each takes 5 s to close (as a W&B run can on a busy
    machine). The first trial's process is kept for the second, which waits TUNE_FUNCTION_THREAD_TIMEOUT_S for
    that close: long enough once raised (at Tune's default of 2 s the process cannot be reused, and with Ray
    2.60 the sweep then hung). The last trial's process is let go at the end and ended before its close is
    through: the driver finishes such a W&B run from the run folder."""
    from ray import tune

    from launch.sweep_trial import wait_for_stopped_trials

    def trial(config):
        wait_for_stopped_trials()
        try:
            while True:
                tune.report({"score": 1.0})
        finally:
            time.sleep(5)
            Path(config["marker"]).write_text("closed\n")

    markers = [tmp_path / f"closed-{i}" for i in range(2)]
    grid = tune.Tuner(
        trial,
        param_space={"marker": tune.grid_search([str(m) for m in markers])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), stop={"training_iteration": 2}, verbose=0),
    ).fit()
    time.sleep(8)  # longer than a close: a close still under way has ended by now
    assert [r.error for r in grid] == [None, None]
    assert markers[0].exists()  # the kept process waited for the first trial's close
    assert not markers[1].exists()  # if this fails, Tune now waits for a stopped trial: finish_cut_off_wandb can go


CARTPOLE = {
    "kind": "dqn",
    "env_id": "CartPole-v1",
    "total_steps": 400,
    "eval_every": 200,
    "eval_episodes": 2,
    "learning_starts": 50,
    "batch_size": 32,
    "buffer_size": 1000,
    "network": {"type": "mlp", "hidden": [16]},
    "torch_threads": 1,
}


@pytest.mark.parametrize("pack", ["seeds", "points", "none"])
def test_a_packed_sweep_lists_every_member_with_its_own_wandb_run(cluster, tmp_path, pack):
    """2 learning rates x 2 seeds: pack: seeds trains 2 population trials of 2 members, pack: points 1 trial of 4,
    pack: none 4 trials. Either way the results hold 4 rows, each a complete run folder with one W&B run holding
    every step it logged, and Tune was told the point's mean over its seeds (the best point's, under points)."""
    outcome = sweep(
        tmp_path,
        base=CARTPOLE,
        metric="eval/mean_return",
        space={"learning_rate": {"grid": [1e-3, 5e-3]}},
        seeds=[0, 1],
        pack=pack,
        **({"max_members": 4} if pack == "points" else {}),
    )
    trials_dir = tmp_path / "sweeps" / "s" / "trials"
    assert outcome.plan.settings.pack == pack
    assert sorted((r["params"]["learning_rate"], r["params"]["seed"]) for r in outcome.rows) == [
        (1e-3, 0),
        (1e-3, 1),
        (5e-3, 0),
        (5e-3, 1),
    ]
    assert all(row["status"] == "done" and row["step"] == 400 for row in outcome.rows)
    trials = sorted(p for p in trials_dir.iterdir() if p.is_dir())
    assert len(trials) == {"seeds": 2, "points": 1, "none": 4}[pack]

    for row in outcome.rows:
        run_dir = Path(row["run_dir"])
        member = run_dir.parent.name == "members"
        assert member == (pack != "none") and row["trial"] == (
            f"{run_dir.parents[1].name}/{run_dir.name}" if member else run_dir.name
        )
        logged = sorted({r["step"] for r in read_metrics(run_dir / "metrics.jsonl")})
        assert logged[-1] == 400 and steps_in_wandb(run_dir) == logged  # one W&B run per member, every step
        (wandb_file,) = offline_runs(run_dir)
        run = next(r.run for r in records(wandb_file) if r.WhichOneof("record_type") == "run")
        assert run.run_group == "s" and "sweep:s" in run.tags
        assert any(r.WhichOneof("record_type") == "exit" for r in records(wandb_file))
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == row["params"]["seed"]

    # What Tune saw for each trial (its last report): the mean over the point's seeds, or the best point's mean.
    means: dict[float, list[float]] = {}
    for row in outcome.rows:
        means.setdefault(row["params"]["learning_rate"], []).append(row["eval/mean_return"])
    point_mean = {lr: sum(v) / len(v) for lr, v in means.items()}
    for trial in trials:
        reported = json.loads((trial / "trial.json").read_text())["report"]["eval/mean_return"]
        if pack == "none":
            continue
        in_trial = {r["params"]["learning_rate"] for r in outcome.rows if Path(r["run_dir"]).parents[1] == trial}
        assert reported == pytest.approx(max(point_mean[lr] for lr in in_trial))

    best = json.loads((tmp_path / "sweeps" / "s" / "best.json").read_text())
    assert best["value"] == pytest.approx(max(point_mean.values())) and len(best["seeds"]) == 2
    assert point_mean[best["params"]["learning_rate"]] == pytest.approx(best["value"])


def test_asha_stops_a_packed_trial_as_a_whole_and_every_member_run_is_finished(cluster, tmp_path):
    """ASHA stops a trial when it reaches max_t (here before total_steps): the stop reaches the population through
    its members' trackers, and every member's W&B run still holds every step it logged and ends cleanly."""
    outcome = sweep(
        tmp_path,
        base={**CARTPOLE, "total_steps": 600},
        metric="eval/mean_return",
        seeds=[0, 1],
        scheduler={"type": "asha", "grace_period": 200, "max_t": 200},
    )
    assert [row["trial"] for row in outcome.rows] == ["s-000/seed0", "s-000/seed1"]
    for row in outcome.rows:
        assert row["status"] == "stopped" and row["step"] == 200
        run_dir = Path(row["run_dir"])
        assert steps_in_wandb(run_dir) == sorted({r["step"] for r in read_metrics(run_dir / "metrics.jsonl")})
        (wandb_file,) = offline_runs(run_dir)
        assert [r.exit.exit_code for r in records(wandb_file) if r.WhichOneof("record_type") == "exit"] == [0]
    assert outcome.best["aggregate"]["n"] == 2


def test_optuna_proposes_points_and_a_packed_trial_trains_all_their_seeds(cluster, tmp_path):
    outcome = sweep(
        tmp_path,
        base=CARTPOLE,
        metric="eval/mean_return",
        space={"learning_rate": {"loguniform": [1e-4, 1e-2]}},
        seeds=[0, 1],
        num_samples=2,
        search="optuna",
    )
    assert outcome.plan.settings.pack == "seeds" and len(outcome.points) == 2
    assert all(row["status"] == "done" for row in outcome.rows)
    assert [sorted(seed["seed"] for seed in point["seeds"]) for point in outcome.points] == [[0, 1], [0, 1]]
    assert len(list((tmp_path / "sweeps" / "s" / "trials").glob("*/population.json"))) == 2  # one trial per point
