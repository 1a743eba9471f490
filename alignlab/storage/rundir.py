"""The run directory contract: `metrics.csv`, `summary.json`, `checkpoint.pt`, all written atomically.

A file is written to a temporary name in the same directory and renamed over the target, so a crash never
leaves a half-written file, and a run whose `summary.json` exists is complete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import secrets
import tempfile
from pathlib import Path

import torch

from alignlab.errors import DataError

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
TMP_SUFFIX = ".tmp"
CHECKPOINT_MAGIC = b"alignlab-checkpoint v1 sha256="


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
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    # mode 0o666 less the user's umask, as for any file the user creates (mkstemp would make it 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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


def metrics_columns(rows: list[dict]) -> list[str]:
    """`iteration` first, then every metric seen, in order of first appearance."""
    columns = {"iteration": None}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def metrics_text(rows: list[dict], columns: list[str] | None = None, header: bool = True) -> bytes:
    """CSV of `rows` under `columns` (every key of every row must be one); a missing value is empty."""
    columns = columns or metrics_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([row.get(column, "") for column in columns] for row in rows)
    return buffer.getvalue().encode()


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save(state) behind a header with its SHA-256, so that a damaged file is named, never loaded."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: Path) -> dict | None:
    """The state saved at `path`, None when there is none, or a DataError naming the file when it is damaged."""
    path = Path(path)
    if not path.exists():
        return None
    damaged = f"the checkpoint {path} is damaged"
    fix = "delete it to start the run afresh (or force=true)"
    if not path.is_file():
        raise DataError(f"{path} is a directory, not a checkpoint", "remove it, or choose another hydra.run.dir")
    data = path.read_bytes()
    header, _, payload = data.partition(b"\n")
    if not header.startswith(CHECKPOINT_MAGIC):
        raise DataError(f"{damaged} or was not written by this version of alignlab (no checksum header)", fix)
    if hashlib.sha256(payload).hexdigest().encode() != header[len(CHECKPOINT_MAGIC) :]:
        raise DataError(f"{damaged}: its checksum does not match (truncated or altered)", fix)
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


class MetricsFile:
    """metrics.csv kept in step with the checkpoints by appending the rows since the last one.

    Rewriting every row at every checkpoint made checkpointing cost O(iterations^2). The file is rewritten
    whole only when a row brings a new column; otherwise rows are appended. `state()` goes into the
    checkpoint (rows, bytes, SHA-256 of those bytes); `restore()` cuts what a crash appended after it and
    checks the rest, so a resumed run continues from exactly the rows its checkpoint saw.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = []
        self.rows_written = 0
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, rows: list[dict]) -> None:
        if not is_main_process():
            return
        new = rows[self.rows_written :]
        known = set(self.columns)
        if not known or any(not known.issuperset(row) for row in new):
            text = metrics_text(rows)
            atomic_write_bytes(self.path, text)
            self.columns = metrics_columns(rows)
            self.digest = hashlib.sha256(text)
            self.size = len(text)
        else:
            text = metrics_text(new, self.columns, header=False)
            with open(self.path, "ab") as f:
                f.write(text)
            self.digest.update(text)
            self.size += len(text)
        self.rows_written = len(rows)

    def state(self) -> dict:
        return {"rows": self.rows_written, "bytes": self.size, "sha256": self.digest.hexdigest()}

    def restore(self, state: dict) -> list[dict]:
        """The rows recorded up to the checkpoint described by `state`; a DataError when they are damaged."""
        fix = "delete the run directory's checkpoint.pt and metrics.csv to start afresh (or force=true)"
        if not self.path.is_file():
            raise DataError(f"{self.path} is missing or not a file, but the checkpoint needs its rows", fix)
        with open(self.path, "rb") as f:
            data = f.read(state["bytes"])
        if len(data) < state["bytes"] or hashlib.sha256(data).hexdigest() != state["sha256"]:
            raise DataError(f"{self.path} does not hold the rows its checkpoint recorded (truncated or altered)", fix)
        if self.path.stat().st_size > len(data):  # rows appended after the checkpoint by the run that crashed
            os.truncate(self.path, len(data))
        reader = csv.DictReader(io.StringIO(data.decode()))
        rows = [{k: int(v) if k == "iteration" else float(v) for k, v in row.items() if v != ""} for row in reader]
        if len(rows) != state["rows"]:
            raise DataError(f"{self.path} has {len(rows)} rows where its checkpoint recorded {state['rows']}", fix)
        self.columns = list(reader.fieldnames or [])
        self.rows_written, self.size, self.digest = len(rows), len(data), hashlib.sha256(data)
        return rows


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed run left behind (`.NAME.XXXX.tmp`)."""
    removed = []
    for tmp in Path(run_dir).glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_file_slots(run_dir: Path, names: tuple[str, ...] = (SUMMARY, METRICS, CHECKPOINT, "figure.png")) -> None:
    """A DataError before any work when a directory sits where the run will write one of its files."""
    for name in names:
        path = Path(run_dir) / name
        if path.is_dir():
            raise DataError(
                f"{path} is a directory, where the run writes its {name}",
                "remove or rename that directory, or choose another hydra.run.dir",
            )


def finished_run_problem(run_dir: Path) -> str | None:
    """None when `run_dir` holds a finished run (a readable summary.json object and, for a single run, a
    metrics.csv of complete rows that ends at the last iteration), else what is wrong, in a few words."""
    path = Path(run_dir) / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{SUMMARY} is unreadable ({type(error).__name__})"
    if not isinstance(summary, dict) or not summary:
        return f"{SUMMARY} is not a JSON object with results"
    if "num_seeds" in summary:  # the aggregate of num_seeds runs: each seed's directory is checked on its own
        return None
    if not isinstance(summary.get("iterations"), int):
        return f"{SUMMARY} has no iteration count"
    metrics = Path(run_dir) / METRICS
    try:
        text = metrics.read_text()
        rows = list(csv.reader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return f"{METRICS} is unreadable ({type(error).__name__})"
    width = len(rows[0]) if rows else 0
    last = rows[-1][0] if len(rows) > 1 else None
    if not text.endswith("\n") or last != str(summary["iterations"]) or any(len(r) != width for r in rows):
        return f"{METRICS} does not hold {summary['iterations']} complete rows"
    return None


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
