"""Read and check SWC morphology files before Brian2 builds a morphology from them.

Brian2's own reader stops at the first bad column count without naming the file;
this check names the file and the line for every kind of malformed row.
"""

from pathlib import Path

import numpy as np

from .errors import InputError

SWC_COLUMNS = "id type x y z radius parent"


def _row_error(path: Path, line_no: int, line: str, why: str) -> InputError:
    return InputError(f"SWC file '{path}', line {line_no}: {why} (row: {line!r}).")


def read_swc(path: str | Path) -> np.ndarray:
    """Return the rows of an SWC file as an (n, 7) float array, or raise InputError.

    Checks: 7 numeric columns per row, integer ids and parents, positive radius,
    unique ids, every parent defined on an earlier row, exactly one root (parent -1).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SWC file '{path}' does not exist.")
    rows: list[list[float]] = []
    seen: set[float] = set()
    for line_no, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 7:
            why = f"expected 7 columns ({SWC_COLUMNS}), found {len(fields)}"
            raise _row_error(path, line_no, line, why)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            why = f"every column must be a number ({SWC_COLUMNS})"
            raise _row_error(path, line_no, line, why) from None
        ident, radius, parent = values[0], values[5], values[6]
        if not (ident.is_integer() and parent.is_integer()):
            raise _row_error(path, line_no, line, "id and parent must be integers")
        if ident in seen:
            raise _row_error(path, line_no, line, f"id {int(ident)} appears twice")
        if radius <= 0:
            raise _row_error(path, line_no, line, f"radius must be positive, got {radius:g}")
        if parent == -1 and rows:
            why = "a second root (parent -1); an SWC cell has exactly one root"
            raise _row_error(path, line_no, line, why)
        if parent != -1 and parent not in seen:
            why = f"parent {int(parent)} is not an id defined on an earlier line"
            raise _row_error(path, line_no, line, why)
        seen.add(ident)
        rows.append(values)
    if not rows:
        raise InputError(f"SWC file '{path}' holds no points.")
    return np.array(rows)
