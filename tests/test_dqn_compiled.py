"""The compiled update (`compile: true`) takes the same steps as the eager one, and resumes from its checkpoints."""

import numpy as np
import pytest
import torch

import envs
from agents import dqn, fastpath
from agents.replay import ReplayBuffer


def filled_replay() -> ReplayBuffer:
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(1000, (4,), np.float32, 1, gamma=0.99)
    for _ in range(300):
        obs, next_obs = rng.standard_normal((2, 1, 4)).astype(np.float32)
        replay.add(  # a population of one: (1 member, 1 env, ...)
            obs[None],
            rng.integers(2, size=(1, 1)),
            np.ones((1, 1), np.float32),
            next_obs[None],
            rng.random((1, 1)) < 0.1,
            np.zeros((1, 1), bool),
            np.ones((1, 1), bool),
        )
    return replay


def learner(compile: bool, **overrides) -> dqn.Learner:
    config = dqn.Config(
        network={"type": "mlp", "hidden": [16, 16]},
        batch_size=32,
        learning_rate=1e-2,
        max_grad_norm=0.5,
        device="cpu",
        compile=compile,
        **overrides,
    )
    torch.manual_seed(0)
    return dqn.Learner(config, dqn.build_q_network(config, envs.make("CartPole-v1")), torch.device("cpu"))


def test_compiled_update_matches_the_eager_one():
    replay, results = filled_replay(), []
    for compile in (False, True):
        learning = learner(compile, dueling=True)
        torch.manual_seed(1)  # the same batches
        learning.train_phase(replay, np.array([12]), np.array([0.4]))
        results.append((learning.q_net.state_dict(), learning.optimizer.state_dict(), learning.read_losses()))
    (eager_net, eager_opt, eager_losses), (net, opt, losses) = results
    for name, value in eager_net.items():  # gradient clipping is active (max_grad_norm 0.5): it is compiled too
        torch.testing.assert_close(net[name], value, atol=1e-5, rtol=1e-4)
    assert opt["state"][0]["step"].item() == eager_opt["state"][0]["step"].item() == 12
    torch.testing.assert_close(opt["state"][0]["exp_avg_sq"], eager_opt["state"][0]["exp_avg_sq"], atol=1e-7, rtol=1e-4)
    assert losses["losses/td_loss"] == pytest.approx(eager_losses["losses/td_loss"], rel=1e-4)

    # a checkpoint of the compiled learner resumes under either path
    resumed = learner(True, dueling=True)
    resumed.q_net.load_state_dict(net)
    resumed.optimizer.load_state_dict(opt)
    resumed.compiled.rebind()
    resumed.train_phase(replay, np.array([2]), np.array([0.4]))
    assert resumed.optimizer.state_dict()["state"][0]["step"].item() == 14


def test_compiled_skip_leaves_the_network_unchanged_on_nan():
    learning = learner(True, nan_policy="skip")
    before = {k: v.clone() for k, v in learning.q_net.state_dict().items()}
    (batch,) = fastpath.split(filled_replay().sample(32, np.array([1])))  # (1 member, 32, ...)
    skipped = learning.update(batch, torch.full((1, 32), float("nan")))
    assert skipped is not None and learning.compiled.skipped.item() == 1
    for name, value in learning.q_net.state_dict().items():
        torch.testing.assert_close(value, before[name])


def test_a_compile_failure_is_one_logged_line_and_the_eager_update(caplog):
    import torch._inductor.config as inductor

    learning, replay = learner(True), filled_replay()
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):  # no C++ compiler
        skipped = learning.train_phase(replay, np.array([3]), np.array([0.4]))[0]
    assert learning.compiled is None and skipped == 0  # eager from the first update on
    assert learning.optimizer.state_dict()["state"][0]["step"].item() == 3
    assert learning.read_losses()["losses/td_loss"] > 0
    lines = [r.getMessage() for r in caplog.records if "compile" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "eager" in lines[0], lines
