"""Theorem 5's critical point, the two trained models (one quadratic neuron per class, an
MLP) and how close the learned quadratic terms come to the critical point
(docs/theory.md: sign convention, identifiability, models and optimisers)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy import special

from .problems import GaussianClasses, QuadraticParams


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
