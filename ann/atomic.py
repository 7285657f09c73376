"""Atomic writes: a file appears whole or not at all, also after a crash. Used by what
`python -m ann.train` writes (ann.io) and by every file the workflow writes
(workflow/pipeline/files.py). Imports neither torch nor any other heavy library, so that the
workflow's planning processes stay light."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_path", "write_atomic"]


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp) on a temporary path beside `path`, flush it to disk, rename it into
    place and flush the folder: after a crash at any point `path` is the old file or the
    whole new one, never a part or an empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fsync_path(path: str | Path) -> None:
    """Flush a file's, or a folder's entries', writes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
