"""The member axis's parts on their own: a `Members` network's per-member state, and `MemberAdam`'s checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agents.members import MemberAdam, adam_template
from networks.batched import Members
from networks.errors import CheckpointError


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_member_state_round_trips_in_the_single_modules_layout():
    nets = [mlp(seed) for seed in range(3)]
    together = Members(nets, exact=True)
    for k, net in enumerate(nets):
        state = together.member_state(k)
        assert list(state) == list(net.state_dict())
        for key, value in net.state_dict().items():
            assert torch.equal(state[key], value), key
    x = torch.randn(3, 5, 4)
    out = together(x)
    for k, net in enumerate(nets):
        assert torch.equal(out[k], net(x[k]))
        assert torch.equal(together.member_module(k)(x[k]), net(x[k]))
    together.load_member_state(1, mlp(7).state_dict())  # member 1 only takes the new weights
    for key, value in mlp(7).state_dict().items():
        assert torch.equal(together.member_state(1)[key], value)
    for k in (0, 2):
        for key, value in nets[k].state_dict().items():
            assert torch.equal(together.member_state(k)[key], value)


def dueling(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))  # a 1-wide output, as a dueling value


@pytest.mark.parametrize("rows", [1, 3, 32, 256])
def test_exact_members_are_their_single_modules_bit_for_bit_and_the_default_to_float_tolerance(rows):
    nets = [dueling(seed) for seed in range(3)]
    x = torch.randn(3, rows, 4)
    grad = torch.randn(3, rows, 1)
    expected = []
    for k, net in enumerate(nets):
        net.zero_grad()
        out = net(x[k])
        out.backward(grad[k])
        expected.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    for exact in (True, False):
        together = Members(nets, exact=exact)
        out = together(x)
        out.backward(grad)
        for k, (single, grads) in enumerate(expected):
            pairs = [(out[k].detach(), single), *zip([p.grad[k] for p in together.parameters()], grads)]
            for mine, theirs in pairs:
                if exact:
                    assert torch.equal(mine, theirs)
                else:
                    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


class Centred(nn.Sequential):
    """A user's container whose forward centres its batch first: not indifferent to a leading member axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - x.mean(0, keepdim=True))


class BatchScaledReLU(nn.ReLU):
    """An activation subclass whose forward is not elementwise (it scales by the batch's largest value)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) / x.abs().amax(0, keepdim=True)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Centred(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
        lambda: nn.Sequential(nn.Linear(4, 8), BatchScaledReLU(), nn.Linear(8, 2)),
    ],
    ids=["sequential-subclass", "activation-subclass"],
)
def test_a_subclass_of_a_batched_layer_keeps_its_own_forward_per_member(build):
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(build())
    x = torch.randn(3, 5, 4)
    out = Members(nets)(x)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(x[k]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "flatten, member_input, width",
    [((-3, -1), (5, 2, 3, 4), 24), ((-3, -2), (5, 2, 3, 4), 4), ((1, -2), (5, 2, 3, 4), 4), ((1, 2), (5, 2, 3, 4), 4)],
)
def test_flatten_dims_count_in_each_members_input_negative_ones_too(flatten, member_input, width):
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(nn.Sequential(nn.Flatten(*flatten), nn.Linear(width, 2)))
    x = torch.randn(3, *member_input)
    out = Members(nets)(x)
    for k, net in enumerate(nets):
        assert out[k].shape == net(x[k]).shape
        torch.testing.assert_close(out[k], net(x[k]), rtol=1e-5, atol=1e-6)


def test_a_flatten_dim_beyond_a_members_input_fails_as_it_does_alone():
    nets = [nn.Sequential(nn.Flatten(-3), nn.Linear(6, 2)) for _ in range(2)]
    x = torch.randn(2, 5, 6)  # each member's input (5, 6) has no dim -3: never flatten the member axis into it
    with pytest.raises(IndexError):
        nets[0](x[0])
    with pytest.raises(IndexError, match="out of range"):
        Members(nets)(x)


def adam(nets: Members) -> MemberAdam:
    optimizer = MemberAdam(list(nets.parameters()), np.array([1e-3, 2e-3]), np.array([10.0, 10.0]))
    optimizer.template = adam_template(nets.template)
    return optimizer


def test_member_adam_state_round_trips_and_refuses_a_state_that_does_not_fit():
    nets = Members([mlp(0), mlp(1)])
    optimizer = adam(nets)
    nets(torch.randn(2, 5, 4)).square().sum().backward()
    optimizer.step()
    state = optimizer.member_state_dict(1)
    assert len(state["state"]) == 4 and float(state["state"][0]["step"]) == 1.0
    other = adam(Members([mlp(2), mlp(3)]))
    other.load_member_state_dict(0, state)
    assert float(other.steps[0]) == 1.0 and float(other.steps[1]) == 0.0
    for i in range(4):
        assert torch.equal(other.exp_avg[i][0], optimizer.exp_avg[i][1])
        assert not other.exp_avg[i][1].any()  # member 1 untouched
    assert other.lr.tolist() == [1e-3, 2e-3]  # the config's rates, as a single run's resume keeps its own
    small = {i: dict(entry) for i, entry in state["state"].items()}
    small[0]["exp_avg"] = small[0]["exp_avg"][:1]  # (1, 4) would broadcast into (8, 4)
    with pytest.raises(CheckpointError, match=r"state\[0\]\.exp_avg has shape \(1, 4\)"):
        other.load_member_state_dict(0, {**state, "state": small})
    fewer = {i: entry for i, entry in state["state"].items() if i < 3}
    with pytest.raises(CheckpointError, match="3 parameters' state, not 4"):
        other.load_member_state_dict(0, {**state, "state": fewer})
