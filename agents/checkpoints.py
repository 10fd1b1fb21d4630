"""A member's checkpoint tree in its single run's layout: its networks, optimizer state, `Counters` and random
streams, and its replay when asked (`snapshot_member`), and the way back (`restore_member`). Every tree goes to
disk through networks/io.py, by the tracker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from agents.members import MemberAdam, MemberRun
from networks import io
from networks.errors import CheckpointError

if TYPE_CHECKING:
    from agents.learning import Learner
    from agents.replay import Replay


@dataclass
class Counters:
    """Per-run counters, saved under `counters` in every checkpoint (the field names are that layout)."""

    step: int = 0  # env transitions
    vec_steps: int = 0  # vector-env steps that held a transition
    updates: int = 0  # gradient steps
    episodes: int = 0
    since_train: int = 0  # transitions since the last training phase
    skipped_updates: int = 0  # non-finite updates skipped (nan_policy: skip)
    best_eval: float = -float("inf")


def snapshot_member(learner: Learner, member: MemberRun, counters: Counters, replay: Replay | None = None) -> dict:
    """Member k's checkpoint tree in its single run's layout (a single run's is member 0's): its network, target
    network (when the learner has one) and optimizer state, its counters and random streams, and its replay when
    asked."""
    k = member.index
    optimizer = learner.optimizer
    tree = {"q_net": learner.q_net.member_state(k)}
    if learner.target_net is not None:  # an agent without one (pqn) checkpoints none
        tree["target_net"] = learner.target_net.member_state(k)
    tree.update(
        optimizer=optimizer.member_state_dict(k) if isinstance(optimizer, MemberAdam) else optimizer.state_dict(),
        counters=asdict(counters),
        rng=member.rng_tree(),
    )
    if replay is not None:
        tree["replay"] = replay.state_dict(k)
    return tree


def restore_member(member: MemberRun, learner: Learner, replay: Replay | None, kind: str) -> Counters:
    """Undo `snapshot_member` from `member.resume`; returns its counters. CheckpointError when the tree does not fit
    (it is checked against a single run's network of the same config)."""
    tree, k = member.resume, member.index
    nets = {"q_net": learner.q_net, "target_net": learner.target_net}
    nets = {name: net for name, net in nets.items() if net is not None}
    missing = [key for key in (*nets, "optimizer", "counters", "rng") if key not in tree]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing} (is it a {kind} run?)")
    for name, net in nets.items():
        io.load_module_state(net.template, tree[name], name)  # keys and shapes checked on a single member's module
        net.load_member_state(k, tree[name])
    if isinstance(learner.optimizer, MemberAdam):
        learner.optimizer.load_member_state_dict(k, tree["optimizer"])
    else:
        io.load_optimizer_state(learner.optimizer, tree["optimizer"])
    try:
        counters = Counters(**tree["counters"])
    except TypeError as e:
        raise CheckpointError(f"counters: {e}") from None
    member.restore_rng(tree["rng"])
    if "replay" in tree and replay is not None:
        replay.load_state_dict(tree["replay"], k)
    return counters
