"""What `python -m ann.train` writes (checkpoints, metrics, tables), with or without the
workflow, each written atomically (ann.atomic): a result appears whole or not at all."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ann.atomic import write_atomic


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
