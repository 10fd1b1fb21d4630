"""`dlforge export`: ONNX graphs that act as torch does (onnxruntime), TorchScript, the Hub folder, bad input."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from trained_runs import artifact_folder, tiny_run

import agents
import generative
from launch.cli import main as dlforge

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra: pip install 'dlforge[export]'")
pytestmark = pytest.mark.slow  # each ONNX export traces the network with torch.export: 5-10 s


def export(run_dir, fmt: str, out) -> None:
    assert dlforge(["export", str(run_dir), "--format", fmt, "--out", str(out)]) == 0


@pytest.mark.parametrize("name", ["cartpole-mlp", "doorkey-cnn"])
def test_onnx_policy_acts_as_torch_on_1000_env_observations(name, tmp_path):
    policy = agents.load(tiny_run(name))
    export(tiny_run(name), "onnx", tmp_path / "policy.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("obs", ["batch", *policy.observation_space.shape])]
    obs, _ = policy.env_observations(1000)
    assert obs.dtype == policy.observation_space.dtype  # uint8 pixels go in as they are
    actions, q_values = session.run(None, {"obs": obs})
    np.testing.assert_array_equal(actions, policy.predict(obs)[0])
    np.testing.assert_allclose(q_values, policy.q_values(obs), atol=1e-4, rtol=0)
    one_action, _ = session.run(None, {"obs": obs[:1]})  # batch 1 as well
    assert one_action.tolist() == [policy.predict(obs[0])[0]]


def test_onnx_drqn_takes_and_returns_the_lstm_state(tmp_path):
    policy = agents.load(tiny_run("novel-drqn"))
    export(tiny_run("novel-drqn"), "onnx", tmp_path / "policy.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs", "h", "c"]
    assert [o.name for o in session.get_outputs()] == ["action", "q_values", "h_out", "c_out"]
    obs, starts = policy.env_observations(1000)
    assert starts.sum() > 3  # several episodes: the state is zeroed at each start
    torch_state, onnx_state = None, policy.initial_state(1)
    torch_actions, onnx_actions, largest = [], [], 0.0
    for x, start in zip(obs, starts):
        q = policy.q_values(x, torch_state, episode_start=start)
        action, torch_state = policy.predict(x, torch_state, episode_start=start)
        if start:
            onnx_state = policy.initial_state(1)
        a, q_onnx, h, c = session.run(None, {"obs": x[None], "h": onnx_state[0], "c": onnx_state[1]})
        onnx_state = (h, c)
        torch_actions.append(int(action))
        onnx_actions.append(int(a[0]))
        largest = max(largest, float(np.abs(q_onnx[0] - q).max()))
    assert torch_actions == onnx_actions and largest < 1e-4
    np.testing.assert_allclose(onnx_state[0], torch_state[0], atol=1e-4)


def test_the_parity_check_refuses_a_graph_that_differs(tmp_path):
    from launch.export import onnx_parity

    policy = agents.load(tiny_run("cartpole-mlp"))
    export(tiny_run("cartpole-mlp"), "onnx", tmp_path / "policy.onnx")
    assert onnx_parity(policy.graph(), tmp_path / "policy.onnx") < 1e-4
    changed = policy.graph()
    with torch.no_grad():
        next(changed.module.parameters()).add_(0.01)  # another network than the one in the file
    with pytest.raises(RuntimeError, match="onnxruntime differs from torch"):
        onnx_parity(changed, tmp_path / "policy.onnx")


def test_torchscript_and_a_q_table_and_a_generator(tmp_path):
    policy = agents.load(tiny_run("cartpole-mlp"))
    export(tiny_run("cartpole-mlp"), "torchscript", tmp_path / "policy.pt")
    scripted = torch.jit.load(str(tmp_path / "policy.pt"))
    obs, _ = policy.env_observations(37)  # another batch size than the traced example
    actions, q_values = scripted(torch.from_numpy(obs))
    np.testing.assert_array_equal(actions.numpy(), policy.predict(obs)[0])
    np.testing.assert_allclose(q_values.detach().numpy(), policy.q_values(obs), atol=1e-5)

    table = agents.load(tiny_run("frozenlake-q"))
    export(tiny_run("frozenlake-q"), "onnx", tmp_path / "table.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "table.onnx"), providers=["CPUExecutionProvider"])
    states = np.arange(16)
    actions, q_values = session.run(None, {"obs": states})
    np.testing.assert_array_equal(actions, table.predict(states)[0])
    np.testing.assert_array_equal(q_values, table.q_values(states))

    model = generative.load(tiny_run("digits-vae"))
    export(tiny_run("digits-vae"), "onnx", tmp_path / "generator.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "generator.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).normal(size=(9, model.latent_dim)).astype(np.float32)
    (images,) = session.run(None, {"z": z})
    np.testing.assert_allclose(images, model.decode(z), atol=1e-5)


def test_hub_folder_has_a_card_the_hub_parses_and_loads_as_a_run(tmp_path):
    from huggingface_hub import ModelCard

    run_dir = tiny_run("cartpole-mlp")
    out = tmp_path / "hub"
    assert dlforge(["export", str(run_dir), "--format", "hub", "--out", str(out), "--episodes", "4"]) == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "checkpoints/model.json",
        "checkpoints/model.safetensors",
        "config.yaml",
        "eval.json",
        "policy.onnx",
        "replay.mp4",
    ]
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["episodes"] == 4 and evaluation["deterministic"] is True
    card = ModelCard.load(out / "README.md")  # a local path: parsed offline
    assert card.data.library_name == "dlforge"
    assert {"reinforcement-learning", "deep-q-learning", "CartPole-v1"} <= set(card.data.tags)
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.metric_type) == (
        "reinforcement-learning",
        "CartPole-v1",
        "mean_reward",
    )
    assert result.metric_value == f"{evaluation['mean_return']:.2f} +/- {evaluation['std_return']:.2f}"
    assert "hf upload" in card.text
    assert (out / "replay.mp4").stat().st_size > 1000
    # the folder is a run folder too: it loads, acts as the run does, and carries its evaluation
    from_hub, from_run = agents.load(out), agents.load(run_dir)
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_array_equal(from_hub.q_values(obs), from_run.q_values(obs))
    from networks import io

    _, meta = io.load(out / "checkpoints" / "model")
    assert meta["evaluation"] == evaluation
    # an existing, non-empty --out is refused; nothing there changes
    assert dlforge(["export", str(run_dir), "--format", "hub", "--out", str(out)]) == 2


def test_bad_input_is_exit_2_one_line_and_nothing_written(tmp_path, capsys):
    classifier = tiny_run("digits-classify")
    no_checkpoint = tmp_path / "fresh"
    no_checkpoint.mkdir()
    shutil.copy(tiny_run("cartpole-mlp") / "config.yaml", no_checkpoint / "config.yaml")
    corrupt = artifact_folder(tiny_run("cartpole-mlp"), tmp_path / "corrupt")
    tensors = next((corrupt / "checkpoints").glob("*.safetensors"))
    tensors.write_bytes(b"\0" * 64)
    out = tmp_path / "out" / "policy.onnx"
    cases = [
        ((str(classifier), "--format", "onnx"), "'classify' run, which holds no policy or generator"),
        ((str(tiny_run("cartpole-mlp")), "--format", "savedmodel"), "invalid choice: 'savedmodel'"),
        ((str(no_checkpoint), "--format", "torchscript"), "holds no checkpoint yet"),
        ((str(corrupt), "--format", "onnx"), "checksum does not match"),
        ((str(tmp_path / "nowhere"), "--format", "onnx"), "holds no dlforge run"),
        ((str(tiny_run("digits-vae")), "--format", "hub"), "hub folders hold agents"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) if "savedmodel" in argv else contextlib.nullcontext():
            assert dlforge(["export", *argv, "--out", str(out)]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()
    assert not (classifier / "export").exists() and not (corrupt / "export").exists()


def test_without_the_export_extra_the_command_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    out = tmp_path / "p.onnx"
    assert dlforge(["export", str(tiny_run("cartpole-mlp")), "--format", "onnx", "--out", str(out)]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr == "error: --format: onnx export needs onnxscript: pip install 'dlforge[export]'"
    assert not out.exists()
