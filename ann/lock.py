"""One training run per output folder: a lock file that names its owner.

The owner holds an exclusive flock on `<out>/train.lock` and writes its pid, host and start
time into it. The kernel (or the NFS server) drops a flock when its process dies, however it
dies, so a lock left behind by a killed run is recognised as stale wherever the next run
starts: on this host or, after a scheduler requeues the job, on another node. Where the
file system has no flock, the pid decides instead: a lock from this host whose pid is gone
is stale; one from another host cannot be checked from here and is refused.
"""

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from .errors import LockError

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"
WAIT = "Wait for it to end, or stop it."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe(owner: dict) -> str:
    return (
        f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
        f"since {owner.get('started', '?')}"
    )


def _read_owner(path: Path, wait_s: float = 0.0) -> dict:
    """The owner written in a lock file ({} if none yet: its owner may be writing it)."""
    time.sleep(wait_s)
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


class RunLock:
    """`with RunLock(out):` holds `out/train.lock` for the block, or raises LockError."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._created: list[Path] = []  # folders acquire made, deepest first

    def _busy(self, owner: dict, advice: str = WAIT) -> LockError:
        return LockError(
            f"output folder '{self.folder}' is in use by another training run "
            f"({_describe(owner)}; lock file '{self.path}'), and two runs on one folder "
            f"would overwrite each other. {advice}"
        )

    def acquire(self) -> None:
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    owner = _read_owner(self.path) or _read_owner(self.path, wait_s=0.5)
                    raise self._busy(owner) from None
                self._acquire_by_pid(me)  # no flock on this file system
                return
            if os.fstat(fd).st_ino != _inode(self.path):  # unlinked by its owner meanwhile
                os.close(fd)
                continue
            previous = _read_owner(self.path)
            if previous:
                log.warning(
                    "taking over the lock of a run that ended without releasing it (%s)",
                    _describe(previous),
                )
            _write(fd, me)
            self._fd = fd
            return
        raise LockError(f"could not take the lock file '{self.path}': it keeps changing.")

    def _acquire_by_pid(self, me: dict) -> None:
        """The lock without flock: created exclusively; a dead owner on this host is replaced."""
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                # an empty file: its owner died while writing it, or we just made it (acquire)
                owner = _read_owner(self.path) or _read_owner(self.path, wait_s=0.5)
                if owner and owner.get("host") != me["host"]:
                    raise self._busy(
                        owner,
                        f"Wait for it to end, or stop it; if no run is alive on "
                        f"{owner.get('host')}, delete the lock file (this file system has no "
                        f"flock, and another host's processes cannot be checked from here).",
                    ) from None
                if isinstance(owner.get("pid"), int) and _pid_alive(owner["pid"]):
                    raise self._busy(owner) from None
                if owner:
                    log.warning(
                        "taking over the lock of a run that ended without releasing it (%s)",
                        _describe(owner),
                    )
                self.path.unlink(missing_ok=True)
                continue
            _write(fd, me)
            self._fd = fd
            return
        raise LockError(f"could not take the lock file '{self.path}': it keeps changing.")

    def release(self) -> None:
        """Give the lock back; remove the folders acquire made if the run left them empty (a
        run that failed before writing anything leaves no trace)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see acquire's inode check
        finally:
            os.close(self._fd)
            self._fd = None
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty (the run's outputs), or made by someone else meanwhile
                break

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _write(fd: int, owner: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
    os.fsync(fd)
