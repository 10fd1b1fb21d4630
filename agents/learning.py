"""What a learner holds beside its network, for every agent on the off-policy loop: the optimizer (torch's for a
single run, `MemberAdam` for a population), its learning rates, one gradient step for every member, and the meter
of the losses. The `Learner` protocol names what the loop (agents/offpolicy.py) asks of an agent's learning half.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from agents.members import MemberAdam, MemberRun, adam_template
from networks.errors import ConfigError


class Learner(Protocol):
    """The learning half of an agent: online and target nets (networks.batched.Members: every member), the
    optimizer (torch's for a single run, MemberAdam for a population), and its training phase."""

    q_net: nn.Module
    target_net: nn.Module | None  # None for an agent without one (pqn): its checkpoints hold no target_net
    optimizer: torch.optim.Optimizer | MemberAdam
    meter: LossMeter

    def train_phase(self, replay: Any, num_updates: np.ndarray, betas: np.ndarray) -> np.ndarray:
        """`num_updates[k]` gradient steps for member k (0: none), at prioritized replay's `betas`; returns how many
        were skipped as non-finite per member (nan_policy: skip)."""


# The torch.optim options that `optimizer_kwargs` may set, per optimizer (the compiled Adam update reads these two).
OPTIMIZER_OPTIONS = {
    "adam": ("betas", "eps"),
    "rmsprop": ("alpha", "eps", "momentum", "centered"),
    "sgd": ("momentum", "nesterov"),
}


def make_optimizer(config, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """`config.optimizer` at `config.learning_rate`, with torch's defaults unless `config.optimizer_kwargs` sets
    one of OPTIMIZER_OPTIONS (checked by `check_optimizer_kwargs`)."""
    options = dict(config.optimizer_kwargs)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if config.optimizer == "adam":  # the fused kernel: one call updates every parameter
        return torch.optim.Adam(params, lr=config.learning_rate, fused=True, **options)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.learning_rate, foreach=True, **options)
    return torch.optim.SGD(params, lr=config.learning_rate, foreach=True, **options)


def check_optimizer_kwargs(optimizer: str, options: dict[str, Any]) -> None:
    """ConfigError naming `optimizer_kwargs.<key>` for an option `optimizer` lacks or a value torch would refuse."""
    allowed = OPTIMIZER_OPTIONS[optimizer]
    for key, value in options.items():
        where = f"optimizer_kwargs.{key}"
        if key not in allowed:
            raise ConfigError(where, f"not an option of {optimizer}; allowed: {', '.join(allowed)}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in ("centered", "nesterov") and not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
        if key == "betas" and not (
            isinstance(value, list | tuple) and len(value) == 2 and all(_fraction(b) for b in value)
        ):
            raise ConfigError(where, f"must be two numbers in [0, 1), got {value!r}")
        if key == "eps" and not (number and value > 0):
            raise ConfigError(where, f"must be a number > 0, got {value!r}")
        if key in ("alpha", "momentum") and not _fraction(value):
            raise ConfigError(where, f"must be a number in [0, 1), got {value!r}")
    if options.get("nesterov") and not options.get("momentum", 0) > 0:
        raise ConfigError("optimizer_kwargs.nesterov", "needs momentum > 0")


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1


def learning_rates(optimizer: torch.optim.Optimizer | MemberAdam) -> np.ndarray:
    """Each member's current learning rate, (P,)."""
    if isinstance(optimizer, MemberAdam):
        return optimizer.lr.copy()
    return np.array([optimizer.param_groups[0]["lr"]])


def set_learning_rates(optimizer: torch.optim.Optimizer | MemberAdam, rates: np.ndarray) -> None:
    if isinstance(optimizer, MemberAdam):
        optimizer.lr[:] = rates
    else:
        optimizer.param_groups[0]["lr"] = float(rates[0])


def gradient_step(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor, max_grad_norm: float
) -> None:
    """Backward, clip the global gradient norm to `max_grad_norm` (SB3, Mnih et al.), one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    optimizer.step()


def learning_state(
    config, q_net: nn.Module, device: torch.device, members: list[MemberRun] | None = None
) -> tuple[nn.Module, list[nn.Parameter], torch.optim.Optimizer | MemberAdam, LossMeter]:
    """What a learner holds beside its online net: the target net (a frozen copy), the parameters, the optimizer,
    and the meter of its losses. `q_net` holds `members` (networks.batched.Members): several take MemberAdam,
    with each member's max_grad_norm; one takes torch's optimizer, as a single run always did."""
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    params = list(q_net.parameters())
    if members is None or len(members) == 1:
        optimizer = make_optimizer(config, params, device)
    else:
        rates = [m.config.learning_rate for m in members]
        optimizer = MemberAdam(params, np.array(rates), np.array([m.config.max_grad_norm for m in members]))
        optimizer.template = adam_template(q_net.template)
    return target_net, params, optimizer, LossMeter(device, len(members or [None]))


def member_step(learner: Learner, loss: torch.Tensor, max_grad_norm: float, changed: np.ndarray | None) -> None:
    """One optimizer step for every member from its loss (P,): a single run's `gradient_step`, or, for several
    members, one backward of the sum of the losses of the members in `changed` ((P,) bool; all when None) and
    MemberAdam's step for those members only."""
    if not isinstance(learner.optimizer, MemberAdam):
        gradient_step(learner.optimizer, learner.params, loss.sum(), max_grad_norm)
        return
    for param in learner.params:
        param.grad = None
    members = None if changed is None else np.flatnonzero(changed)
    (loss.sum() if members is None else loss[torch.as_tensor(members, device=loss.device)].sum()).backward()
    learner.optimizer.step(members)


class LossMeter:
    """The TD loss and mean Q of each update, per member (P,), summed on the learner's device and read when logged,
    so an update costs no host sync. A compiled update adds into `loss_sum` and `q_sum` itself."""

    def __init__(self, device: torch.device, members: int = 1):
        self.loss_sum = torch.zeros(members, device=device)
        self.q_sum = torch.zeros(members, device=device)
        self.counts = torch.zeros(members, dtype=torch.int64, device=device)  # updates per member since the last read

    def add(self, loss: torch.Tensor, q_mean: torch.Tensor, changed: np.ndarray | None = None) -> None:
        """One update's loss and mean Q per member (P,), for the members in `changed` ((P,) bool; all when None)."""
        if changed is None:
            self.loss_sum += loss.detach()
            self.q_sum += q_mean.detach()
            self.counts += 1
        else:
            mask = torch.as_tensor(changed, device=self.loss_sum.device)
            self.loss_sum += torch.where(mask, loss.detach(), 0.0)
            self.q_sum += torch.where(mask, q_mean.detach(), 0.0)
            self.counts += mask

    def finite_members(self) -> np.ndarray:
        """(P,) whether each member's losses and Q-values since the last read are finite (one host sync)."""
        return (torch.isfinite(self.loss_sum) & torch.isfinite(self.q_sum)).cpu().numpy()

    def read(self, member: int = 0) -> dict[str, float]:
        """Member `member`'s mean loss and Q since its last read (one host sync), or {} when it had no update."""
        count = int(self.counts[member])
        if count == 0:
            return {}
        loss, q_mean = (torch.stack([self.loss_sum[member], self.q_sum[member]]) / count).tolist()
        self.loss_sum[member] = 0.0
        self.q_sum[member] = 0.0
        self.counts[member] = 0
        return {"losses/td_loss": loss, "losses/q_values": q_mean}
