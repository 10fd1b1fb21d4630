"""Kind `vae`: a variational autoencoder (Kingma & Welling 2014) with the reparameterisation trick.

encoder (networks.build) -> (mu, log sigma^2) -> z = mu + sigma * eps -> decoder (ae.py's) -> Bernoulli logits.
Loss = -ELBO per image = BCE summed over pixels + KL(q(z|x) || N(0, I)), as pytorch/examples' VAE (784-400-20).
The test ELBO (nats per image, higher is better) is the figure of merit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import networks
from generative import images
from generative.ae import DEFAULT_ENCODERS, build_decoder, interpolation
from generative.common import fit, load_data, make_tree, optimize, restore_tree, sample, session, spec_of
from generative.data import Images
from generative.metrics import reconstruction_errors
from generative.scoring import JudgedOptions, Scorer
from networks.errors import ConfigError


@dataclass
class Config(JudgedOptions):
    arch: Literal["dense", "conv"] = "dense"  # dense: pytorch/examples' 784-400-20-400-784
    latent_dim: int = field(default=20, metadata={"ge": 1})  # pytorch/examples
    encoder: dict[str, Any] | None = None  # networks.build spec; None: 400 hidden units (dense) or ae's conv
    decoder_hidden: list[int] = field(default_factory=lambda: [400])  # dense decoder (pytorch/examples)
    decoder_channels: list[int] = field(default_factory=lambda: [64, 32])  # conv decoder widths
    lr: float = field(default=1e-3, metadata={"gt": 0})  # pytorch/examples (Adam)
    judge_steps: int = field(default=0, metadata={"ge": 0})  # > 0: judge prior samples (FLD, PRDC); 0 = off

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError("latent_dim", f"must be >= 1, got {self.latent_dim}")


def encoder_spec(config: Config) -> dict:
    if config.encoder is not None:
        return dict(config.encoder)
    return (
        {"type": "mlp", "hidden": [400], "activation": "relu"} if config.arch == "dense" else DEFAULT_ENCODERS["conv"]
    )


class VAE(nn.Module):
    def __init__(self, config: Config, image_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder = networks.build(encoder_spec(config), image_shape, field="encoder")  # (B, features)
        self.mu = nn.Linear(self.encoder.output_dim, config.latent_dim)
        self.logvar = nn.Linear(self.encoder.output_dim, config.latent_dim)
        self.decoder = build_decoder(config, config.latent_dim, image_shape)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation: gradients reach mu, sigma
        return self.decoder(z), mu, logvar

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "mu": self.mu, "logvar": self.logvar, "decoder": self.decoder}


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    """(-ELBO, reconstruction, KL), each in nats per image, averaged over the batch.

    reconstruction = -log p(x|z) = BCE summed over pixels; KL = -1/2 sum(1 + log s^2 - mu^2 - s^2).
    """
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
    return reconstruction + kl, reconstruction, kl


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    with session(config) as device:
        data = load_data(config, make_env)
        model = VAE(config, data.shape).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        step = 0 if resume is None else restore_tree(resume, model.parts(), {"vae": optimizer})
        specs = {"decoder": {"image_shape": list(data.shape), "latent_dim": config.latent_dim}}
        fixed_z = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed)).to(device)
        x_train = torch.from_numpy(data.x_train).to(device)
        scorer = Scorer(config, data, device, tracker)

        def update(step: int) -> dict[str, torch.Tensor]:
            model.train()
            loss, reconstruction, kl = negative_elbo_of(model, sample(x_train, config.batch_size))
            return {"losses/neg_elbo": optimize(optimizer, loss), "losses/reconstruction": reconstruction.detach(),
                    "losses/kl": kl.detach()}  # fmt: skip

        _, metrics = fit(
            tracker, step=step, total_steps=config.total_steps, eval_every=config.eval_every, update=update,
            evaluate=lambda step: evaluate(model, data, config, tracker, step, fixed_z, scorer),
            checkpoint_tree=lambda step: make_tree(model.parts(), {"vae": optimizer}, step, specs=specs),
        )  # fmt: skip
        tracker.summary(metrics)
        return metrics


def negative_elbo_of(model: VAE, x: torch.Tensor):
    logits, mu, logvar = model(x)
    return negative_elbo(logits, x, mu, logvar)


@torch.no_grad()
def test_elbo(model: VAE, x_test: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Single-sample ELBO estimate over the test split (nats per image), with seeded noise."""
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        totals = np.zeros(3)
        for batch in x_test.split(500):
            totals += len(batch) * np.array([float(v) for v in negative_elbo_of(model, batch)])
    neg_elbo, reconstruction, kl = totals / len(x_test)
    return {"eval/elbo": float(-neg_elbo), "eval/reconstruction": float(reconstruction), "eval/kl": float(kl)}


@torch.no_grad()
def evaluate(
    model: VAE, data: Images, config: Config, tracker, step: int, fixed_z: torch.Tensor, scorer: Scorer
) -> dict:
    """Test ELBO and reconstruction errors; with a judge, FLD and PRDC of `eval_samples` prior samples."""
    x_test = torch.from_numpy(data.x_test).to(fixed_z.device)
    metrics = test_elbo(model, x_test, seed=config.seed)
    if scorer.judge is not None:
        z = torch.randn(config.eval_samples, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        samples = torch.cat([torch.sigmoid(model.decoder(b.to(fixed_z.device))) for b in z.split(500)])
        metrics.update(scorer.score(samples))
    mu = torch.cat([model.encode(b)[0] for b in x_test.split(500)])
    recon = torch.cat([torch.sigmoid(model.decoder(m)) for m in mu.split(500)])  # decoded at the mean code
    metrics.update({f"eval/{k}": v for k, v in reconstruction_errors(x_test, recon).items()})
    tracker.log(metrics, step)
    tracker.image("eval/samples", images.grid(torch.sigmoid(model.decoder(fixed_z)).cpu().numpy()), step)
    tracker.image("eval/reconstructions", images.pairs(x_test[:32].cpu().numpy(), recon[:32].cpu().numpy()), step)
    tracker.image("eval/code_scatter", images.scatter(mu.cpu().numpy(), data.y_test, "test codes (mu)"), step)
    tracker.image("eval/interpolation", interpolation(model.decoder, mu), step)
    return metrics


def generate(config: Config, tree: dict, *, n: int, seed: int) -> np.ndarray:
    """(n, C, H, W) in [0, 1]: decoder means for z drawn from the prior N(0, I)."""
    spec = spec_of(tree, "decoder")
    model = VAE(config, tuple(spec["image_shape"]))
    restore_tree(tree, model.parts())
    z = torch.randn(n, spec["latent_dim"], generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model.decoder(z)).numpy()
