"""dlforge's shared encoder zoo: build networks from config specs, save and load checkpoints.

    import networks
    net = networks.build({"type": "mlp", "hidden": [256, 256]}, (4,), output_dim=2)
    net = networks.build("nature_cnn", (4, 84, 84))       # 512 features, like SB3's NatureCNN
    q = networks.DuelingHead(net.output_dim, n_actions=6)

`networks.sb3` (stable-baselines3 features extractor) is imported on its own, to keep SB3 out of
every import of this package.
"""

from networks import io, runtime
from networks.activations import ACTIVATIONS, activation
from networks.builder import build, resolve
from networks.errors import CheckpointError, ConfigError
from networks.heads import DuelingHead, QHead
from networks.presets import PRESETS
from networks.recurrent import RecurrentEncoder
from networks.shapes import conv_output_size, count_params

__all__ = [
    "ACTIVATIONS",
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DuelingHead",
    "QHead",
    "RecurrentEncoder",
    "activation",
    "build",
    "conv_output_size",
    "count_params",
    "io",
    "resolve",
    "runtime",
]
