"""The `dlforge` command line: train, eval, generate, sweep, report, list, export.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback, no run folder left behind),
1 a failure while running.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from networks.errors import CheckpointError, ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlforge", description="Deep RL and generative models on one networks zoo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser("train", help="train one run from a YAML config")
    train.add_argument("config", nargs="?", help="a YAML file, or a bundled config by name (dqn/cartpole)")
    train.add_argument("overrides", nargs="*", help="key=value or key.sub=value")
    train.add_argument("--out", default="runs", help="root folder for runs (default: runs)")
    train.add_argument("--name", help="run folder name (default: <config>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")

    ev = sub.add_parser("eval", help="evaluate a trained agent deterministically")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--video", action="store_true", help="write an mp4 of the first episode")
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument(
        "--save-trajectories",
        metavar="PATH.npz",
        help="write the episodes' obs, actions, rewards and dones (seq2seq_ae trains on them: data=npz:PATH.npz); "
        "a population's folder writes one file per member, PATH-<member>.npz",
    )

    gen = sub.add_parser("generate", help="sample from a trained generator or VAE (autoencoders reconstruct)")
    gen.add_argument("run_dir")
    gen.add_argument("--n", type=int, default=64)
    gen.add_argument("--out", default=None, help="grid .png (default RUN_DIR/generated.png) or .npz")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--label", type=int, default=None, help="class to draw (conditional dcgan runs)")

    sweep = sub.add_parser("sweep", help="run a hyperparameter sweep on Ray Tune")
    sweep.add_argument("sweep_config")
    sweep.add_argument("overrides", nargs="*", help="key=value applied to every trial's base config")
    sweep.add_argument("--address", default=None, help="join this Ray cluster (default: embedded local cluster)")
    sweep.add_argument("--cpus-per-trial", type=float, default=None)
    sweep.add_argument("--gpus-per-trial", type=float, default=None)
    sweep.add_argument("--max-concurrent", type=int, default=None)
    sweep.add_argument("--seeds", default=None, help="the sweep's seeds, e.g. 0,1,2,3 (replaces the file's seeds:)")
    sweep.add_argument(
        "--pack", default=None, help="seeds | none | points: how trials are packed into populations (see the docs)"
    )
    sweep.add_argument("--max-members", type=int, default=None, help="pack: points: members per trial")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sweep.add_argument("--out", default="runs", help="root folder (sweeps go to <out>/sweeps/<name>)")
    sweep.add_argument("--name", default=None)

    report = sub.add_parser("report", help="write learning curves, tables and an index.html for runs and sweeps")
    report.add_argument("dirs", nargs="+")
    report.add_argument("--out", default=None, help="report folder (default: <first dir>/report)")

    sub.add_parser("list", help="list network presets, trainer kinds and bundled configs")

    export = sub.add_parser("export", help="export a trained policy or generator: ONNX, TorchScript or a Hub folder")
    export.add_argument("run_dir")
    export.add_argument("--format", required=True, choices=["onnx", "torchscript", "hub"])
    export.add_argument("--out", default=None, help="file (onnx, torchscript) or new folder (hub); default in RUN_DIR")
    export.add_argument("--checkpoint", choices=["best", "last"], default="best")
    export.add_argument("--episodes", type=int, default=10, help="hub: greedy evaluation episodes for the model card")
    export.add_argument("--seed", type=int, default=12345, help="hub: seed of the evaluation")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_SILENT", "true")
    # A W&B service inherited from a parent process (wandb sets WANDB_SERVICE for its children) would tie this
    # run's records to the parent's process; each dlforge process runs its own.
    os.environ.pop("WANDB_SERVICE", None)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # `key=value` overrides may also follow the flags: `train cfg.yaml --out d lr=1e-3`
        stray = [e for e in extras if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*args.overrides, *extras]
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path the user named that cannot be read or written: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        failed = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)  # the machine's fault, not the input's
        print(f"{'failed' if failed else 'error'}: {where}{e.strerror or e}", file=sys.stderr)
        return 1 if failed else 2


def cmd_train(args: argparse.Namespace) -> int:
    from launch.bundled import resolve_config
    from launch.config import load_config
    from launch.run import default_name, load_run_spec, new_run_dir, train_run

    overrides = list(args.overrides)
    if args.resume:
        if args.config:  # with --resume every positional is an override
            overrides.insert(0, args.config)
        run_dir = Path(args.resume)
        spec = load_run_spec(run_dir, overrides)
        resume = True
    else:
        if not args.config:
            raise ConfigError("config", "missing; usage: dlforge train CONFIG [key=value ...]")
        spec = load_config(resolve_config(args.config), overrides)
        run_dir = new_run_dir(args.out, args.name or default_name(spec.source, spec.kind))
        resume = False
    try:
        result = train_run(spec, run_dir, resume=resume, progress=True)
    except (ConfigError, CheckpointError):
        raise
    except Exception as e:  # a failure while running: keep the folder (resumable), say where
        import traceback

        try:  # the disk may be full or read-only: then the traceback stays unwritten
            (run_dir / "error.log").write_text(traceback.format_exc())
            where = f" (traceback in {run_dir / 'error.log'})"
        except OSError:
            where = ""
        print(f"failed: {type(e).__name__}: {e}{where}", file=sys.stderr)
        print(f"run: {run_dir}")
        return 1
    numbers = {k: v for k, v in result.summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    shown = sorted(numbers, key=lambda k: not k.startswith("eval/"))[:6]  # evaluation results first
    if shown:
        print("  ".join(f"{k}={numbers[k]:.4g}" for k in shown))
    print(f"run: {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from launch.run import evaluate_run

    if args.episodes < 1:
        raise ConfigError("--episodes", f"must be >= 1, got {args.episodes}")
    result = evaluate_run(
        Path(args.run_dir),
        episodes=args.episodes,
        which=args.checkpoint,
        seed=args.seed,
        video=args.video,
        trajectories=args.save_trajectories,
    )
    for name, member in result.get("members", {}).items():  # a population: each member, then the mean over them
        print(f"{name}: mean_return={member['mean_return']:.2f} std={member['std_return']:.2f}")
    if result.get("skipped"):
        print(f"skipped (no checkpoint): {', '.join(result['skipped'])}")
    if result.get("video"):
        print(f"video: {result['video']}")
    for evaluated in result.get("members", {}).values() or [result]:  # a population: each member's own file
        if evaluated.get("trajectories"):
            print(f"trajectories: {evaluated['trajectories']}")
    print(f"mean_return={result['mean_return']:.2f} std={result['std_return']:.2f} episodes={result['episodes']}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from launch.run import generate_run

    if args.n < 1:
        raise ConfigError("--n", f"must be >= 1, got {args.n}")
    path = generate_run(Path(args.run_dir), n=args.n, out=args.out, seed=args.seed, label=args.label)
    print(f"wrote: {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from launch import sweep
    from launch.bundled import resolve_config

    args.sweep_config = str(resolve_config(args.sweep_config))  # a file, or a bundled sweep (sweeps/cartpole-lr)
    return sweep.main(args)


def cmd_report(args: argparse.Namespace) -> int:
    from launch import report

    return report.main(args)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    import networks
    from launch.bundled import bundled_configs, shown
    from launch.registry import TRAINERS

    console = Console()
    presets = Table(title="network presets")
    presets.add_column("preset")
    for name in networks.PRESETS:
        presets.add_row(name)
    console.print(presets)
    kinds = Table(title="trainer kinds")
    kinds.add_column("kind")
    kinds.add_column("module")
    for kind, module in TRAINERS.items():
        kinds.add_row(kind, module)
    console.print(kinds)
    configs = Table(title="bundled configs (dlforge train NAME)")
    configs.add_column("name")
    configs.add_column("file")
    for name, path in bundled_configs().items():
        configs.add_row(name, shown(path))
    console.print(configs)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from launch import export

    return export.main(args)


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "generate": cmd_generate,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "list": cmd_list,
    "export": cmd_export,
}


if __name__ == "__main__":
    sys.exit(main())
