"""Guards that keep NaN and infinite values from passing from one stage to the next.

Each check raises `NotFiniteError` naming the cell, the trials and the likely cause;
the stages call them before writing, so a failed stage leaves no output behind.
"""

from collections.abc import Iterable

import numpy as np
import xarray as xr

from .errors import NotFiniteError

SIMULATION_CAUSES = (
    "a compartment of zero length or zero diameter in the morphology, an input strength "
    "or a membrane parameter out of range, or an unstable time step (dendrite.protocol.dt_ms)"
)


def _listing(values: Iterable, limit: int = 8) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def bad_trials(v: np.ndarray) -> np.ndarray:
    """Indices of the rows (trials) of v that hold a NaN or an infinite value."""
    return np.flatnonzero(~np.isfinite(v).all(axis=tuple(range(1, v.ndim))))


def require_finite_traces(v: np.ndarray, trials: xr.Dataset, what: str, cause: str) -> None:
    """Raise if any trace (row of v, one per trial of `trials`: its `trial` numbers and,
    if present, `kind`) is not finite."""
    bad = bad_trials(v)
    if bad.size == 0:
        return
    numbers = trials.trial.values[bad]
    kinds = ""
    if "kind" in trials.coords:
        kinds = "; kinds " + ", ".join(sorted({str(k) for k in trials.kind.values[bad]}))
    first = np.flatnonzero(~np.isfinite(v[bad[0]]))[0]
    raise NotFiniteError(
        f"{what}: {bad.size} of {len(v)} trials hold NaN or infinite potentials "
        f"(trials {_listing(numbers)}{kinds}; trial {numbers[0]} from sample {first} on). "
        f"Likely cause: {cause}. Nothing was written."
    )


def require_finite(values: np.ndarray, what: str, where: str, cause: str) -> None:
    """Raise if `values` (named `what`) hold NaN or infinite entries; `where` names them."""
    if np.isfinite(values).all():
        return
    raise NotFiniteError(f"{what} is NaN or infinite {where}. Likely cause: {cause}.")
