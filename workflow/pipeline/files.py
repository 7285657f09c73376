"""The pipeline's files, written atomically: a result appears whole or not at all.

Every file the workflow writes goes through `write_atomic`, every figure through
`save_figure` at one resolution (DPI), at most MAX_WIDTH_IN wide: the report shows figures
at their size (96 CSS px per inch) in a 1120 px column, so text in a figure reads at its
point size there (10 pt is 13 px). The libraries draw to the width they are given and return
the figure. (ann.io keeps its own writer for what `python -m ann.train` writes without the
workflow: checkpoints and metrics. This one imports nothing from ann: the dendrite rules'
steps use it in a conda environment without ann's dependencies, tests/test_layout.py.)
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

DPI = 150
MAX_WIDTH_IN = 11.5


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
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 would hide results from other users
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


def _old_folder(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_folder(target: str | Path) -> None:
    """Put back a folder that a replace_folder cut off between its two renames left aside."""
    target = Path(target)
    old = _old_folder(target)
    if old.exists() and not target.exists():
        os.replace(old, target)
        fsync_path(target.parent)


def replace_folder(new: str | Path, target: str | Path) -> None:
    """Put the complete folder `new` where `target` is: the old folder is moved aside and
    deleted only after the new one is in place. A crash between the two renames leaves the
    old folder aside, where the next call (or recover_folder) finds it and puts it back
    before anything is deleted: at every point one complete folder exists."""
    new, target = Path(new), Path(target)
    recover_folder(target)
    old = _old_folder(target)
    shutil.rmtree(old, ignore_errors=True)  # a finished swap's leftover: target exists
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def save_text(text: str, path: str | Path) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_json(data: dict, path: str | Path) -> None:
    save_text(json.dumps(data, indent=2, sort_keys=True) + "\n", path)


def save_csv(frame: "pd.DataFrame", path: str | Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_netcdf(ds: "xr.Dataset", path: str | Path) -> None:
    """`ds` as NetCDF (h5netcdf), every numeric variable of two or more dimensions
    compressed, coordinates without _FillValue (CF-1.8)."""
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.variables.items()
        if var.dtype.kind in "fiu" and var.ndim >= 2
    }
    for name in ds.coords:  # CF: coordinate variables carry no _FillValue
        encoding.setdefault(name, {})["_FillValue"] = None
    write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding))


def save_figure(fig: "Figure", path: str | Path) -> None:
    """Save a matplotlib figure at DPI in the format of the suffix (PNG without one), and
    close it."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)
