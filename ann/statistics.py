"""Statistics that can answer: paired contrasts over seeds, Holm's adjustment, equivalence by
TOST, one verdict per contrast, and the seeds a design needs (docs/statistics.md).

Runs of one (dataset, model, mode, seed) differ only in the prior, so two priors are compared
seed by seed: d_s = treated_s - reference_s over the n seeds both have. With mean d̄, sample sd
s (n - 1 in the denominator), se = s / sqrt(n) and T_{n-1} Student's t:
  * interval  d̄ ± t_{(1+c)/2, n-1} · se at confidence c = 1 - α;
  * paired t-test (Student 1908)  t = d̄ / se,  p = 2 P(T_{n-1} > |t|);
  * Holm (1979) over a family of m tested p-values sorted p_(1) <= ... <= p_(m):
    p̃_(i) = min(1, max_{j <= i} (m - j + 1) p_(j));
  * TOST (Schuirmann 1987; Lakens 2017) with margin Δ: p_low = P(T_{n-1} > (d̄ + Δ) / se),
    p_high = P(T_{n-1} < (d̄ - Δ) / se), p_TOST = max(p_low, p_high); equivalently the
    (1 - 2α) interval d̄ ± t_{1-α, n-1} · se lies inside (-Δ, +Δ) exactly when p_TOST < α;
  * power of the two-sided paired t-test at a true difference δ: with λ = δ sqrt(n) / σ_d and
    T'_{n-1, λ} noncentral t, P(T' > t_{1-α/2}) + P(T' < -t_{1-α/2});
  * σ_d from the arms' sd and their within-seed correlation ρ: σ_d² = σ_t² + σ_r² - 2ρ σ_t σ_r,
    i.e. σ · sqrt(2(1 - ρ)) for equal arms.
Fewer than MIN_SEEDS seeds, or differences that are all equal (zero spread), give no interval
and no test: the contrast is "inconclusive", never p = 0.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats

ALPHA = 0.05  # two-sided level of the difference test; each TOST one-sided test runs at α
MARGIN = 0.003  # equivalence margin Δ as a fraction of accuracy: ±0.3 percentage points
POWER = 0.8
MIN_SEEDS = 3
MAX_SEEDS = 100_000  # seeds needed beyond this are reported as inf
GROUPS = ("dataset", "model", "mode")  # a contrast compares two priors inside one group
FAMILY = ("dataset", "model")  # one Holm family per dataset and model (all modes)


@dataclass(frozen=True)
class Contrast:
    """treated − reference; `primary` contrasts on the endpoint form the Holm family."""

    treated: str
    reference: str
    primary: bool = True

    @property
    def name(self) -> str:
        return f"{self.treated} − {self.reference}"


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_difference: float
    sd_difference: float
    rho: float  # Pearson correlation of the two arms over seeds (NaN below 3 seeds)
    t_statistic: float
    ci_low: float
    ci_high: float
    p_value: float
    note: str


@dataclass(frozen=True)
class Equivalence:
    p_low: float  # H0: difference <= -Δ
    p_high: float  # H0: difference >= +Δ
    p_tost: float
    tost_low: float  # the (1 - 2α) interval
    tost_high: float


def _differences(treated: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    t, r = np.asarray(treated, float), np.asarray(reference, float)
    if t.ndim != 1 or t.shape != r.shape:
        raise ValueError(f"paired samples need equal 1-d shapes, got {t.shape} and {r.shape}")
    # accuracies are fractions of a test set: rounding off the subtraction's last bits keeps
    # equal differences equal (else a spread of 1e-17 would make any shift "significant")
    return np.round(t - r, 12)


def _spread(d: np.ndarray) -> float:
    """Sample sd (n - 1); exactly 0 when all differences are equal (np.std is not: the mean
    of equal floats can be off in its last bit)."""
    return 0.0 if d.min() == d.max() else float(d.std(ddof=1))


def _testable(d: np.ndarray) -> bool:
    return d.size >= MIN_SEEDS and _spread(d) > 0


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation over seeds; NaN below MIN_SEEDS (two points give ±1 by
    construction) or when either arm is constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < MIN_SEEDS or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def paired_test(
    treated: Sequence[float], reference: Sequence[float], confidence: float = 1 - ALPHA
) -> PairedTest:
    """Mean, sd, ρ, t interval and two-sided paired t-test of treated − reference (same index =
    same seed). No interval and no p below MIN_SEEDS seeds or at zero spread (see `note`)."""
    d = _differences(treated, reference)
    n = d.size
    mean = float(d.mean()) if n else math.nan
    sd = _spread(d) if n > 1 else math.nan
    untested = {k: math.nan for k in ("t_statistic", "ci_low", "ci_high", "p_value")}
    base = {"n": n, "mean_difference": mean, "sd_difference": sd,
            "rho": pearson(treated, reference)}  # fmt: skip
    if n == 0:
        return PairedTest(**base, **untested, note="no seed has both runs")
    if n < MIN_SEEDS:
        note = f"too few seeds: n = {n}, needs {MIN_SEEDS}; no interval, no test"
        return PairedTest(**base, **untested, note=note)
    if sd == 0:
        note = "zero spread: the same difference on every seed, so no interval and no test"
        return PairedTest(**base, **untested, note=note)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    t = mean / se
    return PairedTest(
        **base, t_statistic=t, ci_low=mean - half, ci_high=mean + half,
        p_value=float(2 * stats.t.sf(abs(t), n - 1)), note="",
    )  # fmt: skip


def tost(
    treated: Sequence[float],
    reference: Sequence[float],
    margin: float = MARGIN,
    alpha: float = ALPHA,
) -> Equivalence:
    """Two one-sided paired t-tests of |treated − reference| < margin (NaN where
    `paired_test` gives no test)."""
    d = _differences(treated, reference)
    if not _testable(d):
        return Equivalence(*[math.nan] * 5)
    n, mean = d.size, float(d.mean())
    se = _spread(d) / math.sqrt(n)
    p_low = float(stats.t.sf((mean + margin) / se, n - 1))
    p_high = float(stats.t.cdf((mean - margin) / se, n - 1))
    half = float(stats.t.ppf(1 - alpha, n - 1)) * se
    return Equivalence(p_low, p_high, max(p_low, p_high), mean - half, mean + half)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order. NaN (a contrast with no test)
    stays NaN and is not counted in m: it can never be rejected, so it can make no false
    rejection, and Holm over the m tested hypotheses bounds the family-wise error."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    steps = (len(order) - np.arange(len(order))) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out


def verdict(mean_difference: float, p_difference: float, p_equivalence: float,
            alpha: float = ALPHA) -> str:  # fmt: skip
    """helps / hurts / equivalent / inconclusive, in this order of checks:
    1. no test (NaN p: too few seeds, zero spread) -> "inconclusive";
    2. p_equivalence < α -> "equivalent", even where p_difference < α too: the whole (1 - 2α)
       interval then lies inside ±Δ, so any difference is smaller than the margin declared
       negligible in advance, and "helps" would sell a difference the design calls irrelevant
       (Lakens 2017, Fig. 1: "statistically different and equivalent");
    3. p_difference < α -> "helps" (mean > 0) or "hurts" (mean < 0);
    4. otherwise "inconclusive": neither a difference nor equivalence is shown."""
    if math.isnan(p_difference) or math.isnan(p_equivalence):
        return "inconclusive"
    if p_equivalence < alpha:
        return "equivalent"
    if p_difference < alpha:
        return "helps" if mean_difference > 0 else "hurts"
    return "inconclusive"


# ------------------------------------------------------------------------- power
def paired_sd(sd: float, rho: float, sd_reference: float | None = None) -> float:
    """sd of treated − reference from the arms' sds and their correlation ρ:
    sqrt(sd² + sd_r² − 2ρ·sd·sd_r), = sd·sqrt(2(1 − ρ)) when the arms' sds are equal."""
    sd_r = sd if sd_reference is None else sd_reference
    return math.sqrt(max(0.0, sd**2 + sd_r**2 - 2 * rho * sd * sd_r))


def t_test_power(n: int, difference: float, sd: float, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided paired t-test on n seeds at a true mean difference
    (noncentral t with n - 1 degrees of freedom, noncentrality difference·sqrt(n)/sd)."""
    df, nc = n - 1, difference * math.sqrt(n) / sd
    c = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(c, df, nc) + stats.nct.cdf(-c, df, nc))


def tost_power(n: int, margin: float, sd: float, alpha: float = ALPHA,
               difference: float = 0.0) -> float:  # fmt: skip
    """Exact power of TOST on n seeds at a true mean difference: both tests reject iff
    -Δ + c·S/√n < d̄ < Δ - c·S/√n (c = t_{1-α, n-1}); d̄ ~ N(δ, σ²/n) is independent of
    S² ~ σ² χ²_{n-1}/(n - 1), so the power is one integral over the χ² density (the
    quantity Owen 1965 writes with his Q function)."""
    df, a = n - 1, math.sqrt(n) / sd
    c = float(stats.t.ppf(1 - alpha, df))
    # beyond this u the acceptance region is empty; past chi2.isf(1e-16) the density is nil
    upper = min(df * (a * margin / c) ** 2, float(stats.chi2.isf(1e-16, df)))

    def accepted(u: float) -> float:
        shift = c * math.sqrt(u / df)
        inside = stats.norm.cdf(a * (margin - difference) - shift) - stats.norm.cdf(
            a * (-margin - difference) + shift
        )
        return stats.chi2.pdf(u, df) * max(0.0, inside)

    return float(integrate.quad(accepted, 0, upper, limit=200)[0])


def _smallest_n(power_at: Callable[[int], float], target: float, start: float) -> float:
    n = max(MIN_SEEDS, math.ceil(start))
    while n <= MAX_SEEDS and power_at(n) < target:
        n += 1
    if n > MAX_SEEDS:
        return math.inf
    while n > MIN_SEEDS and power_at(n - 1) >= target:
        n -= 1
    return float(n)


def seeds_for_difference(difference: float, sd: float, alpha: float = ALPHA,
                         power: float = POWER) -> float:  # fmt: skip
    """Fewest seeds (at least MIN_SEEDS) at which the two-sided paired t-test detects a true
    difference with the given power; NaN for a spread that is zero or unknown. Starts from the
    normal approximation ((z_{1-α/2} + z_power) sd / difference)² and steps n exactly."""
    if not (sd > 0 and difference != 0):
        return math.nan
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    start = (z * sd / abs(difference)) ** 2
    return _smallest_n(lambda n: t_test_power(n, difference, sd, alpha), power, start)


def seeds_for_equivalence(margin: float, sd: float, alpha: float = ALPHA,
                          power: float = POWER) -> float:  # fmt: skip
    """Fewest seeds (at least MIN_SEEDS) at which TOST shows equivalence within ±margin with
    the given power when the true difference is 0; NaN for a spread that is zero or unknown."""
    if not (sd > 0 and margin > 0):
        return math.nan
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf((1 + power) / 2)
    start = (z * sd / margin) ** 2
    return _smallest_n(lambda n: tost_power(n, margin, sd, alpha), power, start)


def minimal_detectable_difference(n: int, sd: float, alpha: float = ALPHA,
                                  power: float = POWER) -> float:  # fmt: skip
    """The true difference the two-sided paired t-test on n seeds detects with the given
    power (solves t_test_power = power for the noncentrality)."""

    def gap(nc: float) -> float:
        return t_test_power(n, nc * sd / math.sqrt(n), sd, alpha) - power

    high = 8.0
    while gap(high) < 0:
        high *= 2
    return optimize.brentq(gap, 0.0, high, xtol=1e-10) * sd / math.sqrt(n)


# ------------------------------------------------------------------------- the table
def contrast_table(
    runs: pd.DataFrame,
    contrasts: Sequence[Contrast],
    metrics: Sequence[str],
    endpoint: str,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    power: float = POWER,
    family: Sequence[str] = FAMILY,
    dataset_titles: Mapping[str, str] | None = None,
    metric_labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, model, mode) × contrast × metric from a tidy table of runs
    (dataset, model, prior, optional mode, seed, metric columns; NaN = not measured, left out
    of that metric's pairs). Role "primary" for primary contrasts on the endpoint, Holm-adjusted
    (p_holm, and p_tost_holm for TOST) within each `family` group; every other row is
    "exploratory", unadjusted, and its verdict comes from its unadjusted p-values."""
    needed = {"dataset", "model", "prior", "seed", *metrics}
    if missing := sorted(needed - set(runs.columns)):
        raise ValueError(f"runs table lacks the column(s) {missing}: add them or fix `metrics`")
    if endpoint not in metrics:
        raise ValueError(f"the endpoint {endpoint!r} is not among the metrics {list(metrics)}")
    groups = [c for c in GROUPS if c in runs.columns]
    if stray := sorted(set(family) - set(groups)):
        raise ValueError(f"Holm family column(s) {stray} are not among {groups}")
    repeated = runs[runs.duplicated([*groups, "prior", "seed"], keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise ValueError(f"two runs of prior {first.prior!r}, seed {first.seed} in one group "
                         f"({', '.join(str(first[g]) for g in groups)}): keep one")  # fmt: skip
    rows = []
    for key, group in runs.groupby(groups, sort=False, dropna=False):
        arms = {prior: arm.set_index("seed") for prior, arm in group.groupby("prior")}
        for contrast in contrasts:
            if contrast.treated not in arms and contrast.reference not in arms:
                continue  # e.g. a plain model: neither prior was run
            for metric in metrics:
                pair = pd.concat(
                    [arms[p][metric] if p in arms else pd.Series(dtype=float)
                     for p in (contrast.treated, contrast.reference)],
                    axis=1, join="inner", keys=["treated", "reference"],
                ).dropna()  # fmt: skip
                test = paired_test(pair.treated, pair.reference, 1 - alpha)
                sd = test.sd_difference
                rows.append({
                    **dict(zip(groups, key, strict=True)), "contrast": contrast.name,
                    "treated": contrast.treated, "reference": contrast.reference,
                    "metric": metric,
                    "role": "primary" if contrast.primary and metric == endpoint else "exploratory",
                    "seeds": " ".join(str(s) for s in sorted(pair.index)),
                    **asdict(test), **asdict(tost(pair.treated, pair.reference, margin, alpha)),
                    "margin": margin,
                    "seeds_needed": seeds_for_difference(margin, sd, alpha, power),
                    "seeds_needed_equivalence": seeds_for_equivalence(margin, sd, alpha, power),
                })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    if table.empty:
        return table
    table["p_holm"] = table["p_tost_holm"] = math.nan
    primary = table.role == "primary"
    for _, index in table[primary].groupby(list(family), sort=False, dropna=False).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"])
        table.loc[index, "p_tost_holm"] = holm(table.loc[index, "p_tost"])
    p_diff = table.p_holm.where(primary, table.p_value)
    p_equiv = table.p_tost_holm.where(primary, table.p_tost)
    table["verdict"] = [verdict(m, p, q, alpha)
                        for m, p, q in zip(table.mean_difference, p_diff, p_equiv, strict=True)]  # fmt: skip
    both = (table.verdict == "equivalent") & (p_diff < alpha)
    table.loc[both, "note"] = "significant, but smaller than the margin: equivalent"
    table["sentence"] = [
        sentence(row, alpha, power, dataset_titles or {}, metric_labels or {})
        for row in table.to_dict("records")
    ]
    return table


def _pp(fraction: float) -> str:
    return f"{100 * fraction:+.2f}".replace("-", "−")


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"= {value:.2g}"


def sentence(row: Mapping, alpha: float, power: float, dataset_titles: Mapping[str, str],
             metric_labels: Mapping[str, str]) -> str:  # fmt: skip
    """The answer of one contrast in the verdict's words, e.g. "On Fashion-MNIST,
    dit_resnet20: bio − zero changes final test top-1 by +0.12 pp (95% CI ..., Holm-adjusted
    p = ..., TOST p = ...): equivalent within ±0.30 pp; n = 12 seeds; paired sd 0.20 pp,
    ρ = 0.40; 6 seeds would detect ±0.30 pp with 80 % power." Interval and p-values only
    with a test and an interval inside ±100 pp."""
    where = f"On {dataset_titles.get(row['dataset'], row['dataset'])}, {row['model']}"
    if isinstance(row.get("mode"), str):
        where += f" ({row['mode']} mode)"
    primary = row["role"] == "primary"
    label = metric_labels.get(row["metric"], row["metric"])
    head = f"{row['contrast']} changes {label} by {_pp(row['mean_difference'])} pp"
    shown = not math.isnan(row["p_value"]) and -1 <= row["ci_low"] and row["ci_high"] <= 1
    if shown:
        adjusted = "Holm-adjusted " if primary else ""
        p, q = (row["p_holm"], row["p_tost_holm"]) if primary else (row["p_value"], row["p_tost"])
        detail = (f"{100 * (1 - alpha):.0f}% CI {_pp(row['ci_low'])} to {_pp(row['ci_high'])} pp, "
                  f"{adjusted}p {_p(p)}, {adjusted}TOST p {_p(q)}")  # fmt: skip
    else:
        detail = row["note"] or "interval wider than ±100 pp: not shown"
    margin = f"±{100 * row['margin']:.2f} pp"
    outcome = row["verdict"] + (f" within {margin}" if row["verdict"] == "equivalent" else "")
    if shown and row["note"]:
        outcome += f" ({row['note'].split(':')[0]})"
    sd, rho, k = row["sd_difference"], row["rho"], row["seeds_needed"]
    spread = "paired sd unknown" if math.isnan(sd) else f"paired sd {100 * sd:.2f} pp"
    spread += ", ρ undefined" if math.isnan(rho) else f", ρ = {rho:.2f}"
    if math.isnan(k):
        design = "no spread to size a design from"
    elif math.isinf(k):
        design = f"more than {MAX_SEEDS} seeds would be needed to detect {margin}"
    else:
        design = f"{k:.0f} seeds would detect {margin} with {100 * power:.0f} % power"
    text = (f"{where}: {head} ({detail}): {outcome}; n = {row['n']} seeds; {spread}; "
            f"{design}.")  # fmt: skip
    return text if primary else f"Exploratory (not adjusted for multiplicity): {text}"
