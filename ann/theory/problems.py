"""The classification problems: k Gaussian classes in R^d (the Dit-CNN talk's two classes,
or random ones), samples from them, and the quadratic neurons' parameters.

The derivation behind the experiment is in docs/theory.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# The name of the talk's example in the tables, and the random streams of the samples.
TALK_EXAMPLE_NAME = "talk_example"
TRAIN_STREAM = 1
TEST_STREAM = 2


@dataclass(frozen=True)
class GaussianClasses:
    """k Gaussian classes in R^d: means (k, d), covariances (k, d, d), priors (k,)."""

    means: np.ndarray
    covs: np.ndarray
    priors: np.ndarray

    def __post_init__(self) -> None:
        means = np.asarray(self.means, dtype=float)
        covs = np.asarray(self.covs, dtype=float)
        priors = np.asarray(self.priors, dtype=float)
        k, d = means.shape
        if covs.shape != (k, d, d) or priors.shape != (k,):
            raise ValueError("means (k, d), covs (k, d, d) and priors (k,) do not match")
        if not np.allclose(covs, covs.transpose(0, 2, 1)):
            raise ValueError("covariances must be symmetric")
        if np.any(priors <= 0) or not math.isclose(priors.sum(), 1.0, rel_tol=1e-9):
            raise ValueError("priors must be positive and sum to 1")
        np.linalg.cholesky(covs)  # raises LinAlgError if not positive definite
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        object.__setattr__(self, "priors", priors)

    @property
    def k(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]


class Estimate(NamedTuple):
    """A numerical estimate with its error (standard error, or quadrature error bound)."""

    value: float
    error: float


@dataclass(frozen=True)
class QuadraticParams:
    """One quadratic neuron per class: f_j(x) = x^T A_j x + w_j^T x + b_j.

    A: (k, d, d), w: (k, d), b: (k,). Only sym(A_j) matters for the scores.
    """

    A: np.ndarray
    w: np.ndarray
    b: np.ndarray

    def scores(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        return np.einsum("nd,kde,ne->nk", X, self.A, X) + X @ self.w.T + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(X), axis=1)


def talk_example() -> GaussianClasses:
    """The Dit-CNN talk's example: N([0,0], [[2.1,.4],[.4,2]]) vs N([2,2], [[.1,.1],[.1,.3]])."""
    return GaussianClasses(
        means=np.array([[0.0, 0.0], [2.0, 2.0]]),
        covs=np.array([[[2.1, 0.4], [0.4, 2.0]], [[0.1, 0.1], [0.1, 0.3]]]),
        priors=np.array([0.5, 0.5]),
    )


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed orthogonal d x d matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def random_gaussian_classes(
    n_classes: int,
    dims: int,
    seed: int,
    spread: float = 1.0,
    eig_range: Sequence[float] = (0.2, 2.0),
) -> GaussianClasses:
    """Equal-prior classes: means ~ N(0, spread^2 I), Sigma = Q diag(eigs) Q^T.

    Q is a random rotation and the eigenvalues are uniform in eig_range.
    """
    rng = np.random.default_rng(seed)
    low, high = float(eig_range[0]), float(eig_range[1])
    means = spread * rng.standard_normal((n_classes, dims))
    covs = np.empty((n_classes, dims, dims))
    for j in range(n_classes):
        q = random_rotation(dims, rng)
        covs[j] = (q * rng.uniform(low, high, size=dims)) @ q.T
    covs = 0.5 * (covs + covs.transpose(0, 2, 1))
    return GaussianClasses(means, covs, np.full(n_classes, 1.0 / n_classes))


def sample_gaussian_classes(
    classes: GaussianClasses, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n samples (X, y) from the mixture; labels drawn from the priors."""
    y = rng.choice(classes.k, size=n, p=classes.priors)
    chol = np.linalg.cholesky(classes.covs)
    z = rng.standard_normal((n, classes.d))
    X = classes.means[y] + np.einsum("nde,ne->nd", chol[y], z)
    return X, y


def stream_rng(seed: int, stream: int, n: int = 0) -> np.random.Generator:
    """The generator of one stream (TRAIN_STREAM, TEST_STREAM) of a seed and sample size."""
    return np.random.default_rng([int(seed), int(stream), int(n)])
