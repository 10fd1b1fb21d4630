"""A SweepPlan in Ray Tune's terms: the search space, the searcher, the scheduler and the Tuner.

The search space becomes Tune distributions and `seeds` a grid over `seed` (or a Repeater around Optuna, which
runs each proposed point once per seed and reports their mean back); `asha` is Ray's ASHA scheduler with the
trainer's step as its clock. Every trial is `launch.sweep_trial.run_trial`, a public function trainable.

Packed (launch/sweep_config.py), a trial trains every seed of its point: the space has no `seed`, Optuna needs
no Repeater, and the trial reports the mean over its seeds. Under pack: points Tune's grid runs over the plan's
packs, and a trial reports its best point's mean over seeds (launch/sweep_trial.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launch.sweep_config import PACK_INDEX, SweepPlan, parse_dimension, trial_label
from launch.sweep_trial import CONFIG_ERROR, run_trial

TUNE_DIR = "tune"  # in the sweep folder: Tune's experiment state, what --resume restores


def tune_search(plan: SweepPlan):
    """(param_space, search_alg, num_samples) for Tune."""
    from ray import tune

    settings = plan.settings
    if settings.pack == "points":
        return {PACK_INDEX: tune.grid_search(list(range(len(plan.packs()))))}, None, settings.num_samples
    space: dict[str, Any] = {}
    for key, spec in settings.space.items():
        kind, values = parse_dimension(key, spec)
        if kind in ("grid", "choice"):
            space[key] = tune.grid_search(values) if kind == "grid" else tune.choice(values)
        else:
            space[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
                *values
            )
    if settings.search == "optuna" and plan.packed:  # a trial trains every seed and reports their mean
        from ray.tune.search.optuna import OptunaSearch

        return space, OptunaSearch(seed=settings.seeds[0]), settings.num_samples
    if settings.search == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        # Optuna proposes points; the Repeater runs each once per seed and reports their mean back.
        searcher = Repeater(OptunaSearch(seed=settings.seeds[0]), repeat=len(settings.seeds), set_index=True)
        return space, searcher, settings.num_samples * len(settings.seeds)
    if not plan.packed:
        space["seed"] = tune.grid_search(list(settings.seeds))
    return space, None, settings.num_samples


def tune_scheduler(plan: SweepPlan):
    scheduler = plan.settings.scheduler
    if scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="step",
        grace_period=scheduler.grace_period,
        max_t=scheduler.max_t or max(plan.total_steps, scheduler.grace_period),
        reduction_factor=scheduler.reduction_factor,
    )


def can_restore(sweep_dir: Path) -> bool:
    """Whether Tune saved this sweep's state (it does at its first step); a driver killed before that left
    nothing to restore, and the sweep starts again from its beginning."""
    from ray import tune

    return (sweep_dir / TUNE_DIR).is_dir() and tune.Tuner.can_restore(str(sweep_dir / TUNE_DIR))


def make_tuner(plan: SweepPlan, *, restore: bool):
    """The Tuner for `plan`: a new one, or (`restore`) the one whose state lies in the sweep folder, continuing
    its unfinished and failed trials."""
    from ray import tune

    resources = {"cpu": plan.settings.resources.cpu, "gpu": plan.settings.resources.gpu}
    trial = tune.with_resources(tune.with_parameters(run_trial, plan=plan), resources)
    if restore:
        return tune.Tuner.restore(str(plan.sweep_dir / TUNE_DIR), trial, resume_unfinished=True, resume_errored=True)
    param_space, search_alg, num_samples = tune_search(plan)
    label = _TrialLabel(plan.name)
    return tune.Tuner(
        trial,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=plan.settings.metric,
            mode=plan.settings.mode,
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=tune_scheduler(plan),
            max_concurrent_trials=plan.settings.max_concurrent,
            reuse_actors=True,  # the next trial runs in a finished trial's process: no new process, no re-imports
            trial_name_creator=label,
            trial_dirname_creator=label,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(plan.sweep_dir),
            failure_config=tune.FailureConfig(max_failures=plan.settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # pointers: tiny, and no forced snapshots
            stop=_stop_on_config_error(),
            verbose=1,
        ),
    )


class _TrialLabel:
    """Names Tune's trials (and their folders) like their run folders: `<sweep>-003`."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, trial) -> str:
        return trial_label(self.name, trial.trial_id)


def _stop_on_config_error():
    """A Stopper that ends the whole sweep as soon as one trial reports bad input (all share the config)."""
    from ray import tune

    class StopOnConfigError(tune.Stopper):
        def __init__(self):
            self.failed = False

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.failed = self.failed or CONFIG_ERROR in result
            return self.failed

        def stop_all(self) -> bool:
            return self.failed

    return StopOnConfigError()
