"""Read a W&B run's transaction log (`run-<id>.wandb`) back from disk, without network or a W&B account.

wandb ships no reader for its transaction log, so this follows its documented LevelDB-style layout:
a 7-byte file header `<4sHB>` (b":W&B", 0xBEE1, 0), then 32 KiB blocks of records, each with a 7-byte
header `<IHB>` (crc32, length, type: 1 full, 2 first, 3 middle, 4 last). A block tail shorter than
7 bytes is padding. Joined payloads are `wandb_internal_pb2.Record` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: str | Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    magic, version, _ = struct.unpack("<4sHB", data[:HEADER])
    assert magic == b":W&B" and version == 0xBEE1, f"{path} is not a W&B transaction log"
    offset, pending = HEADER, b""
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:  # block tail padding
            offset += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        payload = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind in (1, 2):
            pending = payload
        else:
            pending += payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def history(path: str | Path) -> list[dict]:
    """Every `run.log` row as a dict of key -> decoded JSON value."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict = {}
        for item in record.history.item:
            *parents, leaf = [item.key] if item.key else list(item.nested_key)
            node = row
            for part in parents:  # media (images, videos) arrive as nested keys
                node = node.setdefault(part, {})
            node[leaf] = json.loads(item.value_json)
        rows.append(row)
    return rows


def offline_runs(run_dir: str | Path) -> list[Path]:
    """The `.wandb` files of every offline run under a run folder, oldest first."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def online_runs(run_dir: str | Path) -> list[Path]:
    """The `.wandb` files of every online run under a run folder (W&B keeps its own log of what it sends)."""
    return sorted(Path(run_dir).glob("wandb/run-*/run-*.wandb"))


def run_config(path: str | Path) -> dict:
    """The run's config as logged (key -> value)."""
    config = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        updates = record.config.update if kind == "config" else record.run.config.update if kind == "run" else []
        for item in updates:
            config[item.key] = json.loads(item.value_json)
    return config


def artifacts(path: str | Path) -> list[dict]:
    """Every artifact the run logged, in order: name, type, aliases, metadata (decoded) and files, a dict of
    the path inside the artifact -> the local file W&B staged for upload (what `wandb sync` sends)."""
    found = []
    for record in records(path):
        if record.WhichOneof("record_type") != "artifact":
            continue
        artifact = record.artifact
        found.append(
            {
                "name": artifact.name,
                "type": artifact.type,
                "aliases": list(artifact.aliases),
                "metadata": json.loads(artifact.metadata) if artifact.metadata else {},
                "files": {entry.path: Path(entry.local_path) for entry in artifact.manifest.contents},
            }
        )
    return found
