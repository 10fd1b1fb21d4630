"""An encoder trained by a convolutional autoencoder on env frames, reused by DQN (frozen and fine-tuned)."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import agents
from launch.cli import main
from launch.tracking import checkpoint_stems, load_latest

REPO = Path(__file__).resolve().parents[1]
ENV = "MiniGrid-DoorKey-5x5-v0"
AE = [
    "data=env:" + ENV,
    "arch=conv",
    "encoder={type: cnn, conv: [[8, 3, 1, same]], activation: relu}",
    "decoder_channels=[8]",
    "code_dim=16",
    "env_frames=200",
    "total_steps=10",
    "eval_every=10",
    "batch_size=32",
    "tracking.wandb=disabled",
]
DQN = [
    f"env_id={ENV}",
    "total_steps=200",
    "learning_starts=50",
    "train_freq=4",
    "gradient_steps=1",
    "eval_every=0",
    "eval_episodes=1",
    "learning_rate=1e-2",
    "tracking.wandb=disabled",
]


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", str(REPO / "configs/ae/mnist5k-conv.yaml"), *AE, "--out", str(out), "--name", "ae"]) == 0
    tree, _ = load_latest(out / "ae")
    return out / "ae", tree["model"]["encoder"]


@pytest.mark.parametrize("freeze", [True, False])
def test_dqn_trains_on_the_autoencoders_encoder(autoencoder, freeze, tmp_path):
    ae_dir, ae_encoder = autoencoder
    network = f"network={{init_from: {ae_dir}, part: encoder, freeze: {str(freeze).lower()}}}"
    argv = ["train", str(REPO / "configs/dqn/cartpole-zoo.yaml"), *DQN, network, "--out", str(tmp_path)]
    assert main([*argv, "--name", "dqn"]) == 0
    tree, _ = load_latest(tmp_path / "dqn")
    encoder = {k.removeprefix("encoder."): v for k, v in tree["q_net"].items() if k.startswith("encoder.")}
    assert encoder.keys() == ae_encoder.keys()
    same = all(torch.equal(encoder[k], ae_encoder[k]) for k in encoder)
    assert same is freeze  # frozen: the autoencoder's weights exactly; unfrozen: fine-tuned
    assert "checkpoints/step-" in (tmp_path / "dqn" / "config.yaml").read_text()  # the exact checkpoint used


def test_an_encoder_for_other_observations_is_a_one_line_error(autoencoder, tmp_path, capsys):
    ae_dir, _ = autoencoder
    argv = [
        "train",
        str(REPO / "configs/dqn/cartpole-zoo.yaml"),
        "total_steps=100",
        "tracking.wandb=disabled",
        f"network={{init_from: {ae_dir}}}",
        "--out",
        str(tmp_path),
        "--name",
        "bad",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: network.init_from: the encoder was trained on inputs of shape (3, 7, 7), "
        "but this observation has shape (4,)"
    )
    assert not (tmp_path / "bad").exists()


def test_a_run_keeps_its_own_copy_and_resumes_after_the_source_is_deleted(autoencoder, tmp_path):
    ae_dir, ae_encoder = autoencoder
    source = tmp_path / "source"
    shutil.copytree(ae_dir, source)
    (source_stem,) = checkpoint_stems(source)[:1]
    source_sha = hashlib.sha256(source_stem.with_suffix(".safetensors").read_bytes()).hexdigest()
    network = f"network={{init_from: {source}, part: encoder, freeze: true}}"
    argv = ["train", str(REPO / "configs/dqn/cartpole-zoo.yaml"), *DQN, network, "--out", str(tmp_path)]
    assert main([*argv, "--name", "dqn"]) == 0
    run_dir = tmp_path / "dqn"
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["network"]
    assert recorded["init_from"] == str(source_stem.resolve())  # where the weights came from
    assert recorded["sha256"] == source_sha
    copy = run_dir / "pretrained" / source_stem.name
    assert hashlib.sha256(copy.with_suffix(".safetensors").read_bytes()).hexdigest() == source_sha

    shutil.rmtree(source)  # the source run is gone (or has pruned that checkpoint)
    assert main(["train", "--resume", str(run_dir), "total_steps=300"]) == 0
    tree, meta = load_latest(run_dir)
    assert meta["step"] >= 300
    encoder = {k.removeprefix("encoder."): v for k, v in tree["q_net"].items() if k.startswith("encoder.")}
    assert all(torch.equal(encoder[k], ae_encoder[k]) for k in ae_encoder)  # frozen: still the source's weights
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["network"] == recorded
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0


def test_a_checkpoint_other_than_the_recorded_one_is_refused(autoencoder, tmp_path, capsys):
    ae_dir, _ = autoencoder
    network = f"network={{init_from: {ae_dir}, part: encoder, sha256: {'ab' * 32}}}"
    argv = ["train", str(REPO / "configs/dqn/cartpole-zoo.yaml"), *DQN, network, "--out", str(tmp_path)]
    assert main([*argv, "--name", "pinned"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: network.sha256: ") and "not the abababababab..." in err and "\n" not in err
    assert not (tmp_path / "pinned").exists()


def test_agents_load_builds_from_the_kept_copy_in_a_run_an_artifact_and_a_hub_folder(autoencoder, tmp_path):
    ae_dir, ae_encoder = autoencoder
    source = tmp_path / "source"
    shutil.copytree(ae_dir, source)
    network = f"network={{init_from: {source}, part: encoder, freeze: true}}"
    argv = ["train", str(REPO / "configs/dqn/cartpole-zoo.yaml"), *DQN, network, "--out", str(tmp_path)]
    assert main([*argv, "--name", "dqn"]) == 0
    run_dir = tmp_path / "dqn"
    shutil.rmtree(source)  # config.yaml still names the source; only the run's pretrained/ copy is left

    policy = agents.load(run_dir, checkpoint="last")
    encoder = {k.removeprefix("encoder."): v for k, v in policy.q_net.state_dict().items() if k.startswith("encoder.")}
    assert all(torch.equal(encoder[k], ae_encoder[k]) for k in ae_encoder)
    obs = np.stack([policy.observation_space.sample() for _ in range(3)])
    actions, state = policy.predict(obs)
    assert actions.shape == (3,) and state is None and ((actions >= 0) & (actions < policy.action_space.n)).all()

    hub = tmp_path / "hub"
    assert main(["export", str(run_dir), "--format", "hub", "--out", str(hub), "--episodes", "1"]) == 0
    artifact = tmp_path / "downloaded"  # what a W&B model artifact holds, elsewhere: no source, no run folder
    for part in ("checkpoints", "pretrained"):
        shutil.copytree(run_dir / part, artifact / part)
    shutil.copy(run_dir / "config.yaml", artifact / "config.yaml")
    expected = policy.q_values(obs)
    shutil.rmtree(run_dir)
    again = agents.load(artifact, checkpoint="last")
    assert again.config.network["init_from"] == str(artifact / "pretrained" / checkpoint_stems(ae_dir)[0].name)
    np.testing.assert_array_equal(again.q_values(obs), expected)
    np.testing.assert_array_equal(again.predict(obs)[0], actions)
    np.testing.assert_array_equal(agents.load(hub).q_values(obs), expected)  # the Hub folder carries the copy too
