"""The datasets as CF-1.8 describes them (issue 26): every variable and coordinate of
trials.nc, psp.nc, kappa.nc and the sweep datasets with `long_name` and `units` (`"1"` where
dimensionless or an index or label), integers as int32 (CF-1.8 has no int64), flags as int8,
and the global `Conventions` and `history`. Coordinates are written without `_FillValue`
(pipeline.files.save_netcdf). The time axes are named `trial_time` (psp.nc) and `fit_time`
(kappa.nc's kappa(t) window), without `standard_name`: CF-1.8 gives a coordinate named or
standard-named `time` units "<unit> since <date>", and a trial's clock has no date (xarray
would also decode such a coordinate to dates).

`describe` fills what a variable lacks from LABELS (exact names) and the pair-site prefixes;
attributes a variable already has are kept. tests/test_cf.py runs IOOS's compliance-checker
on the files of a small simulation.
"""

import numpy as np
import xarray as xr

ONE = "1"
UM = "um"

LABELS: dict[str, tuple[str, str]] = {
    # the trial plan
    "trial": ("trial index", ONE),
    "event": ("input index within a trial", ONE),
    "protocol": ("protocol of the trial (single, pairs, timing, multi, crowd)", ONE),
    "kind": ("kind of the trial (E, I, EI, EE, II, multi, crowd)", ONE),
    "n_events": ("number of inputs of the trial", ONE),
    "event_site": ("site of the input (-1: no input)", ONE),
    "event_type": ("receptor of the input (E or I; empty: no input)", ONE),
    "event_strength": ("peak conductance of the input", "nS"),
    "event_onset": ("onset of the input in the trial", "ms"),
    "delta_t": ("onset of input 1 minus onset of input 0", "ms"),
    # sites and compartments
    "site": ("synapse site index", ONE),
    "site_compartment": ("compartment of the site", ONE),
    "site_branch": ("branch of the site", ONE),
    "site_distance": ("path distance of the site from the soma", UM),
    "compartment": ("compartment index", ONE),
    "compartment_branch": ("branch of the compartment", ONE),
    "compartment_distance": ("path distance of the compartment's centre from the soma", UM),
    "compartment_diameter": ("diameter of the compartment", UM),
    "compartment_length": ("length of the compartment", UM),
    # traces
    "trial_time": ("time in the trial", "ms"),
    "fit_time": ("time in the trial (the kappa(t) window)", "ms"),
    "time_full": ("time in the trial", "ms"),
    "v": ("somatic potential minus rest", "mV"),
    # kappa.nc
    "multi_trial": ("trial index of the multi-input trial", ONE),
    "multi_response": ("inside the response window (1) or not (0)", ONE),
    "psp_site": ("site of the single input", ONE),
    "psp_strength": ("peak conductance of the single input", "nS"),
    "receptor": ("receptor (E or I)", ONE),
    "timing_pair": ("index of the timing pair", ONE),
}
for axis in "xyz":
    LABELS[f"site_{axis}"] = (f"{axis} position of the site", UM)
    LABELS[f"compartment_{axis}"] = (f"{axis} position of the compartment's centre", UM)
    LABELS[f"compartment_start_{axis}"] = (f"{axis} position of the compartment's start", UM)
    LABELS[f"compartment_end_{axis}"] = (f"{axis} position of the compartment's end", UM)
# the site coordinates of the kappa matrices: e_site, i_site, site_a, site_b and their tables
for dim, prefix, who in (
    ("e_site", "e", "the E input"),
    ("i_site", "i", "the I input"),
    ("site_a", "a", "input a"),
    ("site_b", "b", "input b"),
):
    LABELS[dim] = (f"site of {who}", ONE)
    LABELS[f"{prefix}_branch"] = (f"branch of the site of {who}", ONE)
    LABELS[f"{prefix}_distance"] = (f"path distance from the soma of the site of {who}", UM)
    LABELS[f"{prefix}_compartment"] = (f"compartment of the site of {who}", ONE)


def _label(name: str) -> tuple[str, str] | None:
    if name in LABELS:
        return LABELS[name]
    if name.startswith("strength_pair_"):
        return (f"strength pair index of the {name.removeprefix('strength_pair_')} pairs", ONE)
    if name.startswith(("rel_error_", "r2_", "cv_")):
        return (name.replace("_", " "), ONE)
    return None


def describe(ds: xr.Dataset, history: str) -> xr.Dataset:
    """`ds` with CF-1.8 attributes and data types (see the module docstring)."""
    out = ds.copy()
    for name in list(out.variables):
        var = out[name].variable
        if var.dtype == bool:
            var = var.astype(np.int8)
            var.attrs.setdefault("flag_values", np.array([0, 1], dtype=np.int8))
            var.attrs.setdefault("flag_meanings", "false true")
        elif var.dtype.kind in "iu" and var.dtype.itemsize > 4:
            var = var.astype(np.int32)
        label = _label(str(name))
        if label is not None:
            var.attrs.setdefault("long_name", label[0])
            var.attrs.setdefault("units", label[1])
        elif var.dtype.kind in "US" and "long_name" in var.attrs:
            var.attrs.setdefault("units", ONE)
        if var.attrs.get("units") == "mV**2":
            var.attrs["units"] = "mV2"
        if name in out.coords:
            out = out.assign_coords({name: var})
        else:
            out[name] = var
    out.attrs = {
        "title": history,
        **out.attrs,
        "Conventions": "CF-1.8",
        "history": history,
    }
    return out


def missing_labels(ds: xr.Dataset) -> list[str]:
    """Variables and coordinates without long_name or units."""
    return [
        str(name)
        for name, var in ds.variables.items()
        if "long_name" not in var.attrs or "units" not in var.attrs
    ]
