"""The workflow's dendrite steps as plain functions of paths and the config section.

Each step reads its inputs, does one thing and writes one NetCDF file atomically;
the Snakemake scripts in workflow/scripts call these and nothing else.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import xarray as xr

from .checks import SIMULATION_CAUSES, require_finite_traces
from .dataset import chunk_dataset, compartment_coords, psp_dataset, write_atomic
from .errors import InputError
from .figures import FIGURES, check_kappa_dataset, morphology_figure
from .kappa import check_fit, fit_kappa
from .model import CellModel
from .morphology import load_cell
from .protocols import chunk_of, plan_trials
from .simulate import simulate_trials
from .sites import select_sites

log = logging.getLogger(__name__)


def plan(cell: str, dendrite: Mapping, out: str | Path) -> None:
    """Build `cell`, pick its sites and write its trial plan (sites, input events, the
    compartment table and the cell's description as attributes)."""
    built = load_cell(dendrite["cells"][cell], dendrite)
    log.info("cell %s: %s", cell, built.summary())
    compartments = built.compartments()
    sites = select_sites(compartments, dendrite["sites"])
    trials = plan_trials(sites, dendrite["protocol"])
    trials = trials.assign_coords(compartment_coords(compartments))
    trials.attrs = built.attrs(dendrite["membrane"]["Rm_ohm_cm2"])
    counts = trials.kind.to_series().value_counts().to_dict()
    log.info("cell %s: %d sites, %d trials %s", cell, len(sites), trials.sizes["trial"], counts)
    write_atomic(trials, out)


def simulate_chunk(
    trials_path: str | Path, cell: str, chunk: int, dendrite: Mapping, out: str | Path
) -> None:
    """Simulate chunk `chunk` of the planned trials and write its somatic traces; no file
    if any trace is NaN or infinite."""
    with xr.open_dataset(trials_path) as plan_ds:
        trials = plan_ds.load()
    chosen = trials.isel(trial=chunk_of(trials.sizes["trial"], dendrite["chunks"], chunk))
    built = load_cell(dendrite["cells"][cell], dendrite)
    planned = trials.attrs.get("n_compartments")
    if planned is not None and int(planned) != built.morphology.total_compartments:
        raise InputError(
            f"cell {cell}: the plan {trials_path} was made for {int(planned)} compartments, "
            f"the morphology now has {built.morphology.total_compartments}; plan again "
            "(snakemake --forcerun plan_trials)."
        )
    protocol = dendrite["protocol"]
    start = time.perf_counter()
    traces = simulate_trials(
        built.morphology,
        trials.site_compartment.values,
        chosen,
        CellModel.from_config(dendrite),
        protocol,
    )
    seconds = time.perf_counter() - start
    require_finite_traces(traces, chosen, f"cell {cell}, chunk {chunk}", SIMULATION_CAUSES)
    n = chosen.sizes["trial"]
    log.info(
        "chunk %d: %d trials in %.1f s (%.1f ms per trial, compile included)",
        chunk,
        n,
        seconds,
        1e3 * seconds / max(n, 1),
    )
    write_atomic(chunk_dataset(chosen, traces, protocol["record_dt_ms"]), out)


def gather(
    trials_path: str | Path,
    chunk_paths: Sequence[str | Path],
    cell: str,
    dendrite: Mapping,
    out: str | Path,
) -> None:
    """Join the chunks' traces with the trial plan into the cell's psp dataset."""
    with xr.open_dataset(trials_path) as plan_ds:
        trials = plan_ds.load()
    chunks = []
    for path in chunk_paths:
        with xr.open_dataset(path) as chunk:
            chunks.append(chunk.load())
        require_finite_traces(
            chunks[-1].v.values,
            chunks[-1],
            f"cell {cell}, chunk file {path}",
            "the chunk was written by a run without these checks, or edited; "
            "delete it and simulate again",
        )
    ds = psp_dataset(trials, chunks, CellModel.from_config(dendrite), dendrite, cell)
    write_atomic(ds, out)
    log.info("wrote %s: %d trials x %d samples", out, ds.sizes["trial"], ds.sizes["time"])


def fit(psp_path: str | Path, kappa_config: Mapping, out: str | Path) -> None:
    """Fit kappa for every pair in the psp dataset and validate on the multi-input trials."""
    with xr.open_dataset(psp_path) as psp_ds:
        psp = psp_ds.load()
    cell = psp.attrs.get("cell", "?")
    require_finite_traces(
        psp.v.values,
        psp,
        f"cell {cell}: {psp_path}",
        "the file was written without these checks (simulate again), or edited",
    )
    ds = fit_kappa(psp, kappa_config, source=str(psp_path))
    check_fit(ds, psp)
    headline = {k: round(v, 4) for k, v in ds.attrs.items() if k.startswith(("median_", "mean_"))}
    log.info("kappa fitted: %s", headline)
    write_atomic(ds, out)


def figures(kappa_path: str | Path, outputs: Mapping[str, str | Path]) -> None:
    """Draw the named kappa figures (see dendrite_sim.figures.FIGURES) to their paths."""
    with xr.open_dataset(kappa_path) as kappa_ds:
        ds = kappa_ds.load()
    check_kappa_dataset(ds, kappa_path)
    for name, path in outputs.items():
        FIGURES[name](ds, path)
        log.info("wrote %s", path)


def morphology(psp_path: str | Path, out: str | Path) -> None:
    """Draw the cell in 2-D projection with its sites (from psp.nc)."""
    with xr.open_dataset(psp_path) as psp_ds:
        psp = psp_ds.load()
    morphology_figure(psp, out)
    log.info("wrote %s", out)
