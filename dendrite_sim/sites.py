"""Synapse sites: where on the cell the inputs go.

A site table has one row per site: its compartment, branch, path distance from the
soma and 3D position (copied from the compartment table of `morphology`).
"""

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .config import Sites
from .errors import InputError

# How many micrometres of path distance a second site on an already used branch costs
# when spreading sites automatically: trades even distances against branch variety.
BRANCH_REUSE_PENALTY_UM = 60.0


def auto_sites(compartments: pd.DataFrame, n_sites: int) -> pd.DataFrame:
    """`n_sites` dendritic compartments spread over path distance and over branches.

    Targets are the evenly spaced quantiles of the dendritic path distances; each target
    takes the free compartment closest in distance, where a branch that already holds
    sites counts as `BRANCH_REUSE_PENALTY_UM` further away per site. A soma-only cell
    puts every site on the soma.
    """
    dendrites = compartments[compartments.branch != "soma"]
    if dendrites.empty:
        return _site_table(compartments, [0] * n_sites)
    if n_sites > len(dendrites):
        raise InputError(
            f"n_sites = {n_sites} but the cell has only {len(dendrites)} dendritic "
            "compartments; lower dendrite.sites.n_sites."
        )
    targets = np.quantile(dendrites.distance_um, (np.arange(n_sites) + 0.5) / n_sites)
    free = dendrites.copy()
    used: Counter[str] = Counter()
    chosen = []
    for target in targets:
        penalty = free.branch.map(used).fillna(0) * BRANCH_REUSE_PENALTY_UM
        best = (np.abs(free.distance_um - target) + penalty).idxmin()
        chosen.append(int(free.compartment[best]))
        used[free.branch[best]] += 1
        free = free.drop(best)
    return _site_table(compartments, sorted(chosen, key=lambda c: (compartments.distance_um[c], c)))


def explicit_sites(compartments: pd.DataFrame, spec: Sequence[Mapping]) -> pd.DataFrame:
    """Sites listed one by one: {"compartment": i} or {"branch": path, "x": 0..1 along it}."""
    chosen = []
    n = len(compartments)
    for k, entry in enumerate(spec):
        where = f"dendrite.sites.explicit[{k}]"
        if "compartment" in entry:
            c = entry["compartment"]
            if not 0 <= c < n:
                raise InputError(
                    f"{where}: compartment {c} is out of range 0..{n - 1} for this cell."
                )
            chosen.append(int(c))
            continue
        branch, x = entry.get("branch"), entry.get("x", 0.5)
        rows = compartments[compartments.branch == branch]
        if rows.empty:
            names = ", ".join(sorted(set(compartments.branch)))
            raise InputError(f"{where}: no branch '{branch}' on this cell; branches are: {names}.")
        if not 0.0 <= x <= 1.0:
            raise InputError(
                f"{where}: x = {x} is out of range; x is a fraction 0..1 along the branch."
            )
        along = rows.length_um.cumsum() - rows.length_um / 2
        target = x * rows.length_um.sum()
        chosen.append(int(rows.compartment.iloc[int(np.argmin(np.abs(along - target)))]))
    if not chosen:
        raise InputError(
            "dendrite.sites.explicit is empty; list sites or set it to [] and use n_sites."
        )
    return _site_table(compartments, chosen)


def _site_table(compartments: pd.DataFrame, chosen: Sequence[int]) -> pd.DataFrame:
    columns = ["compartment", "branch", "distance_um", "x_um", "y_um", "z_um"]
    table = compartments.loc[list(chosen), columns].reset_index(drop=True)
    table.index.name = "site"
    return table


def select_sites(compartments: pd.DataFrame, config: Sites) -> pd.DataFrame:
    """The site table for the `dendrite.sites` config section (explicit list wins)."""
    if config.explicit:
        return explicit_sites(compartments, config.explicit)
    return auto_sites(compartments, config.n_sites)
