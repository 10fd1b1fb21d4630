"""One W&B run: start or resume it, log a run folder's checkpoints as model artifacts, finish it.

`start_wandb`, `log_model_artifacts` and `finish_wandb` act on one W&B run each, so a process may hold
several (one per population member). Online runs are bounded in time: a server that does not answer
stops a run at its start (`INIT_TIMEOUT_S`) and its end waits at most `FINISH_TIMEOUT_S` for the upload.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
from pathlib import Path

from launch.config import TrackingConfig
from networks import io, pretrained
from networks.errors import CheckpointError, ConfigError
from networks.run_folder import CHECKPOINTS, MEMBERS, newest_checkpoint

INIT_TIMEOUT_S = 10.0  # online: how long wandb.init may try to reach the server (wandb's own default: 90 s)
FINISH_TIMEOUT_S = 60.0  # online: how long the end of a run waits for W&B's upload; the rest is left to `wandb sync`


def start_wandb(run_dir: Path, tracking: TrackingConfig, config: dict):
    """Start (or resume) the run's W&B run; its id is kept in run_dir/wandb_id.txt. Online, a server that
    does not answer within INIT_TIMEOUT_S is a ConfigError on `tracking.wandb` (one line, exit 2)."""
    import wandb

    id_path = run_dir / "wandb_id.txt"
    run_id = id_path.read_text().strip() if id_path.exists() else secrets.token_hex(4)
    io.atomic_write_text(id_path, run_id)
    settings = {"silent": True, "console": "off", "x_disable_stats": True}
    if tracking.wandb == "online":  # bounded: wandb would otherwise retry for 90 s, and upload at the end for ever
        settings.update(init_timeout=INIT_TIMEOUT_S, finish_timeout=FINISH_TIMEOUT_S, finish_timeout_raises=True)
    try:
        run = wandb.init(
            mode=tracking.wandb,
            dir=str(run_dir),
            project=tracking.project,
            entity=tracking.entity,
            group=tracking.group,
            tags=list(tracking.tags),
            name=run_name(run_dir),
            id=run_id,
            resume="allow",
            reinit="create_new",  # one independent run per call, beside any other this process holds
            config=config,
            settings=wandb.Settings(**settings),
        )
    except wandb.errors.CommError as e:  # the server did not answer (or refused the connection) in time
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            "tracking.wandb",
            f"online, but the W&B server at {wandb.setup().settings.base_url} could not be reached within "
            f"{INIT_TIMEOUT_S:g} s ({reason}); "
            "use tracking.wandb=offline to record the run now and `wandb sync` it later",
        ) from None
    run.define_metric("global_step")
    run.define_metric("*", step_metric="global_step")
    return run


def finish_wandb(run, *, failed: bool) -> bool:
    """Finish one W&B run. False when an online run's upload was still unfinished FINISH_TIMEOUT_S after the
    end (its server stopped answering): what it holds then waits on disk, in `run.settings.sync_dir`, for
    `wandb sync`."""
    try:
        run.finish(exit_code=1 if failed else 0)
    except TimeoutError:
        return False
    return True


def log_model_artifacts(run, run_dir: Path) -> tuple[list[str], str | None]:
    """Log the run's best and final checkpoints as versions of the W&B model artifact `model-<run id>`
    (aliases `best` and `final`), once each at the end of a run, as stable-baselines3's W&B callback logs
    its model. Each version is a minimal run folder that loads like one: config.yaml, checkpoints/<stem>
    (.safetensors and .json; without the replay, which only a resume needs) and, for a network taken from
    another run, pretrained/. Its metadata holds the checkpoint's step and metric and the run's evaluation
    (summary.json's eval/* values). Returns (the aliases logged, why the others were not, or None).

    Online, logging an artifact first asks the server about it, and wandb waits about 20 s for an answer
    that will not come; so a server that does not take a connection is skipped at once, and the first
    failure ends the attempt."""
    import wandb

    run_dir = Path(run_dir)
    base_url = run.settings.base_url
    if not run.offline and not _accepts_connections(base_url):
        return [], f"{base_url} does not answer"
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    evaluation = {key: value for key, value in summary.items() if key.startswith("eval/")}
    logged, problems = [], []
    for alias, prefix in (("best", "best"), ("final", "any")):  # final: what `--checkpoint last` loads
        try:
            found = newest_checkpoint(run_dir, prefix)
        except CheckpointError as e:  # the run itself is done: say what is missing from W&B, and go on
            problems.append(f"{alias}: {e}")
            continue
        if found is None:
            continue
        stem, tree, meta = found
        details = {"checkpoint": alias, "step": meta.get("step"), "metric": meta.get("metric"), **evaluation}
        artifact = wandb.Artifact(
            f"model-{run.id}", type="model", metadata={k: v for k, v in details.items() if v is not None}
        )
        if (run_dir / "config.yaml").is_file():  # a run folder has one; a bare tracker (tests) may not
            artifact.add_file(str(run_dir / "config.yaml"), name="config.yaml")
        for path in sorted((run_dir / pretrained.COPIES).glob("*")):
            artifact.add_file(str(path), name=f"{pretrained.COPIES}/{path.name}")
        with tempfile.TemporaryDirectory(prefix="dlforge-artifact-") as folder:
            if "replay" in tree:
                stem = io.save(Path(folder) / stem.name, {k: v for k, v in tree.items() if k != "replay"}, meta)
            for suffix in (".safetensors", ".json"):
                artifact.add_file(str(stem) + suffix, name=f"{CHECKPOINTS}/{stem.name}{suffix}")  # copied now
            try:
                run.log_artifact(artifact, aliases=[alias])
            except wandb.errors.Error as e:  # e.g. the server stopped answering midway
                problems.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
                break
        logged.append(alias)
    return logged, "; ".join(problems) or None


def _accepts_connections(url: str, timeout: float = 3.0) -> bool:
    """Whether the host and port of `url` take a TCP connection within `timeout` seconds."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def _check_wandb_online(tracking: TrackingConfig) -> None:
    """`online` without an API key fails at start with a clear message instead of hanging later."""
    if tracking.wandb != "online":
        return
    if os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return
    raise ConfigError(
        "tracking.wandb",
        "online needs a W&B API key (set WANDB_API_KEY or run `wandb login`); "
        "use offline to record now and `wandb sync` later",
    )


def run_name(run_dir: Path) -> str:
    """The W&B run's name: the run folder's, and for a population's member `<population>/<member>`, so the members
    of several populations (a packed sweep's trials) do not all show as `seed0` in one group."""
    if run_dir.parent.name == MEMBERS:
        return f"{run_dir.parent.parent.name}/{run_dir.name}"
    return run_dir.name
