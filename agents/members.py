"""The member axis of the off-policy agents: each member's runtime (config, tracker, random streams), its network
built as its single run builds it, and the one optimizer step that serves every member.

A member is exactly its single run (agents/population.py): it draws from its own random streams (a NumPy
Generator for ε-greedy and prioritized sampling, a torch Generator for uniform replay sampling, both seeded and
advanced as the single run's), its network is initialised under its own seed, and the optimizer step treats it
alone (`MemberAdam`: its own learning rate, gradient-norm clip, step count, and a mask that leaves a stopped or
skipped member untouched). With one member (an ordinary run) torch's own generators and fused Adam are used, as
they always were, so checkpoints and speed are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents import population
from networks.batched import Members
from networks.errors import CheckpointError
from networks.interfaces import Tracker
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything


@dataclass
class MemberRun:
    """One member at run time: its equivalent single-run config, tracker and random streams."""

    index: int
    name: str
    config: Any  # the member's single-run config (population.member_config)
    tracker: Tracker
    rng: np.random.Generator  # ε-greedy, prioritized sampling
    generator: torch.Generator  # uniform replay sampling (torch's default generator for a population of one)
    resume: dict | None = None  # the member's checkpoint tree, in the single-run layout
    finished: bool = False  # the member ended before this resume (done, solved, stopped, diverged): it does not train
    exact: bool = False  # the population's `exact:`: its network bit for bit each member's single run's

    def rng_tree(self) -> dict:
        """The RNG states a member's checkpoint holds (the single run's layout: its torch stream under 'torch')."""
        return {**rng_state(self.rng), "torch": self.generator.get_state()}

    def restore_rng(self, tree: dict) -> None:
        restore_rng_state(tree, self.rng)
        try:
            self.generator.set_state(tree["torch"])
        except (TypeError, RuntimeError) as e:
            raise CheckpointError(f"rng.torch: checkpoint RNG state does not fit ({e})") from None


def setup(
    config, tracker: Tracker | Sequence[Tracker], resume, finished: Sequence[bool] | None = None
) -> tuple[torch.device, list[MemberRun]]:
    """What every off-policy trainer does first: validate, torch threads, device, seeds; one MemberRun per member.
    A population takes one tracker and one resume tree (or None) per member, in order, and optionally which members
    ended before this resume (`finished`)."""
    config.validate()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    found = population.members(config)
    trackers = list(tracker) if isinstance(tracker, Sequence) else [tracker]
    trees = list(resume) if isinstance(resume, Sequence) else [resume] * len(found)
    ended = [False] * len(found) if finished is None else [bool(done) for done in finished]
    if len(trackers) != len(found) or len(trees) != len(found) or len(ended) != len(found):
        raise ValueError(f"{len(found)} members need as many trackers, resume trees and finished flags")
    rng = seed_everything(config.seed)  # Python's, NumPy's and torch's global streams, as a single run seeds them
    runs = []
    for member, member_tracker, tree, done in zip(found, trackers, trees, ended):
        member_config = (
            population.member_config(config, member) if getattr(config, "population", None) is not None else config
        )
        alone = len(found) == 1
        runs.append(
            MemberRun(
                member.index,
                member.name,
                member_config,
                member_tracker,
                rng if alone else np.random.default_rng(member.seed),
                torch.default_generator if alone else torch.Generator().manual_seed(member.seed),
                tree,
                done,
                population.exact(config),
            )
        )
    return device, runs


def network(members: list[MemberRun], build: Callable[[Any], nn.Module], containers: tuple[type, ...]) -> Members:
    """Every member's network, each built as its single run builds it (under its seed, so each starts from its single
    run's weights and leaves its torch stream where the single run's is), as one `Members` network, bit for bit
    each member's single run's if the population asked for it (`exact`)."""
    if len(members) == 1:  # the single run's own global stream, seeded by `setup`
        return Members([build(members[0].config)])
    modules = []
    for member in members:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(member.generator.get_state())
            modules.append(build(member.config))
            member.generator.set_state(torch.get_rng_state())
    return Members(modules, containers, members[0].exact)


def per_member(members: list[MemberRun], name: str) -> np.ndarray:
    """A config field's value for every member, (P,): `gamma`, `tau`, `prioritized.alpha`, ..."""
    values = []
    for member in members:
        value = member.config
        for part in name.split("."):
            value = getattr(value, part)
        values.append(value)
    return np.asarray(values, dtype=np.float64)


# --- the optimizer step ---------------------------------------------------------------------------------------


class MemberAdam:
    """Adam (Kingma & Ba 2015) with gradient-norm clipping for parameters stacked (P, ...): each member with its own
    learning rate, max_grad_norm and step count, and only the members asked for take a step (a stopped member, or
    one skipped under nan_policy: skip, is left as it is).

    Bit for bit torch's: each member's slices of the gradients, moments and parameters are handed to the very kernels
    a single run's `clip_grad_norm_(foreach=True)` and `torch.optim.Adam(fused=True)` call (`torch._foreach_norm`,
    `torch._foreach_mul_`, `torch._fused_adam_`), all members in one call each (one fused call per distinct learning
    rate). Checkpoints hold each member's state as torch.optim.Adam's state_dict (`member_state_dict`)."""

    def __init__(
        self,
        params: list[nn.Parameter],
        learning_rates: np.ndarray,
        max_grad_norms: np.ndarray,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params, self.members = params, params[0].shape[0]
        self.betas, self.eps = betas, eps
        self.lr = np.asarray(learning_rates, dtype=np.float64).copy()  # (P,), set by the schedule
        self.max_grad_norm = torch.as_tensor(max_grad_norms, dtype=torch.float32, device=params[0].device)
        self.steps = torch.zeros(self.members, device=params[0].device)  # (P,): skips make members' counts differ
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.template: dict = {}  # torch.optim.Adam's param_group fields, for the checkpoint layout

    @torch.no_grad()
    def step(self, members: np.ndarray | None = None) -> None:
        """Clip each member's gradient to its max_grad_norm, then one Adam step, for `members` (indices; all when
        None)."""
        chosen = np.arange(self.members) if members is None else np.asarray(members)
        if not len(chosen):
            return
        n = len(self.params)

        def slices(tensors: list[torch.Tensor]) -> list[torch.Tensor]:  # member-major: member k's n slices together
            views = [t.unbind(0) for t in tensors]
            return [view[k] for k in chosen for view in views]

        grads = slices([p.grad for p in self.params])
        # clip_grad_norm_: each member's norm over its slices of every gradient, then g *= min(1, max / (norm + 1e-6))
        norms = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).view(len(chosen), n), dim=1)
        clip = torch.clamp((norms + 1e-6).reciprocal() * self.max_grad_norm[chosen], max=1.0)  # torch's float / norm
        torch._foreach_mul_(grads, [c for c in clip for _ in range(n)])
        self.steps[chosen] += 1
        params, exp_avg, exp_avg_sq = slices(self.params), slices(self.exp_avg), slices(self.exp_avg_sq)
        steps = [self.steps[k] for k in chosen for _ in range(n)]
        beta1, beta2 = self.betas
        owners = np.repeat(chosen, n)  # the member of each slice
        for rate in np.unique(self.lr[chosen]):  # one fused call per distinct learning rate
            group = np.flatnonzero(self.lr[owners] == rate)
            torch._fused_adam_(
                [params[i] for i in group],
                [grads[i] for i in group],
                [exp_avg[i] for i in group],
                [exp_avg_sq[i] for i in group],
                [],
                [steps[i] for i in group],
                amsgrad=False,
                lr=float(rate),
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=self.eps,
                maximize=False,
            )

    def member_state_dict(self, k: int) -> dict:
        """Member k's state as torch.optim.Adam's state_dict of its single run (a plain module's parameters)."""
        step = self.steps[k].detach().cpu().clone()
        state = {}
        if float(step) > 0:
            state = {
                i: {"step": step.clone(), "exp_avg": self.exp_avg[i][k], "exp_avg_sq": self.exp_avg_sq[i][k]}
                for i in range(len(self.params))
            }
        group = {**self.template, "lr": float(self.lr[k]), "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    @torch.no_grad()
    def load_member_state_dict(self, k: int, state: dict) -> None:
        """Undo `member_state_dict`; CheckpointError when the state does not fit (one entry per parameter, each
        moment of member k's shape: `copy_` would broadcast a smaller one). The learning rate stays the config's, as
        a single run's resume keeps its optimizer's (`io.load_optimizer_state`)."""
        try:
            entries = state["state"]
            if not entries:
                return
            if len(entries) != len(self.params):
                raise CheckpointError(
                    f"optimizer: checkpoint holds {len(entries)} parameters' state, not {len(self.params)}"
                )
            steps = {float(entries[i]["step"]) for i in range(len(self.params))}
            for i, (exp_avg, exp_avg_sq) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
                for name, moment in (("exp_avg", exp_avg[k]), ("exp_avg_sq", exp_avg_sq[k])):
                    if tuple(entries[i][name].shape) != tuple(moment.shape):
                        raise CheckpointError(
                            f"optimizer: state[{i}].{name} has shape {tuple(entries[i][name].shape)}, "
                            f"this network's is {tuple(moment.shape)}"
                        )
                    moment.copy_(entries[i][name])
        except (KeyError, TypeError, RuntimeError, IndexError, AttributeError) as e:
            raise CheckpointError(f"optimizer: checkpoint state does not fit this optimizer ({e})") from None
        if len(steps) != 1:
            raise CheckpointError(f"optimizer: parameters hold different step counts {sorted(steps)}")
        self.steps[k] = steps.pop()


def adam_template(module: nn.Module) -> dict:
    """torch.optim.Adam's param_group fields (without params) for a plain module, as dqn builds it."""
    group = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True).state_dict()["param_groups"][0]
    return {k: v for k, v in group.items() if k != "params"}
