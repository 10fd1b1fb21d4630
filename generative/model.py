"""A trained generative model as an object: `generative.load(run_dir)`.

    model = generative.load("runs/vae")
    images = model.sample(16, seed=0)        # (16, C, H, W) in [0, 1]   (gan, dcgan, vae)
    threes = model.sample(16, label=3)       # a class-conditional dcgan: one digit (without label: class rows)
    codes = model.encode(images)             # (16, latent)              (vae: the posterior mean; ae; seq2seq_ae)
    again = model.decode(codes)              # (16, C, H, W) in [0, 1]

`run_dir` is any folder with a config.yaml and checkpoints/ (a run folder, or a downloaded W&B model artifact);
the newest checkpoint is used unless `checkpoint="best"`. Inputs and outputs are NumPy arrays on the CPU, one item
or a batch. A plain autoencoder has no prior: its `sample` says so; `dlforge generate` reconstructs instead.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from generative.adversarial import to_unit
from generative.common import restore_tree, spec_of
from networks import pretrained
from networks.errors import ConfigError
from networks.export_graph import ExportGraph
from networks.run_folder import load_checkpoint, read_run_config
from networks.typed_config import from_dict

MODULES = {  # the generative kinds that load as a model (classify runs hold a judge, not a generator)
    "gan": "generative.gan",
    "dcgan": "generative.dcgan",
    "vae": "generative.vae",
    "ae": "generative.ae",
    "seq2seq_ae": "generative.seq2seq_ae",
}


class GenerativeModel:
    """A loaded run: `config`, `kind`, and the parts its kind has (sample, encode, decode)."""

    def __init__(self, kind: str, config: Any, tree: dict, meta: dict):
        self.kind, self.config, self.tree = kind, config, tree
        self.module = importlib.import_module(MODULES[kind])
        self.checkpoint = {"step": meta.get("step")}
        self._networks: dict[str, nn.Module] | None = None

    def __repr__(self) -> str:
        return f"<{self.kind} model, checkpoint at step {self.checkpoint['step']}>"

    def sample(self, n: int, seed: int = 0, label: int | None = None) -> np.ndarray:
        """`n` images (n, C, H, W) in [0, 1] from z ~ N(0, I) drawn with `seed`; the same seed, the same images.
        What `dlforge generate` draws: the averaged generator when the run kept one; a class-conditional run draws
        `label` only, or without it ceil(n / classes) of each class in class order (so n rounds up)."""
        if self.kind in ("ae", "seq2seq_ae"):
            raise ConfigError("sample", f"{self.kind} runs have no prior to sample from; use encode/decode (or a vae)")
        if not isinstance(n, int) or n < 1:
            raise ConfigError("n", f"must be an integer >= 1, got {n!r}")
        if label is not None and not self.num_classes:
            raise ConfigError("label", f"this {self.kind} run does not draw by class (conditional dcgan runs do)")
        drawn_by_class = {} if label is None else {"label": label}
        images = self.module.generate(self.config, self.tree, n=n, seed=seed, **drawn_by_class)
        return np.asarray(images, dtype=np.float32)

    @property
    def num_classes(self) -> int:
        """The classes a conditional generator draws from; 0 for every other model."""
        if self.kind not in ("gan", "dcgan"):
            return 0
        return int(spec_of(self.tree, "generator").get("num_classes", 0))

    def generator(self) -> nn.Module:
        """The network z (B, latent) [, labels (B,)] -> image (B, C, H, W) in [0, 1], in eval mode (for export).
        GANs give the averaged generator when the run kept one, as `sample` does."""
        if self.kind in ("gan", "dcgan"):
            spec = spec_of(self.tree, "generator")
            network, _ = self.module.build_networks(self.config, tuple(spec["image_shape"]), self.num_classes)
            restore_tree(self.tree, {"generator_ema" if spec.get("ema") else "generator": network})
            return _ToUnit(network, tanh_output=True).eval()
        if self.kind in ("vae", "ae"):
            return _ToUnit(self._parts()["decoder"], tanh_output=False).eval()
        raise ConfigError("run", f"a '{self.kind}' run decodes sequences, not images; it has no image generator")

    def graph(self) -> ExportGraph:
        """z (N, latent) [, label (N,) int64 for a conditional generator] -> image (N, C, H, W) in [0, 1]."""
        batch = max(2, self.num_classes)  # the example labels span every class: export checks draw from their range
        example = {"z": torch.randn(batch, self.latent_dim, generator=torch.Generator().manual_seed(0))}
        if self.num_classes:
            example["label"] = torch.arange(batch) % self.num_classes
        return ExportGraph(self.generator(), example, ["image"], dict.fromkeys(example, 0))

    @property
    def latent_dim(self) -> int:
        if self.kind in ("gan", "dcgan"):
            return int(spec_of(self.tree, "generator")["latent_dim"])
        return int(self.config.latent_dim if self.kind == "vae" else self.config.code_dim)

    def encode(self, x: Any) -> np.ndarray:
        """Images (N, C, H, W) in [0, 1] (or sequences (N, T, F) for seq2seq_ae) -> codes (N, latent)."""
        parts = self._parts()
        batch, single = self._batch(x)
        with torch.no_grad():
            if self.kind == "vae":
                codes = parts["mu"](parts["encoder"](batch))  # the posterior mean
            elif self.kind == "ae":
                codes = parts["encoder"](batch)
            else:
                stats = spec_of(self.tree, "encoder")
                standard = (batch - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
                codes = parts["model"].encode(standard.float())
        codes = codes.numpy()
        return codes[0] if single else codes

    def decode(self, z: Any, steps: int | None = None) -> np.ndarray:
        """Codes (N, latent) -> images (N, C, H, W) in [0, 1]; seq2seq_ae: sequences (N, steps, F)."""
        parts = self._parts()
        codes = torch.as_tensor(np.asarray(z, dtype=np.float32))
        single = codes.ndim == 1
        if codes.ndim not in (1, 2) or codes.shape[-1] != self.latent_dim:
            dim = self.latent_dim
            raise ConfigError("z", f"expected shape ({dim},) or (N, {dim}), got {tuple(codes.shape)}")
        codes = codes.reshape(-1, self.latent_dim)
        with torch.no_grad():
            if self.kind == "seq2seq_ae":
                stats = spec_of(self.tree, "encoder")
                out = parts["model"].decode(codes, steps or self.config.seq_len)
                out = out * torch.tensor(stats["std"]) + torch.tensor(stats["mean"])
            else:
                out = torch.sigmoid(parts["decoder"](codes))
        out = out.float().numpy()
        return out[0] if single else out

    def _parts(self) -> dict[str, nn.Module]:
        """The encoder and decoder parts (and the whole `model`), built from the checkpoint once."""
        if self._networks is None:
            self._networks = self._build_parts()
        return self._networks

    def _build_parts(self) -> dict[str, nn.Module]:
        if self.kind == "vae":
            model = self.module.VAE(self.config, tuple(spec_of(self.tree, "decoder")["image_shape"]))
            parts = model.parts()
        elif self.kind == "ae":
            model = self.module.Autoencoder(self.config, tuple(spec_of(self.tree, "decoder")["image_shape"]))
            parts = {"encoder": model.encoder, "decoder": model.decoder}
        elif self.kind == "seq2seq_ae":
            model = self.module.SequenceAutoencoder(self.config, spec_of(self.tree, "encoder")["input_shape"][0])
            parts = {"encoder": model.encoder, "decoder": model.decoder}
        else:
            raise ConfigError("run", f"a '{self.kind}' run has no encoder; encode/decode take vae, ae, seq2seq_ae")
        restore_tree(self.tree, parts)
        model.eval()
        return {**parts, "model": model}

    def _batch(self, x: Any) -> tuple[torch.Tensor, bool]:
        array = np.asarray(x, dtype=np.float32)
        if self.kind == "seq2seq_ae":
            shape = tuple(spec_of(self.tree, "encoder")["input_shape"])
            ok_single, ok_batch = array.ndim == 2 and array.shape[1:] == shape, array.ndim == 3
            expected = f"(T, {shape[0]}) or (N, T, {shape[0]})"
        else:
            shape = tuple(spec_of(self.tree, "decoder")["image_shape"])
            ok_single, ok_batch = array.shape == shape, array.ndim == 4
            expected = f"{shape} or (N, {', '.join(map(str, shape))})"
        if not (ok_single or (ok_batch and array.shape[-len(shape) :] == shape and len(array) > 0)):
            raise ConfigError("x", f"expected shape {expected}, got {array.shape}")
        return torch.from_numpy(array[None] if ok_single else array), ok_single


class _ToUnit(nn.Module):
    """A generator or decoder with its output mapped to [0, 1]: (tanh + 1) / 2, or a sigmoid of logits."""

    def __init__(self, network: nn.Module, tanh_output: bool):
        super().__init__()
        self.network, self.tanh_output = network, tanh_output

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:  # names as in graph()
        out = self.network(z) if label is None else self.network(z, label)
        return to_unit(out) if self.tanh_output else torch.sigmoid(out)


def load(run_dir: str | Path, checkpoint: str = "last") -> GenerativeModel:
    """The generative model of a run folder (or a downloaded artifact folder); see the module docstring."""
    document = read_run_config(run_dir)
    kind = document.get("kind")
    if kind not in MODULES:
        message = f"{run_dir} is a '{kind}' run, which holds no generative model"
        raise ConfigError("run", f"{message}; generative.load takes {', '.join(MODULES)} runs")
    module = importlib.import_module(MODULES[kind])
    config = from_dict(module.Config, {k: v for k, v in document.items() if k not in ("kind", "tracking")}, "")
    pretrained.use_kept_copy(config, run_dir)  # a network started from another run builds from the run's copy
    tree, meta, _ = load_checkpoint(Path(run_dir), checkpoint)
    return GenerativeModel(kind, config, tree, meta)
