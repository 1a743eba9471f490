"""The run directory contract: `metrics.csv`, `summary.json`, `checkpoint.pt`, all written atomically.

A file is written to a temporary name in the same directory and renamed over the target, so a crash never
leaves a half-written file, and a run whose `summary.json` exists is complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import torch

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a multi-process launch (accelerate / torchrun set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically. In a multi-process run only rank 0 writes: every rank holds the same
    weights and metrics, and one writer keeps the run directory free of races."""
    if not is_main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, obj: dict) -> None:
    text = json.dumps({k: _jsonable(v) for k, v in obj.items()}, indent=2, sort_keys=True)
    atomic_write_bytes(path, (text + "\n").encode())


def write_metrics(path: Path, rows: list[dict]) -> None:
    """One row per iteration: `iteration` first, then every metric seen, in order of first appearance."""
    columns = ["iteration"]
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def check_writable(directory: Path) -> str | None:
    """None when `directory` can be created and a file written in it, else the reason.

    It tries for real (permission bits say nothing to root, a read-only mount says nothing to os.access);
    creating the directory and a probe file that is removed again overwrites nothing.
    """
    directory = Path(directory).absolute()
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".alignlab-write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        return error.strerror or str(error)
    return None
