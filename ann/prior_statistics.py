"""What "biological" means for each named prior: the kappa it came from and its K's statistics.

For one Dit layer's quadratic coefficients K (C_out units, each a C x C matrix) and the E/I
type of each input channel:
  * sign structure: per block of channel pairs (EE, EI (both orders), II, off the diagonal;
    and the diagonal K_ii apart, zero by default), the fractions of positive, negative and
    zero entries;
  * eigen-spectrum: the eigenvalues of each unit's symmetrised S_o = (K_o + K_o^T) / 2 (the
    part x^T K_o x sees), sorted from largest to smallest and averaged over units.

`prior_statistics` gives both as one long table (statistic, block, value); `statistics_figure`
draws, per named prior, the kappa_EE/EI/II matrices of its cell above the sign bars and the
spectrum; `layer_priors` builds the priors of a reference layer exactly as ann.priors does for
layer 0 of a model at a given seed.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .priors import KAPPA_KINDS, BioPrior, KappaTables, bio_prior, shuffled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BLOCKS = ("EE", "EI", "II", "diagonal")
SIGNS = ("positive", "negative", "zero")


def _coefficients(weight: torch.Tensor | np.ndarray, in_channels: int) -> np.ndarray:
    k = weight.double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    return k.reshape(-1, in_channels, in_channels)


def block_masks(receptor: Sequence[str]) -> dict[str, np.ndarray]:
    """(C, C) masks of the channel-pair blocks: EE, EI (either order), II off the diagonal,
    and the diagonal."""
    is_e = np.asarray(receptor) == "E"
    off = ~np.eye(len(is_e), dtype=bool)
    return {
        "EE": off & is_e[:, None] & is_e[None, :],
        "EI": off & (is_e[:, None] != is_e[None, :]),
        "II": off & ~is_e[:, None] & ~is_e[None, :],
        "diagonal": ~off,
    }


def sign_structure(
    weight: torch.Tensor | np.ndarray, receptor: Sequence[str], atol: float = 0.0
) -> pd.DataFrame:
    """Per block (BLOCKS): how many entries over all units, and the fractions of them that are
    positive, negative and zero (|K| <= atol); a block without entries has NaN fractions."""
    k = _coefficients(weight, len(receptor))
    rows = []
    for block, mask in block_masks(receptor).items():
        values = k[:, mask].reshape(-1)
        n = values.size
        zero = np.abs(values) <= atol
        counts = {
            "positive": np.sum(~zero & (values > 0)),
            "negative": np.sum(~zero & (values < 0)),
            "zero": np.sum(zero),
        }
        rows.append(
            {"block": block, "entries": n}
            | {sign: (counts[sign] / n if n else np.nan) for sign in SIGNS}
        )
    return pd.DataFrame(rows)


def mean_spectrum(weight: torch.Tensor | np.ndarray, in_channels: int) -> np.ndarray:
    """Eigenvalues of each unit's (K_o + K_o^T) / 2, largest first, averaged over units."""
    k = _coefficients(weight, in_channels)
    s = (k + k.transpose(0, 2, 1)) / 2
    return np.linalg.eigvalsh(s)[:, ::-1].mean(0)


def effective_rank(weight: torch.Tensor | np.ndarray, in_channels: int) -> float:
    """Eigenvalue participation ratio (sum l^2)^2 / sum l^4 of each unit's (K_o + K_o^T) / 2,
    averaged over units: C / 2 for a random symmetric (GOE) matrix, 1 for rank one."""
    k = _coefficients(weight, in_channels)
    eigenvalues = np.linalg.eigvalsh((k + k.transpose(0, 2, 1)) / 2)
    second, fourth = (eigenvalues**2).sum(1), (eigenvalues**4).sum(1)
    ratios = np.divide(second**2, fourth, out=np.zeros_like(second), where=fourth > 0)
    return float(ratios.mean())


def k_decomposition(
    weight: torch.Tensor | np.ndarray, receptor: Sequence[str], sites: np.ndarray
) -> dict[str, float]:
    """Where the energy |K|_F^2 of a prior sits, for the channel types and synapse sites it was
    built on (sites: (C_out, C) site of each synapse):
      block_share      the E/I block pattern: each block's (BLOCKS) mean over all units and
                       pairs, the same for every unit;
      same_site_share  the rest on channel pairs whose two synapses share a site (and on the
                       diagonal, a channel with itself);
      distance_share   the rest on pairs at different sites (what depends on where inputs land);
    the three add up to 1. Also the share of pairs at one site and the effective rank."""
    k = _coefficients(weight, len(receptor))
    total = float((k**2).sum())
    masks = block_masks(receptor)
    pattern = np.zeros_like(k)
    for mask in masks.values():
        if mask.any():
            pattern[:, mask] = k[:, mask].mean()
    rest = k - pattern
    off = ~masks["diagonal"]
    same = np.asarray(sites)[:, :, None] == np.asarray(sites)[:, None, :]
    share = (lambda part: float(part) / total) if total > 0 else (lambda part: np.nan)
    return {
        "block_share": share((pattern**2).sum()),
        "same_site_share": share((rest[same] ** 2).sum()),
        "distance_share": share((rest[~same] ** 2).sum()),
        "same_site_pairs": float((same & off).sum() / (len(same) * off.sum())),
        "effective_rank": effective_rank(k, len(receptor)),
    }


def prior_statistics(
    weight: torch.Tensor | np.ndarray, receptor: Sequence[str], atol: float = 0.0
) -> pd.DataFrame:
    """The sign structure and the mean eigen-spectrum of K as one long table with columns
    statistic (positive / negative / zero / eigenvalue), block (a BLOCKS name, or the rank
    1..C of an eigenvalue) and value."""
    signs = sign_structure(weight, receptor, atol)
    rows = [
        {"statistic": sign, "block": row["block"], "value": row[sign]}
        for row in signs.to_dict("records")
        for sign in SIGNS
    ]
    spectrum = mean_spectrum(weight, len(receptor))
    rows += [
        {"statistic": "eigenvalue", "block": str(rank), "value": value}
        for rank, value in enumerate(spectrum, start=1)
    ]
    return pd.DataFrame(rows)


def layer_priors(
    kappas: Mapping[str, KappaTables],
    in_channels: int,
    out_channels: int,
    settings: Mapping,
    seed: int = 0,
) -> dict[str, BioPrior]:
    """The named biological priors of a reference layer (layer 0 of a model at `seed`: the
    draws ann.priors.prior_weights makes for it) and shuffled, the control of bio."""
    options = {
        "fraction_inhibitory": settings["fraction_inhibitory"],
        "init_ratio": settings["init_ratio"],
        "diagonal": settings.get("diagonal", "zero"),
    }
    layer_seed = seed * 1000
    out = {
        name: bio_prior(kappa, in_channels, out_channels, seed=layer_seed, **options)
        for name, kappa in kappas.items()
    }
    if "bio" in out:
        bio = out["bio"]
        out["shuffled"] = BioPrior(
            shuffled(bio.weight, in_channels, layer_seed), bio.receptor, bio.sites, bio.divisor
        )
    return out


def statistics_table(priors: Mapping[str, BioPrior], cells: Mapping[str, str]) -> pd.DataFrame:
    """prior_statistics of each prior, with its name and cell (shuffled: bio's, permuted)."""
    frames = []
    for name, prior in priors.items():
        table = prior_statistics(prior.weight, prior.receptor)
        table.insert(0, "cell", cells.get(name, cells.get("bio", "")))
        table.insert(0, "prior", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def summary_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From a statistics_table: the sign fractions as one row per (prior, block), and the
    spectrum per prior (largest and smallest mean eigenvalue, share of positive ones)."""
    signs = table[table.statistic != "eigenvalue"].pivot_table(
        index=["prior", "block"], columns="statistic", values="value", sort=False
    )
    signs = signs.reset_index()[["prior", "block", *SIGNS]]
    rows = []
    for prior, group in table[table.statistic == "eigenvalue"].groupby("prior", sort=False):
        values = group.value.to_numpy()
        rows.append(
            {
                "prior": prior,
                "largest": values.max(),
                "smallest": values.min(),
                "positive_share": float(np.mean(values > 0)),
            }
        )
    return signs, pd.DataFrame(rows)


def statistics_figure(
    priors: Mapping[str, BioPrior],
    kappas: Mapping[str, KappaTables],
    cells: Mapping[str, str],
    width_in: float = 11.5,
) -> "Figure":
    """Two rows per prior: its cell's kappa_EE, kappa_EI, kappa_II (site x site, 1/mV, one
    colour scale per kind across the priors); the sign fractions of K per block and the mean
    eigen-spectrum of the symmetrised K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(priors)
    limits = {
        kind: max(float(np.abs(getattr(k, kind)).max()) for k in kappas.values()) or 1.0
        for kind in KAPPA_KINDS
    }
    heights = [h for name in names for h in ((1.0 if name in kappas else 0.12), 1.0)]
    fig = plt.figure(figsize=(width_in, 3.0 * sum(heights)), layout="constrained")
    grid = fig.add_gridspec(2 * len(names), 6, height_ratios=heights)
    colours = {"positive": "tab:red", "negative": "tab:blue", "zero": "0.7"}
    for index, name in enumerate(names):
        prior, kappa, top = priors[name], kappas.get(name), 2 * index
        label = f"{name} ({cells.get(name, cells.get('bio', ''))})"
        if kappa is None:
            ax = fig.add_subplot(grid[top, :])
            ax.text(0.5, 0.5, f"{name}: bio's K, permuted (no κ of its own)", ha="center")
            ax.set_axis_off()
        for column, kind in enumerate(KAPPA_KINDS if kappa is not None else ()):
            ax = fig.add_subplot(grid[top, 2 * column : 2 * column + 2])
            image = ax.imshow(
                getattr(kappa, kind), cmap="RdBu_r", vmin=-limits[kind], vmax=limits[kind]
            )
            ax.set(title=f"{label}: κ_{kind}", xlabel="site", ylabel="site")
            fig.colorbar(image, ax=ax, shrink=0.8, label="1/mV")
        signs = sign_structure(prior.weight, prior.receptor)
        ax = fig.add_subplot(grid[top + 1, :3])
        bottom = np.zeros(len(signs))
        for sign in SIGNS:
            values = signs[sign].fillna(0).to_numpy()
            ax.bar(signs.block, values, bottom=bottom, color=colours[sign], label=sign)
            bottom += values
        ax.set(title=f"{name}: signs of K", ylabel="fraction of entries", ylim=(0, 1))
        ax.legend(fontsize="small", loc="lower right")
        spectrum = mean_spectrum(prior.weight, len(prior.receptor))
        ax = fig.add_subplot(grid[top + 1, 3:])
        ax.plot(np.arange(1, len(spectrum) + 1), spectrum, marker=".")
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set(title=f"{name}: eigenvalues of (K+Kᵀ)/2", xlabel="rank", ylabel="mean over units")
    return fig
