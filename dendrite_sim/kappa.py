"""Fit the dendritic bilinear integration rule, SSP = V1 + V2 + kappa * V1 * V2.

For a pair of inputs the shunting component SC = SSP - V1 - V2 is regressed through
the origin on P = V1 * V2 across the strength pairs of that site pair:
kappa = sum(P * SC) / sum(P**2). V1 and V2 are the single-input PSPs of the same
sites, receptors and strengths, shifted to the pair's onsets.

  read-out      P and SC taken at one time for every pair, of every kind and delay:
                `readout_ms` after the later of the two inputs' onsets (config key
                kappa.readout_ms, recorded in the dataset); the scalar kappa. kappa(t)
                changes many-fold over a PSP (the IPSP peaks after the EPSP), so one
                read-out for all kinds keeps the E-E : E-I : I-I ratios free of a
                per-kind choice, and the timing kappa at delta_t = 0 is the pair's kappa.
  over time     one fit per time point of a window: kappa(t)

The premise of the rule, kappa constant across strengths (Hao et al. 2009), is measured
per pair: kappa per strength pair (SC/P at the read-out), its CV and its slope against
the strength (the geometric mean of the two inputs' strengths). Pairs whose CV exceeds
kappa.premise_cv_max are flagged (premise_fails_<kind>) and the fit logs a warning.

Goodness of fit: R^2 = 1 - sum((SC - kappa*P)^2) / sum((SC - mean SC)^2); spread across
strengths: the coefficient of variation of the per-strength ratios SC/P.

Validation on the random multi-input trials: the linear prediction is the sum of the
inputs' single PSPs; the bilinear one adds kappa_ab * V_a * V_b for every pair of inputs;
the trilinear extension adds gamma * V_a * V_b * (V_a + V_b) with one fitted gamma per cell.
All are scored over the whole trial and over the response window (first input to
`response_ms` after the last). The crowd trials (k = 1 .. N synchronous E inputs on one
branch) get the same three predictions, with the gamma of the multi-input trials, and their
relative errors against k say at which k each passes kappa.crowd_max_rel_error (predict_crowd). The scalar kappa describes the interaction around the
read-out: late in the decay the shunting deficit fades at the membrane rate while V_a * V_b
fades about twice as fast, so kappa(t) grows there and a constant kappa underestimates it.

One module (about 700 lines) because the read-out, timing, time-resolved and multi-input fits
share one way of shifting single PSPs to a pair's onsets and one regression; split, each
piece would import the others' private helpers.
"""

import itertools
import logging
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd
import xarray as xr

from .checks import require_finite
from .config import KappaConfig
from .dataset import config_hash
from .errors import InputError, NotFiniteError
from .protocols import trial_events

KINDS = ("EI", "EE", "II")
KIND_NAMES = {"EI": "E-I", "EE": "E-E", "II": "I-I"}
MATRIX_DIMS = {"EI": ("e_site", "i_site"), "EE": ("site_a", "site_b"), "II": ("site_a", "site_b")}
PER_MV = "1/mV"
FIT_TIME_ATTRS = {"units": "ms", "long_name": "time in the trial (the kappa(t) window)"}
log = logging.getLogger(__name__)


class SinglePSPs:
    """Single-input PSPs by (receptor, site, strength), shifted to any onset."""

    def __init__(self, psp: xr.Dataset):
        singles = psp.sel(trial=psp.kind.isin(["E", "I"]))
        if singles.sizes["trial"] == 0:
            raise InputError(
                "the psp dataset has no single-input trials; add 'single' to the protocol kinds."
            )
        self.onset = float(singles.event_onset.isel(event=0)[0])
        self.t0 = float(psp.trial_time[0])
        self.dt = float(psp.trial_time[1] - psp.trial_time[0])
        self.n_time = psp.sizes["trial_time"]
        self.traces = {
            (str(r), int(s), float(w)): v
            for r, s, w, v in zip(
                singles.event_type.isel(event=0).values,
                singles.event_site.isel(event=0).values,
                singles.event_strength.isel(event=0).values,
                singles.v.values,
                strict=True,
            )
        }

    def at(self, receptor: str, site: int, strength: float, onset: float) -> np.ndarray:
        """The PSP of one input starting at `onset` (zero before; zero-padded at the end)."""
        try:
            trace = self.traces[receptor, site, strength]
        except KeyError:
            raise InputError(
                f"no single-input trial for {receptor} at site {site} with {strength} nS"
            ) from None
        shift = round((onset - self.onset) / self.dt)
        out = np.zeros(self.n_time)
        if shift >= 0:
            out[shift:] = trace[: self.n_time - shift]
        else:
            out[:shift] = trace[-shift:]
        return out


def steady_state_kappa(E_E_mV: float, E_I_mV: float, EL_mV: float) -> dict[str, float]:
    """Small-input limits of kappa for a single passive compartment at steady state.

    With conductances g_E, g_I, leak g_L and potentials relative to rest
    (u = V - E_L, e_E = E_E - E_L, e_I = E_I - E_L), the steady state of
    C du/dt = -g_L u + g_E (e_E - u) + g_I (e_I - u) is

        u = (a e_E + b e_I) / (1 + a + b),    a = g_E / g_L,  b = g_I / g_L.

    Alone: u_E = a e_E / (1 + a), u_I = b e_I / (1 + b). The shunting component is

        SC = u - u_E - u_I = -a b [e_E (1 + b) + e_I (1 + a)] / [(1 + a + b)(1 + a)(1 + b)]

    and u_E u_I = a b e_E e_I / [(1 + a)(1 + b)], so exactly

        kappa_EI = SC / (u_E u_I) = -[e_E (1 + b) + e_I (1 + a)] / [e_E e_I (1 + a + b)]

    which tends to -(e_E + e_I) / (e_E e_I) = -(1/e_E + 1/e_I) for small a, b. Two inputs
    of the same type are the case e_I = e_E (resp. e_E = e_I): kappa_EE -> -2/e_E and
    kappa_II -> -2/e_I. Values in 1/mV.
    """
    e_E, e_I = E_E_mV - EL_mV, E_I_mV - EL_mV
    return {"EI": -(1 / e_E + 1 / e_I), "EE": -2 / e_E, "II": -2 / e_I}


def fit_through_origin(p: np.ndarray, sc: np.ndarray, axis: int = -1) -> tuple:
    """kappa, R^2 and CV of SC = kappa * P along `axis` (NaN where P is all zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (p * sc).sum(axis) / (p * p).sum(axis)
        residual = ((sc - np.expand_dims(kappa, axis) * p) ** 2).sum(axis)
        total = ((sc - sc.mean(axis, keepdims=True)) ** 2).sum(axis)
        r2 = 1.0 - residual / total
        ratios = sc / p
        cv = ratios.std(axis) / np.abs(ratios.mean(axis))
    return kappa, r2, cv


def readout_index(
    singles: SinglePSPs, ta: np.ndarray, tb: np.ndarray, readout_ms: float
) -> np.ndarray:
    """Sample index of the read-out: `readout_ms` after the later of the two onsets."""
    times = np.maximum(np.asarray(ta, float), np.asarray(tb, float)) + readout_ms
    index = np.rint((times - singles.t0) / singles.dt).astype(int)
    if (index >= singles.n_time).any():
        raise InputError(
            f"config key kappa.readout_ms: {readout_ms:g} ms after the later input falls "
            "after the end of the trial; shorten it or lengthen dendrite.protocol.trial_ms."
        )
    return index


PAIR_COLUMNS = {
    "a": ("event_site", 0),
    "b": ("event_site", 1),
    "wa": ("event_strength", 0),
    "wb": ("event_strength", 1),
    "ta": ("event_onset", 0),
    "tb": ("event_onset", 1),
}


def _pair_table(psp: xr.Dataset, protocol: str) -> pd.DataFrame:
    chosen = psp.protocol.values == protocol
    events = {key: psp[name].values[chosen, e] for key, (name, e) in PAIR_COLUMNS.items()}
    return pd.DataFrame(
        {
            "trial": np.flatnonzero(chosen),
            "kind": psp.kind.values[chosen],
            **events,
            "delta_t": psp.delta_t.values[chosen],
        }
    )


def _pair_arrays(psp: xr.Dataset, singles: SinglePSPs, rows: pd.DataFrame, kind: str) -> tuple:
    ra, rb = kind
    v1 = np.stack([singles.at(ra, r.a, r.wa, r.ta) for r in rows.itertuples()])
    v2 = np.stack([singles.at(rb, r.b, r.wb, r.tb) for r in rows.itertuples()])
    ssp = psp.v.values[rows.trial.to_numpy()]
    return v1, v2, ssp - v1 - v2


def _fit_group(
    psp: xr.Dataset,
    singles: SinglePSPs,
    rows: pd.DataFrame,
    kind: str,
    window: slice,
    readout_ms: float,
) -> dict:
    v1, v2, sc = _pair_arrays(psp, singles, rows, kind)
    p = v1 * v2
    at = readout_index(singles, rows.ta.to_numpy(), rows.tb.to_numpy(), readout_ms)
    strengths = np.arange(len(rows))
    p_at, sc_at = p[strengths, at], sc[strengths, at]
    kappa, r2, cv = fit_through_origin(p_at, sc_at)
    kappa_t, _, _ = fit_through_origin(p[:, window], sc[:, window], axis=0)
    strength = np.sqrt(rows.wa.to_numpy(float) * rows.wb.to_numpy(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_strength = sc_at / p_at
    return {
        "kappa": kappa,
        "r2": r2,
        "cv": cv,
        "kappa_t": kappa_t,
        "p": p_at,
        "sc": sc_at,
        "kappa_w": per_strength,
        "wa": rows.wa.to_numpy(float),
        "wb": rows.wb.to_numpy(float),
        "slope": _slope(strength, per_strength),
    }


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y against x (NaN with fewer than two distinct x)."""
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if len(np.unique(x)) < 2:
        return float("nan")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def fit_pairs(
    psp: xr.Dataset, window: slice, readout_ms: float
) -> dict[str, dict[tuple[int, int], dict]]:
    """Fits of every synchronous site pair, by kind and (site a, site b)."""
    singles = SinglePSPs(psp)
    table = _pair_table(psp, "pairs")
    return {
        kind: {
            (int(a), int(b)): _fit_group(psp, singles, rows, kind, window, readout_ms)
            for (a, b), rows in table[table.kind == kind].groupby(["a", "b"])
        }
        for kind in KINDS
    }


def _site_coords(psp: xr.Dataset, dim: str, prefix: str) -> dict:
    return {
        dim: psp.site.values,
        f"{prefix}_branch": (dim, psp.site_branch.values),
        f"{prefix}_distance": (dim, psp.site_distance.values, {"units": "um"}),
        f"{prefix}_compartment": (dim, psp.site_compartment.values),
    }


def _matrix(fits: Mapping, kind: str, key: str, n_sites: int, extra: tuple = ()) -> np.ndarray:
    out = np.full((n_sites, n_sites, *extra), np.nan)
    for (a, b), fit in fits.items():
        out[a, b] = fit[key]
        if kind != "EI":
            out[b, a] = fit[key]
    return out


def _strength_matrix(fits: Mapping, kind: str, key: str, n_sites: int) -> np.ndarray:
    n = max(len(f[key]) for f in fits.values())
    padded = {
        k: {key: np.pad(f[key], (0, n - len(f[key])), constant_values=np.nan)}
        for k, f in fits.items()
    }
    return _matrix(padded, kind, key, n_sites, (n,))


def kappa_matrices(
    psp: xr.Dataset, fits: Mapping, window_times: np.ndarray, premise_cv_max: float = np.inf
) -> xr.Dataset:
    """kappa, R^2, CV, kappa(t), the per-strength read-out values and the premise measures
    (kappa per strength pair, its slope against strength, the flag) as labelled arrays."""
    n = psp.sizes["site"]
    coords = {"fit_time": ("fit_time", window_times, FIT_TIME_ATTRS)}
    for dim, prefix in (("e_site", "e"), ("i_site", "i"), ("site_a", "a"), ("site_b", "b")):
        coords |= _site_coords(psp, dim, prefix)
    data = {}
    for kind in KINDS:
        if not fits[kind]:
            continue
        dims = MATRIX_DIMS[kind]
        described = f"{kind[0]}-{kind[1]} pairs"
        per_strength = (*dims, f"strength_pair_{kind}")
        data[f"kappa_{kind}"] = (
            dims,
            _matrix(fits[kind], kind, "kappa", n),
            {"units": PER_MV, "long_name": f"kappa at the read-out, {described}"},
        )
        data[f"r2_{kind}"] = (
            dims,
            _matrix(fits[kind], kind, "r2", n),
            {"units": "1", "long_name": f"R^2 of the fit, {described}"},
        )
        cv = _matrix(fits[kind], kind, "cv", n)
        data[f"cv_{kind}"] = (
            dims,
            cv,
            {"units": "1", "long_name": f"CV of SC/P across strengths, {described}"},
        )
        data[f"slope_{kind}"] = (
            dims,
            _matrix(fits[kind], kind, "slope", n),
            {
                "units": "1/(mV nS)",
                "long_name": f"slope of kappa against sqrt(strength_a*strength_b), {described}",
            },
        )
        data[f"premise_fails_{kind}"] = (
            dims,
            (np.nan_to_num(cv, nan=0.0) > premise_cv_max).astype(np.int8),
            {
                "units": "1",
                "long_name": f"kappa not constant across strengths (CV above the limit), {described}",
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "constant not_constant",
            },
        )
        data[f"kappa_{kind}_t"] = (
            (*dims, "fit_time"),
            _matrix(fits[kind], kind, "kappa_t", n, (len(window_times),)),
            {"units": PER_MV, "long_name": f"time-resolved kappa, {described}"},
        )
        for key, name, units in (
            ("p", "V1*V2 at the read-out", "mV2"),
            ("sc", "SC at the read-out", "mV"),
            ("kappa_w", "kappa (SC/P at the read-out)", PER_MV),
            ("wa", "strength of input a", "nS"),
            ("wb", "strength of input b", "nS"),
        ):
            variable = f"{key}_{kind}" if key != "kappa_w" else f"kappa_{kind}_per_strength"
            data[variable] = (
                per_strength,
                _strength_matrix(fits[kind], kind, key, n),
                {"units": units, "long_name": f"{name} per strength pair, {described}"},
            )
        data[f"median_kappa_{kind}_t"] = (
            "fit_time",
            _median_over_pairs(data[f"kappa_{kind}_t"][1]),
            {"units": PER_MV, "long_name": f"median over pairs of kappa(t), {described}"},
        )
    return xr.Dataset(data, coords=coords)


def _median_over_pairs(kappa_t: np.ndarray) -> np.ndarray:
    """Median over the (site, site) pairs at each time; NaN where no pair is finite."""
    flat = kappa_t.reshape(-1, kappa_t.shape[-1])
    out = np.full(flat.shape[1], np.nan)
    some = np.isfinite(flat).any(0)
    out[some] = np.nanmedian(flat[:, some], axis=0)
    return out


def fit_timing(psp: xr.Dataset, readout_ms: float) -> xr.Dataset:
    """kappa of the E-I pairs with time differences, per delta_t.

    Read `readout_ms` after the later of the two onsets, as every pair kappa: both inputs
    have started there whatever the delay, and at delta_t = 0 the read-out is the
    synchronous pair's, so the timing kappa equals the pair kappa of the same sites.
    """
    table = _pair_table(psp, "timing")
    if table.empty:
        return xr.Dataset()
    singles = SinglePSPs(psp)
    pairs = sorted({(int(a), int(b)) for a, b in zip(table.a, table.b, strict=True)})
    deltas = np.sort(table.delta_t.unique())
    kappa = np.full((len(pairs), len(deltas)), np.nan)
    r2 = np.full_like(kappa, np.nan)
    for (a, b, dt), rows in table.groupby(["a", "b", "delta_t"]):
        fit = _fit_group(psp, singles, rows, "EI", slice(0, 1), readout_ms)
        i, j = pairs.index((int(a), int(b))), int(np.searchsorted(deltas, dt))
        kappa[i, j], r2[i, j] = fit["kappa"], fit["r2"]
    coords = {
        "timing_pair": (
            "timing_pair",
            np.arange(len(pairs), dtype=np.int32),
            {"units": "1", "long_name": "index of the timing pair"},
        ),
        "timing_e_site": (
            "timing_pair",
            np.array([a for a, _ in pairs], np.int32),
            {"units": "1", "long_name": "E site of the timing pair"},
        ),
        "timing_i_site": (
            "timing_pair",
            np.array([b for _, b in pairs], np.int32),
            {"units": "1", "long_name": "I site of the timing pair"},
        ),
        "delta_t": (
            "delta_t",
            deltas,
            {
                "units": "ms",
                "long_name": "I onset minus E onset",
                "description": "I onset minus E onset",
            },
        ),
    }
    return xr.Dataset(
        {
            "kappa_EI_timing": (
                ("timing_pair", "delta_t"),
                kappa,
                {"units": PER_MV, "long_name": "kappa of E-I pairs with a delay, at the read-out"},
            ),
            "r2_EI_timing": (
                ("timing_pair", "delta_t"),
                r2,
                {"units": "1", "long_name": "R^2 of the timing fit"},
            ),
        },
        coords=coords,
    )


def _kappa_lookup(matrices: xr.Dataset) -> dict[str, np.ndarray]:
    lookup = {}
    for kind in KINDS:
        name = f"kappa_{kind}"
        if name in matrices:
            k = matrices[name].values.copy()
            k[np.isnan(k)] = np.nanmedian(k) if np.isfinite(k).any() else 0.0
            lookup[kind] = k
    return lookup


def _rmse(v: np.ndarray, prediction: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.sqrt((((v - prediction) ** 2) * mask).sum(-1) / mask.sum(-1))


def predict_multi(psp: xr.Dataset, matrices: xr.Dataset, response_ms: float) -> xr.Dataset:
    """Linear, bilinear and trilinear predictions of the multi-input trials, with errors.

    Errors are RMSEs over the whole trial and over the response window, from the first
    input to `response_ms` after the last one, where the inputs act. Pairs that were not
    simulated (sampled out) use the median kappa of their kind.

    The trilinear extension adds a third-order term to every pair, SC_ab = kappa_ab V_a V_b
    + gamma V_a V_b (V_a + V_b): one gamma for the cell, fitted by least squares through the
    origin to what the bilinear rule leaves (SSP - bilinear) over the response windows.
    Its errors are leave-one-trial-out: each trial is predicted with the gamma fitted on the
    others. Per trial the peaks (largest |V| in the response window) of the simulation and
    of each prediction, and the most E inputs on one branch, say where the pairwise rule
    stops holding.
    """
    multi = psp.sel(trial=psp.protocol == "multi")
    if multi.sizes["trial"] == 0:
        return xr.Dataset()
    singles, kappa = SinglePSPs(psp), _kappa_lookup(matrices)
    n_trials, n_time = multi.sizes["trial"], psp.sizes["trial_time"]
    linear, bilinear, cubic = (np.zeros((n_trials, n_time)) for _ in range(3))
    branch_of = psp.site_branch.values
    crowding = np.zeros(n_trials, np.int32)
    for t in range(n_trials):
        trial = multi.isel(trial=t)
        events = [(r, s, singles.at(r, s, w, o)) for s, r, w, o in trial_events(trial)]
        linear[t] = sum(v for _, _, v in events)
        e_branches = [str(branch_of[s]) for r, s, _ in events if r == "E"]
        crowding[t] = max((e_branches.count(b) for b in set(e_branches)), default=0)
        quadratic = np.zeros(n_time)
        for (ra, sa, va), (rb, sb, vb) in itertools.combinations(events, 2):
            if ra == "I" and rb == "E":
                (ra, sa, va), (rb, sb, vb) = (rb, sb, vb), (ra, sa, va)
            quadratic += kappa[ra + rb][sa, sb] * va * vb
            cubic[t] += va * vb * (va + vb)
        bilinear[t] = linear[t] + quadratic
    v, time = multi.v.values, psp.trial_time.values
    onsets = multi.event_onset.values
    response = (time >= np.nanmin(onsets, 1)[:, None]) & (
        time <= np.nanmax(onsets, 1)[:, None] + response_ms
    )
    qr = ((v - bilinear) * cubic * response).sum(-1)
    qq = (cubic * cubic * response).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = qr.sum() / qq.sum() if qq.sum() > 0 else 0.0
        left_out = (qr.sum() - qr) / (qq.sum() - qq) if n_trials > 1 else np.full(1, gamma)
    left_out = np.where(np.isfinite(left_out), left_out, gamma)
    trilinear = bilinear + gamma * cubic
    trilinear_loo = bilinear + left_out[:, None] * cubic
    whole = np.ones_like(response)
    errors = {}
    predictions = (("linear", linear), ("bilinear", bilinear), ("trilinear", trilinear_loo))
    for window, mask in (("", whole), ("_response", response)):
        rms = np.sqrt((v**2 * mask).sum(-1) / mask.sum(-1))
        for name, prediction in predictions:
            rmse = _rmse(v, prediction, mask)
            where = "over the response window" if window else "over the whole trial"
            held = " (gamma fitted on the other trials)" if name == "trilinear" else ""
            errors[f"rmse_{name}{window}"] = (
                "multi_trial",
                rmse,
                {"units": "mV", "long_name": f"RMSE of the {name} prediction {where}{held}"},
            )
            errors[f"rel_error_{name}{window}"] = (
                "multi_trial",
                rmse / rms,
                {"units": "1", "long_name": f"RMSE / RMS of the SSP, {name}, {where}{held}"},
            )
    peaks = {}
    for name, trace in (("v", v), *predictions):
        inside = np.where(response, trace, 0.0)
        peaks[f"multi_peak_{name}"] = (
            "multi_trial",
            inside[np.arange(n_trials), np.abs(inside).argmax(-1)],
            {
                "units": "mV",
                "long_name": f"peak in the response window, {'simulated' if name == 'v' else name}",
            },
        )
    dims = ("multi_trial", "time_full")
    return xr.Dataset(
        {
            "multi_v": (dims, v, {"units": "mV", "long_name": "simulated SSP"}),
            "multi_linear": (dims, linear, {"units": "mV", "long_name": "linear sum prediction"}),
            "multi_bilinear": (dims, bilinear, {"units": "mV", "long_name": "bilinear prediction"}),
            "multi_trilinear": (
                dims,
                trilinear,
                {"units": "mV", "long_name": "trilinear prediction (gamma fitted on all trials)"},
            ),
            "multi_response": (dims, response, {"long_name": "inside the response window"}),
            "gamma_trilinear": (
                (),
                float(gamma),
                {
                    "units": "1/mV2",
                    "long_name": "third-order coefficient: SC_ab = kappa V_a V_b + gamma V_a V_b (V_a + V_b)",
                },
            ),
            "multi_max_e_per_branch": (
                "multi_trial",
                crowding,
                {"units": "1", "long_name": "most E inputs on one branch in the trial"},
            ),
            **errors,
            **peaks,
        },
        coords={
            "multi_trial": multi.trial.values,
            "time_full": ("time_full", time, {"units": "ms"}),
        },
    )


CROWD_PREDICTIONS = ("linear", "bilinear", "trilinear")


def _first_above(k: np.ndarray, error: np.ndarray, limit: float) -> int:
    """The smallest k whose error exceeds `limit`; 0 when none does."""
    above = np.flatnonzero(error > limit)
    return int(k[above[0]]) if above.size else 0


def predict_crowd(
    psp: xr.Dataset, matrices: xr.Dataset, gamma: float | None, response_ms: float, limit: float
) -> xr.Dataset:
    """Linear, pairwise (bilinear) and trilinear predictions of the crowd trials (k = 1 .. N
    synchronous E inputs on one branch), with their errors against k.

    The predictions are those of `predict_multi`: the sum of the inputs' single PSPs, plus
    kappa_EE of every pair of inputs times V_a V_b, plus gamma V_a V_b (V_a + V_b) with the
    gamma fitted on the multi-input trials (not on these; no trilinear prediction without
    it). The error of each is the RMSE over the response window (the onset to `response_ms`
    after it) relative to the RMS of the SSP there; the pairwise rule is said to stop holding
    at the smallest k whose relative error exceeds `limit` (kappa.crowd_max_rel_error).
    """
    crowd = psp.sel(trial=psp.protocol == "crowd")
    if crowd.sizes["trial"] == 0:
        return xr.Dataset()
    lookup = _kappa_lookup(matrices)
    if "EE" not in lookup:
        raise InputError(
            "the crowd trials are predicted with kappa_EE, but the psp dataset has no E-E pairs; "
            "add EE to dendrite.protocol.pairs.kinds."
        )
    singles, time = SinglePSPs(psp), psp.trial_time.values
    n = crowd.sizes["trial"]
    k = crowd.n_events.values.astype(np.int32)
    linear, bilinear, cubic = (np.zeros((n, len(time))) for _ in range(3))
    for t in range(n):
        events = [(s, singles.at(r, s, w, o)) for s, r, w, o in trial_events(crowd.isel(trial=t))]
        linear[t] = sum(v for _, v in events)
        bilinear[t] = linear[t]
        for (sa, va), (sb, vb) in itertools.combinations(events, 2):
            bilinear[t] += lookup["EE"][sa, sb] * va * vb
            cubic[t] += va * vb * (va + vb)
    predictions = {"linear": linear, "bilinear": bilinear}
    if gamma is not None and np.isfinite(gamma):
        predictions["trilinear"] = bilinear + gamma * cubic
    v = crowd.v.values
    onset = np.nanmin(crowd.event_onset.values, 1)[:, None]
    window = (time >= onset) & (time <= onset + response_ms)
    rms = np.sqrt((v**2 * window).sum(-1) / window.sum(-1))
    index = np.arange(n)
    peak_v = np.where(window, v, 0.0)[index, np.abs(np.where(window, v, 0.0)).argmax(-1)]
    branch = str(psp.site_branch.values[int(crowd.event_site.values[0, 0])])
    sites = sorted({int(s) for s in crowd.event_site.values.ravel() if s >= 0})
    data = {
        "crowd_peak_v": (
            "crowd_k",
            peak_v,
            {"units": "mV", "long_name": "peak of the simulated SSP in the response window, crowd"},
        ),
        "crowd_max_rel_error": (
            (),
            float(limit),
            {
                "units": "1",
                "long_name": "relative error above which the rule is said to stop holding (kappa.crowd_max_rel_error)",
            },
        ),
    }
    crossing = {}
    for name, trace in predictions.items():
        inside = np.where(window, trace, 0.0)
        error = _rmse(v, trace, window) / rms
        crossing[name] = _first_above(k, error, limit)
        data[f"crowd_rel_error_{name}"] = (
            "crowd_k",
            error,
            {
                "units": "1",
                "long_name": f"RMSE / RMS of the SSP over the response window, {name} prediction, crowd",
            },
        )
        data[f"crowd_peak_{name}"] = (
            "crowd_k",
            inside[index, np.abs(inside).argmax(-1)],
            {"units": "mV", "long_name": f"peak in the response window, {name} prediction, crowd"},
        )
        data[f"crowd_k_fails_{name}"] = (
            (),
            np.int32(crossing[name]),
            {
                "units": "1",
                "long_name": f"fewest inputs on the branch whose {name} prediction errs above the limit (0: none up to the largest crowd)",
            },
        )
    ds = xr.Dataset(
        data,
        coords={
            "crowd_k": (
                "crowd_k",
                k,
                {"units": "1", "long_name": "number of synchronous E inputs on the branch"},
            )
        },
    )
    ds.attrs = {
        "crowd_branch": branch,
        "crowd_sites": ", ".join(map(str, sites)),
        "crowd_strength_nS": float(crowd.event_strength.values[0, 0]),
        **{f"crowd_k_fails_{name}": value for name, value in crossing.items()},
        "crowd": crowd_verdict(crossing, int(k.max()), limit, branch, len(sites)),
    }
    return ds


def crowd_verdict(
    crossing: Mapping[str, int], largest: int, limit: float, branch: str, n_sites: int
) -> str:
    """One sentence: at how many inputs on the branch each prediction's error passes `limit`."""
    where = f"{n_sites} site{'s' if n_sites > 1 else ''} of branch {branch}"

    def said(name: str) -> str:
        k = crossing[name]
        return f"k = {k}" if k else f"no k up to {largest}"

    head = (
        f"the pairwise rule stops holding at k = {crossing['bilinear']} synchronous E inputs"
        if crossing["bilinear"]
        else f"the pairwise rule holds for every crowd up to k = {largest} synchronous E inputs"
    )
    others = [f"the linear sum at {said('linear')}"]
    if "trilinear" in crossing:
        others.append(f"the trilinear term at {said('trilinear')}")
    return (
        f"{head} on {where} (relative error over the response window above {limit:g}); "
        f"{' and '.join(others)}."
    )


def single_peaks(psp: xr.Dataset) -> xr.Dataset:
    """Peak amplitude of every single-input PSP (largest |V|), by receptor, site, strength."""
    singles = psp.sel(trial=psp.kind.isin(["E", "I"]))
    first = singles.isel(event=0)
    v = singles.v.values
    peaks = v[np.arange(len(v)), np.abs(v).argmax(-1)]
    table = pd.DataFrame(
        {
            "receptor": first.event_type.values,
            "site": first.event_site.values,
            "strength": first.event_strength.values,
            "peak": peaks,
        }
    )
    da = table.set_index(["receptor", "site", "strength"]).peak.to_xarray()
    da = da.assign_coords(receptor=da.receptor.astype(str))
    da.attrs = {"units": "mV", "long_name": "peak of the single-input PSP"}
    da.strength.attrs["units"] = "nS"
    return xr.Dataset({"psp_peak": da.rename(site="psp_site", strength="psp_strength")})


def fit_kappa(psp: xr.Dataset, config: KappaConfig, source: str = "") -> xr.Dataset:
    """The full kappa dataset from a psp dataset (see the module docstring), fitted as the
    `kappa` config section says."""
    start, stop = config.window_ms
    in_window = (psp.trial_time.values >= start) & (psp.trial_time.values <= stop)
    window = slice(int(np.argmax(in_window)), int(len(in_window) - np.argmax(in_window[::-1])))
    fits = fit_pairs(psp, window, config.readout_ms)
    if not any(fits.values()):
        raise InputError("the psp dataset has no pair trials; add 'pairs' to the protocol kinds.")
    matrices = kappa_matrices(psp, fits, psp.trial_time.values[window], config.premise_cv_max)
    multi = predict_multi(psp, matrices, config.response_ms)
    readout = xr.Dataset(
        {
            "readout_ms": (
                (),
                float(config.readout_ms),
                {"units": "ms", "long_name": "read-out time after the later input's onset"},
            ),
            "pair_onset_ms": (
                (),
                SinglePSPs(psp).onset,
                {"units": "ms", "long_name": "onset of the synchronous pairs' inputs in the trial"},
            ),
        }
    )
    gamma = float(multi.gamma_trilinear) if "gamma_trilinear" in multi else None
    crowd = predict_crowd(psp, matrices, gamma, config.response_ms, config.crowd_max_rel_error)
    parts = [matrices, fit_timing(psp, config.readout_ms), multi, single_peaks(psp), readout]
    ds = xr.merge([*parts, crowd])
    site_table = {name: psp[name] for name in psp.coords if name.startswith("site")}
    ds = ds.assign_coords(site_table)
    hashed = {**asdict(config), "window_ms": list(config.window_ms)}  # as the config file has it
    ds.attrs = {
        "title": f"Bilinear coefficients of the '{psp.attrs.get('cell', '?')}' cell",
        "units_kappa": PER_MV,
        "rule": "SSP = V1 + V2 + kappa * V1 * V2 (potentials relative to rest, mV)",
        "cell": psp.attrs.get("cell", ""),
        "simulator": psp.attrs.get("simulator", ""),
        "brian2_version": psp.attrs.get("brian2_version", ""),
        "source_file": source,
        "psp_config_hash": psp.attrs.get("config_hash", ""),
        # the cell's spine setting, part of the run's identity (psp.nc has it from the model)
        **{k: v for k, v in psp.attrs.items() if k.startswith("spine")},
        "config_hash": config_hash({"psp": psp.attrs.get("config_hash", ""), **hashed}),
        "readout_ms": float(config.readout_ms),
        "premise_cv_max": float(config.premise_cv_max),
        **summary(ds),
        **crowd.attrs,
    }
    verdict, holds = premise_verdict(ds, config.premise_cv_max)
    ds.attrs |= {"premise": verdict, "premise_holds": int(holds)}
    if not holds:
        log.warning("%s", verdict)
    return ds


def premise_verdict(ds: xr.Dataset, cv_max: float) -> tuple[str, bool]:
    """One sentence on the rule's premise (kappa constant across strengths) for the cell
    of `ds`, and whether it holds for every fitted pair."""
    cell = ds.attrs.get("cell", "?")
    failing, parts = 0, []
    for kind in KINDS:
        if f"premise_fails_{kind}" not in ds:
            continue
        fitted = np.isfinite(ds[f"kappa_{kind}"].values)
        if kind != "EI":  # a symmetric matrix: count each site pair once
            fitted &= np.triu(np.ones_like(fitted, dtype=bool))
        flags = ds[f"premise_fails_{kind}"].values.astype(bool) & fitted
        failing += int(flags.sum())
        worst = float(np.nanmax(ds[f"cv_{kind}"].values)) if fitted.any() else float("nan")
        parts.append(
            f"{KIND_NAMES[kind]} {int(flags.sum())} of {int(fitted.sum())} (max CV {worst:.2f})"
        )
    counts = "; ".join(parts)
    if failing:
        return (
            f"cell {cell}: the bilinear rule's premise FAILS: kappa is not constant across "
            f"strengths (CV of SC/P above {cv_max:g}) for {counts}. Its kappa then depends on "
            "the strengths simulated; read kappa_<kind>_per_strength and premise_fails_<kind>.",
            False,
        )
    return (
        f"cell {cell}: the premise holds: kappa is constant across strengths "
        f"(CV of SC/P at most {cv_max:g}) for every pair: {counts}.",
        True,
    )


def summary(ds: xr.Dataset) -> dict[str, float]:
    """Headline numbers: median R^2 and CV per kind, mean multi-input errors."""
    out = {}
    for kind in KINDS:
        if f"r2_{kind}" in ds:
            out[f"median_r2_{kind}"] = float(ds[f"r2_{kind}"].median())
            out[f"median_cv_{kind}"] = float(ds[f"cv_{kind}"].median())
    for window in ("", "_response"):
        if f"rmse_linear{window}" in ds:
            for name in ("rmse_linear", "rmse_bilinear", "rel_error_linear", "rel_error_bilinear"):
                out[f"mean_{name}{window}"] = float(ds[name + window].mean())
            ratio = ds[f"rmse_bilinear{window}"].mean() / ds[f"rmse_linear{window}"].mean()
            out[f"bilinear_over_linear{window}"] = float(ratio)
            if f"rmse_trilinear{window}" in ds:
                out[f"mean_rmse_trilinear{window}"] = float(ds[f"rmse_trilinear{window}"].mean())
                ratio = ds[f"rmse_trilinear{window}"].mean() / ds[f"rmse_linear{window}"].mean()
                out[f"trilinear_over_linear{window}"] = float(ratio)
    if "gamma_trilinear" in ds:
        out["gamma_trilinear"] = float(ds.gamma_trilinear)
        bilinear, linear = ds.rmse_bilinear_response.values, ds.rmse_linear_response.values
        out["bilinear_beats_linear_trials"] = int((bilinear < linear).sum())
        for name in ("v", "linear", "bilinear", "trilinear"):
            out[f"median_peak_{name}"] = float(ds[f"multi_peak_{name}"].median())
    return out


FIT_CAUSES = (
    "V1*V2 is zero at the peak for every strength (a single PSP of zero amplitude), or the "
    "traces were not finite"
)


def check_fit(ds: xr.Dataset, psp: xr.Dataset) -> None:
    """Raise NotFiniteError unless kappa is finite for every simulated pair and the
    timing fits and multi-input predictions are finite. (Pairs that were not simulated
    are NaN by design; R^2 and CV may be NaN: undefined with a single strength pair.)"""
    cell = psp.attrs.get("cell", "?")
    table = _pair_table(psp, "pairs")
    for kind in KINDS:
        rows = table[table.kind == kind]
        if rows.empty or f"kappa_{kind}" not in ds:
            continue
        values = ds[f"kappa_{kind}"].values[rows.a.to_numpy(), rows.b.to_numpy()]
        bad = rows[~np.isfinite(values)]
        if not bad.empty:
            pairs = sorted({(int(a), int(b)) for a, b in zip(bad.a, bad.b, strict=True)})
            raise NotFiniteError(
                f"cell {cell}: kappa_{kind} is NaN or infinite for site pairs "
                f"{', '.join(map(str, pairs[:8]))}{' ...' if len(pairs) > 8 else ''} "
                f"(trials {', '.join(map(str, bad.trial.to_numpy()[:8]))}). "
                f"Likely cause: {FIT_CAUSES}. Nothing was written."
            )
    names = ("kappa_EI_timing", "multi_linear", "multi_bilinear", "multi_trilinear")
    crowd = tuple(f"crowd_rel_error_{name}" for name in CROWD_PREDICTIONS)
    for name in names + crowd:
        if name in ds:
            require_finite(ds[name].values, f"{name} of cell {cell}", "", FIT_CAUSES)
