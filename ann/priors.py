"""Initial quadratic coefficients of Dit layers from the fitted dendritic kappa.

Priors (the kinds; a prior's name is its kind, a name under `priors.biological` (built like
bio from that cell's kappa), or such a name and a control, e.g. `bio_nmda_shuffled`)
  zero              K = 0, the paper's default.
  bio               K from the bilinear coefficients of the simulated cell (below).
  shuffled          bio's pair coefficients permuted over units and pairs: same values, same
                    symmetry, none of the E/I or site structure (below).
  block_mean        only bio's E/I block pattern: every entry the mean of its block (EE, EI,
                    II pairs; the diagonal) over all units, the same for every unit.
  sites_permuted    bio built from kappa tables whose entries for pairs of different sites are
                    permuted among those site pairs (per kind): the E/I pattern, the same-site
                    entries and the channel -> site draws are kept, the dependence on where the
                    two inputs sit (distance, branch) is destroyed.
  spectrum_matched  per unit, bio's eigenvalues on a random orthogonal basis (Haar): the same
                    spectrum (effective rank, response size), no alignment with the channels.
Every control is rescaled to bio's response RMS on x ~ N(0, I) (the two spectrum-preserving
ones have it already). ann.prior_statistics.k_decomposition says how much of |K|^2 each part
holds.

The bio mapping. A quadratic unit computes y_o = sum_ij K_oij x_i x_j on top of its
linear response; the dendritic rule says a neuron's summed potential is
sum_i V_i + sum_{i<j} kappa_ij V_i V_j. So each output unit o is read as a neuron of the
simulated type and each input channel i as a presynaptic cell. The mapping makes these free
choices (docs/priors.md says why each):
  * channel i is excitatory or inhibitory for every unit (Dale's law): a seeded
    `fraction_inhibitory` (0.2) of the channels are I, the rest E;
  * unit o places the synapse of channel i at a site s_oi drawn uniformly and independently
    from the simulated sites (each unit is its own cell, so units differ);
  * inputs are measured in units of a typical PSP amplitude V0 (the median |peak| of the
    simulated single-input PSPs), which turns kappa (1/mV) into the dimensionless
    kappa * V0; since x^T K x counts each pair twice, K_oij = kappa_{t_i t_j}(s_oi, s_oj)
    * V0 / 2 for i != j, so K is symmetric;
  * the diagonal (`diagonal`): the rule has no self term. Its pairs are pairs of distinct
    synapses, and a lone input's own nonlinearity is already inside its measured PSP V_i, so a
    K_ii x_i^2 term has no counterpart in the cell: "zero" (the default) sets K_ii = 0.
    "same_site" instead reads x_i^2 as two inputs of channel i at the same site and sets
    K_ii = kappa_{t_i t_i}(s_oi, s_oi) * V0 / 2 (the earlier behaviour);
  * the whole tensor is then divided by one factor D >= 1 so that, for inputs x ~ N(0, I)
    (the reference input distribution: the Dit-ResNet branch sees LN-normalised channels, zero
    mean and unit variance over each map), the root-mean-square quadratic response of the
    layer is at most `init_ratio` (default 0.1) of a unit linear response: the quadratic term
    starts small against the linear one (near the paper's K = 0) and training decides how far
    to grow it.

The shuffled control. The pair coefficients S_o,ij = (K_oij + K_oji) / 2, i < j, of all units
of a layer are permuted together (one seeded permutation over units and pairs), and so are
the diagonal entries among themselves; the result is symmetrised and rescaled so that its RMS
response on x ~ N(0, I) equals the bio prior's exactly. Same magnitudes, same symmetry, same
response size; no E/I or site structure. (Permuting all C_out * C^2 entries instead breaks the
symmetry, and lowered the RMS response to 0.074 against 0.100 for bio.)

Every draw comes from a numpy Generator seeded by (seed, layer index): deterministic.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import PriorError
from .layers import DitQuadratic
from .settings import DIAGONALS, PRIORS

if TYPE_CHECKING:
    import xarray as xr

KAPPA_KINDS = ("EE", "EI", "II")


@dataclass(frozen=True)
class KappaTables:
    """The site-by-site kappa of each pair kind (1/mV) and the typical PSP amplitude (mV)."""

    EE: np.ndarray
    EI: np.ndarray
    II: np.ndarray
    psp_scale_mV: float
    source: str = ""

    @property
    def n_sites(self) -> int:
        return self.EI.shape[0]

    def with_site_pairs_permuted(self, rng: np.random.Generator) -> "KappaTables":
        """The same tables with the entries of pairs of different sites permuted among those
        pairs, per kind (symmetric kinds stay symmetric); same-site entries stay in place."""
        tables = {}
        for kind in KAPPA_KINDS:
            table = getattr(self, kind).copy()
            n = len(table)
            if kind == "EI":
                rows, cols = np.nonzero(~np.eye(n, dtype=bool))
                table[rows, cols] = table[rows, cols][rng.permutation(len(rows))]
            else:
                rows, cols = np.triu_indices(n, k=1)
                table[rows, cols] = table[rows, cols][rng.permutation(len(rows))]
                table[cols, rows] = table[rows, cols]
            tables[kind] = table
        return KappaTables(**tables, psp_scale_mV=self.psp_scale_mV, source=self.source)

    def pair(self, first: str, second: str, site_a: np.ndarray, site_b: np.ndarray) -> np.ndarray:
        """kappa of inputs of types first/second at sites a/b (arrays broadcast together)."""
        if first == second:
            return getattr(self, first + second)[site_a, site_b]
        if first == "E":
            return self.EI[site_a, site_b]
        return self.EI[site_b, site_a]


def load_kappa(path: str | Path) -> KappaTables:
    """Read the kappa tables from a kappa.nc written by the fit_kappa stage."""
    path = Path(path)
    if not path.is_file():
        raise PriorError(f"kappa file '{path}' does not exist; run the fit_kappa rule first.")
    try:
        import xarray as xr  # only where a fitted kappa is read (not for GPU-only checks)

        with xr.open_dataset(path) as opened:
            ds = opened.load()
    except (OSError, ValueError) as err:
        raise PriorError(
            f"kappa file '{path}' cannot be read ({type(err).__name__}: {str(err)[:160]}): it "
            f"is damaged or truncated. Delete it and run the workflow again (rm {path}; "
            "snakemake --cores all), which rebuilds it."
        ) from None
    tables, scale = checked_kappa(ds, path)
    return KappaTables(**tables, psp_scale_mV=scale, source=str(path))


# The dimensions of each kappa table in kappa.nc (dendrite_sim.kappa.MATRIX_DIMS), read by
# name: a file that stores kappa_EI as (i_site, e_site) is transposed, not misread.
KAPPA_DIMS = {"EI": ("e_site", "i_site"), "EE": ("site_a", "site_b"), "II": ("site_a", "site_b")}
# |kappa| in 1/mV above which a table is not a fit: at 1 mV each, the pair's interaction would
# exceed a volt (the fitted values are 0.001-1 /mV).
KAPPA_LIMIT = 1e3


def checked_kappa(ds: "xr.Dataset", path: Path) -> tuple[dict[str, np.ndarray], float]:
    """The kappa tables of a kappa.nc (by dimension name, NaN pairs filled with the median)
    and the typical PSP amplitude, after checking that they can make a prior: every table
    present with its dimensions and one number of sites, finite and bounded, not all zero,
    and finite, non-zero single-PSP peaks. A PriorError names the file and the fix."""
    refit = f"Rebuild it: rm {path}; snakemake --cores all."
    missing = [f"kappa_{k}" for k in KAPPA_KINDS if f"kappa_{k}" not in ds]
    missing += [] if "psp_peak" in ds else ["psp_peak"]
    if missing:
        raise PriorError(f"kappa file '{path}' lacks {missing}; rerun the fit_kappa rule.")
    tables = {}
    for kind, dims in KAPPA_DIMS.items():
        table = ds[f"kappa_{kind}"]
        if set(table.dims) != set(dims):
            raise PriorError(
                f"kappa file '{path}': kappa_{kind} has dimensions {table.dims}, expected "
                f"{dims}. {refit}"
            )
        values = table.transpose(*dims).values.astype(float)
        if np.isinf(values).any():
            raise PriorError(f"kappa file '{path}': kappa_{kind} holds infinite values. {refit}")
        tables[kind] = _filled(values, path, kind)
    sizes = {kind: table.shape for kind, table in tables.items()}
    if len({n for shape in sizes.values() for n in shape}) != 1:
        raise PriorError(
            f"kappa file '{path}': the tables do not share one number of sites ({sizes}). {refit}"
        )
    largest = max(float(np.abs(table).max()) for table in tables.values())
    if largest > KAPPA_LIMIT:
        raise PriorError(
            f"kappa file '{path}': |kappa| reaches {largest:.3g} /mV, more than {KAPPA_LIMIT:g} "
            f"/mV: not a fit of the bilinear rule. {refit}"
        )
    if largest == 0:
        raise PriorError(f"kappa file '{path}': every kappa is zero, so K would be zero. {refit}")
    peaks = ds.psp_peak.values.astype(float)  # NaN where a receptor lacks a strength
    if np.isinf(peaks).any() or np.isnan(peaks).all():
        raise PriorError(
            f"kappa file '{path}': psp_peak is infinite or has no value at all. {refit}"
        )
    scale = float(np.nanmedian(np.abs(peaks)))
    if scale == 0:
        raise PriorError(
            f"kappa file '{path}': the median single-PSP peak is 0 mV, so K would be zero. {refit}"
        )
    return tables, scale


def _filled(values: np.ndarray, path: Path, kind: str) -> np.ndarray:
    if not np.isfinite(values).any():
        raise PriorError(f"kappa file '{path}': kappa_{kind} has no finite values.")
    return np.where(np.isfinite(values), values, np.nanmedian(values))


@dataclass(frozen=True)
class BioPrior:
    """The bio coefficients of one layer and the synapse assignment they came from."""

    weight: torch.Tensor  # (C_out, C_in * C_in), like DitQuadratic.weight
    receptor: np.ndarray  # (C_in,) "E" or "I"
    sites: np.ndarray  # (C_out, C_in) site index of each synapse
    divisor: float  # D in the module docstring


def quadratic_rms(weight: torch.Tensor, in_channels: int) -> float:
    """Root mean square of x^T K_o x over x ~ N(0, I) and units o: E[y^2] = 2|S|_F^2 + tr(S)^2."""
    k = weight.double().reshape(-1, in_channels, in_channels)
    s = (k + k.transpose(1, 2)) / 2
    variance = 2 * (s**2).sum((1, 2)) + torch.diagonal(s, dim1=1, dim2=2).sum(1) ** 2
    return float(variance.mean().sqrt())


def bio_prior(
    kappa: KappaTables,
    in_channels: int,
    out_channels: int,
    *,
    fraction_inhibitory: float,
    init_ratio: float,
    diagonal: str,
    seed: int = 0,
) -> BioPrior:
    """The bio coefficients for a DitQuadratic(in_channels, out_channels) layer; the keywords
    are those of PriorSettings (config key `priors:`)."""
    if diagonal not in DIAGONALS:
        raise PriorError(f"priors.diagonal must be one of {DIAGONALS}, got '{diagonal}'.")
    rng = np.random.default_rng(seed)
    n_inhibitory = round(fraction_inhibitory * in_channels)
    receptor = np.array(["E"] * in_channels)
    receptor[rng.choice(in_channels, size=n_inhibitory, replace=False)] = "I"
    sites = rng.integers(kappa.n_sites, size=(out_channels, in_channels))
    k = np.zeros((out_channels, in_channels, in_channels))
    for first in ("E", "I"):
        for second in ("E", "I"):
            rows, cols = receptor == first, receptor == second
            a = sites[:, rows][:, :, None]
            b = sites[:, cols][:, None, :]
            k[np.ix_(range(out_channels), rows, cols)] = kappa.pair(first, second, a, b)
    if diagonal == "zero":
        k[:, np.arange(in_channels), np.arange(in_channels)] = 0.0
    weight = torch.from_numpy(k * kappa.psp_scale_mV / 2).reshape(out_channels, -1)
    divisor = max(1.0, quadratic_rms(weight, in_channels) / init_ratio)
    return BioPrior(weight / divisor, receptor, sites, divisor)


def with_rms_of(weight: torch.Tensor, reference: torch.Tensor, in_channels: int) -> torch.Tensor:
    """`weight` rescaled to the response RMS on x ~ N(0, I) of `reference`."""
    target, now = quadratic_rms(reference, in_channels), quadratic_rms(weight, in_channels)
    return (weight * (target / now) if now > 0 else weight).to(reference.dtype)


def shuffled(weight: torch.Tensor, in_channels: int, seed: int = 0) -> torch.Tensor:
    """The fair control of a prior `weight` (C_out, C^2): its symmetric pair coefficients
    permuted over all units and pairs, its diagonal over all units and channels, symmetric
    again and rescaled to the RMS response of `weight` (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    k = weight.double().reshape(-1, in_channels, in_channels)
    s = (k + k.transpose(1, 2)) / 2
    first, second = torch.triu_indices(in_channels, in_channels, offset=1)
    upper = s[:, first, second].reshape(-1)
    diag = torch.diagonal(s, dim1=1, dim2=2).reshape(-1)
    out = torch.zeros_like(s)
    out[:, first, second] = upper[torch.from_numpy(rng.permutation(len(upper)))].view(len(s), -1)
    out = out + out.transpose(1, 2)
    channels = torch.arange(in_channels)
    out[:, channels, channels] = diag[torch.from_numpy(rng.permutation(len(diag)))].view(len(s), -1)
    return with_rms_of(out.reshape(weight.shape), weight, in_channels)


def block_mean(weight: torch.Tensor, receptor: np.ndarray) -> torch.Tensor:
    """Only the E/I block pattern of a prior: every entry replaced by the mean of its block (EE,
    EI in either order and II pairs off the diagonal; the diagonal) over all units, rescaled to
    the RMS response of `weight`."""
    in_channels = len(receptor)
    k = weight.double().reshape(-1, in_channels, in_channels)
    is_e = torch.from_numpy(np.asarray(receptor) == "E")
    off = ~torch.eye(in_channels, dtype=torch.bool)
    blocks = (
        off & is_e[:, None] & is_e[None, :],
        off & (is_e[:, None] != is_e[None, :]),
        off & ~is_e[:, None] & ~is_e[None, :],
        ~off,
    )
    out = torch.zeros_like(k)
    for mask in blocks:
        if mask.any():
            out[:, mask] = k[:, mask].mean()
    return with_rms_of(out.reshape(weight.shape), weight, in_channels)


def spectrum_matched(weight: torch.Tensor, in_channels: int, seed: int = 0) -> torch.Tensor:
    """Per unit, the eigenvalues of (K_o + K_o^T) / 2 on a Haar-random orthogonal basis: the
    same spectrum, hence the same response RMS on x ~ N(0, I), no alignment with the channels."""
    rng = np.random.default_rng([seed, 3])
    k = weight.double().reshape(-1, in_channels, in_channels).numpy()
    eigenvalues = np.linalg.eigvalsh((k + k.transpose(0, 2, 1)) / 2)
    gaussian = rng.standard_normal((len(k), in_channels, in_channels))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar: fix the QR signs
    out = torch.from_numpy(np.einsum("oij,oj,okj->oik", q, eigenvalues, q))
    return out.reshape(weight.shape).to(weight.dtype)


def layer_prior(
    kind: str, kappa: KappaTables, in_channels: int, out_channels: int, *, seed: int, **options
) -> BioPrior:
    """The prior of one DitQuadratic(in_channels, out_channels) layer of kind bio or a control
    (CONTROLS), with bio's channel types and sites (the draws of `seed`); `options` are
    PriorSettings.options()."""
    bio = bio_prior(kappa, in_channels, out_channels, **options, seed=seed)
    if kind == "bio":
        return bio
    if kind == "shuffled":
        weight = shuffled(bio.weight, in_channels, seed)
    elif kind == "block_mean":
        weight = block_mean(bio.weight, bio.receptor)
    elif kind == "sites_permuted":
        permuted = kappa.with_site_pairs_permuted(np.random.default_rng([seed, 2]))
        other = bio_prior(permuted, in_channels, out_channels, **options, seed=seed)
        weight = with_rms_of(other.weight, bio.weight, in_channels)
    elif kind == "spectrum_matched":
        weight = spectrum_matched(bio.weight, in_channels, seed)
    else:
        raise PriorError(f"unknown prior kind '{kind}'; choose one of {PRIORS}.")
    return BioPrior(weight, bio.receptor, bio.sites, bio.divisor)


def prior_weights(
    model: nn.Module,
    prior: str,
    kappa: KappaTables | None = None,
    *,
    fraction_inhibitory: float | None = None,
    init_ratio: float | None = None,
    diagonal: str | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Initial `weight` of every DitQuadratic in `model`, by module name, for a prior kind
    (PRIORS). All but zero need a kappa and the keywords of PriorSettings.options()."""
    if prior not in PRIORS:
        raise PriorError(f"unknown prior '{prior}'; choose one of {PRIORS}.")
    if prior != "zero" and kappa is None:
        raise PriorError(
            f"the '{prior}' prior needs a kappa file (kappa.nc from the fit_kappa rule)."
        )
    options = {
        "fraction_inhibitory": fraction_inhibitory,
        "init_ratio": init_ratio,
        "diagonal": diagonal,
    }
    missing = [f"priors.{k}" for k, v in options.items() if v is None]
    if prior != "zero" and missing:
        raise PriorError(f"the '{prior}' prior needs {', '.join(missing)}.")
    out = {}
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, DitQuadratic)]
    for index, (name, layer) in enumerate(layers):
        c_out, c_in = layer.weight.shape[0], round(layer.weight.shape[1] ** 0.5)
        if prior == "zero":
            out[name] = torch.zeros_like(layer.weight)
            continue
        built = layer_prior(prior, kappa, c_in, c_out, seed=seed * 1000 + index, **options)
        out[name] = built.weight.to(layer.weight.dtype)
    return out


def apply_prior(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy prior weights (from `prior_weights` or a saved file) into the model's Dit layers."""
    modules = dict(model.named_modules())
    for name, weight in weights.items():
        layer = modules.get(name)
        if not isinstance(layer, DitQuadratic) or layer.weight.shape != weight.shape:
            raise PriorError(
                f"prior for '{name}' (shape {tuple(weight.shape)}) does not fit this model; "
                "rebuild the priors for this model."
            )
        with torch.no_grad():
            layer.weight.copy_(weight)
