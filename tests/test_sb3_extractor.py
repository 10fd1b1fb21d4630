"""stable-baselines3's own DQN and PPO train through networks.sb3.FeaturesExtractor.

These check that training runs (steps reached, weights moved), not how well it learns.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO

from networks import ConfigError
from networks.sb3 import FeaturesExtractor

MLP_SPEC = {"type": "mlp", "hidden": [32]}
CNN_SPEC = {"type": "cnn", "conv": [[8, 3, 2], [16, 3, 2]], "hidden": [32]}  # 16 -> 7 -> 3


class BrightSide(gym.Env):
    """1x16x16 uint8 images with a bright 4x4 square on the left or right; say which side (16 steps)."""

    observation_space = gym.spaces.Box(0, 255, (1, 16, 16), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.steps = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(action == self.side)
        self.steps += 1
        return self._observe(), reward, False, self.steps >= 16, {}

    def _observe(self) -> np.ndarray:
        self.side = int(self.np_random.integers(2))
        image = self.np_random.integers(0, 40, (1, 16, 16), dtype=np.uint8)
        row = int(self.np_random.integers(0, 12))
        image[0, row : row + 4, 2 + 10 * self.side : 6 + 10 * self.side] = 255
        return image


@pytest.fixture(autouse=True)
def one_torch_thread():
    """SB3 runs thousands of tiny forward passes; two threads on two shared cores made DQN 17x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _policy_kwargs(spec: dict) -> dict:
    return {
        "features_extractor_class": FeaturesExtractor,
        "features_extractor_kwargs": {"spec": spec},
        "net_arch": [],  # our extractor is the whole body; SB3 adds only its output layers
    }


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def _record_inputs(extractor: torch.nn.Module) -> list[float]:
    seen: list[float] = []
    extractor.register_forward_pre_hook(lambda _m, args: seen.append(float(args[0].max())))
    return seen


@pytest.mark.parametrize(
    ("env_factory", "policy", "spec"),
    [(lambda: gym.make("CartPole-v1"), "MlpPolicy", MLP_SPEC), (BrightSide, "CnnPolicy", CNN_SPEC)],
    ids=["cartpole-mlp", "image-cnn"],
)
def test_sb3_dqn_trains_through_extractor(env_factory, policy: str, spec: dict) -> None:
    model = DQN(
        policy,
        env_factory(),
        learning_starts=200,
        buffer_size=2_000,
        batch_size=32,
        train_freq=4,
        target_update_interval=250,
        policy_kwargs=_policy_kwargs(spec),
        seed=0,
        device="cpu",
    )
    extractor = model.q_net.features_extractor
    assert isinstance(extractor, FeaturesExtractor) and extractor.features_dim == 32
    before = _snapshot(extractor)
    seen = _record_inputs(extractor)
    model.learn(total_timesteps=2_000)
    assert model.num_timesteps >= 2_000
    assert _moved(before, extractor)
    if policy == "CnnPolicy":  # SB3 scaled uint8 images to [0, 1] exactly once: 255 -> 1.0, not 1/255
        assert max(seen) == 1.0


@pytest.mark.parametrize(
    ("env_factory", "policy", "spec"),
    [(lambda: gym.make("CartPole-v1"), "MlpPolicy", MLP_SPEC), (BrightSide, "CnnPolicy", CNN_SPEC)],
    ids=["cartpole-mlp", "image-cnn"],
)
def test_sb3_ppo_trains_through_extractor(env_factory, policy: str, spec: dict) -> None:
    model = PPO(
        policy,
        env_factory(),
        n_steps=512,
        batch_size=128,
        n_epochs=2,
        policy_kwargs=_policy_kwargs(spec),
        seed=0,
        device="cpu",
    )
    extractor = model.policy.features_extractor
    assert isinstance(extractor, FeaturesExtractor)
    before = _snapshot(extractor)
    seen = _record_inputs(extractor)
    model.learn(total_timesteps=2_048)
    assert model.num_timesteps >= 2_048
    assert _moved(before, extractor)
    if policy == "CnnPolicy":
        assert max(seen) == 1.0


def test_defaults_follow_sb3() -> None:
    flat = FeaturesExtractor(gym.spaces.Box(-1, 1, (4,), np.float32))
    assert flat.features_dim == 64  # mlp preset, SB3's [64, 64]
    atari = FeaturesExtractor(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert atari.features_dim == 512  # nature_cnn, like SB3's NatureCNN
    projected = FeaturesExtractor(gym.spaces.Box(-1, 1, (4,), np.float32), spec=MLP_SPEC, features_dim=10)
    assert projected.features_dim == 10
    assert projected(torch.zeros(3, 4)).shape == (3, 10)
    one_hot = FeaturesExtractor(gym.spaces.Discrete(5), spec=MLP_SPEC)
    assert one_hot(torch.zeros(2, 5)).shape == (2, 32)


@pytest.mark.parametrize(
    ("space", "spec", "message"),
    [
        (BrightSide.observation_space, None, "network: input shape (1, 16, 16) is too small"),  # nature_cnn
        (gym.spaces.Box(-1, 1, (4,), np.float32), {"type": "lstm"}, "network: SB3 features extractors are stateless"),
        (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), MLP_SPEC, "network: observation space Dict"),
        (gym.spaces.Box(-1, 1, (4,), np.float32), {"type": "mlp", "activation": "rlu"}, "network.activation"),
    ],
)
def test_bad_extractor_inputs_are_config_errors(space: gym.Space, spec: dict | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeaturesExtractor(space, spec=spec)
    assert str(info.value).startswith(message)
