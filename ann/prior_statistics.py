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

from .priors import KAPPA_KINDS, BioPrior, KappaTables, layer_prior, quadratic_rms

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
    priors: Mapping[str, tuple[str, KappaTables]],
    in_channels: int,
    out_channels: int,
    settings: Mapping,
    seed: int = 0,
) -> dict[str, BioPrior]:
    """The priors of a reference layer (layer 0 of a model at `seed`: the draws
    ann.priors.prior_weights makes for it), by name; `priors`: name -> (kind, its kappa)."""
    options = {
        "fraction_inhibitory": settings["fraction_inhibitory"],
        "init_ratio": settings["init_ratio"],
        "diagonal": settings.get("diagonal", "zero"),
    }
    return {
        name: layer_prior(kind, kappa, in_channels, out_channels, seed=seed * 1000, **options)
        for name, (kind, kappa) in priors.items()
    }


def structure_table(priors: Mapping[str, BioPrior]) -> pd.DataFrame:
    """Per prior: k_decomposition (the shares of |K|^2 in the E/I block pattern, on same-site
    pairs and in the distance-dependent rest; the effective rank) and its response RMS on
    x ~ N(0, I)."""
    rows = []
    for name, prior in priors.items():
        parts = k_decomposition(prior.weight, prior.receptor, prior.sites)
        gaussian = quadratic_rms(prior.weight, len(prior.receptor))
        rows.append({"prior": name, **parts, "gaussian_response": gaussian})
    return pd.DataFrame(rows)


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
    """One row per biological prior (the names in `kappas`): its cell's kappa_EE, kappa_EI,
    kappa_II (site x site, 1/mV, one colour scale per kind); then, for every prior, the sign
    fractions of K per block and the mean eigen-spectrum of the symmetrised K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(priors)
    limits = {
        kind: max(float(np.abs(getattr(k, kind)).max()) for k in kappas.values()) or 1.0
        for kind in KAPPA_KINDS
    }
    rows = len(kappas) + 1
    fig = plt.figure(figsize=(width_in, 2.9 * rows + 0.4), layout="constrained")
    grid = fig.add_gridspec(rows, 6)
    for row, (name, kappa) in enumerate(kappas.items()):
        for column, kind in enumerate(KAPPA_KINDS):
            ax = fig.add_subplot(grid[row, 2 * column : 2 * column + 2])
            image = ax.imshow(
                getattr(kappa, kind), cmap="RdBu_r", vmin=-limits[kind], vmax=limits[kind]
            )
            ax.set(title=f"{name} ({cells.get(name, '')}): κ_{kind}", xlabel="site", ylabel="site")
            fig.colorbar(image, ax=ax, shrink=0.8, label="1/mV")
    signs = fig.add_subplot(grid[rows - 1, :3])
    width = 0.8 / len(names)
    colours = {"positive": "tab:red", "negative": "tab:blue", "zero": "0.7"}
    for index, name in enumerate(names):
        table = sign_structure(priors[name].weight, priors[name].receptor)
        x = np.arange(len(table)) + (index - (len(names) - 1) / 2) * width
        bottom = np.zeros(len(table))
        for sign in SIGNS:
            values = table[sign].fillna(0).to_numpy()
            signs.bar(x, values, width * 0.9, bottom=bottom, color=colours[sign],
                      label=sign if index == 0 else None, edgecolor="white", linewidth=0.3)  # fmt: skip
            bottom += values
    signs.set_xticks(np.arange(len(BLOCKS)), BLOCKS)
    signs.set(title="signs of K per block (one bar per prior, in the order of the legend "
              "on the right)", ylabel="fraction of entries", ylim=(0, 1))  # fmt: skip
    signs.title.set_fontsize(9)
    signs.legend(fontsize="small", loc="lower right")
    spectra = fig.add_subplot(grid[rows - 1, 3:])
    for name in names:
        spectrum = mean_spectrum(priors[name].weight, len(priors[name].receptor))
        spectra.plot(np.arange(1, len(spectrum) + 1), spectrum, marker=".", label=name)
    spectra.axhline(0, color="0.5", linewidth=0.8)
    spectra.set(title="eigenvalues of (K+Kᵀ)/2, mean over units", xlabel="rank")
    spectra.legend(fontsize="x-small", ncol=2)
    return fig
