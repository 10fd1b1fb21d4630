"""Populations: many seeds and hyperparameters trained as one batched network, each member exactly its single run.

The central test: member k of a population and the single run of its equivalent config (`population.member_config`)
see the same transitions (their replays hold the same rows) and produce the same losses and parameters, to 1e-5
relative, over a few hundred updates; with Double DQN, a dueling head, n-step returns and prioritized replay on, for
an MLP and a CNN, and for drqn. Members differ in seed and in per-member hyperparameters, and some of their episodes
end (and reset) on steps where the others' go on.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from agents import dqn, drqn, evaluation, offpolicy, population
from agents.members import network, setup
from networks.errors import ConfigError
from networks.typed_config import from_dict

KINDS = {"dqn": dqn, "drqn": drqn}
COMMON = {
    "total_steps": 500,
    "learning_starts": 100,
    "buffer_size": 2000,
    "train_freq": 2,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "learning_rate": 3e-3,
    "eval_every": 250,
    "eval_episodes": 2,
    "checkpoint_every": 250,
    "log_every": 50,
    "save_replay": True,
    "device": "cpu",
    "torch_threads": 1,
}
CASES = {
    "dqn-mlp": (
        "dqn",
        {
            "env_id": "CartPole-v1",
            "network": {"type": "mlp", "hidden": [32, 32]},
            "batch_size": 32,
            "double_q": True,
            "dueling": True,
            "n_step": 3,
            "population": {
                "seeds": [0, 1, 2],
                "exact": True,
                "learning_rate": [3e-3, 1e-3, 5e-3],
                "gamma": [0.99, 0.9, 0.95],
                "tau": [1.0, 0.5, 1.0],
                "exploration_fraction": [0.1, 0.3, 0.2],
            },
        },
    ),
    "dqn-mlp-prioritized": (
        "dqn",
        {
            "env_id": "CartPole-v1",
            "num_envs": 2,
            "gradient_steps": 2,
            "network": {"type": "mlp", "hidden": [32], "norm": "layer"},
            "batch_size": 32,
            "double_q": True,
            "dueling": True,
            "n_step": 2,
            "prioritized": {"enabled": True},
            "learning_rate_final": 1e-4,
            "population": {
                "seeds": [3, 4],
                "exact": True,
                "max_grad_norm": [10.0, 0.5],
                "exploration_final_eps": [0.05, 0.2],
                "prioritized": {"alpha": [0.6, 0.4], "beta0": [0.4, 0.7]},
            },
        },
    ),
    "dqn-cnn": (
        "dqn",
        {
            "env_id": "MinAtar/Breakout-v1",
            "network": {"type": "cnn", "conv": [[8, 3, 1]], "hidden": [32]},
            "batch_size": 16,
            "double_q": True,
            "dueling": True,
            "n_step": 3,
            "prioritized": {"enabled": True},
            "total_steps": 400,
            "population": {"seeds": [0, 1], "exact": True, "learning_rate": [3e-3, 1e-3]},
        },
    ),
    "drqn": (
        "drqn",
        {
            "env_id": "dlforge/CartPoleNoVel-v1",
            "num_envs": 2,
            "gradient_steps": 2,
            "network": {"type": "lstm", "hidden_size": 16, "pre": {"type": "mlp", "hidden": [16]}},
            "batch_size": 8,
            "seq_len": 4,
            "burn_in": 2,
            "n_step": 2,
            "double_q": True,
            "prioritized": {"enabled": True},
            "total_steps": 400,
            "population": {"seeds": [0, 1], "exact": True, "gamma": [0.99, 0.9], "learning_rate": [3e-3, 1e-3]},
        },
    ),
}


class Recorder:
    """An in-memory tracker: every logged row and checkpoint tree."""

    def __init__(self):
        self.rows: list[dict] = []
        self.checkpoints: list[tuple[int, bool, dict]] = []
        self.summaries: list[dict] = []

    def log(self, metrics, step):
        self.rows.append({"step": step, **metrics})

    def image(self, key, image, step, caption=None):
        return None

    def video(self, key, path, step):
        return None

    def checkpoint(self, tree, step, *, best=False, metric=None):
        self.checkpoints.append((step, best, copy.deepcopy(tree)))

    def summary(self, metrics):
        self.summaries.append(dict(metrics))

    def should_stop(self):
        return False


def config_of(case: str):
    kind, fields = CASES[case]
    return kind, from_dict(KINDS[kind].Config, {**COMMON, **fields}, "")


def curves(recorder: Recorder) -> dict[str, list]:
    keys = ("losses/td_loss", "losses/q_values", "charts/epsilon", "charts/learning_rate", "eval/mean_return")
    return {key: [(r["step"], r[key]) for r in recorder.rows if key in r] for key in keys}


@pytest.mark.parametrize("case", CASES)
def test_each_member_is_exactly_its_single_run(case):
    kind, config = config_of(case)
    members = population.members(config)
    trackers = [Recorder() for _ in members]
    summaries = KINDS[kind].train(config, trackers)
    assert [s["status"] for s in summaries] == ["done"] * len(members)
    for member, together in zip(members, trackers):
        alone = Recorder()
        KINDS[kind].train(population.member_config(config, member), alone)
        # the same logged losses, Q-values, schedules and evaluations at the same steps
        mine, theirs = curves(together), curves(alone)
        assert [s for s, _ in mine["losses/td_loss"]] == [s for s, _ in theirs["losses/td_loss"]]
        assert len(theirs["losses/td_loss"]) >= 5
        for key in mine:
            np.testing.assert_allclose([v for _, v in mine[key]], [v for _, v in theirs[key]], rtol=1e-5, err_msg=key)
        # the same checkpoints, in the single run's layout: transitions, counters, parameters, optimizer state. (Step
        # checkpoints fall on the vector steps the whole population checkpoints at; with several envs per member, a
        # member's may then lie a few transitions off its single run's. Best ones and the last are its own.)
        assert [s for s, best, _ in together.checkpoints if best] == [s for s, best, _ in alone.checkpoints if best]
        last, expected = together.checkpoints[-1][2], alone.checkpoints[-1][2]
        assert last["counters"] == expected["counters"] and expected["counters"]["updates"] >= 150
        for name in ("actions", "rewards", "obs"):  # the stored transitions
            np.testing.assert_array_equal(np.asarray(last["replay"][name]), np.asarray(expected["replay"][name]))
        for part in ("q_net", "target_net"):
            assert list(last[part]) == list(expected[part])
            for key, value in expected[part].items():
                torch.testing.assert_close(last[part][key], value, rtol=1e-5, atol=1e-6, msg=f"{part}.{key}")
        opt, expected_opt = last["optimizer"], expected["optimizer"]
        assert opt["param_groups"][0].keys() == expected_opt["param_groups"][0].keys()
        for i, state in expected_opt["state"].items():
            assert float(opt["state"][i]["step"]) == float(state["step"])
            # a moment is a running mean of gradients: where those nearly cancel, rounding shows; compare to its scale
            scale = float(state["exp_avg"].abs().max())
            torch.testing.assert_close(opt["state"][i]["exp_avg"], state["exp_avg"], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize(("case", "rows"), [("dqn-mlp", [0, 1, 2]), ("dqn-mlp", [0, 2]), ("drqn", [1])])
def test_members_evaluated_together_each_get_their_own_evaluation(case, rows):
    """The loop plays the greedy episodes of every due member at once (`evaluation.evaluate_members`: one forward of
    the population's network per step, each member on its own eval envs with its own seed). Each member's returns,
    episode by episode, are the ones its own `evaluate_net` gives, also when only some members are due."""
    kind, config = config_of(case)
    device, runs = setup(config, [Recorder() for _ in population.members(config)], None)
    env = offpolicy.make_member_env(runs)
    module = KINDS[kind]
    container = dqn.QNetwork if kind == "dqn" else drqn.RecurrentQNetwork
    q_net = network(runs, lambda member_config: module.build_q_network(member_config, env), (container,))
    greedy = (lambda net: dqn.greedy(net, device)) if kind == "dqn" else (lambda net: drqn.RecurrentGreedy(net, device))
    eval_envs = [evaluation.make_eval_env(run.config) for run in runs]
    seeds = [run.config.seed + evaluation.EVAL_SEED_OFFSET for run in runs]
    episodes = 5
    together = evaluation.evaluate_members(
        q_net, [eval_envs[k] for k in rows], rows, episodes, [seeds[k] for k in rows], greedy(q_net)
    )
    returns = []
    for k, result in zip(rows, together):
        alone = evaluation.evaluate_net(
            q_net.member_module(k), eval_envs[k], episodes, seeds[k], greedy(q_net.member_module(k))
        )
        assert result["returns"] == alone["returns"] and len(alone["returns"]) == episodes
        returns.append(alone["returns"])
    assert len(rows) == 1 or len({tuple(r) for r in returns}) > 1  # the members play different episodes


def test_by_default_members_match_their_single_runs_to_float_tolerance():
    """Without `exact: true` the batched products may round differently from a single run's; members stay within the
    spec's tolerance (1e-5 relative) of their single runs over the dqn-mlp case's 200 updates. The comparison holds
    whole trajectories because, in this case, no rounding flipped an action (the stored actions are asserted equal):
    in general two nearly tied Q-values may flip one, after which a member's trajectory differs from its single run's.
    """
    kind, fields = CASES["dqn-mlp"]
    fields = {**fields, "population": {key: value for key, value in fields["population"].items() if key != "exact"}}
    config = from_dict(dqn.Config, {**COMMON, **fields}, "")
    assert not population.exact(config)
    members = population.members(config)
    trackers = [Recorder() for _ in members]
    dqn.train(config, trackers)
    for member, together in zip(members, trackers):
        alone = Recorder()
        dqn.train(population.member_config(config, member), alone)
        last, expected = together.checkpoints[-1][2], alone.checkpoints[-1][2]
        assert last["counters"] == expected["counters"] and expected["counters"]["updates"] == 200
        np.testing.assert_array_equal(np.asarray(last["replay"]["actions"]), np.asarray(expected["replay"]["actions"]))
        mine, theirs = curves(together), curves(alone)
        for key in ("losses/td_loss", "losses/q_values"):
            assert [s for s, _ in mine[key]] == [s for s, _ in theirs[key]] and len(theirs[key]) >= 5
            np.testing.assert_allclose([v for _, v in mine[key]], [v for _, v in theirs[key]], rtol=1e-5, err_msg=key)
        for part in ("q_net", "target_net"):
            for key, value in expected[part].items():
                torch.testing.assert_close(last[part][key], value, rtol=1e-5, atol=1e-6, msg=f"{part}.{key}")


def test_bad_population_configs_name_the_field():
    base = {"env_id": "CartPole-v1", "network": {"type": "mlp", "hidden": [8]}}
    for population_section, field in (
        ({"size": 0}, "population.size"),
        ({"seeds": [1, 2, 1]}, "population.seeds"),
        ({"size": 2, "learning_rate": [1e-3]}, "population.learning_rate"),
        ({"size": 2, "batch_size": [16, 32]}, "population.batch_size"),
        ({"size": 2, "gamma": [0.9, 1.5]}, "population.gamma[1]"),
        ({"size": 2, "prioritized": {"eps": [1e-6, 1e-5]}}, "population.prioritized.eps"),
        ({"size": 2, "exact": "yes"}, "population.exact"),
    ):
        with pytest.raises(ConfigError) as error:
            from_dict(dqn.Config, {**base, "population": population_section}, "")
        assert error.value.field == field, str(error.value)
    assert "per-member lists may be given for learning_rate" in str(
        pytest.raises(
            ConfigError, from_dict, dqn.Config, {**base, "population": {"size": 2, "n_step": [1, 2]}}, ""
        ).value
    )
    for extra, field in (({"compile": True}, "compile"), ({"optimizer": "rmsprop"}, "optimizer")):
        with pytest.raises(ConfigError) as error:
            from_dict(dqn.Config, {**base, **extra, "population": {"size": 2}}, "")
        assert error.value.field == field


def test_member_config_is_the_single_run_of_that_member():
    config = from_dict(
        dqn.Config,
        {"seed": 7, "population": {"size": 2, "learning_rate": [1e-3, 2e-3], "prioritized": {"beta0": [0.4, 0.5]}}},
        "",
    )
    first, second = population.members(config)
    assert (first.name, first.seed, second.name, second.seed) == ("seed7", 7, "seed8", 8)
    single = population.member_config(config, second)
    assert single.population is None and single.seed == 8
    assert single.learning_rate == 2e-3 and single.prioritized.beta0 == 0.5 and single.gamma == config.gamma


class StopsAt(Recorder):
    """A tracker whose `should_stop` asks its member to stop once it has logged a step at or past `step`."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def should_stop(self):
        return any(row["step"] >= self.step for row in self.rows)


def test_a_member_that_stops_early_leaves_the_others_exact():
    # learning_starts 99: the members' update counts then sum, after member 1 stops at step 175, to what they summed
    # to at an earlier target sync, while member 0 did update: its target must still be copied.
    config = from_dict(
        dqn.Config,
        {
            **COMMON,
            "env_id": "CartPole-v1",
            "total_steps": 400,
            "learning_starts": 99,
            "train_freq": 1,
            "log_every": 25,
            "eval_every": 1000,
            "checkpoint_every": 10000,
            "network": {"type": "mlp", "hidden": [32, 32]},
            "batch_size": 32,
            "population": {"seeds": [0, 1], "exact": True},
        },
        "",
    )
    members = population.members(config)
    trackers = [Recorder(), StopsAt(175)]
    summaries = dqn.train(config, trackers)
    assert [(s["status"], s["global_step"]) for s in summaries] == [("done", 400), ("stopped", 175)]
    alone = Recorder()
    dqn.train(population.member_config(config, members[0]), alone)
    mine, theirs = curves(trackers[0]), curves(alone)
    assert [s for s, _ in mine["losses/td_loss"]] == [s for s, _ in theirs["losses/td_loss"]]
    np.testing.assert_allclose([v for _, v in mine["losses/td_loss"]], [v for _, v in theirs["losses/td_loss"]], 1e-5)
    for part in ("q_net", "target_net"):
        for key, value in alone.checkpoints[-1][2][part].items():
            torch.testing.assert_close(trackers[0].checkpoints[-1][2][part][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"network": {"type": "mlp", "hidden": [8], "dropout": 0.1}}, "network.dropout"),
        ({"network": {"type": "mlp", "hidden": [8], "norm": "batch"}}, "network.norm"),
        ({"network": {"type": "resnet", "blocks": [1], "widths": [8]}}, "network.type"),
        ({"network": {"init_from": "runs/ae/checkpoints/latest", "part": "encoder"}}, "network.init_from"),
        ({"compact_replay": True}, "compact_replay"),
    ],
    ids=["dropout", "batch-norm", "resnet", "init-from", "compact-replay"],
)
def test_what_a_population_refuses_is_one_line_exit_2(tmp_path, capsys, extra, field):
    from launch.cli import main

    base = {"env_id": "CartPole-v1", "network": {"type": "mlp", "hidden": [8]}, "population": {"size": 2}}
    with pytest.raises(ConfigError) as error:
        from_dict(dqn.Config, {**base, **extra}, "")
    assert error.value.field == field and "population" in str(error.value) and "\n" not in str(error.value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"kind": "dqn", **base, **extra}))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--name", "bad"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), lines
    assert not (tmp_path / "runs" / "bad").exists()


SKIP = {  # member 1's learning rate makes its first update non-finite; under nan_policy: skip only it skips
    **COMMON,
    "env_id": "CartPole-v1",
    "total_steps": 400,
    "train_freq": 1,
    "log_every": 50,
    "eval_every": 1000,
    "checkpoint_every": 10000,
    "network": {"type": "mlp", "hidden": [32, 32]},
    "batch_size": 32,
    "nan_policy": "skip",
    "prioritized": {"enabled": True},
    "population": {"seeds": [0, 1], "exact": True, "learning_rate": [3e-3, 1e30]},
}


def test_nan_policy_skip_skips_per_member_and_leaves_the_others_exact():
    config = from_dict(dqn.Config, SKIP, "")
    members = population.members(config)
    trackers = [Recorder(), Recorder()]
    summaries = dqn.train(config, trackers)
    assert [s["status"] for s in summaries] == ["done", "done"]
    skipped = [[r["losses/skipped_updates"] for r in t.rows if "losses/skipped_updates" in r][-1] for t in trackers]
    assert skipped[0] == 0 and skipped[1] > 100, skipped
    alone = Recorder()
    dqn.train(population.member_config(config, members[0]), alone)
    mine, theirs = curves(trackers[0]), curves(alone)
    assert [s for s, _ in mine["losses/td_loss"]] == [s for s, _ in theirs["losses/td_loss"]]
    np.testing.assert_allclose([v for _, v in mine["losses/td_loss"]], [v for _, v in theirs["losses/td_loss"]], 1e-5)
    assert trackers[0].checkpoints[-1][2]["counters"] == alone.checkpoints[-1][2]["counters"]


def test_gradient_steps_minus_one_keeps_members_exact_at_different_update_counts():
    # two envs per member: a member whose episodes end more often stores fewer transitions per vector step, so
    # gradient_steps -1 (one update per new transition) gives the members different update counts
    config = from_dict(
        dqn.Config,
        {
            **COMMON,
            "env_id": "CartPole-v1",
            "num_envs": 2,
            "total_steps": 500,
            "train_freq": 4,
            "gradient_steps": -1,
            "eval_every": 1000,
            "checkpoint_every": 10000,
            "network": {"type": "mlp", "hidden": [32]},
            "batch_size": 16,
            "population": {"seeds": [0, 1], "exact": True, "learning_rate": [3e-3, 1e-3]},
        },
        "",
    )
    members = population.members(config)
    trackers = [Recorder(), Recorder()]
    dqn.train(config, trackers)
    counts = [t.checkpoints[-1][2]["counters"]["updates"] for t in trackers]
    for member, together in zip(members, trackers):
        alone = Recorder()
        dqn.train(population.member_config(config, member), alone)
        assert together.checkpoints[-1][2]["counters"] == alone.checkpoints[-1][2]["counters"]
        mine, theirs = curves(together), curves(alone)
        np.testing.assert_allclose(
            [v for _, v in mine["losses/td_loss"]], [v for _, v in theirs["losses/td_loss"]], rtol=1e-5
        )
        for key, value in alone.checkpoints[-1][2]["q_net"].items():
            torch.testing.assert_close(together.checkpoints[-1][2]["q_net"][key], value, rtol=1e-5, atol=1e-6)
    assert counts[0] != counts[1], counts
