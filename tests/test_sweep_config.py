"""Sweep configs: validation with one-line errors, and their translation into Tune's terms (no cluster)."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch.config import apply_overrides, from_dict
from launch.registry import TRAINERS
from launch.sweep_config import SweepConfig, load_sweep, parse_dimension, plan_sweep, trial_label
from launch.sweep_tune import tune_search
from networks.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


@pytest.fixture(autouse=True)
def sweeptest_kind(monkeypatch):
    monkeypatch.setitem(TRAINERS, "sweeptest", "sweep_trainer")


def plan(tmp_path, overrides=(), **document):
    document.setdefault("base", {"kind": "sweeptest"})
    document.setdefault("metric", "eval/score")
    return plan_sweep(from_dict(SweepConfig, document, ""), list(overrides), out=tmp_path, name="s")


def error(tmp_path, **document) -> str:
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, **document)
    return str(caught.value)


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_sweeps_are_valid(path, tmp_path):
    swept = load_sweep(path, ["total_steps=2000"], out=tmp_path)
    assert swept.total_steps == 2000 and swept.name == path.stem
    assert swept.sweep_dir == (tmp_path / "sweeps" / path.stem).resolve()
    param_space, _, _ = tune_search(swept)
    assert ("seed" in param_space) != swept.packed  # a packed trial trains every seed of its point
    assert swept.packed == (swept.kind == "dqn")


def test_bundled_sweeps_include_the_cartpole_lr_grid_and_a_generator():
    cartpole = yaml.safe_load((REPO / "configs/sweeps/cartpole-lr.yaml").read_text())
    assert "grid" in cartpole["space"]["learning_rate"] and len(cartpole["seeds"]) == 3
    kinds = set()
    for path in BUNDLED:
        swept = load_sweep(path)
        kinds.add(swept.kind)
    assert "dqn" in kinds and kinds & {"gan", "dcgan", "vae", "ae"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"logunifrom": [1e-4, 1e-2]}, "space.lr: unknown search-space type 'logunifrom' (did you mean 'loguniform'?)"),
        ({"grid": []}, "space.lr.grid: is empty; list at least one value"),
        ({"choice": 3}, "space.lr.choice: expected a list of values"),
        ({"uniform": [1.0]}, "space.lr.uniform: expected [low, high]"),
        ({"uniform": [2, 1]}, "space.lr.uniform: needs low < high, got [2, 1]"),
        ({"loguniform": [0, 1]}, "space.lr.loguniform: needs low > 0"),
        ({"randint": [0.5, 4]}, "space.lr.randint: expected integer bounds"),
        (0.1, "space.lr: expected one of {grid, choice, uniform, loguniform, randint}"),
        ({"grid": [1], "choice": [2]}, "space.lr: expected one of"),
    ],
)
def test_bad_search_space_is_one_line_naming_the_field(spec, message):
    with pytest.raises(ConfigError) as caught:
        parse_dimension("lr", spec)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_dimensions_parse_to_checked_values():
    assert parse_dimension("lr", {"loguniform": [1e-4, 1e-2]}) == ("loguniform", [1e-4, 1e-2])
    assert parse_dimension("n", {"randint": [1, 5]}) == ("randint", [1, 5])
    assert parse_dimension("h", {"grid": [[64, 64], [256]]}) == ("grid", [[64, 64], [256]])


def test_sweep_level_errors(tmp_path):
    assert error(tmp_path, seeds=[]).startswith("seeds: is empty")
    assert error(tmp_path, seeds=[1, 1]).startswith("seeds: repeats a seed")
    assert error(tmp_path, space={"seed": {"grid": [1, 2]}}).startswith("space.seed: seeds are swept with")
    assert error(tmp_path, search="grid", space={"quality": {"uniform": [0, 1]}}).startswith(
        "space.quality: search: grid needs every dimension to be a grid"
    )
    assert error(tmp_path, search="optuna", space={"quality": {"grid": [0, 1]}}).startswith(
        "space.quality: search: optuna cannot take a grid"
    )
    assert error(tmp_path, search="bayes").startswith("search: got 'bayes'")
    assert error(tmp_path, resources={"gpu": 1.5}).startswith("resources.gpu: must be a fraction <= 1")
    assert error(tmp_path, resources={"cpu": 0}).startswith("resources.cpu: must be > 0")
    assert error(tmp_path, scheduler={"type": "asha", "grace_period": 200, "max_t": 100}).startswith(
        "scheduler.grace_period: must be <= max_t (100)"
    )
    assert error(tmp_path, scheduler={"type": "asha", "grace_period": 500}).startswith(
        "scheduler.grace_period: must be <= max_t (100 steps)"
    )  # max_t defaults to total_steps
    assert error(tmp_path, num_sample=3).startswith("num_sample: unknown key (did you mean 'num_samples'?)")


def test_base_config_and_every_swept_value_are_validated(tmp_path):
    assert error(tmp_path, space={"qualty": {"grid": [1.0]}}).startswith(
        "qualty: unknown key (did you mean 'quality'?)"
    )
    assert error(tmp_path, space={"eval_every": {"grid": [10, 0]}}).startswith("eval_every: must be > 0, got 0")
    assert error(tmp_path, space={"total_steps": {"randint": [-5, 10]}}).startswith("total_steps: must be > 0")
    assert error(tmp_path, base={"kind": "sweeptest", "sleep_s": -1}).startswith("sleep_s: must be >= 0")
    assert error(tmp_path, base="missing.yaml").startswith("base: file not found")
    with pytest.raises(ConfigError, match="^eval_every: must be > 0"):
        plan(tmp_path, overrides=["eval_every=0"])


def test_a_metric_the_trainer_does_not_declare_is_refused_at_once(tmp_path):
    assert error(tmp_path, metric="eval/scor") == (
        "metric: 'eval/scor' is never reported by the sweeptest trainer (did you mean 'eval/score'?); "
        "it reports: eval/score, losses/loss"
    )


def test_base_path_is_relative_to_the_sweep_file_and_overrides_apply_to_it(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("kind: sweeptest\ntotal_steps: 50\n")
    sweep = tmp_path / "configs" / "my-sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "base": "base.yaml",
                "metric": "eval/score",
                "overrides": {"eval_every": 5},
                "space": {"quality": {"choice": [0.5, 1.0]}},
                "seeds": [3, 4],
            }
        )
    )
    swept = load_sweep(sweep, ["total_steps=20"], out=tmp_path / "runs", cpus_per_trial=0.5, max_concurrent=2)
    assert swept.base == {"kind": "sweeptest", "total_steps": 20, "eval_every": 5}
    assert swept.settings.resources.cpu == 0.5 and swept.settings.max_concurrent == 2
    document = swept.trial_document({"quality": 0.5, "seed": 4})
    assert document["quality"] == 0.5 and document["seed"] == 4 and document["total_steps"] == 20
    assert document["tracking"]["group"] == "my-sweep" and "sweep:my-sweep" in document["tracking"]["tags"]


def test_search_space_in_tune_terms(tmp_path):
    from ray import tune

    swept = plan(
        tmp_path,
        space={"quality": {"grid": [0.1, 0.2]}, "eval_every": {"randint": [5, 10]}},
        seeds=[0, 1, 2],
        num_samples=2,
    )
    space, searcher, num_samples = tune_search(swept)
    assert space["quality"] == tune.grid_search([0.1, 0.2])
    assert space["seed"] == tune.grid_search([0, 1, 2])
    assert isinstance(space["eval_every"], tune.search.sample.Integer) and searcher is None and num_samples == 2

    optuna = plan(tmp_path, space={"quality": {"loguniform": [0.01, 1]}}, seeds=[0, 1], num_samples=3, search="optuna")
    space, searcher, num_samples = tune_search(optuna)
    assert "seed" not in space and num_samples == 6  # each Optuna point runs once per seed
    assert type(searcher).__name__ == "Repeater"
    assert optuna.trial_document({"quality": 0.5, "__trial_index__": 1})["seed"] == 1


def test_nested_keys_and_trial_labels():
    document = apply_overrides({"network": {"type": "mlp"}}, {"network.hidden": [64], "optim.lr": 0.1})
    assert document == {"network": {"type": "mlp", "hidden": [64]}, "optim": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="^network.type.x: cannot set a sub-key"):
        apply_overrides(document, {"network.type.x": 1})
    assert trial_label("s", "ab12c_00003") == "s-003"
    assert trial_label("s", "5ac65c47") == "s-5ac65c47"  # ids drawn by a search algorithm


def test_unreachable_address_fails_fast_without_ray(tmp_path):
    from launch.sweep_cluster import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    swept = plan(tmp_path)
    with pytest.raises(ConfigError, match=f"^--address: cannot reach a Ray cluster at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}", swept)
    with pytest.raises(ConfigError, match="^--address: expected host:port"):
        connect("nowhere", swept)
    with pytest.raises(ConfigError, match=r"^--address: Ray Client \(ray://\)"):
        connect("ray://127.0.0.1:10001", swept)


def test_the_sweep_config_and_the_driver_import_without_ray():
    code = "import sys, launch.sweep_config, launch.sweep; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


DQN = {"kind": "dqn", "env_id": "CartPole-v1", "total_steps": 2000, "network": {"type": "mlp", "hidden": [16]}}


def test_pack_defaults_to_seeds_where_the_trainer_trains_populations(tmp_path):
    dqn = plan(tmp_path, base=DQN, metric="eval/mean_return", seeds=[0, 1])
    assert dqn.settings.pack == "seeds" and dqn.packed
    assert plan(tmp_path, seeds=[0, 1]).settings.pack == "none"  # sweeptest has no population: section
    # A base that a population cannot train (compile: true) keeps one trial per seed, unless asked to pack.
    compiled = {**DQN, "compile": True}
    assert plan(tmp_path, base=compiled, metric="eval/mean_return", seeds=[0, 1]).settings.pack == "none"
    assert error(tmp_path, base=compiled, metric="eval/mean_return", pack="seeds").startswith(
        "compile: is not supported with population:"
    )
    one_seed = plan(tmp_path, base=DQN, metric="eval/mean_return", seeds=[3])
    assert not one_seed.packed and one_seed.trial_document({"seed": 3})["seed"] == 3  # nothing to pack


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"pack": "seed"}, "pack: expected one of seeds, none, points or null, got 'seed'"),
        ({"pack": "seeds"}, "pack: seeds needs a trainer that trains populations"),
        ({"max_members": 4}, "max_members: applies to pack: points only (pack: default)"),
        ({"base": DQN, "pack": "points", "space": {"learning_rate": {"uniform": [1e-4, 1e-2]}}}, "pack: points needs"),
        ({"base": DQN, "pack": "points", "seeds": [0, 1, 2], "max_members": 2}, "max_members: must be >= the number"),
        ({"base": {**DQN, "population": {"size": 2}}, "pack": "seeds"}, "population: is set by the sweep"),
        ({"base": DQN, "pack": "points", "space": {"gamma": {"grid": [0.9, 2.0]}}}, "gamma: must be >= 0 and <= 1"),
    ],
)
def test_bad_pack_settings_are_one_line_naming_the_field(tmp_path, document, message):
    if document.get("base") is DQN or "population" in str(document.get("base")):
        document = {"metric": "eval/mean_return", **document}
    found = error(tmp_path, **document)
    assert found.startswith(message) and "\n" not in found, found


def test_packed_seeds_are_one_population_trial_per_point(tmp_path):
    from ray import tune

    swept = plan(
        tmp_path, base=DQN, metric="eval/mean_return", space={"learning_rate": {"grid": [1e-3, 3e-3]}}, seeds=[4, 5]
    )
    space, searcher, num_samples = tune_search(swept)
    assert space == {"learning_rate": tune.grid_search([1e-3, 3e-3])} and searcher is None and num_samples == 1
    document = swept.trial_document({"learning_rate": 3e-3})
    assert document["population"] == {"seeds": [4, 5]} and document["learning_rate"] == 3e-3
    assert swept.members({"learning_rate": 3e-3}) == [
        ("seed4", {"learning_rate": 3e-3, "seed": 4}),
        ("seed5", {"learning_rate": 3e-3, "seed": 5}),
    ]
    # Optuna proposes points; a packed trial trains all their seeds, so it needs no Repeater.
    optuna = plan(
        tmp_path,
        base=DQN,
        metric="eval/mean_return",
        space={"learning_rate": {"loguniform": [1e-4, 1e-2]}},
        seeds=[0, 1, 2],
        num_samples=3,
        search="optuna",
    )
    _, searcher, num_samples = tune_search(optuna)
    assert type(searcher).__name__ == "OptunaSearch" and num_samples == 3


def test_packed_points_differ_only_in_per_member_scalars(tmp_path):
    from launch.config import parse_config

    swept = plan(
        tmp_path,
        base=DQN,
        metric="eval/mean_return",
        space={
            "learning_rate": {"grid": [1e-3, 2e-3, 3e-3]},
            "batch_size": {"grid": [32, 64]},  # changes shapes: never varies within a trial
            "prioritized.alpha": {"grid": [0.5]},
        },
        seeds=[0, 1],
        pack="points",
        max_members=4,
    )
    packs = swept.packs()
    assert [[(p["batch_size"], p["learning_rate"]) for p in pack] for pack in packs] == [
        [(32, 1e-3), (32, 2e-3)],
        [(32, 3e-3)],
        [(64, 1e-3), (64, 2e-3)],
        [(64, 3e-3)],
    ]
    space, searcher, _ = tune_search(swept)
    assert list(space) == ["__pack__"] and searcher is None
    document = swept.trial_document({"__pack__": 2})
    assert document["batch_size"] == 64 and document["prioritized"]["alpha"] == 0.5
    assert document["population"] == {"seeds": [0, 1, 0, 1], "learning_rate": [1e-3, 1e-3, 2e-3, 2e-3]}
    parse_config(document)
    members = swept.members({"__pack__": 2})
    assert [name for name, _ in members] == ["m00-seed0", "m01-seed1", "m02-seed0", "m03-seed1"]
    assert members[2][1] == {"learning_rate": 2e-3, "batch_size": 64, "prioritized.alpha": 0.5, "seed": 0}
    assert not swept.trial_points({"__pack__": 1})[0].keys() - {"learning_rate", "batch_size", "prioritized.alpha"}
