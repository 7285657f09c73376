"""The workflow's dendrite steps as plain functions of paths and the config section.

Each step reads its inputs, does one thing and writes one NetCDF file atomically;
the Snakemake scripts in workflow/scripts call these and nothing else.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import xarray as xr

from .dataset import chunk_dataset, psp_dataset, write_atomic
from .figures import FIGURES
from .kappa import fit_kappa
from .model import CellModel
from .morphology import compartment_table, load_morphology
from .protocols import chunk_of, plan_trials
from .simulate import simulate_trials
from .sites import select_sites

log = logging.getLogger(__name__)


def plan(cell: str, dendrite: Mapping, out: str | Path) -> None:
    """Pick the sites on `cell` and write its trial plan (sites + input events)."""
    morphology = load_morphology(dendrite["cells"][cell], dendrite["max_compartment_um"])
    sites = select_sites(compartment_table(morphology), dendrite["sites"])
    trials = plan_trials(sites, dendrite["protocol"])
    counts = trials.kind.to_series().value_counts().to_dict()
    log.info("cell %s: %d sites, %d trials %s", cell, len(sites), trials.sizes["trial"], counts)
    write_atomic(trials, out)


def simulate_chunk(
    trials_path: str | Path, cell: str, chunk: int, dendrite: Mapping, out: str | Path
) -> None:
    """Simulate chunk `chunk` of the planned trials and write its somatic traces."""
    with xr.open_dataset(trials_path) as plan_ds:
        trials = plan_ds.load()
    chosen = trials.isel(trial=chunk_of(trials.sizes["trial"], dendrite["chunks"], chunk))
    morphology = load_morphology(dendrite["cells"][cell], dendrite["max_compartment_um"])
    protocol = dendrite["protocol"]
    start = time.perf_counter()
    traces = simulate_trials(
        morphology,
        trials.site_compartment.values,
        chosen,
        CellModel.from_config(dendrite),
        protocol,
    )
    seconds = time.perf_counter() - start
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
    ds = psp_dataset(trials, chunks, CellModel.from_config(dendrite), dendrite, cell)
    write_atomic(ds, out)
    log.info("wrote %s: %d trials x %d samples", out, ds.sizes["trial"], ds.sizes["time"])


def fit(psp_path: str | Path, kappa_config: Mapping, out: str | Path) -> None:
    """Fit kappa for every pair in the psp dataset and validate on the multi-input trials."""
    with xr.open_dataset(psp_path) as psp_ds:
        psp = psp_ds.load()
    ds = fit_kappa(psp, kappa_config, source=str(psp_path))
    headline = {k: round(v, 4) for k, v in ds.attrs.items() if k.startswith(("median_", "mean_"))}
    log.info("kappa fitted: %s", headline)
    write_atomic(ds, out)


def figures(kappa_path: str | Path, outputs: Mapping[str, str | Path]) -> None:
    """Draw the named kappa figures (see dendrite_sim.figures.FIGURES) to their paths."""
    with xr.open_dataset(kappa_path) as kappa_ds:
        ds = kappa_ds.load()
    for name, path in outputs.items():
        FIGURES[name](ds, path)
        log.info("wrote %s", path)
