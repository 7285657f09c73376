"""Stimulation protocols: which inputs every trial receives, and when.

A trial is a list of input events (site, type E/I, strength in nS, onset in ms).
`plan_trials` turns the `dendrite.protocol` config section (a dendrite_sim.config.Protocol)
and a site table into a Dataset with dimensions (trial, event), padded where a trial has
fewer events.

Protocols:
  single  each site alone, E and I, at every strength
  pairs   every E-I, E-E and I-I site pair (or a seeded sample) at every strength pair
  timing  a seeded sample of E-I pairs with the I input shifted by each time difference
  multi   seeded random trials with many E and I inputs at random sites and times
  crowd   k = 1 .. crowd.max_inputs synchronous E inputs of one strength on one branch (the
          branch of site crowd.site), spread in turn over that branch's sites; one trial per k
"""

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from .config import Crowd, Multi, Pairs, Protocol, Strengths, Timing
from .errors import InputError

PROTOCOLS = ("single", "pairs", "timing", "multi", "crowd")
PAIR_KINDS = ("EI", "EE", "II")

Event = tuple[int, str, float, float]


def _single(n_sites: int, strengths: Strengths, onset: float):
    for site in range(n_sites):
        for receptor in ("E", "I"):
            for s in getattr(strengths, receptor):
                yield "single", receptor, [(site, receptor, s, onset)]


def _site_pairs(kind: str, n_sites: int, max_pairs: int, rng: np.random.Generator) -> list:
    if kind == "EI":
        pairs = list(itertools.product(range(n_sites), repeat=2))
    else:
        pairs = list(itertools.combinations_with_replacement(range(n_sites), 2))
    if len(pairs) > max_pairs:
        keep = np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))
        pairs = [pairs[k] for k in keep]
    return pairs


def _pair_events(kind: str, a: int, b: int, strengths: Strengths, onset_a: float, onset_b: float):
    ra, rb = kind
    for sa, sb in itertools.product(getattr(strengths, ra), getattr(strengths, rb)):
        yield [(a, ra, sa, onset_a), (b, rb, sb, onset_b)]


def _pairs(n_sites: int, strengths: Strengths, onset: float, config: Pairs):
    rng = np.random.default_rng(config.seed)
    for kind in config.kinds:
        for a, b in _site_pairs(kind, n_sites, config.max_pairs_per_kind, rng):
            for events in _pair_events(kind, a, b, strengths, onset, onset):
                yield "pairs", kind, events


def _timing(n_sites: int, strengths: Strengths, onset: float, config: Timing):
    rng = np.random.default_rng(config.seed)
    for a, b in _site_pairs("EI", n_sites, config.n_pairs, rng):
        for dt in config.delta_t_ms:
            for events in _pair_events("EI", a, b, strengths, onset, onset + dt):
                yield "timing", "EI", events


def _multi(n_sites: int, strengths: Strengths, onset: float, record_dt: float, config: Multi):
    rng = np.random.default_rng(config.seed)
    for _ in range(config.n_trials):
        events = []
        for receptor, count in (("E", config.n_E), ("I", config.n_I)):
            for _ in range(count):
                shift = round(rng.uniform(0, config.window_ms) / record_dt) * record_dt
                s = float(rng.choice(getattr(strengths, receptor)))
                events.append((int(rng.integers(n_sites)), receptor, s, onset + shift))
        yield "multi", "multi", events


def crowd_sites(branches: list[str], config: Crowd) -> list[int]:
    """The sites of the crowd's branch (the branch of site config.site; negative counts from
    the last site), in site order."""
    n = len(branches)
    if not -n <= config.site < n:
        raise InputError(
            f"config key dendrite.protocol.crowd.site: {config.site} is not a site index of "
            f"this cell ({n} sites: 0 .. {n - 1}, or -1 .. -{n} from the last)."
        )
    branch = branches[config.site]
    return [s for s in range(n) if branches[s] == branch]


def _crowd(branches: list[str], strengths: Strengths, onset: float, config: Crowd):
    if config.strength_nS not in strengths.E:
        raise InputError(
            f"config key dendrite.protocol.crowd.strength_nS: {config.strength_nS:g} nS is not "
            f"one of dendrite.protocol.strengths_nS.E {list(strengths.E)}; the predictions "
            "need the single PSP of that strength."
        )
    sites = crowd_sites(branches, config)
    for k in range(1, config.max_inputs + 1):
        yield (
            "crowd",
            "crowd",
            [(sites[i % len(sites)], "E", config.strength_nS, onset) for i in range(k)],
        )


def _trials(
    n_sites: int, protocol: Protocol, kind: str, branches: list[str] | None = None
) -> Iterator[tuple[str, str, list]]:
    strengths, onset = protocol.strengths_nS, protocol.onset_ms
    if kind == "single":
        return _single(n_sites, strengths, onset)
    if kind == "pairs":
        return _pairs(n_sites, strengths, onset, protocol.pairs)
    if kind == "timing":
        return _timing(n_sites, strengths, onset, protocol.timing)
    if kind == "multi":
        return _multi(n_sites, strengths, onset, protocol.record_dt_ms, protocol.multi)
    if kind == "crowd":
        return _crowd(branches or ["?"] * n_sites, strengths, onset, protocol.crowd)
    raise InputError(
        f"dendrite.protocol.kinds: unknown protocol kind {kind!r}; choose from {PROTOCOLS}."
    )


def plan_trials(sites: pd.DataFrame, protocol: Protocol) -> xr.Dataset:
    """The trial table for `protocol` (the `dendrite.protocol` config section)."""
    check_timing(protocol)
    branches = [str(b) for b in sites.branch] if "branch" in sites else None
    trials = [t for kind in protocol.kinds for t in _trials(len(sites), protocol, kind, branches)]
    return _trial_dataset(trials, sites)


def trial_counts(n_sites: int, protocol: Protocol) -> dict[str, int]:
    """How many trials `plan_trials` makes of each protocol kind for n_sites sites (the
    random multi-input trials are counted, not drawn)."""
    counted = {"multi": protocol.multi.n_trials, "crowd": protocol.crowd.max_inputs}
    return {
        kind: counted[kind] if kind in counted else sum(1 for _ in _trials(n_sites, protocol, kind))
        for kind in protocol.kinds
    }


def check_timing(protocol: Protocol) -> None:
    """Every input must start inside its trial, on the recording grid."""
    onset, trial, rec = protocol.onset_ms, protocol.trial_ms, protocol.record_dt_ms
    if protocol.dt_ms > rec or not _is_multiple(rec, protocol.dt_ms):
        raise InputError("dendrite.protocol.record_dt_ms must be a multiple of dt_ms.")
    if not _is_multiple(trial, rec):
        raise InputError("dendrite.protocol.trial_ms must be a multiple of record_dt_ms.")
    latest = onset + max([0.0, *protocol.timing.delta_t_ms, protocol.multi.window_ms])
    earliest = onset + min([0.0, *protocol.timing.delta_t_ms])
    if earliest < 0 or latest >= trial:
        raise InputError(
            "dendrite.protocol: inputs would start outside the trial "
            f"({earliest:g} .. {latest:g} ms for a {trial:g} ms trial); "
            "change onset_ms, timing.delta_t_ms, multi.window_ms or trial_ms."
        )


def _is_multiple(a: float, b: float) -> bool:
    return abs(a / b - round(a / b)) < 1e-9


EVENT_COLUMNS = ("event_site", "event_type", "event_strength", "event_onset")


def trial_events(trial: xr.Dataset) -> list[tuple[int, str, float, float]]:
    """The (site, receptor, strength nS, onset ms) of each input of one trial."""
    return _events(*(trial[name].values for name in EVENT_COLUMNS))


def trials_events(trials: xr.Dataset) -> list[list[tuple[int, str, float, float]]]:
    """trial_events of every trial of `trials`, in order."""
    columns = [trials[name].values for name in EVENT_COLUMNS]
    return [_events(*row) for row in zip(*columns, strict=True)]


def _events(
    sites: np.ndarray, kinds: np.ndarray, strengths: np.ndarray, onsets: np.ndarray
) -> list[tuple[int, str, float, float]]:
    """The inputs of one trial's event rows (site -1: no input)."""
    return [
        (int(s), str(r), float(w), float(o))
        for s, r, w, o in zip(sites, kinds, strengths, onsets, strict=True)
        if s >= 0
    ]


def _trial_dataset(trials: list, sites: pd.DataFrame) -> xr.Dataset:
    n_events = max(len(events) for _, _, events in trials)
    shape = (len(trials), n_events)
    site = np.full(shape, -1, dtype=np.int32)
    receptor = np.full(shape, "", dtype="<U1")
    strength = np.full(shape, np.nan)
    onset = np.full(shape, np.nan)
    for t, (_, _, events) in enumerate(trials):
        for e, (s, r, w, o) in enumerate(events):
            site[t, e], receptor[t, e], strength[t, e], onset[t, e] = s, r, w, o
    delta = np.full(len(trials), np.nan)
    if n_events > 1:
        delta = onset[:, 1] - onset[:, 0]
    ds = xr.Dataset(
        {
            "event_site": (("trial", "event"), site, {"description": "site index, -1 = no event"}),
            "event_type": (
                ("trial", "event"),
                receptor,
                {"description": "E or I, empty = no event"},
            ),
            "event_strength": (
                ("trial", "event"),
                strength,
                {"units": "nS", "description": "peak conductance"},
            ),
            "event_onset": (
                ("trial", "event"),
                onset,
                {"units": "ms", "description": "time after trial start"},
            ),
        },
        coords={
            "trial": np.arange(len(trials)),
            "protocol": ("trial", np.array([p for p, _, _ in trials])),
            "kind": ("trial", np.array([k for _, k, _ in trials])),
            "n_events": ("trial", np.array([len(ev) for _, _, ev in trials], dtype=np.int32)),
            "delta_t": (
                "trial",
                delta,
                {"units": "ms", "description": "onset of event 1 minus event 0"},
            ),
        },
    )
    return ds.assign_coords(site_coords(sites))


def site_coords(sites: pd.DataFrame) -> dict:
    """The site table as coordinates along a `site` dimension."""
    units = {"distance_um": "um", "x_um": "um", "y_um": "um", "z_um": "um"}
    coords = {"site": np.arange(len(sites))}
    for column in sites.columns:
        name = f"site_{column.removesuffix('_um')}"
        values = sites[column].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        attrs = {"units": units[column]} if column in units else {}
        coords[name] = ("site", values, attrs)
    return coords
