"""Atomic writes of what `python -m ann.train` writes (checkpoints, metrics), with or without
the workflow: a result appears whole or not at all. (The workflow writes its other files
through pipeline.files.)"""

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch


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


def json_safe(value: object) -> object:
    """`value` with every NaN or infinite float (Python or NumPy) replaced by None: JSON has
    no NaN, and Python's json module would write one that other readers refuse."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def save_json(data: dict, path: str | Path) -> None:
    """`data` as JSON (NaN and infinities as null), written atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, default=str, allow_nan=False)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text + "\n")

    write_atomic(path, write)


def save_csv(frame: pd.DataFrame, path: str | Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(obj: object, path: str | Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def git_commit(where: str | Path = ".") -> str:
    """The checked-out commit (with -dirty when files differ), or "unknown" outside git."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
