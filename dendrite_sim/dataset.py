"""The datasets' layout (trial plans, psp traces) and reading them back from NetCDF (the
workflow writes them: pipeline.files.save_netcdf)."""

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import brian2
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from .config import DendriteConfig
from .errors import InputError
from .model import CellModel

# Keys of the dendrite section that change how the simulation runs, not what it computes.
RUN_SETTINGS = ("chunks",)


def simulation_settings(dendrite: Mapping) -> dict:
    """The dendrite section without RUN_SETTINGS: what psp.nc depends on."""
    return {key: value for key, value in dendrite.items() if key not in RUN_SETTINGS}


def simulation_config(dendrite: Mapping) -> DendriteConfig:
    """The sections of a dendrite mapping with or without RUN_SETTINGS: the rules pass it
    without them (simulation_settings, so that a run setting reruns nothing); an absent
    dendrite.chunks is built as 1, which no step reads (the job's threads say how many
    processes the simulation runs)."""
    return DendriteConfig.from_mapping({"chunks": 1, **dendrite})


# Sections of the dendrite config a cell entry may override for itself.
CELL_SECTIONS = ("membrane", "active_soma", "nmda", "spines")


def cell_morphology(entry: str | Mapping) -> str:
    """The morphology of a dendrite.cells entry: the entry itself ("builtin:pyramidal" or an
    SWC path) or its `morphology` key (a mapping with per-cell settings)."""
    return entry if isinstance(entry, str) else entry["morphology"]


def cell_overrides(entry: str | Mapping) -> dict:
    """The sections a dendrite.cells entry overrides ({} for a bare morphology)."""
    if isinstance(entry, str):
        return {}
    return {key: dict(entry[key]) for key in CELL_SECTIONS if key in entry}


def cell_settings(dendrite: Mapping, cell: str) -> dict:
    """The dendrite section as `cell` is simulated with it: each section the cell's entry
    overrides merged key by key over the global one, and `cells` holding only this cell's
    entry. Idempotent, so the stages accept the whole section or this result."""
    entry = dendrite["cells"][cell]
    out = {key: value for key, value in dendrite.items() if key != "cells"}
    for key, override in cell_overrides(entry).items():
        out[key] = {**dendrite.get(key, {}), **override}
    out["cells"] = {cell: entry}
    return out


def read_dataset(path: str | Path, required: Sequence[str] = ()) -> xr.Dataset:
    """The dataset in a NetCDF file, loaded; an InputError naming the file and how to rebuild it
    when it cannot be read (truncated by a crash, or not NetCDF) or lacks a `required`
    variable or coordinate."""
    rebuild = f"Delete it and run the workflow again (rm {path}; snakemake --cores all), which rebuilds it."
    try:
        with xr.open_dataset(path) as ds:
            loaded = ds.load()
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path} cannot be read ({type(err).__name__}: {str(err)[:160]}): it is damaged or "
            f"truncated. {rebuild}"
        ) from None
    missing = [name for name in required if name not in loaded]
    if missing:
        raise InputError(f"{path} lacks {missing}: not written by this pipeline. {rebuild}")
    return loaded


def config_hash(section: Mapping) -> str:
    """A short, stable hash of a config section (sorted YAML)."""
    text = yaml.safe_dump(dict(section), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compartment_coords(compartments: pd.DataFrame) -> dict:
    """The compartment table as coordinates along a `compartment` dimension: branch
    label, path distance, midpoint, start and end positions, diameter, length (um)."""
    coords = {"compartment": ("compartment", compartments.compartment.to_numpy())}
    for column in compartments.columns.drop("compartment"):
        values = compartments[column].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        attrs = {"units": "um"} if column.endswith("_um") else {}
        coords[f"compartment_{column.removesuffix('_um')}"] = ("compartment", values, attrs)
    return coords


def chunk_dataset(trials: xr.Dataset, traces: np.ndarray, record_dt_ms: float) -> xr.Dataset:
    """The traces of one chunk of trials, keyed by trial number."""
    time = np.arange(traces.shape[1]) * record_dt_ms
    return xr.Dataset(
        {"v": (("trial", "trial_time"), traces)},
        coords={"trial": trials.trial.values, "trial_time": ("trial_time", time, {"units": "ms"})},
    )


def psp_dataset(
    trials: xr.Dataset,
    chunks: Sequence[xr.Dataset],
    model: CellModel,
    dendrite: Mapping,
    cell: str,
) -> xr.Dataset:
    """Gather chunk traces into the full psp dataset with metadata and provenance."""
    v = xr.concat([c.v for c in chunks], dim="trial").sortby("trial")
    if not np.array_equal(v.trial.values, trials.trial.values):
        raise ValueError("the chunks do not cover the planned trials exactly once")
    v.attrs = {
        "units": "mV",
        "long_name": "somatic potential minus rest (PSP or summed SSP)",
    }
    protocol = dendrite["protocol"]
    ds = trials.assign(v=v)
    ds.attrs = {
        "title": f"Somatic PSPs of the '{cell}' cell",
        "cell": cell,
        **trials.attrs,  # the cell's description (compartments, segmentation, soma, ...)
        "morphology": cell_morphology(dendrite["cells"][cell]),
        "cell_overrides": yaml.safe_dump(cell_overrides(dendrite["cells"][cell]), sort_keys=True),
        "simulator": "Brian2 SpatialNeuron, cpp_standalone device",
        "brian2_version": brian2.__version__,
        "dt": f"{protocol['dt_ms']} ms",
        "record_dt": f"{protocol['record_dt_ms']} ms",
        "trial_duration": f"{protocol['trial_ms']} ms",
        "config_hash": config_hash(simulation_settings(dendrite)),
        "config_yaml": yaml.safe_dump(simulation_settings(dendrite), sort_keys=True),
        **model.attrs(),
    }
    return ds
