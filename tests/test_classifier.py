"""Kind `classify`: LeNet-5 on the digits reaches >= 97% through the CLI, saves a checkpoint the judge loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from generative import classifier
from generative.data import load_images
from launch.cli import main as dlforge
from launch.tracking import read_metrics
from networks.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_digits_lenet_config_reaches_97_percent_and_the_judge_reloads(tmp_path, capsys):
    code = dlforge(["train", str(REPO / "configs/classify/digits-lenet.yaml"), "tracking.wandb=disabled",
                    "--out", str(tmp_path), "--name", "lenet"])  # fmt: skip
    assert code == 0
    run = tmp_path / "lenet"
    accuracy = [r["eval/accuracy"] for r in read_metrics(run / "metrics.jsonl") if "eval/accuracy" in r]
    assert accuracy[-1] >= 0.97
    assert list((run / "checkpoints").glob("step-*.safetensors")) and list((run / "checkpoints").glob("best-*.json"))

    judge = classifier.load_judge(run)  # what a GAN config's `judge: RUN_DIR` does
    digits = load_images("digits", seed=0)
    predicted = judge.predict(torch.from_numpy(digits.x_test)).numpy()
    assert (predicted == digits.y_test).mean() == pytest.approx(max(accuracy), abs=1e-6)


def test_translate_moves_whole_pixels_within_the_shift():
    image = torch.zeros(64, 1, 9, 9)
    image[:, :, 4, 4] = 1.0
    moved = classifier.translate(image, shift=2)
    assert torch.equal(moved.sum(dim=(1, 2, 3)), torch.ones(64))  # one pixel, still whole
    rows, cols = moved[:, 0].nonzero()[:, 1], moved[:, 0].nonzero()[:, 2]
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist())}) > 5  # per-image offsets
    assert torch.equal(classifier.translate(image, 0), image)


def test_a_classifier_needs_labels(tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.zeros((20, 8, 8), np.uint8))

    class Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    with pytest.raises(ConfigError, match="has no labels"):
        classifier.train(classifier.Config(data=f"npz:{path}", total_steps=1), Quiet())


def test_load_judge_refuses_a_folder_without_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match="holds no checkpoints"):
        classifier.load_judge(tmp_path)
