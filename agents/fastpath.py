"""DQN's update step compiled into one graph (`compile: true`): the maths of `dqn.Learner.update`, faster.

An eager update is a dozen small kernels (forward, loss, backward, gradient clipping, Adam) with Python and
autograd bookkeeping between them; at DQN's batch sizes that bookkeeping costs as much as the arithmetic.
Here the whole step is one pure function of (parameters, Adam state, batch) -> torch.func computes the
gradients, then clipping and the Adam update run in the same graph, and torch.compile (Inductor) turns it
into a few fused kernels. Measured on the rl-zoo3 CartPole net ([256, 256], batch 64, one CPU thread):
about half the CPU time of the eager update (benchmarks/README.md). Compiling takes a few seconds (cached
across runs by Inductor), so it pays off on long runs and is off by default.

The Adam state lives in the `torch.optim.Adam` object's own tensors (`step`, `exp_avg`, `exp_avg_sq`), so
checkpoints are the same as the eager path's and a run can resume with `compile` on or off. The update
follows `torch.optim.Adam` (no weight decay, no amsgrad). With `nan_policy: skip` a non-finite loss or Q
leaves parameters and state unchanged inside the graph (no host sync); the skips are counted on the device.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from agents import losses


class CompiledUpdate:
    """`update(obs, actions, targets, weights) -> td_errors`, updating the network in place."""

    def __init__(
        self,
        q_net: nn.Module,
        optimizer: torch.optim.Adam,
        *,
        loss: str,
        max_grad_norm: float,
        skip_nonfinite: bool,
        loss_sum: torch.Tensor,
        q_sum: torch.Tensor,
    ):
        """`loss_sum` and `q_sum` are the caller's device accumulators; skipped updates add nothing to them."""
        self.q_net, self.optimizer = q_net, optimizer
        trainable = [(name, param) for name, param in q_net.named_parameters() if param.requires_grad]
        self.names = [name for name, _ in trainable]  # a frozen (pretrained) encoder is left out: never updated
        self.params = [param for _, param in trainable]
        group = optimizer.param_groups[0]
        self.betas, self.eps = group["betas"], group["eps"]
        device = self.params[0].device
        self.lr = torch.tensor(float(group["lr"]), device=device)  # a tensor: a new value does not recompile
        self.loss_kind, self.max_grad_norm, self.skip_nonfinite = loss, max_grad_norm, skip_nonfinite
        self.loss_sum, self.q_sum, self.skipped = loss_sum, q_sum, torch.zeros((), device=device)
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

    def __call__(self, obs, actions, targets, weights) -> torch.Tensor:
        self.lr.fill_(float(self.optimizer.param_groups[0]["lr"]))
        td_errors = self._step(obs, actions, targets, weights, self.lr)
        self.calls += 1
        return td_errors

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
            self.loss_sum.add_(torch.where(ok, loss, 0.0))
            self.q_sum.add_(torch.where(ok, q_mean, 0.0))
            self.skipped.add_((~ok).float())
        return td_errors
