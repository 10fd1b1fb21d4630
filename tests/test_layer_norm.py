"""`norm: layer` in network specs: where LayerNorm goes, parameter counts, what it does, and that default-off nets
(and their published parameter counts) are unchanged."""

import pytest
import torch
from torch import nn

import networks
from agents import dqn, evaluation
from networks import PRESETS, build, count_params

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def test_mlp_puts_layer_norm_after_each_hidden_linear_before_its_activation():
    # PQN's CartPole network in purejaxql (pqn_cartpole.yaml): 2 hidden layers of 256, LayerNorm, ReLU
    net = build({"type": "mlp", "hidden": [256, 256], "norm": "layer"}, (4,), output_dim=2)
    kinds = [type(m) for m in net.mlp]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.ReLU] * 2
    assert isinstance(net.out, nn.Linear)  # the Q values are not normalised
    assert [m.normalized_shape for m in net.mlp if isinstance(m, nn.LayerNorm)] == [(256,), (256,)]
    # (4·256 + 256) + 2·256 + (256·256 + 256) + 2·256 + (256·2 + 2): each LayerNorm adds a scale and a shift
    assert count_params(net) == 1_280 + 512 + 65_792 + 512 + 514 == 68_610
    plain = build({"type": "mlp", "hidden": [256, 256]}, (4,), output_dim=2)
    assert count_params(net) - count_params(plain) == 2 * (2 * 256)
    assert net(torch.randn(5, 4)).shape == (5, 2)


def test_cnn_normalises_conv_and_hidden_layers():
    # the MinAtar paper's network (16 3x3 filters, 128 hidden) with PQN's norm, for Breakout's 4 channels, 3 actions
    spec = {"type": "cnn", "conv": [[16, 3, 1]], "hidden": [128], "norm": "layer"}
    net = build(spec, (4, 10, 10), output_dim=3)
    assert [type(m) for m in net.conv] == [nn.Conv2d, nn.GroupNorm, nn.ReLU]
    assert net.conv[1].num_groups == 1  # one group: statistics over all of (C, H, W), per sample
    assert [type(m) for m in net.mlp] == [nn.Linear, nn.LayerNorm, nn.ReLU]
    # conv 4·16·9 + 16 = 592, its norm 2·16, hidden 1024·128 + 128, its norm 2·128, out 128·3 + 3
    assert count_params(net) == 592 + 32 + 131_200 + 256 + 387 == 132_467
    assert count_params(build({**spec, "norm": "none"}, (4, 10, 10), output_dim=3)) == 132_467 - 32 - 256
    assert net(torch.rand(6, 4, 10, 10)).shape == (6, 3)


def test_layer_norm_gives_each_sample_zero_mean_unit_variance_features():
    net = build({"type": "cnn", "conv": [[8, 3, 1]], "hidden": [32], "norm": "layer"}, (2, 6, 6))
    seen = {}
    net.conv[1].register_forward_hook(lambda m, i, out: seen.__setitem__("conv", out))
    net.mlp[1].register_forward_hook(lambda m, i, out: seen.__setitem__("hidden", out))
    net(5.0 + 3.0 * torch.randn(4, 2, 6, 6))  # far from zero mean, unit scale
    for out in seen.values():  # at initialisation the scale is 1 and the shift 0
        flat = out.flatten(1)  # (B, features)
        assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-5)
        assert torch.allclose(flat.var(1, unbiased=False), torch.ones(4), atol=1e-3)


def test_recurrent_nets_take_it_through_their_pre_network():
    net = build({"type": "lstm", "hidden_size": 16, "pre": {"type": "mlp", "hidden": [8], "norm": "layer"}}, (3,))
    assert [type(m) for m in net.pre.mlp] == [nn.Linear, nn.LayerNorm, nn.ReLU]
    features, _ = net(torch.randn(2, 5, 3))
    assert features.shape == (2, 5, 16)


def test_an_agent_kind_gets_it_from_its_network_spec():
    config = dqn.Config(env_id="CartPole-v1", network={"type": "mlp", "hidden": [64, 64], "norm": "layer"})
    q_net = dqn.build_q_network(config, evaluation.make_env(config, 1, 0))
    assert sum(isinstance(m, nn.LayerNorm) for m in q_net.modules()) == 2


@pytest.mark.parametrize("name", [name for name in PRESETS if name not in ("lstm", "gru", "resnet18")])
def test_default_off_adds_no_norm_layer_to_any_preset(name):
    shape = (3, 224, 224) if name in ("alexnet", "vgg16") else (4, 84, 84) if name == "nature_cnn" else (1, 32, 32)
    with torch.device("meta"):  # shapes and counts only: AlexNet and VGG-16 hold tens of millions of weights
        net = build(name, shape)
    assert not any(isinstance(m, NORM_TYPES) for m in net.modules())


def test_default_off_keeps_published_parameter_counts():
    assert count_params(build("lenet5", (1, 32, 32), output_dim=10)) == 61_706  # LeCun et al. 1998
    assert count_params(build("nature_cnn", (4, 84, 84))) == 1_684_128  # SB3's NatureCNN, 512 features
    assert count_params(build("mlp", (4,), output_dim=2)) == (4 * 64 + 64) + (64 * 64 + 64) + (64 * 2 + 2)


def test_a_misspelt_norm_is_one_config_error():
    with pytest.raises(networks.ConfigError, match=r"network.norm: unknown norm 'layernorm' \(did you mean 'layer'"):
        build({"type": "mlp", "hidden": [8], "norm": "layernorm"}, (4,))
