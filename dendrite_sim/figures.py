"""Figures of the kappa dataset and of the cell. Each function returns its matplotlib figure;
the workflow saves it (pipeline.files, one resolution for the project). Figures that grow
with the data take the largest width they may use, `max_width_in` (inches)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from .checks import require_finite  # noqa: E402
from .errors import NotFiniteError  # noqa: E402

KIND_TITLES = {"EI": "E-I", "EE": "E-E", "II": "I-I"}


def _site_labels(ds: xr.Dataset) -> list[str]:
    return [
        f"{s} ({d:.0f} µm)" for s, d in zip(ds.site.values, ds.site_distance.values, strict=True)
    ]


ANNOTATE_MAX_SITES = 12  # κ written in every cell of a heatmap up to this many sites


def kappa_heatmaps(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """kappa over (site, site) for E-I, E-E and I-I pairs: one panel per kind, as many per
    row as fit max_width_in, a colour scale centred on zero (red: κ > 0, blue: κ < 0) and
    the value in every cell when there are few sites. Ticks: site index and path distance."""
    kinds = [k for k in KIND_TITLES if f"kappa_{k}" in ds]
    labels = _site_labels(ds)
    n = len(labels)
    annotate = n <= ANNOTATE_MAX_SITES
    matrix = max(2.4, n * (0.62 if annotate else 0.3))  # inches of the heatmap itself
    panel_w, panel_h = matrix + 2.9, matrix + 1.6  # tick labels, axis labels, colour bar
    ncols = max(1, min(len(kinds), int(max_width_in // panel_w)))
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_w * ncols, panel_h * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(kinds) :]:
        ax.set_visible(False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        values = ds[f"kappa_{kind}"].values
        finite = values[np.isfinite(values)]
        limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="upper")
        bar = fig.colorbar(image, ax=ax, shrink=0.9)
        bar.set_label(f"κ_{kind} (1/mV)", fontsize=10)
        bar.ax.tick_params(labelsize=9)
        first, second = ("E site", "I site") if kind == "EI" else ("site", "site")
        ax.set_title(f"κ {KIND_TITLES[kind]} at the read-out", fontsize=11)
        ax.set_xlabel(second, fontsize=10)
        ax.set_ylabel(first, fontsize=10)
        ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        if annotate:
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    dark = abs(value) > 0.6 * limit
                    ax.text(
                        col,
                        row,
                        f"{value:.3g}",
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="white" if dark else "black",
                    )
    return fig


def location_dependence(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """kappa_EI against the path distance of the I input, one line per E site."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    order = np.argsort(ds.i_distance.values)
    for e in ds.e_site.values:
        row = ds.kappa_EI.sel(e_site=e)
        (line,) = ax.plot(
            ds.i_distance.values[order],
            row.values[order],
            "o-",
            ms=4,
            label=f"E at {ds.e_branch.values[e].split('.')[-1]}, {ds.e_distance.values[e]:.0f} µm",
        )
        ax.axvline(ds.e_distance.values[e], color=line.get_color(), lw=0.6, ls=":")
    ax.set(
        xlabel="path distance of the I input from the soma (µm)",
        ylabel="κ_EI (1/mV)",
        title="Location dependence of κ_EI (dotted: the E site)",
    )
    ax.legend(fontsize=7, ncol=2)
    return fig


def _example_pairs(ds: xr.Dataset, n: int) -> list[tuple[int, int]]:
    flat = ds.kappa_EI.stack(pair=("e_site", "i_site")).dropna("pair")
    picks = np.linspace(0, flat.sizes["pair"] - 1, n).astype(int)
    ordered = flat.sortby(flat)
    return [(int(ordered.e_site[k]), int(ordered.i_site[k])) for k in picks]


def shunting_fits(ds: xr.Dataset, max_width_in: float, n_pairs: int = 4) -> plt.Figure:
    """SC against V_E * V_I at the read-out, with the fitted line, for a few E-I pairs."""
    width = min(3.4 * n_pairs, max_width_in)
    fig, axes = plt.subplots(1, n_pairs, figsize=(width, 3.3), squeeze=False, layout="constrained")
    for ax, (e, i) in zip(axes[0], _example_pairs(ds, n_pairs), strict=True):
        p = ds.p_EI.sel(e_site=e, i_site=i).values
        sc = ds.sc_EI.sel(e_site=e, i_site=i).values
        k = float(ds.kappa_EI.sel(e_site=e, i_site=i))
        r2 = float(ds.r2_EI.sel(e_site=e, i_site=i))
        xs = np.linspace(min(0.0, np.nanmin(p)), max(0.0, np.nanmax(p)), 20)
        ax.plot(p, sc, "o", ms=4)
        ax.plot(xs, k * xs, "-", lw=1)
        ax.set(
            title=f"E {e}, I {i}: κ={k:.3f}/mV, R²={r2:.3f}",
            xlabel="V_E·V_I (mV²)",
            ylabel="SC (mV)",
        )
        ax.title.set_fontsize(8)
    return fig


def kappa_over_time(ds: xr.Dataset, max_width_in: float, n_pairs: int = 4) -> plt.Figure:
    """The time-resolved kappa_EI(t) of a few pairs, with the read-out of the scalar kappa."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.axvline(_readout_time(ds), color="k", ls=":", lw=0.8)
    for e, i in _example_pairs(ds, n_pairs):
        curve = ds.kappa_EI_t.sel(e_site=e, i_site=i)
        (line,) = ax.plot(ds.fit_time.values, curve.values, label=f"E {e}, I {i}")
        ax.axhline(
            float(ds.kappa_EI.sel(e_site=e, i_site=i)), color=line.get_color(), ls="--", lw=0.6
        )
    finite = ds.kappa_EI_t.values[np.isfinite(ds.kappa_EI_t.values)]
    if finite.size:
        ax.set_ylim(np.percentile(finite, [1, 99]) * [0.9, 1.1])
    ax.set(
        xlabel="time in trial (ms)",
        ylabel="κ_EI(t) (1/mV)",
        title="κ(t); dotted: the read-out, dashed: scalar κ",
    )
    ax.legend(fontsize=8)
    return fig


def _readout_time(ds: xr.Dataset) -> float:
    """Trial time of the synchronous pairs' read-out."""
    return float(ds.pair_onset_ms) + float(ds.readout_ms)


def readout_choice(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """How the read-out time sets the kinds' sizes: the median kappa(t) of each kind, and
    the ratios E-E : E-I and I-I : E-I, against the time after the inputs' onset."""
    fig, axes = plt.subplots(1, 2, figsize=(min(10.0, max_width_in), 3.8), layout="constrained")
    after = ds.fit_time.values - float(ds.pair_onset_ms)
    keep = after > 0.5
    medians = {
        k: ds[f"median_kappa_{k}_t"].values for k in KIND_TITLES if f"median_kappa_{k}_t" in ds
    }
    for kind, values in medians.items():
        axes[0].plot(after[keep], values[keep], label=f"κ {KIND_TITLES[kind]}")
    if "EI" in medians:
        for kind in ("EE", "II"):
            if kind in medians:
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = medians[kind] / medians["EI"]
                axes[1].plot(after[keep], ratio[keep], label=f"{KIND_TITLES[kind]} : E-I")
    for ax in axes:
        ax.axvline(float(ds.readout_ms), color="k", ls=":", lw=0.8)
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.legend(fontsize=8)
    finite = np.concatenate([v[keep][np.isfinite(v[keep])] for v in medians.values()] or [[0.0]])
    if finite.size:
        axes[0].set_ylim(*np.percentile(finite, [1, 99]) * 1.1)
    axes[0].set(
        xlabel="read-out: time after onset (ms)",
        ylabel="median κ(t) (1/mV)",
        title="median κ per kind (dotted: the read-out used)",
    )
    axes[1].set(
        xlabel="read-out: time after onset (ms)",
        ylabel="ratio of medians",
        title="E-E : E-I and I-I : E-I against the read-out",
    )
    axes[1].set_ylim(-5, 5)
    for ax in axes:
        ax.title.set_fontsize(9)
    return fig


def premise(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """The rule's premise per pair: kappa per strength pair, relative to the pair's kappa,
    against the strength; pairs flagged as not constant in red."""
    kinds = [k for k in KIND_TITLES if f"kappa_{k}_per_strength" in ds]
    fig, axes = plt.subplots(
        1,
        len(kinds),
        figsize=(min(3.6 * len(kinds), max_width_in), 3.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        per = ds[f"kappa_{kind}_per_strength"].values
        strength = np.sqrt(ds[f"wa_{kind}"].values * ds[f"wb_{kind}"].values)
        kappa = ds[f"kappa_{kind}"].values
        flags = ds[f"premise_fails_{kind}"].values.astype(bool)
        n = kappa.shape[0]
        for a in range(n):
            for b in range(n):
                if not np.isfinite(kappa[a, b]) or (kind != "EI" and b < a):
                    continue
                order = np.argsort(strength[a, b])
                ax.plot(
                    strength[a, b][order],
                    (per[a, b] / kappa[a, b])[order],
                    "o",
                    ms=3 if flags[a, b] else 2,
                    color="tab:red" if flags[a, b] else "0.5",
                    alpha=0.9 if flags[a, b] else 0.5,
                )
        fitted = np.isfinite(kappa)
        if kind != "EI":
            fitted &= np.triu(np.ones_like(fitted))
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set(
            xlabel="√(strength_a·strength_b) (nS)",
            ylabel="κ per strength / pair κ",
            title=f"{KIND_TITLES[kind]}: {int((flags & fitted).sum())} of {int(fitted.sum())} "
            f"pairs not constant (red)",
        )
        ax.title.set_fontsize(9)
    return fig


# CA1 pyramidal neurons: steady-state voltage halves 238 um from the soma (dual soma-dendrite
# recordings, control; Golding et al. 2005, J Physiol 568:69, whose models give > 100-fold
# attenuation of EPSPs from small distal dendrites).
LITERATURE_HALF_DISTANCE_UM = 238.0


def attenuation(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """How compact the cell is: the somatic peak of a single input (largest strength)
    against its site's path distance, relative to the most proximal site, with the steady-state
    attenuation measured in CA1 dendrites beside it."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    distance = ds.site_distance.sel(site=ds.psp_site.values).values
    order = np.argsort(distance)
    for receptor, marker in (("E", "o"), ("I", "s")):
        if receptor not in ds.receptor.values:
            continue
        largest = ds.psp_peak.sel(receptor=receptor).dropna("psp_strength", how="all")
        if largest.sizes["psp_strength"] == 0:
            continue
        largest = largest.isel(psp_strength=-1)
        peaks, strength = np.abs(largest.values), float(largest.psp_strength)
        if not np.isfinite(peaks).any():
            continue
        relative = peaks / peaks[order[0]]
        ax.plot(
            distance[order],
            relative[order],
            marker + "-",
            label=f"{receptor} input ({strength:g} nS): {peaks[order[0]]:.2f} mV at "
            f"{distance[order[0]]:.0f} µm, {peaks[order[-1]]:.2f} mV at {distance[order[-1]]:.0f} µm",
        )
    xs = np.linspace(0, max(float(np.nanmax(distance)), 1.0), 50)
    ax.plot(
        xs,
        0.5 ** (xs / LITERATURE_HALF_DISTANCE_UM),
        "k--",
        lw=0.8,
        label="CA1, steady state (Golding et al. 2005)",
    )
    ax.set_ylim(0, 1.1)
    ax.set(
        xlabel="path distance of the input from the soma (µm)",
        ylabel="somatic PSP peak / most proximal site's",
        title="Somatic attenuation against distance",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7)
    return fig


def multi_input_validation(ds: xr.Dataset, max_width_in: float, n_examples: int = 2) -> plt.Figure:
    """Simulated SSPs of the multi-input trials against the linear and bilinear predictions."""
    width = min(4.6 * (n_examples + 1), max_width_in)
    fig, axes = plt.subplots(1, n_examples + 1, figsize=(width, 3.8), layout="constrained")
    t = ds.time_full.values
    for ax, k in zip(axes[:n_examples], range(n_examples), strict=True):
        ax.plot(t, ds.multi_v[k], "k", lw=1.5, label="simulated")
        ax.plot(t, ds.multi_linear[k], "--", label="linear sum")
        ax.plot(t, ds.multi_bilinear[k], "-", label="bilinear")
        if "multi_trilinear" in ds:
            ax.plot(t, ds.multi_trilinear[k], ":", label="trilinear")
        ax.set(
            xlabel="time (ms)",
            ylabel="SSP (mV)",
            title=f"multi-input trial {int(ds.multi_trial[k])}",
        )
        ax.legend(fontsize=7)
        response = t[ds.multi_response[k].values]
        ax.axvspan(response[0], response[-1], color="0.9", zorder=-1)
    ax = axes[-1]
    inside = ds.multi_response.values.ravel()
    v = ds.multi_v.values.ravel()[inside]
    step = max(1, v.size // 4000)
    labels = [("multi_linear", "linear"), ("multi_bilinear", "bilinear")]
    if "multi_trilinear" in ds:
        labels.append(("multi_trilinear", "trilinear"))
    for name, label in labels:
        rmse, whole = float(ds[f"rmse_{label}_response"].mean()), float(ds[f"rmse_{label}"].mean())
        ax.plot(
            v[::step],
            ds[name].values.ravel()[inside][::step],
            ".",
            ms=2,
            alpha=0.5,
            label=f"{label}: RMSE {rmse:.2f} mV (whole trial {whole:.2f})",
        )
    lim = [min(v.min(), 0), v.max()]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set(
        xlabel="simulated SSP (mV)",
        ylabel="predicted SSP (mV)",
        title="all trials, response windows (grey)",
    )
    ax.legend(fontsize=7, markerscale=4)
    return fig


def check_kappa_dataset(ds: xr.Dataset, path: str | Path) -> None:
    """The figures need finite kappa values and multi-input traces."""
    cell = ds.attrs.get("cell", "?")
    cause = "the fit met NaN traces; run the simulation and the fit again"
    if "kappa_EI" not in ds or not np.isfinite(ds.kappa_EI.values).any():
        raise NotFiniteError(
            f"cell {cell}: {path} holds no finite kappa_EI. Likely cause: {cause}."
        )
    for name in ("multi_v", "multi_linear", "multi_bilinear"):
        if name in ds:
            require_finite(ds[name].values, f"{name} of cell {cell}", f"in {path}", cause)


def _soma_diameter(psp: xr.Dataset) -> float:
    return float(psp.compartment_diameter.values[0])


def morphology_figure(psp: xr.Dataset) -> plt.Figure:
    """The cell in x-y projection (line width ~ diameter), soma, and the labelled sites."""
    c = psp.compartment.values[1:]
    starts = np.column_stack([psp.compartment_start_x.values[c], psp.compartment_start_y.values[c]])
    ends = np.column_stack([psp.compartment_end_x.values[c], psp.compartment_end_y.values[c]])
    width = np.clip(psp.compartment_diameter.values[c], 0.3, 4.0) * 0.8
    fig, ax = plt.subplots(figsize=(6.6, 7.0), layout="constrained")
    ax.add_collection(
        LineCollection(np.stack([starts, ends], axis=1), linewidths=width, colors="0.25")
    )
    soma = plt.Circle(
        (float(psp.compartment_x[0]), float(psp.compartment_y[0])),
        _soma_diameter(psp) / 2,
        color="0.25",
    )
    ax.add_patch(soma)
    for s, branch, x, y in zip(
        psp.site.values, psp.site_branch.values, psp.site_x.values, psp.site_y.values, strict=True
    ):
        ax.plot(x, y, "o", ms=7, mfc="tab:red", mec="white", mew=0.8, zorder=3)
        ax.annotate(f"{s}: {branch}", (x, y), (5, 4), textcoords="offset points", fontsize=8)
    ax.autoscale()
    ax.set_aspect("equal")
    attrs = psp.attrs
    ax.set(
        xlabel="x (µm)",
        ylabel="y (µm)",
        title=(
            f"{attrs.get('cell', '')}: {attrs.get('n_compartments', len(psp.compartment))} "
            f"compartments, {attrs.get('total_dendritic_length_um', np.nan):.0f} µm of dendrite, "
            f"R_in {attrs.get('soma_input_resistance_MOhm', np.nan):.0f} MΩ"
        ),
    )
    ax.title.set_fontsize(9)
    return fig


def crowd(ds: xr.Dataset, max_width_in: float) -> plt.Figure:
    """The crowd trials: each prediction's relative error against the number of synchronous E
    inputs on one branch, with the declared limit and where each passes it; and the peaks."""
    fig, axes = plt.subplots(1, 2, figsize=(min(10.0, max_width_in), 3.8), layout="constrained")
    if "crowd_k" not in ds:
        for ax in axes:
            ax.set_axis_off()
        axes[0].text(0, 0.5, "no crowd trials: add 'crowd' to dendrite.protocol.kinds", fontsize=9)
        return fig
    k = ds.crowd_k.values
    limit = float(ds.crowd_max_rel_error)
    names = [n for n in ("linear", "bilinear", "trilinear") if f"crowd_rel_error_{n}" in ds]
    styles = {"linear": "--", "bilinear": "-", "trilinear": ":"}
    axes[1].plot(k, ds.crowd_peak_v, "ko-", ms=3, label="simulated")
    for name in names:
        fails = int(ds[f"crowd_k_fails_{name}"])
        label = f"{name} (passes the limit at k = {fails})" if fails else f"{name} (within)"
        (line,) = axes[0].plot(
            k, ds[f"crowd_rel_error_{name}"], styles[name], marker="o", ms=3, label=label
        )
        if fails:
            axes[0].axvline(fails, color=line.get_color(), lw=0.6, alpha=0.6)
        axes[1].plot(k, ds[f"crowd_peak_{name}"], styles[name], color=line.get_color(), label=name)
    axes[0].axhline(limit, color="0.4", lw=0.8, ls="-.", label=f"limit {limit:g}")
    axes[0].set_yscale("log")
    branch = ds.attrs.get("crowd_branch", "one branch")
    axes[0].set(
        xlabel="E inputs on the branch (k)",
        ylabel="RMSE / RMS of the SSP",
        title=f"prediction error, {branch}",
    )
    axes[1].set(xlabel="E inputs on the branch (k)", ylabel="peak SSP (mV)", title="peaks")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
        ax.title.set_fontsize(9)
    return fig


FIGURES = {
    "kappa_heatmaps": kappa_heatmaps,
    "location_dependence": location_dependence,
    "shunting_fits": shunting_fits,
    "kappa_over_time": kappa_over_time,
    "multi_input_validation": multi_input_validation,
    "readout_choice": readout_choice,
    "premise": premise,
    "attenuation": attenuation,
    "crowd": crowd,
}
