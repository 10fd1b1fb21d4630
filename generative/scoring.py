"""The judge's view of generated images, shared by gan, dcgan and vae.

A LeNet judge (trained on the data's own training split, or loaded from a `classify` run) scores each evaluation's
samples: the Fréchet LeNet distance, precision / recall / density / coverage on its features, the share of
samples per class and, for class-conditional generators, how often it sees the class that was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from generative.classifier import fit_judge, load_judge
from generative.common import ImageOptions
from generative.data import Images
from generative.metrics import (
    FrechetLeNetDistance,
    JudgeFeatures,
    class_histogram,
    coverage_metrics,
    mode_collapse,
    prdc,
)
from networks.errors import ConfigError


@dataclass
class JudgedOptions(ImageOptions):
    """Options of the kinds whose samples the judge scores."""

    eval_samples: int = field(default=1000, metadata={"ge": 2})  # samples for FLD, PRDC and class coverage
    judge: str | None = None  # a `classify` run folder; None trains a LeNet judge on the data (seconds)
    judge_steps: int = field(default=1500, metadata={"ge": 0})  # steps for that judge; 0 = no judge metrics


class Scorer:
    """Scores samples in [0, 1] against the test split; `score` returns {} when there is no judge (no labels, or
    judge_steps 0 and no judge run)."""

    def __init__(self, config: JudgedOptions, data: Images, device: torch.device, tracker, alarms=None):
        self.alarms, self.judge, self.fld = alarms, None, None
        if data.y_train is None or not (config.judge or config.judge_steps > 0):
            return
        judge = (
            load_judge(config.judge)
            if config.judge
            else fit_judge(data, steps=config.judge_steps, seed=config.seed, device=device)
        )
        if judge.input_shape[0] != data.shape[0]:
            raise ConfigError("judge", f"the judge takes {judge.input_shape} images, the data are {data.shape}")
        self.judge = judge.to(device)
        self.features = JudgeFeatures(self.judge)
        real = torch.from_numpy(data.x_test).to(device)
        accuracy = float((self.judge.predict(real).cpu() == torch.from_numpy(data.y_test)).float().mean())
        tracker.log({"eval/judge_accuracy": accuracy}, 0)
        self.fld = FrechetLeNetDistance(self.judge, real)
        self.real_features = self._features(real)

    @property
    def num_classes(self) -> int:
        return 0 if self.judge is None else self.judge.num_classes

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.features(b) for b in x.split(500)])  # (N, 84) for LeNet-5

    @torch.no_grad()
    def score(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """FLD, PRDC and class shares of `samples` (N, C, H, W) in [0, 1]; with `labels` (the classes asked
        for), `eval/label_accuracy`: the share the judge puts in the asked class, averaged over classes."""
        if self.judge is None:
            return {}
        predicted = self.judge.predict(samples)
        histogram = class_histogram(predicted, self.judge.num_classes)
        metrics = {
            "eval/fld": self.fld(samples),
            **{f"eval/{name}": value for name, value in prdc(self.real_features, self._features(samples)).items()},
            **coverage_metrics(histogram),
        }
        if self.alarms is not None:
            metrics["eval/alarm_mode_collapse"] = float(
                mode_collapse(histogram, above=self.alarms.class_above, below=self.alarms.class_below)
            )
        if labels is not None:
            labels = labels.to(predicted.device)
            hits = [(predicted[labels == c] == c).float().mean().item() for c in labels.unique().tolist()]
            metrics["eval/label_accuracy"] = float(np.mean(hits))
        return metrics
