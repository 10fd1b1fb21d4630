"""Kind `seq2seq_ae`: an LSTM encoder-decoder autoencoder for sequences (Srivastava et al. 2015, unconditioned).

encoder LSTM reads x (B, T, F); its last output is the code (B, D). The decoder LSTM reads the code at every step
(Keras' RepeatVector design) with a clock t/T beside it and writes x_hat (B, T, F). Both are networks.build
recurrent encoders, the same modules a recurrent agent uses. Loss: MSE per element on standardised features.

Data: `sines` (generated: random amplitude, frequency, phase) or `npz:<path>`, either `sequences` (N, T, F) or a
trajectory saved by a DQN run, `obs` (N, F) + `dones` (N,), cut into `seq_len` windows inside episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import networks
from generative import images
from generative.common import TrainingOptions, fit, make_tree, optimize, restore_tree, sample, session
from generative.data import load_sequences
from networks.errors import ConfigError


@dataclass
class Config(TrainingOptions):
    data: str = "sines"  # sines | npz:<path> (sequences, or obs + dones trajectories)
    seq_len: int = field(default=50, metadata={"ge": 2})  # steps per sequence (window length for trajectories)
    n_sequences: int = field(default=2000, metadata={"ge": 10})  # generated sines
    code_dim: int = field(default=16, metadata={"ge": 1})  # bottleneck size
    encoder: dict[str, Any] = field(default_factory=lambda: {"type": "lstm", "hidden_size": 64})
    decoder: dict[str, Any] = field(default_factory=lambda: {"type": "lstm", "hidden_size": 64})
    total_steps: int = field(default=2000, metadata={"gt": 0})  # gradient steps
    batch_size: int = field(default=64, metadata={"gt": 0})  # a common sequence batch
    lr: float = field(default=1e-3, metadata={"gt": 0})  # Adam's default (Kingma & Ba 2015)
    eval_every: int = field(default=500, metadata={"gt": 0})  # steps between test metrics and plots

    def validate(self) -> None:
        for name in ("encoder", "decoder"):
            if networks.resolve(getattr(self, name), name)["type"] not in ("lstm", "gru"):
                raise ConfigError(f"{name}.type", "must be a recurrent network (lstm or gru)")


class SequenceAutoencoder(nn.Module):
    def __init__(self, config: Config, features: int):
        super().__init__()
        self.encoder = networks.build(config.encoder, (features,), output_dim=config.code_dim, field="encoder")
        # the decoder reads [code, t / T] at every step: the clock spares it counting steps itself
        self.decoder = networks.build(config.decoder, (config.code_dim + 1,), output_dim=features, field="decoder")

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, D)
        outputs, _ = self.encoder(x)
        return outputs[:, -1]

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:  # (B, D) -> (B, T, F)
        clock = torch.linspace(0, 1, steps, device=code.device)[None, :, None].expand(len(code), -1, -1)
        outputs, _ = self.decoder(torch.cat([code[:, None].expand(-1, steps, -1), clock], dim=2))  # (B, T, D+1)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x.shape[1])


def train(config: Config, tracker, *, resume: dict | None = None) -> dict[str, float]:
    with session(config) as device:
        data = load_sequences(config.data, seed=config.seed, seq_len=config.seq_len, n=config.n_sequences,
                              test_fraction=config.test_fraction)  # fmt: skip
        mean = data.x_train.mean(axis=(0, 1))  # (F,) standardise each feature with train statistics
        std = data.x_train.std(axis=(0, 1)) + 1e-6
        model = SequenceAutoencoder(config, data.x_train.shape[-1]).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        parts, optimizers = {"encoder": model.encoder, "decoder": model.decoder}, {"seq2seq_ae": optimizer}
        step = 0 if resume is None else restore_tree(resume, parts, optimizers)
        specs = {"encoder": {"spec": networks.resolve(config.encoder), "input_shape": [data.x_train.shape[-1]],
                             "output_dim": config.code_dim, "mean": mean.tolist(), "std": std.tolist()}}  # fmt: skip
        x_train = torch.from_numpy((data.x_train - mean) / std).to(device)
        x_test = torch.from_numpy((data.x_test - mean) / std).to(device)

        def update(step: int) -> dict[str, torch.Tensor]:
            model.train()
            x = sample(x_train, config.batch_size)
            return {"losses/mse": optimize(optimizer, F.mse_loss(model(x), x))}

        _, metrics = fit(
            tracker, step=step, total_steps=config.total_steps, eval_every=config.eval_every, update=update,
            evaluate=lambda step: evaluate(model, x_test, data.y_test, std, tracker, step),
            checkpoint_tree=lambda step: make_tree(parts, optimizers, step, specs=specs),
        )  # fmt: skip
        tracker.summary(metrics)
        return metrics


@torch.no_grad()
def evaluate(model, x_test: torch.Tensor, labels, std: np.ndarray, tracker, step: int) -> dict[str, float]:
    """Test MSE per element, in standardised units and in the data's own units; plots and code scatter."""
    model.eval()
    codes = model.encode(x_test)
    recon = model.decode(codes, x_test.shape[1])
    squared = (recon - x_test).pow(2)
    std_t = torch.as_tensor(std, dtype=squared.dtype, device=squared.device)
    metrics = {"eval/mse": float(squared.mean()), "eval/mse_data_units": float((squared * std_t**2).mean())}
    tracker.log(metrics, step)
    plot = images.lines(x_test.cpu().numpy(), recon.cpu().numpy(), "test sequences (solid), reconstructions")
    tracker.image("eval/reconstructions", plot, step)
    tracker.image("eval/code_scatter", images.scatter(codes.cpu().numpy(), labels, "test codes"), step)
    return metrics
