"""Any dlforge network spec as a stable-baselines3 features extractor.

    from networks.sb3 import FeaturesExtractor
    policy_kwargs = dict(
        features_extractor_class=FeaturesExtractor,
        features_extractor_kwargs=dict(spec={"type": "cnn", "conv": [[16, 3, 2]], "hidden": [64]}),
    )
    model = stable_baselines3.PPO("CnnPolicy", env, policy_kwargs=policy_kwargs)

Image scaling: SB3's policies divide uint8 image observations by 255 before calling the extractor
(`preprocess_obs`, on by default through `normalize_images=True`), so this extractor does *not*
scale again; it receives floats in [0, 1], as `networks.build` expects. With `normalize_images=False`
it receives 0..255 floats unchanged, exactly like SB3's own NatureCNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from networks.builder import build
from networks.errors import ConfigError
from networks.recurrent import RecurrentEncoder


class FeaturesExtractor(BaseFeaturesExtractor):
    """`networks.build(spec, obs_shape, features_dim)` behind SB3's features-extractor interface.

    spec: a network spec or preset name; None picks `nature_cnn` for image spaces, `mlp` otherwise
    (SB3's own defaults: NatureCNN and a flatten + MLP). features_dim: None keeps the network's
    own feature size (512 for nature_cnn, the last hidden width for an mlp); an int adds a final
    Linear to that size. Recurrent specs are refused: SB3 extractors carry no state.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        spec: str | Mapping[str, Any] | None = None,
        features_dim: int | None = None,
        *,
        field: str = "network",
    ):
        shape = _input_shape(observation_space, field)
        if spec is None:
            spec = "nature_cnn" if is_image_space(observation_space) else "mlp"
        net = build(spec, shape, output_dim=features_dim, field=field)
        if isinstance(net, RecurrentEncoder):
            raise ConfigError(field, "SB3 features extractors are stateless; use a feed-forward spec (mlp, cnn, ...)")
        super().__init__(observation_space, net.output_dim)
        self.net = net

    def forward(self, observations: torch.Tensor) -> torch.Tensor:  # (B, *obs_shape) -> (B, features_dim)
        return self.net(observations)


def _input_shape(space: spaces.Space, field: str) -> tuple[int, ...]:
    """The shape SB3's preprocess_obs hands the extractor: Box as is, discrete spaces one-hot and flat."""
    if isinstance(space, spaces.Box):
        return tuple(int(n) for n in space.shape)
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        return (int(get_flattened_obs_dim(space)),)
    raise ConfigError(field, f"observation space {space} is not supported (Box, Discrete, MultiDiscrete, MultiBinary)")
