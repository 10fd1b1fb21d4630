"""Offline metrics: the LeNet judge's Fréchet distance, precision/recall/density/coverage and class coverage,
reconstruction errors, alarms.

No Inception weights can be downloaded here, so the Fréchet distance uses torchmetrics'
`FrechetInceptionDistance(feature=<module>)` with the LeNet judge (trained on the same data set) as its
feature network: a "Fréchet LeNet distance" (FLD). Lower is better; 0 means identical feature statistics.
FLD mixes fidelity and diversity into one number; `prdc` separates them, on the same judge's features.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import networks
from generative.data import fit_images


class Judge(nn.Module):
    """A classifier (LeNet-5 by default) = feature network + linear head, with the framing it was trained on.

    `prepare` maps images of any size in [0, 1] to the judge's input, the way its training data were mapped,
    so generated 8x8 digits or 64x64 MNIST samples are judged like real ones.
    """

    def __init__(self, spec: dict | str, input_shape: tuple[int, int, int], num_classes: int, margin: int):
        super().__init__()
        self.spec, self.input_shape, self.margin = spec, tuple(input_shape), margin
        self.features = networks.build(spec, self.input_shape)  # LeNet-5: (B, 84), the F6 layer
        self.head = nn.Linear(self.features.output_dim, num_classes)  # (B, classes) logits
        self.num_classes = num_classes

    def describe(self) -> dict:
        """JSON that rebuilds this judge (checkpoint specs)."""
        return {
            "spec": self.spec,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "margin": self.margin,
        }

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return fit_images(x, self.input_shape[-1], self.margin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x already prepared
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        self.eval()
        return torch.cat([self(self.prepare(b)).argmax(1) for b in x.split(batch_size)])


class JudgeFeatures(nn.Module):
    """The judge's penultimate features, as torchmetrics' FID wants them (`num_features` spares a dummy pass)."""

    def __init__(self, judge: Judge):
        super().__init__()
        self.judge = judge
        self.num_features = judge.features.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.judge.features(self.judge.prepare(x.float()))


class FrechetLeNetDistance:
    """FID with the judge as feature network; the real statistics are computed once, from the test split."""

    def __init__(self, judge: Judge, real: torch.Tensor, batch_size: int = 500):
        from torchmetrics.image.fid import FrechetInceptionDistance  # 4 s to import: only when needed

        judge.eval()
        self.batch_size = batch_size
        self.fid = FrechetInceptionDistance(feature=JudgeFeatures(judge), reset_real_features=False)
        self.fid.to(real.device)
        with torch.no_grad():
            for batch in real.split(batch_size):
                self.fid.update(batch, real=True)

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor) -> float:
        self.fid.reset()  # forgets the fakes only (reset_real_features=False)
        for batch in fake.split(self.batch_size):
            self.fid.update(batch, real=False)
        return float(self.fid.compute())


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020) of `fake`
    features (M, D) against `real` features (N, D), with k-nearest-neighbour balls (k = 5: Naeem et al.).

    Each point's ball reaches its k-th nearest neighbour in its own set (itself not counted).
        precision = share of fakes inside at least one real ball                 (fidelity)
        recall    = share of reals inside at least one fake ball                 (diversity)
        density   = sum over fakes of the number of real balls holding it / (k M)  (fidelity; about 1 when
                    fake and real come from one distribution, above 1 where fakes crowd dense real regions)
        coverage  = share of reals whose own ball holds at least one fake        (diversity, robust to outliers)
    Balls are closed (distance <= radius). With the reference code's strict `<` (clovaai/generative-evaluation-
    prdc), duplicated points get radius 0 and nothing is ever inside their balls, so identical sets score 0.
    Distances are computed exactly (no matmul shortcut), so identical points are exactly 0 apart.
    """
    real, fake = real.double().flatten(1), fake.double().flatten(1)
    real_radii = _knn_radii(real, k)  # (N,)
    fake_radii = _knn_radii(fake, k)  # (M,)
    distance = torch.cdist(real, fake, compute_mode="donot_use_mm_for_euclid_dist")  # (N, M)
    in_real_ball = distance <= real_radii[:, None]  # [i, j]: fake j inside real i's ball
    in_fake_ball = distance <= fake_radii[None, :]  # [i, j]: real i inside fake j's ball
    return {
        "precision": float(in_real_ball.any(0).double().mean()),
        "recall": float(in_fake_ball.any(1).double().mean()),
        "density": float(in_real_ball.sum(0).double().mean() / min(k, len(real) - 1)),
        "coverage": float(in_real_ball.any(1).double().mean()),
    }


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x (N, D) to its k-th nearest other row (k capped at N - 1)."""
    if len(x) < 2:
        raise ValueError(f"precision/recall need at least 2 points per set, got {len(x)}")
    distance = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N), 0 on the diagonal
    return distance.kthvalue(min(k, len(x) - 1) + 1, dim=1).values  # the smallest is the point itself


def class_histogram(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Share of samples per class (sums to 1)."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).double()
    return (counts / counts.sum().clamp(min=1)).numpy()


def mode_collapse(histogram: np.ndarray, *, above: float = 0.40, below: float = 0.02) -> bool:
    """Issue 5's alarm: one class above 40% of samples, or any class under 2%."""
    return bool(histogram.max() > above or histogram.min() < below)


def coverage_metrics(histogram: np.ndarray, prefix: str = "eval/") -> dict[str, float]:
    metrics = {f"{prefix}class_{c}": float(p) for c, p in enumerate(histogram)}
    metrics[f"{prefix}classes_present"] = float((histogram > 0).sum())
    metrics[f"{prefix}class_max"] = float(histogram.max())
    metrics[f"{prefix}class_min"] = float(histogram.min())
    return metrics


def reconstruction_errors(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """BCE and MSE per pixel (mean over pixels and images), the Keras blog's figures of merit."""
    x_hat = x_hat.clamp(1e-7, 1 - 1e-7)  # written out (not F.binary_cross_entropy) so a NaN stays a NaN
    bce = -(x * torch.log(x_hat) + (1 - x) * torch.log1p(-x_hat)).mean()
    return {
        "bce_per_pixel": float(bce),
        "mse_per_pixel": float(F.mse_loss(x_hat, x)),
    }


class DiscriminatorWatch:
    """Alarm when the discriminator wins outright: its loss stays within `threshold` of its floor for `patience`
    steps. The floor is 0, or with one-sided label smoothing s the entropy of the real target 1 - s (0.325 at 0.1),
    the least a perfect discriminator can score."""

    def __init__(self, threshold: float, patience: int, smoothing: float = 0.0):
        self.threshold, self.patience, self.run = threshold, patience, 0
        p = 1.0 - smoothing
        self.floor = 0.0 if smoothing == 0 else -(p * math.log(p) + (1 - p) * math.log(1 - p))

    def update(self, d_loss: float) -> bool:
        self.run = self.run + 1 if d_loss - self.floor < self.threshold else 0
        return self.run >= self.patience
