"""The run directory contract: `metrics.csv`, `summary.json`, `checkpoint.pt`, all written atomically.

A file is written to a temporary name in the same directory and renamed over the target, so a crash never
leaves a half-written file, and a run whose `summary.json` exists is complete. A checkpoint (and a saved
policy) is a plain `torch.save` file that `torch.load(path, weights_only=True)` opens; its SHA-256 lives beside
it in `checkpoint.pt.sha256` (the format of `sha256sum`, so `sha256sum -c checkpoint.pt.sha256` checks it), and
both are fsynced, with their directory, before and after the rename.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import secrets
import tempfile
import threading
from pathlib import Path

import torch

from alignlab.errors import ConfigError, DataError

SUMMARY = "summary.json"
METRICS = "metrics.csv"
DISTRIBUTIONS = "distributions.csv"  # a bandit policy's probabilities per iteration (animations)
CHECKPOINT = "checkpoint.pt"
TMP_SUFFIX = ".tmp"
CHECKSUM_SUFFIX = ".sha256"
# The format before 2026-12: the SHA-256 in a header line before the torch.save payload (still read).
CHECKPOINT_MAGIC = b"alignlab-checkpoint v1 sha256="
CHECKPOINT_KEYS = ("policy", "optimizer", "extra_modules", "sampler", "generator", "eval_generator", "torch_rng")


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a multi-process launch (accelerate / torchrun set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def disk_full(path: Path) -> DataError:
    return DataError(
        f"the disk is full: {path} could not be written (the files written before it are intact)",
        f"free space on the disk of {Path(path).parent} and re-run the same command: it resumes",
    )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to `path` atomically; `durable`: fsync the file before the rename and its directory after,
    so that a power cut leaves the old file or the new one. In a multi-process run only rank 0 writes: every
    rank holds the same weights and metrics, and one writer keeps the run directory free of races."""
    if not is_main_process():
        return
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mode 0o666 less the user's umask, as for any file the user creates (mkstemp would make it 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_directory(path.parent)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path) from None
        raise


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + CHECKSUM_SUFFIX)


def write_with_checksum(path: Path, payload: bytes) -> None:
    """`payload` at `path` and its SHA-256 in `path`.sha256, both durable.

    The checksum file is written first and keeps the previous file's digest on a comment line: a kill between
    the two renames leaves the previous file, which that line still vouches for."""
    path = Path(path)
    digest = hashlib.sha256(payload).hexdigest()
    previous = checksum_digests(path)[:1]
    lines = f"{digest}  {path.name}\n" + "".join(f"# previous {d}\n" for d in previous if d != digest)
    atomic_write_bytes(checksum_path(path), lines.encode(), durable=True)
    atomic_write_bytes(path, payload, durable=True)


def checksum_digests(path: Path) -> list[str]:
    """The digests `path`.sha256 vouches for: the current file's, then the previous one's (none: no such file)."""
    try:
        text = checksum_path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return []
    digests = []
    for line in text.splitlines():
        word = line.removeprefix("# previous ").split(" ", 1)[0]
        if len(word) == 64:
            digests.append(word)
    return digests


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_verified(path: Path, what: str, fix: str) -> bytes:
    """The bytes of `path` once its checksum file vouches for them, else a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is a directory, not {what}", "remove it, or choose another directory")
    data = path.read_bytes()
    if data.startswith(CHECKPOINT_MAGIC):  # an older alignlab's header format: its checksum is inside
        header, _, payload = data.partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != header[len(CHECKPOINT_MAGIC) :]:
            raise DataError(f"{what} {path} is damaged: its checksum does not match (truncated or altered)", fix)
        return payload
    digests = checksum_digests(path)
    if not digests:
        raise DataError(
            f"{what} {path} has no checksum file {checksum_path(path).name} beside it (copied without it, or "
            "written by something other than alignlab), so its integrity cannot be checked",
            f"copy {checksum_path(path).name} with it; or {fix}",
        )
    if hashlib.sha256(data).hexdigest() not in digests:
        raise DataError(f"{what} {path} is damaged: its checksum does not match (truncated or altered)", fix)
    return data


def load_torch(data: bytes, path: Path, what: str, fix: str):
    """torch.load of verified bytes, weights only: tensors, numbers, strings and containers of them."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling error: a file of another program that matches its checksum
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise DataError(f"{what} {path} cannot be read as a weights-only torch file ({first})", fix) from None


class BackgroundWriter:
    """Durable writes off the training loop: an fsync takes milliseconds to tens of them, a bandit iteration
    less than one. The loop never waits for the disk: a write asked for while another is in flight replaces the
    one still pending (only the newest checkpoint matters), and `wait()` (at the end) finishes them and raises
    the error of one that failed, as does the next `write()`. Each write is atomic, so a kill mid-write leaves
    the previous file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pending: tuple[Path, bytes] | None = None
        self.error: BaseException | None = None

    def write(self, path: Path, payload: bytes) -> None:
        self._raise()
        with self.lock:
            self.pending = (Path(path), payload)
            if self.thread is None:  # published only once started: wait() may run at any moment (a Ctrl-C)
                thread = threading.Thread(target=self._drain, name="alignlab-checkpoint")
                thread.start()
                self.thread = thread

    def _drain(self) -> None:
        while True:
            with self.lock:
                if self.pending is None or self.error is not None:
                    self.thread = None
                    return
                path, payload = self.pending
                self.pending = None
            try:
                write_with_checksum(path, payload)
            except BaseException as error:  # handed to the loop's thread by write() or wait()
                self.error = error

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def wait(self, raise_error: bool = True) -> None:
        """Until the pending write is done; then its error, if any and `raise_error` (False: an error of the
        caller's own is already propagating and must stay the one the user sees)."""
        with self.lock:
            thread = self.thread
        if thread is not None:
            thread.join()
        if raise_error:
            self._raise()


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


def checkpoint_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, state: dict, writer: BackgroundWriter | None = None) -> None:
    """torch.save(state) at `path`, with its checksum beside it; through `writer` when given (in the background)."""
    payload = checkpoint_bytes(state)
    if writer is None:
        write_with_checksum(path, payload)
    else:
        writer.write(path, payload)


def load_checkpoint(path: Path) -> dict | None:
    """The state saved at `path`, None when there is none, or a DataError naming the file when it is damaged or
    was written by an alignlab whose checkpoints this one cannot resume."""
    path = Path(path)
    if not path.exists():
        return None
    fix = "delete it to start the run afresh (or force=true)"
    state = load_torch(read_verified(path, "the checkpoint", fix), path, "the checkpoint", fix)
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise DataError(
            f"the checkpoint {path} was written by an older alignlab: it lacks {', '.join(missing)}, which this "
            "version resumes from",
            "force=true to start the run afresh (or resume it with the alignlab that wrote it)",
        )
    return state


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """`key: saved -> current` for every leaf that differs between two nested config dicts."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def check_resumable(state: dict, config: dict | None, path: Path) -> None:
    """A ConfigError unless the checkpoint at `path` was made with `config` (everything that sets the numbers)."""
    if config is None or state.get("config_hash") == config_hash(config):
        return
    saved = state.get("config")
    if not isinstance(saved, dict) or not state.get("config_hash"):
        raise ConfigError(
            f"the checkpoint {path} was written by an older alignlab that recorded no run configuration, so "
            "whether it belongs to this one cannot be told",
            "force=true to start this configuration afresh there, or another directory with hydra.run.dir=PATH",
        )
    differ = config_differences(saved, config)
    # what a run is (its task, objective, regime) first: those explain the other differences
    differ.sort(key=lambda d: not d.split(":", 1)[0].endswith(("._target_", ".name")))
    shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
    raise ConfigError(
        f"{path} belongs to another run configuration ({shown})",
        "force=true to start this configuration afresh there, or another directory with hydra.run.dir=PATH",
    )


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
            try:
                with open(self.path, "ab") as f:
                    f.write(text)
            except OSError as error:  # a torn append is cut again by the resume (restore)
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise disk_full(self.path) from None
                raise
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
            data = self._as_checkpointed(state)
            if data is None:
                problem = "does not hold the rows its checkpoint recorded (truncated or altered)"
                raise DataError(f"{self.path} {problem}", fix)
            atomic_write_bytes(self.path, data)
        if self.path.stat().st_size > len(data):  # rows appended after the checkpoint by the run that crashed
            os.truncate(self.path, len(data))
        reader = csv.DictReader(io.StringIO(data.decode()))
        rows = [{k: int(v) if k == "iteration" else float(v) for k, v in row.items() if v != ""} for row in reader]
        if len(rows) != state["rows"]:
            raise DataError(f"{self.path} has {len(rows)} rows where its checkpoint recorded {state['rows']}", fix)
        self.columns = list(reader.fieldnames or [])
        self.rows_written, self.size, self.digest = len(rows), len(data), hashlib.sha256(data)
        return rows

    def _as_checkpointed(self, state: dict) -> bytes | None:
        """The checkpoint's bytes of metrics.csv, rebuilt from a file rewritten after it, or None.

        A row that brings a new column makes `write` rewrite the file under a wider header; the checkpoint that
        records that rewrite is written in the background, so a run killed in between leaves the older
        checkpoint beside the wider file. Its first rows, cell for cell, under the columns they use, are then
        exactly what the older checkpoint recorded: checked against its digest, never assumed."""
        try:
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader)
                cells = [row for _, row in zip(range(state["rows"]), reader, strict=False)]
        except (OSError, UnicodeDecodeError, csv.Error, StopIteration):
            return None
        if len(cells) != state["rows"] or any(len(row) != len(header) for row in cells):
            return None
        rows = [{k: v for k, v in zip(header, row, strict=True) if v != ""} for row in cells]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = metrics_columns(rows)
        writer.writerow(columns)
        writer.writerows([row.get(column, "") for column in columns] for row in rows)
        data = buffer.getvalue().encode()
        if len(data) != state["bytes"] or hashlib.sha256(data).hexdigest() != state["sha256"]:
            return None
        return data


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
