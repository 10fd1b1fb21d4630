"""DQN's fast paths: the updates of `dqn.Learner.update`, arranged for speed. Read dqn.py for the maths.

Two paths, each the same arithmetic as the eager update, tested against it (tests/test_dqn_compiled.py):

- `uniform_phase`: with uniform replay the target net is fixed during a training phase, so the phase draws all
  its batches at once, (G, B, ...), and (without double_q) values all their next states in one large forward
  pass; each update is then `learner.update` on one batch, with no host sync (losses accumulate on the device).
- `CompiledUpdate` (`compile: true`): the update step as one compiled graph. An eager update is a dozen small
  kernels (forward, loss, backward, gradient clipping, Adam) with Python and autograd bookkeeping between them; at
  DQN's batch sizes that bookkeeping costs as much as the arithmetic. Here the whole step is one pure function of
  (parameters, Adam state, batch): torch.func computes the gradients, then clipping and the Adam update run in the
  same graph, and torch.compile (Inductor) turns it into a few fused kernels. Measured on the rl-zoo3 CartPole
  net ([256, 256], batch 64, one CPU thread): about half the CPU time of the eager update (benchmarks/README.md).
  Compiling takes a few seconds (cached across runs by Inductor), so it pays off on long runs and is off by
  default. Compiling happens in the first call; if it fails there (no C++ compiler, an unsupported op), the call
  raises `CompileFailed` before anything ran, and `dqn.Learner.update` logs one line and goes on eagerly.

The Adam state lives in the `torch.optim.Adam` object's own tensors (`step`, `exp_avg`, `exp_avg_sq`), so
checkpoints are the same as the eager path's and a run can resume with `compile` on or off. The update
follows `torch.optim.Adam` (no weight decay, no amsgrad). With `nan_policy: skip` a non-finite loss or Q
leaves parameters and state unchanged inside the graph (no host sync); the skips are counted on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from agents import losses
from agents.learning import LossMeter
from agents.replay import Batch

if TYPE_CHECKING:
    from agents.dqn import Learner


def uniform_phase(learner: Learner, replay, num_updates: np.ndarray) -> None:
    """`num_updates[k]` updates for member k on uniformly drawn batches, all drawn at once, (P, G, B, ...); a member
    with fewer updates sits out the rest. Skips are counted by the learner."""
    config = learner.config
    batches = replay.sample(config.batch_size, num_updates)  # (P, G, B, ...)
    targets = None if config.double_q else learner.targets(batches)  # (P, G, B): the target net is fixed
    for g, batch in enumerate(split(batches)):
        active = num_updates > g
        learner.update(batch, learner.targets(batch) if targets is None else targets[:, g], active)


def split(batches: Batch) -> list[Batch]:
    """(P, G, B, ...) -> G batches of (P, B, ...), as views (no copies)."""
    columns = [x.unbind(1) if x is not None else [None] * batches.actions.shape[1] for x in batches]
    return [type(batches)(*fields) for fields in zip(*columns)]


def alone(batch: Batch) -> Batch:
    """A single run's batch (1, B, ...) without its member axis, (B, ...)."""
    return type(batch)(*(None if x is None else x[0] for x in batch))


class CompileFailed(RuntimeError):
    """torch.compile could not compile the update (raised by the first call only; nothing ran)."""


class CompiledUpdate:
    """`update(batch, targets) -> td_errors`, updating the network in place; losses go to `meter`."""

    def __init__(
        self,
        q_net: nn.Module,
        optimizer: torch.optim.Adam,
        meter: LossMeter,
        *,
        loss: str,
        max_grad_norm: float,
        skip_nonfinite: bool,
        batch_size: int,
    ):
        self.q_net, self.optimizer, self.meter = q_net, optimizer, meter
        trainable = [(name, param) for name, param in q_net.named_parameters() if param.requires_grad]
        self.names = [name for name, _ in trainable]  # a frozen (pretrained) encoder is left out: never updated
        self.params = [param for _, param in trainable]
        group = optimizer.param_groups[0]
        self.betas, self.eps = group["betas"], group["eps"]
        device = self.params[0].device
        self.lr = torch.tensor(float(group["lr"]), device=device)  # a tensor: a new value does not recompile
        self.loss_kind, self.max_grad_norm, self.skip_nonfinite = loss, max_grad_norm, skip_nonfinite
        self.skipped = torch.zeros((), device=device)
        self.ones = torch.ones(batch_size, device=device)  # uniform replay's importance weights
        self.state = [self._adam_state(param) for param in self.params]
        self._step = torch.compile(self._update, fullgraph=True, dynamic=False)
        self.calls = 0

    def _adam_state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.optimizer.state[param]
        if not state:  # what torch.optim.Adam creates on its first step
            state.update(
                step=torch.tensor(0.0, device=param.device),
                exp_avg=torch.zeros_like(param),
                exp_avg_sq=torch.zeros_like(param),
            )
        return state

    def rebind(self) -> None:
        """After `optimizer.load_state_dict` (a resume), point the graph's inputs at the loaded state."""
        self.state = [self._adam_state(param) for param in self.params]
        self.lr.fill_(float(self.optimizer.param_groups[0]["lr"]))

    def __call__(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
        if self.optimizer.state[self.params[0]] is not self.state[0]:  # a resume loaded the optimizer state
            self.rebind()
        self.lr.fill_(float(self.optimizer.param_groups[0]["lr"]))
        weights = self.ones if batch.weights is None else batch.weights
        if self.calls == 0:  # torch.compile compiles here, before running anything
            from torch._dynamo.exc import TorchDynamoException  # torch.compile's errors (not imported before)

            try:
                td_errors = self._step(batch.obs, batch.actions, targets, weights, self.lr)
            except TorchDynamoException as e:
                raise CompileFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
        else:
            td_errors = self._step(batch.obs, batch.actions, targets, weights, self.lr)
        self.calls += 1
        self.meter.counts += 1
        return td_errors

    def take_skipped(self) -> int:
        """Updates skipped as non-finite since the last call (one host sync; none without nan_policy: skip)."""
        if not self.skip_nonfinite:
            return 0
        skipped = int(self.skipped.item())
        self.skipped.zero_()
        self.meter.counts -= skipped
        return skipped

    def _loss(self, params, obs, actions, targets, weights):
        q_values = functional_call(self.q_net, dict(zip(self.names, params)), (obs,))  # (B, A)
        q_taken = q_values.gather(1, actions[:, None]).squeeze(1)  # (B,)
        loss = losses.td_loss(q_taken, targets, self.loss_kind, weights)
        return loss, (q_values.detach().mean(), (q_taken - targets).detach())

    def _update(self, obs, actions, targets, weights, lr):
        params = [param.detach() for param in self.params]
        grads, (loss, (q_mean, td_errors)) = grad_and_value(self._loss, has_aux=True)(
            params, obs, actions, targets, weights
        )
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        clip = torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0)  # as nn.utils.clip_grad_norm_
        finite = torch.isfinite(loss) & torch.isfinite(q_mean)
        beta1, beta2 = self.betas
        with torch.no_grad():
            for param, grad, state in zip(self.params, grads, self.state):
                grad = grad * clip
                step = state["step"] + 1
                exp_avg = torch.lerp(state["exp_avg"], grad, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
                denom = (exp_avg_sq.sqrt() / (1 - beta2**step).sqrt()) + self.eps
                new_param = param - lr / (1 - beta1**step) * exp_avg / denom
                if self.skip_nonfinite:  # keep the old values where the update is not finite
                    step, exp_avg, exp_avg_sq = (
                        torch.where(finite, new, old)
                        for new, old in (
                            (step, state["step"]),
                            (exp_avg, state["exp_avg"]),
                            (exp_avg_sq, state["exp_avg_sq"]),
                        )
                    )
                    new_param = torch.where(finite, new_param, param)
                state["step"].copy_(step)
                state["exp_avg"].copy_(exp_avg)
                state["exp_avg_sq"].copy_(exp_avg_sq)
                param.copy_(new_param)
            ok = finite if self.skip_nonfinite else torch.ones((), dtype=torch.bool)
            self.meter.loss_sum.add_(torch.where(ok, loss, 0.0))
            self.meter.q_sum.add_(torch.where(ok, q_mean, 0.0))
            self.skipped.add_((~ok).float())
        return td_errors
