"""Sweeps of one biophysical parameter instead of one tuned value (issue 22): the NMDA
conductance ratio and the GABA_A reversal, each simulated and fitted on a shrunk protocol
(few sites and strengths, single inputs and synchronous pairs only) and summarised per
value in one xarray dataset with the swept parameter as its dimension.

Per value and pair kind: the median and quartiles of kappa over the site pairs, the median
R^2 and CV of the fits, the share of pairs whose kappa is not constant across strengths
(the premise), and the prior's block balance: each kind's share of the expected squared
Frobenius norm of a layer's K when a share f of the channels is inhibitory (E-E pairs
weigh (1-f)^2, E-I 2 f (1-f), I-I f^2; ann/priors.py builds K from the kappa tables).
"""

import copy
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from dendrite_sim.cf import describe  # noqa: E402
from dendrite_sim.config import KappaConfig  # noqa: E402
from dendrite_sim.dataset import cell_settings, read_dataset  # noqa: E402
from dendrite_sim.errors import InputError  # noqa: E402
from dendrite_sim.kappa import KIND_NAMES, KINDS, fit_kappa  # noqa: E402

from . import dendrite as stages  # noqa: E402
from .files import save_figure, save_netcdf  # noqa: E402

log = logging.getLogger(__name__)

# name -> (dimension attributes, how a value is set on the cell's dendrite mapping)
SWEEPS = {
    "nmda_g_ratio": {
        "long_name": "NMDA peak conductance per unit of AMPA strength",
        "units": "1",
    },
    "E_GABA_mV": {"long_name": "GABA_A reversal potential", "units": "mV"},
}


def _apply(settings: dict, sweep: str, value: float) -> dict:
    out = copy.deepcopy(settings)
    if sweep == "nmda_g_ratio":
        out["nmda"] = {**out.get("nmda", {}), "enabled": True, "g_ratio": float(value)}
    elif sweep == "E_GABA_mV":
        out["synapses"]["I"] = {**out["synapses"]["I"], "E_rev_mV": float(value)}
    else:
        raise InputError(f"unknown sweep '{sweep}'; known: {sorted(SWEEPS)}.")
    return out


def sweep_settings(dendrite: Mapping, sweeps: Mapping) -> dict:
    """The sweeps' base: the dendrite section of `sweeps.cell` with the protocol shrunk to
    sweeps.n_sites sites, sweeps.strengths_nS, single inputs and synchronous pairs."""
    cell = sweeps["cell"]
    if cell not in dendrite["cells"]:
        raise InputError(
            f"config key sweeps.cell: '{cell}' is not a cell of dendrite.cells "
            f"({sorted(dendrite['cells'])})."
        )
    settings = copy.deepcopy(cell_settings(dendrite, cell))
    settings["sites"] = {"n_sites": int(sweeps["n_sites"]), "explicit": []}
    protocol = settings["protocol"]
    protocol["kinds"] = ["single", "pairs"]
    protocol["strengths_nS"] = copy.deepcopy(dict(sweeps["strengths_nS"]))
    protocol["pairs"] = {**protocol["pairs"], "kinds": list(KINDS), "max_pairs_per_kind": 10_000}
    return settings


def check_sweeps(dendrite: Mapping, kappa: Mapping, sweeps: Mapping) -> None:
    """The sweeps' settings at plan time: their cell exists, and every swept value gives a
    dendrite section the config checks accept (InputError naming the key otherwise)."""
    from .plan_checks import check_config

    if not any(sweeps.get(name) for name in SWEEPS):
        return
    base = sweep_settings(dendrite, sweeps)
    for name in SWEEPS:
        for value in sweeps.get(name, []):
            try:
                check_config(_apply(base, name, value), kappa)
            except InputError as err:
                raise InputError(f"config key sweeps.{name} = {value:g}: {err}") from None


def block_shares(ds: xr.Dataset, fraction_inhibitory: float) -> dict[str, float]:
    """Each kind's share of the expected ||K||^2 of a layer (see the module docstring)."""
    f = fraction_inhibitory
    weight = {"EE": (1 - f) ** 2, "EI": 2 * f * (1 - f), "II": f**2}
    power = {k: weight[k] * float(np.nanmean(ds[f"kappa_{k}"].values ** 2)) for k in KINDS}
    total = sum(power.values())
    return {k: power[k] / total if np.isfinite(total) and total > 0 else np.nan for k in KINDS}


def _pair_values(ds: xr.Dataset, name: str, kind: str) -> np.ndarray:
    values = ds[name].values.astype(float)
    if kind != "EI":  # symmetric: each site pair once
        values = values[np.triu_indices(values.shape[0])]
    return values.ravel()


def summarise(ds: xr.Dataset, fraction_inhibitory: float) -> dict[str, dict[str, float]]:
    """The per-kind summaries of one fitted value."""
    out = {}
    shares = block_shares(ds, fraction_inhibitory)
    for kind in KINDS:
        kappa = _pair_values(ds, f"kappa_{kind}", kind)
        kappa = np.where(np.isfinite(kappa), kappa, np.nan)
        finite = kappa[np.isfinite(kappa)]
        q25, q50, q75 = np.percentile(finite, [25, 50, 75]) if finite.size else [np.nan] * 3
        flags = _pair_values(ds, f"premise_fails_{kind}", kind)
        out[kind] = {
            "kappa_median": q50,
            "kappa_q25": q25,
            "kappa_q75": q75,
            "r2_median": float(np.nanmedian(_pair_values(ds, f"r2_{kind}", kind)))
            if finite.size
            else np.nan,
            "cv_median": float(np.nanmedian(_pair_values(ds, f"cv_{kind}", kind)))
            if finite.size
            else np.nan,
            "premise_fails_share": float(np.mean(flags)) if flags.size else np.nan,
            "block_share": shares[kind],
        }
    return out


PER_MV = "1/mV"
VARIABLES = {
    "kappa_median": (PER_MV, "median kappa over the site pairs"),
    "kappa_q25": (PER_MV, "first quartile of kappa over the site pairs"),
    "kappa_q75": (PER_MV, "third quartile of kappa over the site pairs"),
    "r2_median": ("1", "median R^2 of the fits"),
    "cv_median": ("1", "median CV of SC/P across strengths"),
    "premise_fails_share": ("1", "share of site pairs whose kappa is not constant"),
    "block_share": ("1", "share of the prior's expected ||K||^2 in this kind's block"),
}


def run_sweep(
    sweep: str,
    dendrite: Mapping,
    kappa: Mapping,
    sweeps: Mapping,
    fraction_inhibitory: float,
    out: str | Path,
    processes: int = 1,
) -> None:
    """Simulate and fit the sweeps' cell at every value of `sweep` (sweeps.<sweep>) and
    write the summaries as one dataset with the swept parameter as its dimension."""
    values = [float(v) for v in sweeps[sweep]]
    base = sweep_settings(dendrite, sweeps)
    cell = sweeps["cell"]
    # the summaries read kappa at the read-out only: kappa(t) over the trial, no multi-input trials
    protocol = base["protocol"]
    config = KappaConfig(
        window_ms=(float(protocol["onset_ms"]), float(protocol["trial_ms"])),
        response_ms=1.0,
        readout_ms=float(kappa["readout_ms"]),
        premise_cv_max=float(kappa["premise_cv_max"]),
    )
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"sweep-{sweep}-") as folder:
        for value in values:
            settings = _apply(base, sweep, value)
            work = Path(folder) / f"{value:g}"
            work.mkdir()
            stages.plan(cell, settings, work / "trials.nc")
            stages.simulate(work / "trials.nc", cell, settings, work / "psp.nc", processes)
            psp = read_dataset(work / "psp.nc", stages.PSP_VARIABLES)
            psp.attrs["cell"] = f"{cell} ({sweep} = {value:g})"
            with np.errstate(all="ignore"):
                fitted = fit_kappa(psp, config)
            rows.append(summarise(fitted, fraction_inhibitory))
            log.info("%s = %g: %s", sweep, value, _headline(rows[-1]))
    data = {}
    for key, (units, long_name) in VARIABLES.items():
        table = np.array([[row[kind][key] for kind in KINDS] for row in rows], float)
        data[key] = ((sweep, "kind"), table, {"units": units, "long_name": long_name})
    ds = xr.Dataset(
        data,
        coords={
            sweep: (sweep, np.array(values), dict(SWEEPS[sweep])),
            "kind": ("kind", list(KINDS), {"long_name": "pair kind", "units": "1"}),
        },
    )
    ds.attrs = {
        "title": f"kappa of the '{cell}' cell against {SWEEPS[sweep]['long_name']}",
        "Conventions": "CF-1.8",
        "cell": cell,
        "sweep": sweep,
        "n_sites": int(sweeps["n_sites"]),
        "readout_ms": float(config.readout_ms),
        "fraction_inhibitory": float(fraction_inhibitory),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_netcdf(describe(ds, f"sweep of {sweep} on cell {cell} (pipeline.sweeps)"), out)
    log.info("wrote %s (%d values, %.0f s)", out, len(values), ds.attrs["seconds"])


def _headline(row: Mapping) -> str:
    return ", ".join(
        f"{KIND_NAMES[k]} median kappa {row[k]['kappa_median']:.4g}/mV "
        f"(R2 {row[k]['r2_median']:.3f}, CV {row[k]['cv_median']:.2f}, "
        f"share {row[k]['block_share']:.2f})"
        for k in KINDS
    )


def sweep_figure(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """kappa per kind (median, quartile band), the fits' R^2 and CV, and the prior's block
    balance against the swept parameter."""
    sweep = ds.attrs["sweep"]
    x = ds[sweep].values
    label = f"{ds[sweep].attrs['long_name']} ({ds[sweep].attrs['units']})".replace(" (1)", "")
    fig, axes = plt.subplots(1, 3, figsize=(min(13.0, max_width_in), 3.8), layout="constrained")
    for kind in KINDS:
        row = ds.sel(kind=kind)
        (line,) = axes[0].plot(x, row.kappa_median, "o-", label=KIND_NAMES[kind])
        axes[0].fill_between(x, row.kappa_q25, row.kappa_q75, color=line.get_color(), alpha=0.2)
        axes[1].plot(x, row.r2_median, "o-", color=line.get_color(), label=f"R² {KIND_NAMES[kind]}")
        axes[1].plot(
            x, row.cv_median, "s--", color=line.get_color(), label=f"CV {KIND_NAMES[kind]}"
        )
    bottom = np.zeros(len(x))
    width = 0.8 * (np.min(np.diff(np.sort(x))) if len(x) > 1 else 1.0)
    for kind in KINDS:
        share = np.nan_to_num(ds.block_share.sel(kind=kind).values)
        axes[2].bar(x, share, width, bottom=bottom, label=KIND_NAMES[kind])
        bottom += share
    axes[0].axhline(0.0, color="0.6", lw=0.5)
    axes[0].set_yscale("symlog", linthresh=0.01)  # kappa diverges where a PSP vanishes
    axes[0].set(xlabel=label, ylabel="κ (1/mV)", title="κ: median and quartiles over pairs")
    axes[1].set(xlabel=label, ylabel="median R² / CV", title="fit quality and premise")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[2].set(xlabel=label, ylabel="share of E‖K‖²", title="prior's block balance")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.title.set_fontsize(9)
    return fig


def figure(sweep_path: str | Path, out: str | Path) -> None:
    """Draw the figure of one sweep dataset."""
    from .files import MAX_WIDTH_IN

    save_figure(sweep_figure(read_dataset(sweep_path), MAX_WIDTH_IN), out)
    log.info("wrote %s", out)
