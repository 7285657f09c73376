"""Quadratic neurons versus MLPs on Gaussian classes (Theorem 5 of Liu et al. 2024).

Setting
-------
k classes with priors pi_j and class-conditional densities p_j = N(mu_j, Sigma_j) in R^d.
One quadratic neuron per class scores an input as

    f_j(x) = x^T A_j x + w_j^T x + b_j,

and the scores are trained with the cross-entropy loss

    L(theta) = sum_j pi_j E_{x~p_j}[ log(1 + sum_{i != j} exp(f_i(x) - f_j(x))) ]
             = E_{(x,y)}[ -log softmax(f(x))_y ],

which for equal priors is the paper's (1/k) sum_j E_j[...]. The empirical loss used for
training is the mean over samples drawn from the mixture, i.e. the same population loss.

Sign convention (the paper's expression is off by a factor -1/2)
---------------------------------------------------------------
Cross-entropy is a strictly proper scoring rule: for each x the expected loss
sum_j P(j|x) (-log q_j(x)) is minimised exactly by q(x) = P(.|x). The model family contains
the true posterior, because

    log pi_j p_j(x) = -1/2 (x - mu_j)^T Sigma_j^{-1} (x - mu_j) - 1/2 log|Sigma_j|
                      + log pi_j - d/2 log(2 pi)

is quadratic in x. Hence f_j*(x) = log pi_j p_j(x) (up to a constant common to all j) is a
global minimiser and therefore a critical point of L, with

    A_j* = -1/2 Sigma_j^{-1},
    w_j* = Sigma_j^{-1} mu_j,
    b_j* = -1/2 (mu_j^T Sigma_j^{-1} mu_j + log|Sigma_j|) + log pi_j.

Since larger f wins under the softmax, argmax_j f_j*(x) = argmax_j pi_j p_j(x) is the Bayes
classifier. The paper's expression A_j = Sigma_j^{-1}, w_j = -2 Sigma_j^{-1} mu_j,
b_j = mu_j^T Sigma_j^{-1} mu_j + log|Sigma_j| is the squared Mahalanobis distance plus the
log-determinant, i.e. -2 f_j* up to a class-independent constant when the priors are equal.
Its *argmin* is the Bayes classifier; used with softmax/argmax it is the anti-Bayes rule,
and it is not a critical point. Among the multiples c * (paper's f), only c = -1/2 is one,
because the loss is sensitive to the scale of the scores. `critical_point` returns the
sign-consistent f*, `paper_critical_point` the literal expression (for comparison only).
Seed example: Bayes accuracy 0.962536 (integral; Monte Carlo agrees within its error).

Identifiability
---------------
The loss only depends on the differences f_i - f_j: adding the same quadratic g(x) to every
f_j leaves it unchanged. So A_j is identified only up to a common additive matrix C, and the
cosine of a learned A_j with -Sigma_j^{-1} is not a meaningful target on its own. Moreover
sum_j dL/dA_j = E[sum_j (q_j - 1[y=j]) x x^T] = 0, so from a zero initialisation the trained
A_j always sum to zero: the optimiser lands on the centred representative
A_j* - mean_i A_i*. `quadratic_similarity` therefore reports, per class, both the raw cosine
(sym(A_j) against -Sigma_j^{-1}) and the identifiable one (A_j - mean_i A_i against
A_j* - mean_i A_i*); for k = 2 the latter equals the cosine of A_1 - A_2 with
-1/2 (Sigma_1^{-1} - Sigma_2^{-1}).

Models and optimisers
---------------------
* Quadratic neuron: full d x d matrices A_j (only the symmetric part acts on x^T A x; the
  antisymmetric part has zero gradient and stays at its zero initialisation, and all reports
  use sym(A_j)). It is trained in float64 on standardised inputs, then mapped back to the
  original coordinates. The problem is convex in (A, w, b) (a multinomial logistic regression
  on quadratic features), so full-batch L-BFGS with a strong-Wolfe line search from zero
  converges reliably in well under a second (gradient ~1e-8 at n = 100..10^4); on linearly
  separable (tiny) training sets the infimum is at infinity and L-BFGS stops after at most
  `quad_steps` iterations with large but finite weights (no regularisation is added, as in
  the theorem).
* MLP: Linear(d, mlp_hidden) - ReLU - Linear(mlp_hidden, k), float32, standardised inputs,
  Adam for `mlp_steps` updates on minibatches of `mlp_batch_size` (full batch when the
  training set is smaller), learning rate `mlp_lr` cosine-annealed to 0, no weight decay,
  no early stopping; PyTorch default initialisation and batch order drawn from the seed.
  The fixed step budget keeps the cost independent of n_train (2000 steps are about 1 s of
  one CPU core); longer training lowers the training loss but, without regularisation,
  tends to overfit at small n.

Threads
-------
The tensors are tiny (at most 10^4 x 64), so intra-op parallelism is pure overhead; on a
shared, oversubscribed machine two OpenMP threads made training 10-60x slower than one.
The entry points therefore run under `torch_threads(cfg["torch_threads"])` (default 1, None
leaves torch's setting alone), which restores the previous thread count afterwards.

Configuration
-------------
`DEFAULTS` holds every key of the workflow's `theory.gaussian` section; unknown keys are an
error. The random sweep problem is `random_gaussian_classes(sweep_classes, sweep_dims,
sweep_problem_seed, sweep_spread, sweep_eig_range)`; the seeds vary the training sample and
the MLP initialisation; the test set (n_test points) is shared by all seeds and sizes.
`sweep_seed_example` adds the seed example to the sweep. Reported gaps are to the exact
(or Monte Carlo) Bayes accuracy, so at large n they can be slightly negative (test-set
noise, about 0.06 pp for 10^5 samples at 96 %); `bayes_test_acc` is the Bayes rule's
accuracy on the same test points.

Bayes accuracy
--------------
acc_Bayes = integral of max_j pi_j p_j(x) dx.
* Monte Carlo (any k, d): x drawn from the mixture, averaging max_j P(j|x) (the conditional
  expectation of the Bayes rule's correctness given x; unbiased, lower variance than the
  0/1 indicator) with its standard error.
* d = 2: for fixed x_1, every pi_j p_j(x_1, x_2) is a scaled 1-D Gaussian in x_2, so the
  inner integral is exact: the breakpoints where the argmax changes are roots of pairwise
  quadratics, and each interval contributes a difference of normal CDFs. The outer integral
  is adaptive (scipy.integrate.quad) and its error estimate is reported.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy import integrate, special

from ann.engine import torch_threads

DEFAULTS: dict[str, Any] = {
    "n_train": 1000,
    "n_test": 100_000,
    "seeds": [0, 1, 2],
    "mlp_hidden": 64,
    "mlp_steps": 2000,
    "mlp_lr": 0.01,
    "mlp_batch_size": 256,
    "quad_steps": 500,
    "sweep_sizes": [10, 30, 100, 300, 1000, 3000, 10000],
    "sweep_classes": 3,
    "sweep_dims": 4,
    "sweep_seeds": [0, 1, 2],
    "sweep_problem_seed": 0,
    "sweep_spread": 1.0,
    "sweep_eig_range": [0.2, 2.0],
    "sweep_seed_example": True,
    "monte_carlo_samples": 1_000_000,
    "monte_carlo_seed": 12345,
    "torch_threads": 1,
}

SEED_EXAMPLE_NAME = "seed_example"
_TRAIN_STREAM = 1
_TEST_STREAM = 2


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


# ----------------------------------------------------------------------------- problems


def seed_example() -> GaussianClasses:
    """The paper's example: N([0,0], [[2.1,.4],[.4,2]]) vs N([2,2], [[.1,.1],[.1,.3]])."""
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


def _rng(seed: int, stream: int, n: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream), int(n)])


# ----------------------------------------------------------------------------- Bayes


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


# ----------------------------------------------------------------------------- Theorem 5


def critical_point(classes: GaussianClasses) -> QuadraticParams:
    """Sign-consistent Theorem 5 critical point f_j* = log pi_j p_j(x) + d/2 log(2 pi)."""
    prec = np.linalg.inv(classes.covs)
    prec = 0.5 * (prec + prec.transpose(0, 2, 1))
    w = np.einsum("kde,ke->kd", prec, classes.means)
    quad = np.einsum("kd,kd->k", classes.means, w)
    logdet = np.linalg.slogdet(classes.covs)[1]
    return QuadraticParams(A=-0.5 * prec, w=w, b=-0.5 * (quad + logdet) + np.log(classes.priors))


def paper_critical_point(classes: GaussianClasses) -> QuadraticParams:
    """The paper's literal expression (= -2 f_j* without priors); its argmin is Bayes."""
    ours = critical_point(classes)
    return QuadraticParams(
        A=-2.0 * ours.A, w=-2.0 * ours.w, b=-2.0 * (ours.b - np.log(classes.priors))
    )


def cross_entropy(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean of -log softmax(scores)_y."""
    scores = np.asarray(scores, dtype=float)
    return float(np.mean(special.logsumexp(scores, axis=1) - scores[np.arange(len(y)), y]))


def quadratic_features(X: np.ndarray) -> np.ndarray:
    """phi(x) = (vec(x x^T), x, 1), so that f_j(x) = theta_j . phi(x)."""
    X = np.asarray(X, dtype=float)
    outer = np.einsum("nd,ne->nde", X, X).reshape(len(X), -1)
    return np.hstack([outer, X, np.ones((len(X), 1))])


def quadratic_loss_gradient(
    params: QuadraticParams, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the mean cross-entropy w.r.t. (vec A_j, w_j, b_j) and its standard error.

    Both are (k, d*d + d + 1); the standard error is that of the per-sample mean, so at a
    population critical point gradient / standard_error is approximately N(0, 1).
    """
    scores = params.scores(X)
    q = np.exp(scores - special.logsumexp(scores, axis=1, keepdims=True))
    residual = q - np.eye(params.b.shape[0])[y]
    per_sample = np.einsum("nk,nf->nkf", residual, quadratic_features(X))
    n = len(X)
    return per_sample.mean(axis=0), per_sample.std(axis=0, ddof=1) / math.sqrt(n)


# ----------------------------------------------------------------------------- training


class _Standardiser:
    def __init__(self, X: np.ndarray) -> None:
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(X, dtype=float) - self.mean) / self.std)


def _quadratic_scores(
    Z: torch.Tensor, A: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    return torch.einsum("nd,kde,ne->nk", Z, A, Z) + Z @ w.T + b


def train_quadratic_neuron(
    X: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 500
) -> QuadraticParams:
    """Cross-entropy fit of one quadratic neuron per class (full-batch L-BFGS, float64).

    Starts from zero (the problem is convex, so no seed is needed) on standardised inputs
    and returns the parameters in the original coordinates.
    """
    standardise = _Standardiser(X)
    Z, target = standardise(X), torch.as_tensor(y, dtype=torch.long)
    d = Z.shape[1]
    A = torch.zeros(n_classes, d, d, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(n_classes, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [A, w, b],
        lr=1.0,
        max_iter=steps,
        max_eval=2 * steps,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(_quadratic_scores(Z, A, w, b), target)
        loss.backward()
        return loss

    optimiser.step(closure)
    return _to_original_coordinates(
        A.detach().numpy(), w.detach().numpy(), b.detach().numpy(), standardise
    )


def _to_original_coordinates(
    A_std: np.ndarray, w_std: np.ndarray, b_std: np.ndarray, standardise: _Standardiser
) -> QuadraticParams:
    """z = D (x - m) with D = diag(1/std): rewrite z^T A' z + w'^T z + b' in x."""
    inv_std, m = 1.0 / standardise.std, standardise.mean
    A_sym = 0.5 * (A_std + A_std.transpose(0, 2, 1))
    A = A_sym * inv_std[None, :, None] * inv_std[None, None, :]
    w_scaled = w_std * inv_std
    w = w_scaled - 2.0 * np.einsum("kde,e->kd", A, m)
    b = b_std + np.einsum("d,kde,e->k", m, A, m) - w_scaled @ m
    return QuadraticParams(A=A, w=w, b=b)


class MLPClassifier:
    """Two-layer ReLU network on standardised inputs; `predict` returns class indices."""

    def __init__(self, network: torch.nn.Module, standardise: _Standardiser) -> None:
        self.network = network
        self.standardise = standardise

    def scores(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.network(self.standardise(X).float()).double().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(X), axis=1)


def train_mlp(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    seed: int,
    hidden: int = 64,
    steps: int = 2000,
    lr: float = 0.01,
    batch_size: int = 256,
) -> MLPClassifier:
    """Linear-ReLU-Linear trained with cross-entropy by Adam (float32).

    `steps` Adam updates on minibatches of `batch_size` samples drawn without replacement
    within each pass (full batch when n <= batch_size), learning rate cosine-annealed from
    `lr` to 0; the cost is independent of n. Initialisation and batches come from `seed`.
    """
    standardise = _Standardiser(X)
    Z, target = standardise(X).float(), torch.as_tensor(y, dtype=torch.long)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        network = torch.nn.Sequential(
            torch.nn.Linear(Z.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes)
        )
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    for batch in _minibatches(len(Z), batch_size, steps, generator):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(network(Z[batch]), target[batch]).backward()
        optimiser.step()
        schedule.step()
    network.eval()
    return MLPClassifier(network, standardise)


def _minibatches(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> list[torch.Tensor]:
    if n <= batch_size:
        return [torch.arange(n)] * steps
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        batches.extend(torch.randperm(n, generator=generator).split(batch_size))
    return batches[:steps]


# ----------------------------------------------------------------------------- similarity


def matrix_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Frobenius cosine <a, b>_F / (|a|_F |b|_F)."""
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def quadratic_similarity(params: QuadraticParams, classes: GaussianClasses) -> pd.DataFrame:
    """Per class: raw and identifiable (class-centred) similarity of A_j to the optimum.

    cosine: sym(A_j) against A_j* = -1/2 Sigma_j^{-1} (sign matters, scale does not).
    cosine_difference: A_j - mean_i A_i against A_j* - mean_i A_i* (the identifiable part;
    for k = 2 the cosine of A_1 - A_2 with -1/2 (Sigma_1^{-1} - Sigma_2^{-1})).
    relative_error_difference: |centred A - centred A*|_F / |centred A*|_F (scale included).
    """
    A = 0.5 * (params.A + params.A.transpose(0, 2, 1))
    target = critical_point(classes).A
    A_c, target_c = A - A.mean(axis=0), target - target.mean(axis=0)
    rows = []
    for j in range(classes.k):
        rows.append(
            {
                "class": j,
                "cosine": matrix_cosine(A[j], target[j]),
                "cosine_difference": matrix_cosine(A_c[j], target_c[j]),
                "relative_error_difference": float(
                    np.linalg.norm(A_c[j] - target_c[j]) / np.linalg.norm(target_c[j])
                ),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- experiments


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS overridden by config; unknown keys are an error (catches typos)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown theory.gaussian config keys: {unknown}")
    return {**DEFAULTS, **config}


def sweep_problem(config: dict[str, Any] | None = None) -> GaussianClasses:
    cfg = resolve_config(config)
    return random_gaussian_classes(
        cfg["sweep_classes"],
        cfg["sweep_dims"],
        cfg["sweep_problem_seed"],
        cfg["sweep_spread"],
        cfg["sweep_eig_range"],
    )


def _train_both(
    classes: GaussianClasses, n_train: int, seed: int, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, QuadraticParams, MLPClassifier]:
    X, y = sample_gaussian_classes(classes, n_train, _rng(seed, _TRAIN_STREAM, n_train))
    quad = train_quadratic_neuron(X, y, classes.k, cfg["quad_steps"])
    mlp = train_mlp(
        X,
        y,
        classes.k,
        seed,
        cfg["mlp_hidden"],
        cfg["mlp_steps"],
        cfg["mlp_lr"],
        cfg["mlp_batch_size"],
    )
    return X, y, quad, mlp


def _accuracy_rows(
    classes: GaussianClasses,
    sizes: Sequence[int],
    seeds: Sequence[int],
    cfg: dict[str, Any],
    bayes_acc: float,
    problem: str,
) -> tuple[list[dict[str, Any]], dict[tuple[int, int], QuadraticParams]]:
    X_test, y_test = sample_gaussian_classes(classes, cfg["n_test"], _rng(0, _TEST_STREAM))
    bayes_test_acc = float(np.mean(bayes_predict(classes, X_test) == y_test))
    rows, quads = [], {}
    for n_train in sizes:
        for seed in seeds:
            _, _, quad, mlp = _train_both(classes, int(n_train), int(seed), cfg)
            quads[int(n_train), int(seed)] = quad
            for model, predictor in (("quadratic", quad), ("mlp", mlp)):
                acc = float(np.mean(predictor.predict(X_test) == y_test))
                rows.append(
                    {
                        "problem": problem,
                        "model": model,
                        "seed": int(seed),
                        "n_train": int(n_train),
                        "test_acc": acc,
                        "bayes_acc": bayes_acc,
                        "gap": bayes_acc - acc,
                        "bayes_test_acc": bayes_test_acc,
                    }
                )
    return rows, quads


def summarise_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) of test accuracy over seeds per problem x model x n_train."""
    grouped = sweep.groupby(["problem", "model", "n_train"], as_index=False)
    return grouped.agg(
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        gap_mean=("gap", "mean"),
        bayes_acc=("bayes_acc", "first"),
        n_seeds=("seed", "nunique"),
    )


def sample_size_sweep(
    classes: GaussianClasses,
    config: dict[str, Any] | None = None,
    problem: str = "random",
    bayes_acc: float | None = None,
) -> pd.DataFrame:
    """Tidy accuracy table over sweep_sizes x sweep_seeds for both models."""
    cfg = resolve_config(config)
    if bayes_acc is None:
        bayes_acc = best_bayes_estimate(
            bayes_accuracy(classes, cfg["monte_carlo_samples"], cfg["monte_carlo_seed"])
        )
    with torch_threads(cfg["torch_threads"]):
        rows, _ = _accuracy_rows(
            classes, cfg["sweep_sizes"], cfg["sweep_seeds"], cfg, bayes_acc, problem
        )
    return pd.DataFrame(rows)


def gaussian_experiment(config: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """The full default experiment; every table is tidy.

    bayes: problem, method, accuracy, error, n_samples.
    accuracy: seed example at n_train, per model x seed (test_acc, bayes_acc, gap, ...).
    similarity: seed, class, cosine, cosine_difference, relative_error_difference.
    sweep / sweep_summary: accuracy versus n_train for the random k x d problem (and the seed
    example when sweep_seed_example), per seed and aggregated over seeds.
    timing: stage, seconds.
    """
    cfg = resolve_config(config)
    with torch_threads(cfg["torch_threads"]):
        return _gaussian_experiment(cfg)


def _gaussian_experiment(cfg: dict[str, Any]) -> dict[str, pd.DataFrame]:
    timing: list[dict[str, Any]] = []
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing.append({"stage": stage, "seconds": now - clock})
        clock = now

    example, random_classes = seed_example(), sweep_problem(cfg)
    random_name = f"random_k{random_classes.k}_d{random_classes.d}"
    problems = {SEED_EXAMPLE_NAME: example, random_name: random_classes}
    bayes_tables = []
    for name, classes in problems.items():
        table = bayes_accuracy(classes, cfg["monte_carlo_samples"], cfg["monte_carlo_seed"])
        bayes_tables.append(table.assign(problem=name))
    bayes = pd.concat(bayes_tables, ignore_index=True)[
        ["problem", "method", "accuracy", "error", "n_samples"]
    ]
    bayes_level = {name: best_bayes_estimate(bayes[bayes.problem == name]) for name in problems}
    lap("bayes")

    rows, quads = _accuracy_rows(
        example,
        [cfg["n_train"]],
        cfg["seeds"],
        cfg,
        bayes_level[SEED_EXAMPLE_NAME],
        SEED_EXAMPLE_NAME,
    )
    accuracy = pd.DataFrame(rows)
    similarity = pd.concat(
        [quadratic_similarity(q, example).assign(seed=s) for (_, s), q in quads.items()],
        ignore_index=True,
    )[["seed", "class", "cosine", "cosine_difference", "relative_error_difference"]]
    lap("seed_example")

    sweep_tables = []
    for name, classes in problems.items():
        if name == SEED_EXAMPLE_NAME and not cfg["sweep_seed_example"]:
            continue
        sweep_tables.append(sample_size_sweep(classes, cfg, name, bayes_level[name]))
        lap(f"sweep_{name}")
    sweep = pd.concat(sweep_tables, ignore_index=True)
    return {
        "bayes": bayes,
        "accuracy": accuracy,
        "similarity": similarity,
        "sweep": sweep,
        "sweep_summary": summarise_sweep(sweep),
        "timing": pd.DataFrame(timing),
    }


# ----------------------------------------------------------------------------- figures


def _save_atomically(fig: Any, path: str | os.PathLike[str]) -> Path:
    from .io import save_figure

    save_figure(fig, path)
    return Path(path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_decision_boundaries(
    path: str | os.PathLike[str], config: dict[str, Any] | None = None, seed: int = 0
) -> Path:
    """Quadratic neuron | MLP | Bayes decision regions over the seed example's training set."""
    cfg = resolve_config(config)
    classes = seed_example()
    with torch_threads(cfg["torch_threads"]):
        X, y, quad, mlp = _train_both(classes, cfg["n_train"], seed, cfg)
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "quadratic neuron": quad.predict,
        f"MLP ({cfg['mlp_hidden']} ReLU)": mlp.predict,
        "Bayes": lambda P: bayes_predict(classes, P),
    }
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 400), np.linspace(lo[1], hi[1], 400))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), sharex=True, sharey=True)
    for ax, (title, predict) in zip(axes, predictors.items(), strict=True):
        regions = predict(grid).reshape(g1.shape)
        ax.contourf(g1, g2, regions, levels=[-0.5, 0.5, 1.5], colors=["#cfe0f5", "#f7d6c8"])
        ax.contour(g1, g2, regions, levels=[0.5], colors="k", linewidths=1.2)
        for label, colour in ((0, "#1f5fa8"), (1, "#c0392b")):
            ax.scatter(*X[y == label].T, s=5, c=colour, alpha=0.6, label=f"class {label + 1}")
        ax.set_title(title)
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    axes[0].legend(loc="upper left", markerscale=3, fontsize=8)
    fig.suptitle(f"Decision boundaries, {cfg['n_train']} training samples (seed {seed})")
    return _save_atomically(fig, path)


def plot_accuracy_vs_samples(sweep: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Mean +- std test accuracy versus n_train per model with the Bayes level, per problem."""
    summary = summarise_sweep(sweep)
    names = list(dict.fromkeys(sweep["problem"]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = summary[summary.problem == name]
        for model, marker in (("quadratic", "o"), ("mlp", "s")):
            rows = part[part.model == model].sort_values("n_train")
            ax.errorbar(
                rows.n_train,
                rows.test_acc_mean,
                yerr=rows.test_acc_std.fillna(0.0),
                marker=marker,
                capsize=3,
                label=model,
            )
        ax.axhline(float(part.bayes_acc.iloc[0]), color="k", linestyle="--", label="Bayes")
        ax.set_xscale("log")
        ax.set_xlabel("training samples")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.legend()
    return _save_atomically(fig, path)


def plot_similarity(similarity: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Raw and class-centred cosine of learned A_j with -1/2 Sigma_j^{-1}, per seed x class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"s{s} c{c + 1}" for s, c in zip(similarity.seed, similarity["class"], strict=True)]
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, similarity.cosine, width=0.4, label="cosine(A_j, A_j*)")
    ax.bar(
        positions + 0.2,
        similarity.cosine_difference,
        width=0.4,
        label="cosine, class-centred (identifiable)",
    )
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(positions, labels)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Frobenius cosine")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.16), ncol=2)
    return _save_atomically(fig, path)
