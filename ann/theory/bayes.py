"""The Bayes classifier of Gaussian classes and its accuracy: Monte Carlo for any k and d,
an exact inner integral for d = 2 (docs/theory.md, "Bayes accuracy")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, special

from .problems import Estimate, GaussianClasses, sample_gaussian_classes


def log_joint_densities(classes: GaussianClasses, X: np.ndarray) -> np.ndarray:
    """log pi_j p_j(x) for every row of X: (n, k)."""
    X = np.asarray(X, dtype=float)
    chol = np.linalg.cholesky(classes.covs)
    out = np.empty((X.shape[0], classes.k))
    for j in range(classes.k):
        white = np.linalg.solve(chol[j], (X - classes.means[j]).T)
        half_logdet = np.log(np.diag(chol[j])).sum()
        out[:, j] = (
            -0.5 * np.sum(white**2, axis=0)
            - half_logdet
            - 0.5 * classes.d * math.log(2 * math.pi)
            + math.log(classes.priors[j])
        )
    return out


def bayes_predict(classes: GaussianClasses, X: np.ndarray) -> np.ndarray:
    return np.argmax(log_joint_densities(classes, X), axis=1)


def bayes_accuracy_monte_carlo(
    classes: GaussianClasses, n_samples: int, seed: int = 0, chunk: int = 200_000
) -> Estimate:
    """Mean of max_j P(j|x) over x drawn from the mixture, with its standard error."""
    rng = np.random.default_rng(seed)
    total = total_sq = 0.0
    remaining = int(n_samples)
    while remaining > 0:
        m = min(chunk, remaining)
        X, _ = sample_gaussian_classes(classes, m, rng)
        logp = log_joint_densities(classes, X)
        post_max = np.exp(logp.max(axis=1) - special.logsumexp(logp, axis=1))
        total += post_max.sum()
        total_sq += np.square(post_max).sum()
        remaining -= m
    n = int(n_samples)
    mean = total / n
    var = max(total_sq / n - mean**2, 0.0) * n / max(n - 1, 1)
    return Estimate(float(mean), float(math.sqrt(var / n)))


def _real_roots(a: float, b: float, c: float, scale: float) -> list[float]:
    """Real roots of a y^2 + b y + c (a, b negligible relative to scale: no roots)."""
    tiny = 1e-13 * max(scale, 1.0)
    if abs(a) <= tiny:
        return [] if abs(b) <= tiny else [-c / b]
    disc = b * b - 4 * a * c
    if disc < 0:
        return []
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
    roots = [q / a]
    if q != 0:
        roots.append(c / q)
    return roots


def _normal_mass(lo: float, hi: float) -> float:
    """P(lo < Z < hi) for standard normal Z, accurate in both tails."""
    if lo > 0:
        return float(special.ndtr(-lo) - special.ndtr(-hi))
    return float(special.ndtr(hi) - special.ndtr(lo))


def _interval_probe(lo: float, hi: float) -> float:
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(lo):
        return hi - 1.0
    if math.isinf(hi):
        return lo + 1.0
    return 0.5 * (lo + hi)


def bayes_accuracy_integral_2d(
    classes: GaussianClasses, epsabs: float = 1e-11, limit: int = 1000
) -> Estimate:
    """Integral of max_j pi_j p_j over R^2: exact in x_2, adaptive quadrature in x_1.

    The error is quad's estimate plus a bound on the mass beyond 12 marginal sd in x_1.
    """
    if classes.d != 2:
        raise ValueError("the integral is implemented for d = 2; use Monte Carlo")
    m1, m2 = classes.means[:, 0], classes.means[:, 1]
    s11, s12, s22 = classes.covs[:, 0, 0], classes.covs[:, 0, 1], classes.covs[:, 1, 1]
    slope = s12 / s11
    cvar = s22 - s12**2 / s11
    csd = np.sqrt(cvar)
    qa = -0.5 / cvar
    half_log_cvar = 0.5 * np.log(2 * math.pi * cvar)
    pairs = [(i, j) for i in range(classes.k) for j in range(i + 1, classes.k)]

    def column_mass(x: float) -> float:
        log_marginal = np.log(classes.priors) - 0.5 * (
            np.log(2 * math.pi * s11) + (x - m1) ** 2 / s11
        )
        centre = m2 + slope * (x - m1)
        qb = centre / cvar
        qc = log_marginal - half_log_cvar - 0.5 * centre**2 / cvar
        scale = float(np.max(np.abs(qa)))
        breaks = sorted(
            {
                root
                for i, j in pairs
                for root in _real_roots(qa[i] - qa[j], qb[i] - qb[j], qc[i] - qc[j], scale)
            }
        )
        edges = [-math.inf, *breaks, math.inf]
        mass = 0.0
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            y = _interval_probe(lo, hi)
            winner = int(np.argmax(qa * y * y + qb * y + qc))
            z_lo = (lo - centre[winner]) / csd[winner]
            z_hi = (hi - centre[winner]) / csd[winner]
            mass += math.exp(log_marginal[winner]) * _normal_mass(z_lo, z_hi)
        return mass

    sd1 = np.sqrt(s11)
    lo, hi = float(np.min(m1 - 12 * sd1)), float(np.max(m1 + 12 * sd1))
    value, abserr = integrate.quad(
        column_mass,
        lo,
        hi,
        points=sorted(set(m1.tolist())),
        epsabs=epsabs,
        epsrel=1e-12,
        limit=limit,
    )
    truncation = 2 * classes.k * float(special.ndtr(-12.0))
    return Estimate(float(value), float(abserr + truncation))


def bayes_accuracy(
    classes: GaussianClasses, monte_carlo_samples: int = 1_000_000, seed: int = 12345
) -> pd.DataFrame:
    """Bayes accuracy by Monte Carlo (always) and by integration (d = 2): one row each.

    Columns: method, accuracy, error (standard error / quadrature error), n_samples.
    """
    mc = bayes_accuracy_monte_carlo(classes, monte_carlo_samples, seed)
    rows = [
        {
            "method": "monte_carlo",
            "accuracy": mc.value,
            "error": mc.error,
            "n_samples": int(monte_carlo_samples),
        }
    ]
    if classes.d == 2:
        exact = bayes_accuracy_integral_2d(classes)
        rows.append(
            {"method": "integral", "accuracy": exact.value, "error": exact.error, "n_samples": 0}
        )
    return pd.DataFrame(rows)


def best_bayes_estimate(table: pd.DataFrame) -> float:
    """The integral value if present, otherwise the Monte Carlo one."""
    by_method = table.set_index("method")["accuracy"]
    return float(by_method.get("integral", by_method["monte_carlo"]))
