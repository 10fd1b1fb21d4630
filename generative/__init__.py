"""Generative models: one module per kind (gan, dcgan, vae, ae, seq2seq_ae) and the classifier that judges them.

`generative.load(run_dir)` returns a trained model with `sample`, and `encode` / `decode` for autoencoders
(generative/model.py).
"""

from __future__ import annotations


def load(run_dir, checkpoint: str = "last"):
    """The model saved in `run_dir` (a run folder or a downloaded model artifact) as a generative.model object."""
    from generative.model import load as load_model  # imported on use: `import generative.data` stays light

    return load_model(run_dir, checkpoint=checkpoint)
