"""P networks of one architecture as one module with a leading member axis: `Members`.

    nets = [build(seed) for seed in seeds]    # each member built exactly as its single run builds it
    q_net = Members(nets)                     # parameters (P, ...); forward (P, N, ...) -> (P, N, ...)
    q_net.member_state(k)                     # member k's state_dict, in the single module's layout and keys

How each layer takes the member axis (one CPU thread; benchmarks/README.md, "Populations"):
- Linear: weights (P, out, in) and one `baddbmm` for every member. At DQN's sizes a layer's cost is mostly
  per-call overhead, which the batch pays once: a 64-64 MLP update for 16 members cost a third of 16 separate ones.
  `torch.func` (vmap over stacked modules) gave the same maths and was slower.
- Flatten: its dims (negative ones too) count in each member's input, so the member axis is never flattened.
- Pooling: the member axis folded into the batch.
- Every other layer with parameters (Conv2d, LayerNorm, GroupNorm, an LSTM / GRU encoder, ...) is looped: one call
  per member with that member's slices of the stacked parameters (torch.func.functional_call). Their one-member
  kernels are already compute-bound on a CPU: grouped convolutions were no faster than the loop, and an LSTM batched
  by hand, step by step, was 2-3x slower than P calls of the fused one.
A member's numbers are its single run's to float rounding: BLAS picks its kernel by shape, so a batched product may
sum in another order than the single one (a dueling head's 1-wide value layer, acting on one env). With
`exact=True` they are its single run's bit for bit on a CPU (the loop by construction; Linear checked per shape, and
looped where no batched kernel matches), so a member takes every discrete decision (an action's argmax, a
prioritized draw) as its single run does, at a cost in speed.
Refused (ConfigError): batch norm (statistics across the batch) and dropout (random draws members would share).
Members never mix: every operation is per member, so a reduction of the output per member, summed over members,
has member k's gradient in member k's parameters only.

Layers are matched by their exact class: a subclass (of nn.Sequential, of an activation, ...) may have its own
forward, which need not take a leading member axis, so it is looped like any other layer and keeps its forward.

A population of one is the plain module itself, called with the axis taken off and put back: any architecture.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from networks.activations import BinaryStep, LinearActivation
from networks.errors import ConfigError
from networks.heads import DuelingHead, QHead
from networks.mlp import Encoder

ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Identity,
    BinaryStep,
    LinearActivation,
)
FOLDED = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # per sample: fold P into N
CONTAINERS = (nn.Sequential, Encoder, QHead, DuelingHead)  # forward works with any leading dims
REFUSED = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)


class Members(nn.Module):
    """P networks of one architecture: input and output tensors carry a leading member axis (P, ...).
    `containers`: module classes whose forward is indifferent to leading dims (e.g. a Q-network that only
    chains its encoder and head); their children are batched one by one (these exact classes: a subclass is looped).
    `exact`: each member bit for bit its single module on a CPU, at a cost in speed (`Linear`); else to float
    rounding."""

    def __init__(self, modules: Sequence[nn.Module], containers: tuple[type, ...] = (), exact: bool = False):
        super().__init__()
        self.size = len(modules)
        self.net = modules[0] if self.size == 1 else stack(modules, containers, exact)
        # A plain member module, not registered: the network itself for one member, else a scratch copy
        self._plain = [modules[0] if self.size == 1 else copy.deepcopy(modules[0])]
        plain_keys = list(modules[0].state_dict())
        own_keys = list(self.net.state_dict())
        if len(plain_keys) != len(own_keys):  # stack keeps every tensor, in order
            raise RuntimeError(f"stacking changed the state's layout ({len(plain_keys)} vs {len(own_keys)} tensors)")
        self.keys = dict(zip(plain_keys, own_keys))  # the single module's key -> this module's

    def forward(self, *args: Any) -> Any:
        if self.size == 1:
            if len(args) == 1 and isinstance(args[0], torch.Tensor):  # the common call: one tensor in, one out
                out = self.net(args[0][0])
                return out.unsqueeze(0) if isinstance(out, torch.Tensor) else _map(lambda t: t.unsqueeze(0), out)
            return _map(lambda t: t.unsqueeze(0), self.net(*_map(lambda t: t[0], args)))
        return self.net(*args)

    @property
    def template(self) -> nn.Module:
        """A plain single-member module of the same architecture (with several members, its weights mean nothing)."""
        return self._plain[0]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's state_dict as its single run's module holds it (same keys and shapes)."""
        own = self.net.state_dict()
        if self.size == 1:
            return own
        return {key: own[mine][k] for key, mine in self.keys.items()}

    @torch.no_grad()
    def load_member_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Undo `member_state`: member k takes `state` (a single module's state_dict, checked by the caller)."""
        if self.size == 1:
            self.net.load_state_dict(state)
            return
        own = self.net.state_dict(keep_vars=True)
        for key, mine in self.keys.items():
            own[mine][k].copy_(state[key])

    def member_module(self, k: int) -> nn.Module:
        """Member k as a plain module (for greedy evaluation). With several members, one scratch module is reused:
        the next call reloads it."""
        if self.size == 1:
            return self.net
        plain = self._plain[0]
        device = next(self.net.parameters()).device
        plain.to(device).load_state_dict(self.member_state(k))
        return plain.train(self.training)


def stack(modules: Sequence[nn.Module], containers: tuple[type, ...] = (), exact: bool = False) -> nn.Module:
    """One module for P (>= 2) modules of one architecture, with their parameters stacked (P, ...); `exact`: Linear
    layers that give each member bit for bit what nn.Linear gives it."""
    for name, layer in modules[0].named_modules():
        if isinstance(layer, REFUSED):
            what = "dropout" if isinstance(layer, nn.Dropout | nn.Dropout2d) else "batch norm"
            raise ConfigError("network", f"{what} ({name}) cannot be batched across members; populations refuse it")
        if any(not p.requires_grad for p in layer.parameters(recurse=False)):
            raise ConfigError("network", f"frozen parameters ({name}) are not supported with population:")
    return _stack(modules[0], list(modules), (*CONTAINERS, *containers), exact)


def _stack(module: nn.Module, members: list[nn.Module], containers: tuple[type, ...], exact: bool) -> nn.Module:
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    if type(module) is nn.Linear:
        return Linear(members, exact)
    if type(module) is nn.Flatten:
        return Flatten(module.start_dim, module.end_dim)
    if type(module) in ELEMENTWISE:  # exact classes: a subclass's forward may not be elementwise
        return copy.deepcopy(module)
    if type(module) in FOLDED:
        return Folded(copy.deepcopy(module))
    if type(module) in containers and not own:
        shell = copy.copy(module)  # the same forward; its children replaced below
        shell._modules = {
            name: _stack(child, [member.get_submodule(name) for member in members], containers, exact)
            for name, child in module.named_children()
        }
        return shell
    return Looped(members)


class Linear(nn.Module):
    """P Linear layers: x (P, ..., in) -> (P, ..., out); weight (P, out, in) as nn.Linear's, bias (P, out).

    One `baddbmm` for every member. BLAS picks its kernel by shape, so for some shapes the batched product sums in
    another order than nn.Linear's and a member's numbers differ from its single module's by rounding (on this
    machine's CPU: a 1-wide output, such as a dueling head's value, and tiny products, such as acting on one env).
    `exact`: for each input shape (checked once, on random numbers: `exact_batched`), the first of two batched
    forms that gives each member bit for bit what nn.Linear gives it, forward and backward (x W^T, or (W x^T)^T,
    which matched a 1-wide output at training batch sizes); else one `F.linear` per member (acting on one env). CPU
    time of 64 members of configs/dqn/cartpole.yaml for 2,000 steps: 32 s by default, 40 s exact, 59 s exact with
    the per-member loop wherever x W^T was not exact (16 members: 10.3, 10.8 and 12.4 s)."""

    def __init__(self, members: list[nn.Linear], exact: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.bias = None if members[0].bias is None else nn.Parameter(torch.stack([m.bias.detach() for m in members]))
        self.exact = exact
        self.transposed: dict[tuple, bool | None] = {}  # exact: input shape -> the exact batched form, or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.exact or x.device.type != "cpu":
            return _batched_linear(x, self.weight, self.bias)
        shape = tuple(x.shape)
        if shape not in self.transposed:
            forms = (False, True)
            self.transposed[shape] = next((t for t in forms if exact_batched(shape, self.weight, self.bias, t)), None)
        transposed = self.transposed[shape]
        if transposed is not None:
            return _batched_linear(x, self.weight, self.bias, transposed)
        weights, biases = self.weight.unbind(0), [None] * len(x) if self.bias is None else self.bias.unbind(0)
        return torch.stack([nn.functional.linear(x[k], weights[k], biases[k]) for k in range(len(x))])


def _batched_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool = False
) -> torch.Tensor:
    """x W^T + b for every member in one call; `transposed`: as (W x^T + b)^T, the same maths on another BLAS kernel."""
    flat = x.flatten(1, -2) if x.dim() > 3 else x  # (P, N, in)
    if transposed:  # (P, out, in) @ (P, in, N) -> (P, out, N)
        left, right, bias = weight, flat.transpose(1, 2), None if bias is None else bias.unsqueeze(2)
    else:  # (P, N, in) @ (P, in, out) -> (P, N, out)
        left, right, bias = flat, weight.transpose(1, 2), None if bias is None else bias.unsqueeze(1)
    out = torch.bmm(left, right) if bias is None else torch.baddbmm(bias, left, right)
    out = out.transpose(1, 2) if transposed else out  # (P, N, out)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def exact_batched(shape: tuple, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool = False) -> bool:
    """Whether `_batched_linear` (`transposed` or not) on inputs of `shape` gives each member exactly F.linear's
    output and gradients (checked on random numbers of that shape: BLAS picks its kernel by shapes, not values)."""
    with torch.inference_mode(False), torch.enable_grad():
        generator = torch.Generator().manual_seed(0)
        tensors = [torch.randn(shape, generator=generator), torch.randn(weight.shape, generator=generator)]
        tensors.append(None if bias is None else torch.randn(bias.shape, generator=generator))
        x, w, b = (None if t is None else t.requires_grad_() for t in tensors)
        out = _batched_linear(x, w, b, transposed)
        grad = torch.randn(out.shape, generator=generator)
        out.backward(grad)
        for k in range(shape[0]):
            xk, wk = x[k].detach().clone().requires_grad_(), w[k].detach().clone().requires_grad_()
            bk = None if b is None else b[k].detach().clone().requires_grad_()
            single = nn.functional.linear(xk, wk, bk)
            single.backward(grad[k])
            pairs = [(single, out[k]), (xk.grad, x.grad[k]), (wk.grad, w.grad[k])]
            if bk is not None:
                pairs.append((bk.grad, b.grad[k]))
            if not all(torch.equal(a, c) for a, c in pairs):
                return False
    return True


class Flatten(nn.Module):
    """nn.Flatten(start_dim, end_dim) for each member: x (P, ...) where member k's own input is x[k]. The dims count
    in a member's input, negative ones from its end, so the member axis in front is never flattened (a dim that is out
    of range for a member's input fails as nn.Flatten would)."""

    def __init__(self, start_dim: int, end_dim: int):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = x.dim() - 1  # a member's input
        start, end = (_member_dim(dim, rank) for dim in (self.start_dim, self.end_dim))
        return x.flatten(start + 1, end + 1)


def _member_dim(dim: int, rank: int) -> int:
    """`dim` of a member's input of `rank` dims as a non-negative index."""
    if not -rank <= dim < rank:
        raise IndexError(f"Flatten: dimension {dim} is out of range for a member's input of {rank} dims")
    return dim % rank


class Folded(nn.Module):
    """A per-sample layer without parameters: (P, N, ...) folded to (P * N, ...) and back."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x.flatten(0, 1))
        return out.unflatten(0, x.shape[:2])


class Looped(nn.Module):
    """P copies of any module, run one member at a time: every tensor argument and output carries the member
    axis; parameters are stacked (P, ...) in the module's own order (`Members.keys` relies on it)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.names = [name for name, _ in members[0].named_parameters()]
        self.stacked = nn.ParameterList(
            [nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in members])) for name in self.names]
        )
        self._template = [copy.deepcopy(members[0]).to("meta")]  # not registered: only its forward is used
        self.size = len(members)

    def forward(self, *args: Any) -> Any:
        slices = [p.unbind(0) for p in self.stacked]  # one backward node per parameter, not one per member
        outputs = []
        for k in range(self.size):
            params = {name: member[k] for name, member in zip(self.names, slices)}
            outputs.append(functional_call(self._template[0], params, _map(lambda t, k=k: t[k], args)))
        return _zip(outputs)


def _map(fn: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    """`fn` on every tensor in nested tuples and lists; other values (None) as they are."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple | list):
        return type(value)(_map(fn, v) for v in value)
    return value


def _zip(outputs: list[Any]) -> Any:
    """P outputs of one structure -> one, each tensor stacked along a new member axis."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(outputs)
    if isinstance(first, tuple | list):
        return type(first)(_zip([out[i] for out in outputs]) for i in range(len(first)))
    return first
