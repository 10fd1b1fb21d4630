"""Reliable statistics in `dlforge report`: figures worked out by hand, agreement with rliable, narrowing intervals,
reproducible bootstraps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from rliable import metrics

from launch.config import TrackingConfig
from launch.report import find_runs, group_runs, stats, write_report
from launch.tracking import LocalTracker


def agent_run(root, name: str, *, lr: float, seed: int, returns: dict[int, float]) -> None:
    """A run folder as a dqn run writes it: config.yaml, and eval/mean_return at each evaluation step."""
    tracker = LocalTracker(root / name, TrackingConfig(wandb="disabled"))
    config = {"kind": "dqn", "env_id": "CartPole-v1", "learning_rate": lr, "seed": seed}
    (root / name / "config.yaml").write_text(yaml.safe_dump(config))
    for step, value in returns.items():
        tracker.log({"eval/mean_return": value, "charts/episodic_return": value / 2}, step)
    tracker.close()


def test_iqm_and_mean_of_known_scores():
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 100], dtype=float).reshape(-1, 1)
    found = stats.aggregates(scores, reps=500)
    assert found["iqm"]["value"] == pytest.approx(4.5)  # the middle half: (3 + 4 + 5 + 6) / 4
    assert found["mean"]["value"] == pytest.approx(16.0)  # 128 / 8: the outlier pulls the mean, not the IQM
    assert found["iqm"]["low"] <= 4.5 <= found["iqm"]["high"]
    iqm_width, mean_width = (found[k]["high"] - found[k]["low"] for k in ("iqm", "mean"))
    assert iqm_width < mean_width  # resamples with several 100s move the mean far more than the IQM
    # with three runs a 25% trim removes nothing: the IQM is the mean
    assert stats.aggregates(np.array([[1.0], [2.0], [9.0]]), reps=100)["iqm"]["value"] == pytest.approx(4.0)


def test_probability_of_improvement_by_hand():
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [2.0], [0.0]])
    # pairs (x_i, y_j): x > y in 5 of 9 (1>0, 2>0, 3>2, 3>2, 3>0), ties 2 of 9 (2=2 twice): 5/9 + 1/9
    found = stats.probability_of_improvement(x, y, reps=500)
    assert found["value"] == pytest.approx(6 / 9)
    assert 0.0 <= found["low"] <= found["value"] <= found["high"] <= 1.0
    assert stats.probability_of_improvement(x, x, reps=100)["value"] == pytest.approx(0.5)


def test_performance_profile_by_hand():
    found = stats.performance_profile(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([0.0, 2.5, 4.0]), reps=200)
    assert found["fraction"] == [1.0, 0.5, 0.0]
    assert found["low"][0] == found["high"][0] == 1.0  # every resample of these runs scores above 0


def test_iqm_per_step_is_rliables_iqm_at_each_step():
    scores = np.random.default_rng(0).normal(size=(7, 3, 5))  # (runs, tasks, steps)
    expected = [metrics.aggregate_iqm(scores[..., step]) for step in range(5)]
    np.testing.assert_allclose(stats.iqm_per_step(scores), expected)


def test_same_seed_same_intervals_and_numpy_left_as_it_was():
    scores = np.random.default_rng(2).normal(size=(6, 1))
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first, second = stats.aggregates(scores, reps=200), stats.aggregates(scores, reps=200)
    assert first == second
    assert first != stats.aggregates(scores, reps=200, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the global generator is put back


def test_intervals_narrow_with_more_seeds():
    rng = np.random.default_rng(1)
    widths = []
    for seeds in (5, 20, 80):
        found = stats.aggregates(rng.normal(100.0, 20.0, size=(seeds, 1)), reps=2000)
        widths.append((found["iqm"]["high"] - found["iqm"]["low"], found["mean"]["high"] - found["mean"]["low"]))
    (iqm5, mean5), (iqm20, mean20), (iqm80, mean80) = widths
    assert iqm5 > iqm20 > iqm80 and mean5 > mean20 > mean80
    assert mean80 == pytest.approx(2 * 1.96 * 20 / np.sqrt(80), rel=0.25)  # about the normal-theory width


def test_iqm_curve_takes_each_run_from_its_first_evaluation(tmp_path):
    root = tmp_path / "runs"
    agent_run(root, "s0", lr=0.1, seed=0, returns={1000: 10.0, 2000: 20.0, 3000: 30.0})
    agent_run(root, "s1", lr=0.1, seed=1, returns={1000: 30.0, 2000: 40.0})  # stopped early: 40 carried to 3000
    agent_run(root, "s2", lr=0.1, seed=2, returns={2000: 80.0, 3000: 90.0})  # evaluated first at 2000
    (group,) = group_runs(find_runs([root]))
    curve = stats.iqm_curve(group, reps=100)
    assert curve["steps"] == [1000.0, 2000.0, 3000.0]
    assert curve["iqm"] == pytest.approx([20.0, (20 + 40 + 80) / 3, (30 + 40 + 90) / 3])  # 3 runs: IQM = mean
    assert all(low <= iqm <= high for low, iqm, high in zip(curve["low"], curve["iqm"], curve["high"]))


def test_report_has_reliable_tables_and_plots(tmp_path):
    root = tmp_path / "runs"
    finals = {0.001: [480.0, 500.0, 420.0, 500.0], 0.01: [100.0, 150.0, 500.0, 120.0]}
    for lr, values in finals.items():
        for seed, final in enumerate(values):
            stop = 3000 if seed != 1 else 2000  # one seed stopped early: its last evaluation is carried forward
            returns = {s: final * s / stop for s in range(1000, stop + 1, 1000)}
            agent_run(root, f"lr{lr}-s{seed}", lr=lr, seed=seed, returns=returns)
    groups = group_runs(find_runs([root]))
    curve = stats.iqm_curve(next(g for g in groups if g.label == "learning_rate=0.001"), reps=200)
    assert curve["steps"] == [1000.0, 2000.0, 3000.0]
    assert curve["iqm"][-1] == pytest.approx(490.0)  # IQM of 420, 480, 500 (carried), 500: (480 + 500) / 2

    out = tmp_path / "report"
    page = write_report([root], out).read_text()
    report = json.loads((out / "report.json").read_text())["reliable"]
    by_config = {c["config"]: c for c in report["configs"]}
    assert by_config["learning_rate=0.001"]["iqm"]["value"] == pytest.approx(490.0)
    assert by_config["learning_rate=0.01"]["mean"]["value"] == pytest.approx(217.5)
    (pair,) = report["probability_of_improvement"]
    # X = 480, 500, 420, 500 against Y = 100, 150, 500, 120: each X beats 100, 150 and 120 (12 wins), and the two
    # 500s tie Y's 500 (2 ties): (12 + 2/2) / 16
    assert (pair["x"], pair["y"]) == ("learning_rate=0.001", "learning_rate=0.01")
    assert pair["value"] == pytest.approx(13 / 16)
    assert sorted(report["plots"]) == [
        "reliable/improvement-all.png",
        "reliable/intervals-all.png",
        "reliable/iqm-curve-all.png",
        "reliable/profiles-all.png",
    ]
    assert all((out / p).stat().st_size > 5000 for p in report["plots"])
    assert "Reliable statistics: final eval/mean_return" in page and "P(X &gt; Y)" in page
    assert "490 [" in page  # the IQM with its interval in the table
    assert "exponential moving average (weight 0.8)" in page


def test_improvement_probability_is_rliables_ties_included():
    rng = np.random.default_rng(0)
    for x, y in [
        (rng.normal(size=(5, 3)), rng.normal(size=(7, 3))),
        (rng.integers(0, 4, size=(6, 2)).astype(float), rng.integers(0, 4, size=(4, 2)).astype(float)),
        (np.full((3, 1), 500.0), np.full((3, 1), 500.0)),
    ]:
        assert stats.improvement_probability(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
