"""One writer per run directory: an OS lock held for the run's life.

`fcntl.flock` on `.hydra/alignlab.lock`: the kernel releases it when the process ends, however it ends (a
SIGKILL included), so a lock is never stale. The file holds the holder's PID, which a second process into the
same directory names when it stops. Hydra writes `.hydra/` before the task function runs, so a refused second
process has already overwritten the holder's record of its config there: the holder puts its own back when it
releases the lock. A sweep takes one lock per job directory.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alignlab.errors import ConfigError

LOCK = Path(".hydra") / "alignlab.lock"


class RunDirLock:
    """Held from `acquire()` to `release()` (or the process's end); `with RunDirLock(dir):` does both."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.fd: int | None = None
        self.record: dict[Path, bytes] = {}

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(
                    f"{self.run_dir} is in use by another alignlab process (PID {holder}) writing the same run",
                    "wait for it to finish (re-running then resumes or skips), or give this run another directory "
                    "with hydra.run.dir=PATH",
                ) from None
            # a holder unlinks the file as it releases: a lock taken on an unlinked file protects nothing
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        self.record = {p: p.read_bytes() for p in self.path.parent.glob("*.yaml") if p.is_file()}
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        for path, data in self.record.items():  # a refused second process overwrote Hydra's record of ours
            try:
                if path.read_bytes() != data:
                    path.write_bytes(data)
            except OSError:
                pass  # the directory was removed (a refused run cleans up after itself)
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
