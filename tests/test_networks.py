"""networks.build for mlp / cnn / lstm / gru specs, the conv size formula, heads, and one-line errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import networks
from networks import ConfigError, DuelingHead, QHead, build, conv_output_size, count_params

# --- conv arithmetic -------------------------------------------------------------------------

# (n, f, p, s, expected): seed notes first, then NatureCNN, AlexNet and LeNet layers.
CONV_CASES = [
    (6, 3, 0, 1, 4),  # 6x6 input, 3x3 filter -> 4x4
    (6, 3, 1, 1, 6),  # padding 1 keeps 6x6
    (7, 3, 0, 2, 3),
    (8, 3, 1, 2, 4),
    (5, 2, 0, 2, 2),  # floor: the last odd column is dropped
    (84, 8, 0, 4, 20),  # NatureCNN conv1
    (20, 4, 0, 2, 9),  # NatureCNN conv2
    (9, 3, 0, 1, 7),  # NatureCNN conv3
    (224, 11, 2, 4, 55),  # AlexNet conv1
    (32, 5, 0, 1, 28),  # LeNet C1
    (28, 2, 0, 2, 14),  # LeNet S2 (pooling uses the same formula, p = 0)
    (28, 5, 2, 1, 28),
    (3, 3, 0, 1, 1),
]


@pytest.mark.parametrize(("n", "f", "p", "s", "expected"), CONV_CASES)
def test_conv_output_size_matches_formula_and_torch(n: int, f: int, p: int, s: int, expected: int) -> None:
    assert conv_output_size(n, f, p, s) == expected
    conv = nn.Conv2d(1, 1, f, stride=s, padding=p)
    assert conv(torch.zeros(1, 1, n, n)).shape[-2:] == (expected, expected)


def test_seed_notes_conv_layer_has_30_parameters() -> None:
    assert count_params(nn.Conv2d(1, 3, 3)) == 3 * (3 * 3) + 3 == 30
    net = build({"type": "cnn", "conv": [[3, 3]]}, (1, 6, 6))
    assert count_params(net) == 30
    assert net.output_dim == 3 * 4 * 4
    assert net(torch.zeros(2, 1, 6, 6)).shape == (2, 48)


def test_count_params_can_skip_frozen() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    net[0].requires_grad_(False)
    assert count_params(net) == 9 + 4
    assert count_params(net, trainable_only=True) == 4


# --- mlp ---------------------------------------------------------------------------------------


def test_mlp_shapes_and_output_layer() -> None:
    net = build({"type": "mlp", "hidden": [32, 16]}, (4,))
    assert net.output_dim == 16
    assert net(torch.zeros(5, 4)).shape == (5, 16)
    assert count_params(net) == (4 * 32 + 32) + (32 * 16 + 16)

    q = build({"type": "mlp", "hidden": [32, 16]}, (4,), output_dim=2)
    assert q.output_dim == 2 and isinstance(q.out, nn.Linear)
    assert q(torch.zeros(5, 4)).shape == (5, 2)


def test_mlp_flattens_any_input_and_preset_defaults() -> None:
    net = build("mlp", (2, 3, 4))
    assert net.output_dim == 64  # SB3's [64, 64]
    assert net(torch.zeros(7, 2, 3, 4)).shape == (7, 64)
    assert build({"type": "mlp", "hidden": []}, (2, 3)).output_dim == 6
    assert build("mlp", 5).output_dim == 64  # an int shape means (5,)


@pytest.mark.parametrize(("norm", "layer_type"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_norm_dropout_activation(norm: str, layer_type: type) -> None:
    net = build({"type": "mlp", "hidden": [8, 8], "norm": norm, "dropout": 0.25, "activation": "tanh"}, (3,))
    kinds = [type(m) for m in net.mlp]
    assert kinds == [nn.Linear, layer_type, nn.Tanh, nn.Dropout] * 2
    assert net.mlp[3].p == 0.25
    assert net(torch.randn(4, 3)).shape == (4, 8)


def test_orthogonal_init_and_zero_bias() -> None:
    net = build({"type": "mlp", "hidden": [16], "init": "orthogonal"}, (32,), output_dim=4)
    weight = net.mlp[0].weight  # (16, 32): orthonormal rows scaled by relu's gain sqrt(2)
    assert torch.allclose(weight @ weight.T, 2.0 * torch.eye(16), atol=1e-5)
    assert torch.all(net.mlp[0].bias == 0)
    out = net.out.weight  # the output layer keeps gain 1
    assert torch.allclose(out @ out.T, torch.eye(4), atol=1e-5)


@pytest.mark.parametrize("init", ["default", "orthogonal", "xavier", "kaiming"])
def test_every_init_builds_a_working_cnn(init: str) -> None:
    spec = {"type": "cnn", "conv": [[4, 3]], "hidden": [8], "init": init}
    net = build(spec, (1, 8, 8), output_dim=2)
    assert torch.isfinite(net(torch.rand(2, 1, 8, 8))).all()


# --- cnn ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_cnn_padding_same_valid_and_int() -> None:
    def features(layer: dict | list, side: int = 6) -> int:
        return build({"type": "cnn", "conv": [layer]}, (1, side, side)).output_dim

    assert features({"filters": 4, "kernel": 3}) == 4 * 4 * 4  # valid by default
    assert features({"filters": 4, "kernel": 3, "padding": "valid"}) == 4 * 4 * 4
    assert features({"filters": 4, "kernel": 3, "padding": "same"}) == 4 * 6 * 6
    assert features({"filters": 4, "kernel": 4, "padding": "same"}) == 4 * 6 * 6  # even kernel, stride 1
    assert features({"filters": 4, "kernel": 3, "padding": 1}) == 4 * 6 * 6
    assert features({"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}, side=7) == 4 * 4 * 4  # ceil(7/2)
    assert features([4, 3, 2, "same"], side=7) == 4 * 4 * 4


def test_cnn_pooling_max_and_avg_with_size_and_stride() -> None:
    max_net = build({"type": "cnn", "conv": [{"filters": 2, "kernel": 3, "pool": "max"}]}, (1, 6, 6))
    assert isinstance(max_net.conv[-1], nn.MaxPool2d) and max_net.output_dim == 2 * 2 * 2  # 6 -> 4 -> 2
    avg = {"filters": 2, "kernel": 3, "pool": "avg", "pool_size": 3, "pool_stride": 1}
    avg_net = build({"type": "cnn", "conv": [avg]}, (1, 6, 6))
    assert isinstance(avg_net.conv[-1], nn.AvgPool2d) and avg_net.output_dim == 2 * 2 * 2  # 6 -> 4 -> 2


def test_compact_conv_layers_equal_dict_layers() -> None:
    compact = build({"type": "cnn", "conv": [[8, 3, 2, 1], [16, 3]], "hidden": [10]}, (3, 16, 16))
    verbose = build(
        {
            "type": "cnn",
            "conv": [{"filters": 8, "kernel": 3, "stride": 2, "padding": 1}, {"filters": 16, "kernel": 3}],
            "hidden": [10],
        },
        (3, 16, 16),
    )
    assert [p.shape for p in compact.parameters()] == [p.shape for p in verbose.parameters()]
    assert compact(torch.zeros(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize(("norm", "layer_type"), [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm)])
def test_cnn_norm(norm: str, layer_type: type) -> None:
    net = build({"type": "cnn", "conv": [[4, 3]], "norm": norm}, (2, 5, 5))
    assert isinstance(net.conv[1], layer_type)
    assert net(torch.randn(3, 2, 5, 5)).shape == (3, 4 * 3 * 3)


def test_flatten_size_is_worked_out_for_rectangular_images() -> None:
    net = build({"type": "cnn", "conv": [[4, 3, 1], [8, 3, 2]], "hidden": [5]}, (3, 10, 17))
    assert net.mlp[0].in_features == 8 * 3 * 7  # 10 -> 8 -> 3, 17 -> 15 -> 7
    assert net(torch.zeros(2, 3, 10, 17)).shape == (2, 5)


# --- errors ------------------------------------------------------------------------------------

BAD_SPECS = [
    ({"type": "cnn", "conv": [[8, 5]]}, (1, 3, 3), "network: input shape (1, 3, 3) is too small"),
    ("nature_cnn", (4, 20, 20), "network: input shape (4, 20, 20) is too small"),
    ("nature_cnn", (4,), "network: a cnn needs an image input shape (C, H, W), got (4,)"),
    ({"type": "resnet18"}, (8,), "network: a resnet needs an image input shape"),
    ({"type": "mlpp"}, (4,), "network.type: unknown network type or preset 'mlpp' (did you mean 'mlp'?)"),
    ({"type": "lenet5", "activation": "rellu"}, (1, 32, 32), "network.activation: unknown activation 'rellu'"),
    ({"type": "mlp", "hiden": [4]}, (4,), "network.hiden: unknown field for type mlp (did you mean 'hidden'?)"),
    ({"type": "mlp", "hidden": [0]}, (4,), "network.hidden: must be a list of integers >= 1"),
    ({"type": "mlp", "hidden": 64}, (4,), "network.hidden: must be a list of integers >= 1"),
    ({"type": "mlp", "norm": "group"}, (4,), "network.norm: unknown norm 'group'; allowed: none, batch, layer"),
    ({"type": "mlp", "init": "he"}, (4,), "network.init: unknown init 'he'"),
    ({"type": "mlp", "dropout": 1.5}, (4,), "network.dropout: must be a number in [0, 1)"),
    ({"type": "cnn"}, (1, 8, 8), "network.conv: must be a non-empty list of conv layers"),
    ({"type": "cnn", "conv": [[4, 3, 1, "full"]]}, (1, 8, 8), "network.conv[0].padding: unknown padding 'full'"),
    ({"type": "cnn", "conv": [[4, 2, 2, "same"]]}, (1, 8, 8), "network.conv[0].padding: 'same' needs an odd kernel"),
    ({"type": "cnn", "conv": [{"filtres": 4, "kernel": 3}]}, (1, 8, 8), "network.conv[0].filtres: unknown field"),
    ({"type": "cnn", "conv": [{"kernel": 3}]}, (1, 8, 8), "network.conv[0].filters: is required"),
    ({"type": "cnn", "conv": [[4, 3, 1, 0, 9]]}, (1, 8, 8), "network.conv[0]: a compact conv layer is"),
    ({"type": "cnn", "conv": [{"filters": 4, "kernel": 3, "pool": "min"}]}, (1, 8, 8), "network.conv[0].pool"),
    ({"type": "lstm", "hiddensize": 8}, (4,), "network.hiddensize: unknown field for type lstm (did you mean"),
    ({"type": "lstm", "pre": {"type": "gru"}}, (4,), "network.pre: must be a feed-forward spec"),
    ({"type": "gru", "pre": {"type": "mlp", "hidden": [-1]}}, (4,), "network.pre.hidden: must be a list"),
    ({"type": "resnet", "blocks": [1, 1], "widths": [8]}, (3, 32, 32), "network.widths: needs one width per"),
    ({"hidden": [3]}, (4,), "network.type: is required; allowed: mlp, cnn"),
    (42, (4,), "network: must be a preset name or a mapping with a 'type', got 42"),
    ("mlp", (0, 3), "network: input shape must be positive integers"),
]


@pytest.mark.parametrize(("spec", "shape", "message"), BAD_SPECS)
def test_bad_specs_are_one_line_config_errors(spec: object, shape: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(spec, shape)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text and "Traceback" not in text


def test_too_small_input_names_both_shapes_and_the_layer() -> None:
    with pytest.raises(ConfigError) as info:
        build({"type": "cnn", "conv": [[4, 3], [4, 5]]}, (1, 6, 6))
    assert info.value.field == "network"
    assert "(1, 6, 6)" in str(info.value) and "layer 'conv.2' (Conv2d) gets (4, 4, 4)" in str(info.value)


def test_error_field_follows_the_callers_config_path() -> None:
    with pytest.raises(ConfigError, match=r"^generator\.encoder\.activation: "):
        build({"type": "mlp", "activation": "relus"}, (3,), field="generator.encoder")


def test_bad_output_dim() -> None:
    with pytest.raises(ConfigError, match="output_dim: must be an integer >= 1"):
        build("mlp", (3,), output_dim=0)


def test_build_leaves_presets_untouched() -> None:
    before = copy.deepcopy(networks.PRESETS)
    build({"type": "lenet5", "activation": "relu", "hidden": [10]}, (1, 32, 32), output_dim=3)
    assert before == networks.PRESETS


# --- recurrent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_shapes_and_state(cell: str) -> None:
    net = build({"type": cell, "hidden_size": 8, "num_layers": 2}, (3,))
    assert net.output_dim == 8
    features, state = net(torch.randn(4, 5, 3))  # (B, T, F)
    assert features.shape == (4, 5, 8)
    assert len(state) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (2, 4, 8) for s in state)
    step, state = net(torch.randn(4, 3), state)  # one step (B, F)
    assert step.shape == (4, 8)
    zeros = net.initial_state(4, "cpu")
    assert all(torch.equal(z, torch.zeros(2, 4, 8)) for z in zeros)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_call_equals_step_by_step(cell: str) -> None:
    torch.manual_seed(0)
    net = build({"type": cell, "hidden_size": 6}, (3,))
    x = torch.randn(2, 5, 3)
    whole, whole_state = net(x)
    state = None
    steps = []
    for t in range(5):
        out, state = net(x[:, t], state)
        steps.append(out)
    assert torch.allclose(torch.stack(steps, 1), whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(state, whole_state))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_done_mask_resets_state_exactly(cell: str) -> None:
    """done[b, t] restarts sequence b at step t: same as running its two halves with fresh states."""
    torch.manual_seed(0)
    net = build({"type": cell, "hidden_size": 6, "num_layers": 2}, (3,))
    x = torch.randn(2, 6, 3)
    carried = tuple(torch.randn_like(s) for s in net.initial_state(2))  # state from an earlier call
    done = torch.zeros(2, 6, dtype=torch.bool)
    done[0, 3] = True  # sequence 0: a new episode starts at step 3
    features, state = net(x, carried, done)

    first, _ = net(x[:1, :3], tuple(s[:, :1] for s in carried))
    second, state0 = net(x[:1, 3:])  # fresh (zero) state
    assert torch.allclose(features[:1], torch.cat([first, second], 1), atol=1e-6)
    assert all(torch.allclose(s[:, :1], s0, atol=1e-6) for s, s0 in zip(state, state0))

    untouched, state1 = net(x[1:], tuple(s[:, 1:] for s in carried))  # sequence 1 never resets
    assert torch.allclose(features[1:], untouched, atol=1e-6)
    assert all(torch.allclose(s[:, 1:], s1, atol=1e-6) for s, s1 in zip(state, state1))


def test_done_at_first_step_and_float_masks() -> None:
    torch.manual_seed(0)
    net = build({"type": "gru", "hidden_size": 4}, (2,))
    x = torch.randn(3, 4, 2)
    carried = (torch.randn(1, 3, 4),)
    done = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    features, _ = net(x, carried, done)
    fresh, _ = net(x[:1])
    assert torch.allclose(features[:1], fresh, atol=1e-6)
    no_reset, _ = net(x[1:2], (carried[0][:, 1:2],))
    assert torch.allclose(features[1:2], no_reset, atol=1e-6)
    # all-false mask: the same as no mask
    a, _ = net(x, carried, torch.zeros(3, 4))
    b, _ = net(x, carried)
    assert torch.equal(a, b)
    # one step with done (B,)
    step, state = net(x[:, 0], carried, torch.tensor([True, False, False]))
    assert torch.allclose(step[0], fresh[0, 0], atol=1e-6)


def test_recurrent_pre_network_and_output_layer() -> None:
    spec = {"type": "lstm", "hidden_size": 8, "pre": {"type": "mlp", "hidden": [16]}}
    net = build(spec, (5,), output_dim=3)
    assert net.rnn.input_size == 16 and net.output_dim == 3
    features, _ = net(torch.randn(2, 4, 5))
    assert features.shape == (2, 4, 3)

    pixels = {"type": "gru", "hidden_size": 8, "pre": {"type": "cnn", "conv": [[4, 3, 2]], "hidden": [12]}}
    image_net = build(pixels, (1, 9, 9))
    features, (h,) = image_net(torch.rand(2, 3, 1, 9, 9))  # (B, T, C, H, W)
    assert features.shape == (2, 3, 8) and h.shape == (1, 2, 8)
    with pytest.raises(ValueError, match="expected x of shape"):
        image_net(torch.rand(9, 9))


def test_recurrent_state_follows_the_weights_dtype() -> None:
    net = build({"type": "lstm", "hidden_size": 4}, (2,)).double()
    features, (h, c) = net(torch.randn(3, 5, 2, dtype=torch.float64), done=torch.zeros(3, 5))
    assert features.dtype == h.dtype == c.dtype == torch.float64


def test_recurrent_presets() -> None:
    assert build("lstm", (4,)).output_dim == 256
    assert build({"type": "gru", "hidden_size": 32}, (4,)).rnn.hidden_size == 32


# --- heads -------------------------------------------------------------------------------------


def test_q_head() -> None:
    head = QHead(8, 3)
    assert head.output_dim == 3 and head(torch.zeros(5, 8)).shape == (5, 3)


@pytest.mark.parametrize("hidden", [None, 16])
def test_dueling_head_is_value_plus_centred_advantage(hidden: int | None) -> None:
    torch.manual_seed(0)
    head = DuelingHead(8, 4, hidden=hidden)
    features = torch.randn(5, 8)
    q = head(features)
    value, advantage = head.value(features), head.advantage(features)
    assert q.shape == (5, 4) and value.shape == (5, 1)
    assert torch.allclose(q, value + advantage - advantage.mean(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(q.mean(dim=1, keepdim=True), value, atol=1e-6)  # V is the mean Q value


def test_dueling_head_by_hand() -> None:
    head = DuelingHead(1, 3)
    with torch.no_grad():
        head.value.weight.fill_(2.0)
        head.value.bias.fill_(1.0)
        head.advantage.weight.copy_(torch.tensor([[1.0], [2.0], [6.0]]))
        head.advantage.bias.zero_()
    # f = 1: V = 3, A = [1, 2, 6], mean A = 3 -> Q = [1, 2, 6]
    assert head(torch.ones(1, 1)).tolist() == [[1.0, 2.0, 6.0]]
