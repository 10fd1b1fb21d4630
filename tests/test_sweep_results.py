"""A sweep's answer is its best point by the aggregate over seeds, never its luckiest seed (no Ray here: the
rows are written as collect_results makes them from Tune's results)."""

import csv
import json

import pytest
import yaml

from launch.config import from_dict
from launch.registry import TRAINERS
from launch.sweep_config import SweepConfig, plan_sweep
from launch.sweep_results import SweepOutcome, print_results, rank_points, write_best, write_tables

METRIC = "eval/score"


@pytest.fixture(autouse=True)
def sweeptest_kind(monkeypatch):
    monkeypatch.setitem(TRAINERS, "sweeptest", "sweep_trainer")


def plan(tmp_path, seeds, mode="max"):
    settings = {"base": {"kind": "sweeptest"}, "metric": METRIC, "mode": mode, "seeds": seeds}
    swept = plan_sweep(from_dict(SweepConfig, settings, ""), out=tmp_path, name="s")
    swept.sweep_dir.mkdir(parents=True)
    return swept


def rows_for(swept, values: dict[float, list[float | None]]) -> list[dict]:
    """One row per (quality, seed), each with a run folder holding its config.yaml, as a trial leaves it."""
    rows = []
    for quality, by_seed in values.items():
        for seed, value in zip(swept.settings.seeds, by_seed, strict=True):
            label = f"s-{len(rows):03d}"
            run_dir = swept.trials_dir / label
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text(
                yaml.safe_dump({"kind": "sweeptest", "quality": quality, "seed": seed})
            )
            rows.append(
                {
                    "trial": label,
                    "status": "done" if value is not None else "error",
                    METRIC: value,
                    "step": 100,
                    "params": {"quality": quality, "seed": seed},
                    "run_dir": str(run_dir),
                    "error": None if value is not None else "RuntimeError: boom",
                    "config_error": None,
                }
            )
    return rows


def test_the_best_point_is_the_best_mean_not_the_luckiest_seed(tmp_path, capsys):
    swept = plan(tmp_path, seeds=[0, 1, 2, 3])
    # 0.5 holds the luckiest seed (9.0) but the worse mean (4.0 against 5.0).
    rows = rows_for(swept, {0.5: [9.0, 3.0, 2.0, 2.0], 0.7: [5.0, 4.0, 6.0, 5.0]})
    points = rank_points(rows, swept)
    assert [p["params"] for p in points] == [{"quality": 0.7}, {"quality": 0.5}]
    assert [p["mean"] for p in points] == [5.0, 4.0] and [p["rank"] for p in points] == [1, 2]
    iqm = points[1]["iqm"]  # four seeds: the IQM drops the highest and the lowest, and has an interval
    assert iqm["value"] == 2.5 and iqm["low"] <= iqm["value"] <= iqm["high"] and iqm["high"] > iqm["low"]
    assert {row["point"] for row in rows} == {"p00", "p01"}

    best = write_best(swept, points[0])
    stored = json.loads((swept.sweep_dir / "best.json").read_text())
    assert stored == best and best["params"] == {"quality": 0.7} and best["value"] == 5.0
    assert [(s["seed"], s["value"]) for s in best["seeds"]] == [(0, 5.0), (1, 4.0), (2, 6.0), (3, 5.0)]
    assert best["aggregate"]["n"] == 4 and best["aggregate"]["std"] == pytest.approx(0.7071, abs=1e-4)
    assert best["trial"] == "s-006" and best["seeds"][2]["run_dir"] == best["run_dir"]  # its best seed's run
    assert yaml.safe_load((swept.sweep_dir / "best_config.yaml").read_text()) == {"kind": "sweeptest", "quality": 0.7}

    write_tables(swept, rows, points)
    table = list(csv.DictReader((swept.sweep_dir / "results.csv").open()))
    assert len(table) == 8  # every seed keeps its row, its point's aggregate beside it
    lucky = next(r for r in table if r[METRIC] == "9.0")
    assert (lucky["point_label"], lucky["point_rank"], lucky["point_mean"], lucky["point_n"]) == (
        "p00",
        "2",
        "4.0",
        "4",
    )
    assert float(lucky["point_iqm"]) == 2.5 and float(lucky["point_iqm_low"]) <= 2.5
    assert json.loads((swept.sweep_dir / "results.json").read_text())["points"][0]["params"] == {"quality": 0.7}

    print_results(SweepOutcome(plan=swept, rows=rows, best=best, interrupted=False, points=points))
    printed = capsys.readouterr().out
    assert "best point: p01 quality=0.7 eval/score mean 5 over 4 seed(s), IQM 5" in printed
    assert "mean of 4, std 0.707" in printed


def test_points_missing_a_seed_rank_after_complete_ones_and_few_seeds_give_no_iqm(tmp_path):
    swept = plan(tmp_path, seeds=[0, 1], mode="min")
    rows = rows_for(swept, {0.1: [1.0, None], 0.2: [3.0, 2.0], 0.3: [None, None]})
    points = rank_points(rows, swept)
    assert [(p["params"]["quality"], p["mean"], p["complete"]) for p in points] == [
        (0.2, 2.5, True),  # mode min: the complete point first, though 0.1's one seed scored lower
        (0.1, 1.0, False),
        (0.3, None, False),
    ]
    assert all(p["iqm"] is None for p in points)  # below 4 seeds the IQM is the mean; only mean and spread
    best = write_best(swept, points[0])
    assert best["checkpoint"] is None and best["value"] == 2.5 and best["trial"] == "s-003"


def test_a_one_seed_sweep_names_its_best_trial_and_keeps_the_seed(tmp_path):
    swept = plan(tmp_path, seeds=[7])
    rows = rows_for(swept, {0.5: [2.0], 0.9: [3.0]})
    points = rank_points(rows, swept)
    best = write_best(swept, points[0])
    assert best["params"] == {"quality": 0.9} and best["value"] == 3.0 and best["trial"] == "s-001"
    assert best["aggregate"] == {
        "mean": 3.0,
        "std": 0.0,
        "min": 3.0,
        "max": 3.0,
        "n": 1,
        "iqm": None,
        "mean_interval": None,
    }
    # With one seed the point is that run: best_config.yaml reruns it, seed included.
    assert yaml.safe_load((swept.sweep_dir / "best_config.yaml").read_text())["seed"] == 7


def test_a_packed_trial_tells_tune_its_best_points_mean_over_seeds():
    from launch.sweep_trial import pack_metric

    values = [1.0, 3.0, 10.0, 0.0, 4.0, 5.0]  # three points of two seeds each, point-major as a population lists them
    points = [[0, 1], [2, 3], [4, 5]]
    assert pack_metric(values, points, "max") == 5.0  # the points' means are 2, 5 and 4.5; never the lucky 10
    assert pack_metric(values, points, "min") == 2.0
    assert pack_metric(values[:2], [[0, 1]], "max") == 2.0  # pack: seeds, one point: the mean over its seeds
    assert pack_metric([None, 3.0], [[0, 1]], "max") == 3.0  # a member that diverged before logging it is left out
