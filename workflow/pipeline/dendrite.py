"""Stages 1-2, the dendrite steps, as plain functions of paths and the config section.

Each step reads its inputs, calls dendrite_sim and writes its file atomically
(pipeline.files); the Snakemake scripts in workflow/scripts call these and nothing else.
The steps take the config sections as mappings, the dendrite one without its run settings
(dataset.simulation_settings): the cell's overrides are merged on the mapping
(dataset.cell_settings), which also goes, hashed and dumped, into psp.nc's attributes; the
library gets the sections built from it once (dataset.simulation_config).
"""

import logging
import multiprocessing
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from dendrite_sim.cf import describe
from dendrite_sim.checks import SIMULATION_CAUSES, require_finite_traces
from dendrite_sim.config import DendriteConfig, KappaConfig
from dendrite_sim.dataset import (
    cell_morphology,
    cell_settings,
    chunk_dataset,
    compartment_coords,
    psp_dataset,
    read_dataset,
    simulation_config,
)
from dendrite_sim.errors import InputError
from dendrite_sim.figures import FIGURES, check_kappa_dataset, morphology_figure
from dendrite_sim.kappa import check_fit, fit_kappa
from dendrite_sim.model import CellModel
from dendrite_sim.morphology import load_cell
from dendrite_sim.protocols import plan_trials
from dendrite_sim.simulate import simulate_trials
from dendrite_sim.sites import select_sites

from .files import MAX_WIDTH_IN, save_figure, save_netcdf

log = logging.getLogger(__name__)
# The traces and their time axis: a psp.nc without them is named, with how to rebuild it.
PSP_VARIABLES = ("v", "trial_time")


def plan(cell: str, dendrite: Mapping, out: str | Path) -> None:
    """Build `cell`, pick its sites and write its trial plan (sites, input events, the
    compartment table and the cell's description as attributes)."""
    settings = simulation_config(cell_settings(dendrite, cell))
    built = load_cell(cell_morphology(settings.cells[cell]), settings)
    log.info("cell %s: %s", cell, built.summary())
    compartments = built.compartments()
    sites = select_sites(compartments, settings.sites)
    trials = plan_trials(sites, settings.protocol)
    trials = trials.assign_coords(compartment_coords(compartments))
    trials.attrs = built.attrs(settings.membrane.Rm_ohm_cm2)
    counts = trials.kind.to_series().value_counts().to_dict()
    log.info("cell %s: %d sites, %d trials %s", cell, len(sites), trials.sizes["trial"], counts)
    save_netcdf(describe(trials, f"trial plan of cell {cell} (dendrite_sim)"), out)


def simulate(
    trials_path: str | Path, cell: str, dendrite: Mapping, out: str | Path, processes: int = 1
) -> None:
    """Simulate every planned trial of `cell` and write its psp dataset. The trials are split
    into `processes` pieces simulated side by side, each by one compiled Brian2 program; the
    traces do not depend on the split. No file if any trace is NaN or infinite."""
    trials = read_dataset(trials_path)
    dendrite = cell_settings(dendrite, cell)
    settings = simulation_config(dendrite)
    built = load_cell(cell_morphology(settings.cells[cell]), settings)
    planned = trials.attrs.get("n_compartments")
    if planned is not None and int(planned) != built.morphology.total_compartments:
        raise InputError(
            f"cell {cell}: the plan {trials_path} was made for {int(planned)} compartments, "
            f"the morphology now has {built.morphology.total_compartments}; plan again "
            "(snakemake --forcerun plan_trials)."
        )
    pieces = [
        trials.isel(trial=rows)
        for rows in np.array_split(np.arange(trials.sizes["trial"]), max(1, processes))
        if len(rows)
    ]
    start = time.perf_counter()
    jobs = [(cell, settings, trials.site_compartment.values, piece) for piece in pieces]
    if len(jobs) == 1:
        traces = [_simulate_piece(jobs[0])]
    else:
        # fork: a spawned worker would run the calling script again (a Snakemake script
        # cannot be imported); the workers only build the cell and run Brian2's programs.
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(jobs), mp_context=fork) as pool:
            traces = list(pool.map(_simulate_piece, jobs))
    seconds = time.perf_counter() - start
    record_dt = settings.protocol.record_dt_ms
    for piece, v in zip(pieces, traces, strict=True):
        require_finite_traces(v, piece, f"cell {cell}", SIMULATION_CAUSES)
    log.info(
        "cell %s: %d trials in %.1f s, %d processes (%.1f ms per trial, compile included)",
        cell,
        trials.sizes["trial"],
        seconds,
        len(jobs),
        1e3 * seconds * len(jobs) / max(trials.sizes["trial"], 1),
    )
    chunks = [chunk_dataset(piece, v, record_dt) for piece, v in zip(pieces, traces, strict=True)]
    # the merged mapping, not `settings`: psp.nc's attributes hash and dump it as the config gives it
    ds = psp_dataset(trials, chunks, CellModel.from_config(settings), dendrite, cell)
    save_netcdf(
        describe(ds, f"somatic PSPs of cell {cell} simulated with Brian2 (dendrite_sim)"), out
    )
    log.info("wrote %s: %d trials x %d samples", out, ds.sizes["trial"], ds.sizes["trial_time"])


def _simulate_piece(job: tuple[str, DendriteConfig, np.ndarray, xr.Dataset]) -> np.ndarray:
    """The traces of one piece of the plan (run in a worker process when there are several)."""
    cell, settings, site_compartments, piece = job
    built = load_cell(cell_morphology(settings.cells[cell]), settings)
    model = CellModel.from_config(settings)
    return simulate_trials(built.morphology, site_compartments, piece, model, settings.protocol)


def fit(psp_path: str | Path, kappa_config: Mapping, out: str | Path) -> None:
    """Fit kappa for every pair in the psp dataset and validate on the multi-input trials."""
    psp = read_dataset(psp_path, PSP_VARIABLES)
    cell = psp.attrs.get("cell", "?")
    require_finite_traces(
        psp.v.values,
        psp,
        f"cell {cell}: {psp_path}",
        "the file was written without these checks (simulate again), or edited",
    )
    ds = fit_kappa(psp, KappaConfig.from_mapping(kappa_config), source=str(psp_path))
    check_fit(ds, psp)
    headline = {k: round(v, 4) for k, v in ds.attrs.items() if k.startswith(("median_", "mean_"))}
    log.info("kappa fitted: %s", headline)
    save_netcdf(
        describe(ds, f"kappa of cell {cell} fitted from {psp_path} (dendrite_sim.kappa)"), out
    )


def figures(kappa_path: str | Path, outputs: Mapping[str, str | Path]) -> None:
    """Draw the named kappa figures (see dendrite_sim.figures.FIGURES) to their paths."""
    ds = read_dataset(kappa_path)
    check_kappa_dataset(ds, kappa_path)
    for name, path in outputs.items():
        save_figure(FIGURES[name](ds, max_width_in=MAX_WIDTH_IN), path)
        log.info("wrote %s", path)


def morphology(psp_path: str | Path, out: str | Path) -> None:
    """Draw the cell in 2-D projection with its sites (from psp.nc)."""
    psp = read_dataset(psp_path, PSP_VARIABLES)
    save_figure(morphology_figure(psp), out)
    log.info("wrote %s", out)
