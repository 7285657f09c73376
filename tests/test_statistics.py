"""ann.statistics against a hand-computed example, scipy and statsmodels: the paired interval
and t-test, TOST, Holm, the verdict rule on constructed data, the too-few-seeds and zero-spread
cases, and the noncentral-t power against Monte Carlo and the normal approximation."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ann import statistics as st

# ------------------------------------------------------------------- a hand-computed example
# Final top-1 of zero (reference) and bio (treated) on four seeds:
#   differences d = 0.01, 0.02, 0.01, 0.02 -> mean 0.015; deviations ±0.005 -> sum of squares
#   1e-4, variance 1e-4 / 3, sd = 0.0057735; se = sd / sqrt(4) = 0.0028868 = 0.005 / sqrt(3).
#   t = 0.015 / se = 3 sqrt(3) = 5.196152. Student's t with 3 degrees of freedom has the closed
#   form  F(t) = 1/2 + (x / (1 + x^2) + atan(x)) / pi,  x = t / sqrt(3), so with x = 3:
#   p = 2 (1 - F) = 1 - 2 (0.3 + atan 3) / pi = 0.013847.
#   t_{0.975, 3} = 3.182446 (table) -> half width 0.0091869, 95 % CI [0.0058131, 0.0241869].
#   rho: reference deviations -0.005, 0.005, -0.015, 0.015; treated -0.01, 0.01, -0.02, 0.02:
#   cross products 7e-4, sums of squares 5e-4 and 1e-3 -> rho = 7e-4 / sqrt(5e-7) = 7 / sqrt(50).
# TOST with margin 0.02: t_low = (0.015 + 0.02) / se = 7 sqrt(3) (x = 7), t_high = (0.015 - 0.02)
#   / se = -sqrt(3) (x = -1): p_low = 1/2 - (7/50 + atan 7) / pi = 0.000604,
#   p_high = 1/2 + (-1/2 - pi/4) / pi = 0.090845 = p_TOST; t_{0.95, 3} = 2.353363 -> 90 %
#   interval 0.015 ± 0.0067936 = [0.0082064, 0.0217936], not inside ±0.02: not equivalent.
# With margin 0.025: t_high = -2 sqrt(3) (x = -2): p_high = 1/2 - (2/5 + atan 2) / pi = 0.020259
#   < 0.05 and the 90 % interval lies inside ±0.025: equivalent, though p = 0.0138 < 0.05 too.
ZERO = [0.80, 0.81, 0.79, 0.82]
BIO = [0.81, 0.83, 0.80, 0.84]


def test_paired_test_matches_the_hand_computation():
    out = st.paired_test(BIO, ZERO)
    assert out.n == 4 and out.note == ""
    assert out.mean_difference == pytest.approx(0.015)
    assert out.sd_difference == pytest.approx(0.0057735, abs=1e-7)
    assert out.t_statistic == pytest.approx(3 * math.sqrt(3))
    assert out.p_value == pytest.approx(1 - 2 * (0.3 + math.atan(3)) / math.pi)
    assert out.p_value == pytest.approx(0.013847, abs=1e-6)
    assert out.ci_low == pytest.approx(0.0058131, abs=1e-7)
    assert out.ci_high == pytest.approx(0.0241869, abs=1e-7)
    assert out.rho == pytest.approx(7 / math.sqrt(50))


def test_tost_matches_the_hand_computation():
    out = st.tost(BIO, ZERO, margin=0.02)
    assert out.p_low == pytest.approx(0.5 - (7 / 50 + math.atan(7)) / math.pi)
    assert out.p_low == pytest.approx(0.000604, abs=1e-6)
    assert out.p_high == pytest.approx(0.5 + (-0.5 - math.pi / 4) / math.pi)
    assert out.p_tost == out.p_high == pytest.approx(0.090845, abs=1e-6)
    assert out.tost_low == pytest.approx(0.0082064, abs=1e-7)
    assert out.tost_high == pytest.approx(0.0217936, abs=1e-7)
    wider = st.tost(BIO, ZERO, margin=0.025)
    assert wider.p_tost == pytest.approx(0.5 - (0.4 + math.atan(2)) / math.pi)
    assert wider.p_tost == pytest.approx(0.020259, abs=1e-6)
    assert -0.025 < wider.tost_low and wider.tost_high < 0.025


def test_paired_test_and_tost_agree_with_scipy_and_statsmodels():
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(4)
    for n in (3, 5, 12):
        reference = rng.uniform(0.7, 0.9, n)
        treated = reference + rng.normal(0.002, 0.004, n)
        d = treated - reference
        out = st.paired_test(treated, reference, confidence=0.9)
        scipy_test = stats.ttest_rel(treated, reference)
        assert out.p_value == pytest.approx(scipy_test.pvalue, rel=1e-9)
        assert out.t_statistic == pytest.approx(scipy_test.statistic, rel=1e-9)
        low, high = scipy_test.confidence_interval(0.9)
        assert (out.ci_low, out.ci_high) == pytest.approx((low, high), rel=1e-9)
        half = stats.t.ppf(0.95, n - 1) * d.std(ddof=1) / math.sqrt(n)
        assert out.ci_high - out.ci_low == pytest.approx(2 * half, rel=1e-9)
        assert out.rho == pytest.approx(stats.pearsonr(treated, reference).statistic)
        margin = 0.003
        eq = st.tost(treated, reference, margin=margin)
        assert eq.p_low == pytest.approx(
            stats.ttest_1samp(d - (-margin), 0, alternative="greater").pvalue, rel=1e-9
        )
        assert eq.p_high == pytest.approx(
            stats.ttest_1samp(d - margin, 0, alternative="less").pvalue, rel=1e-9
        )
        p_tost, _, _ = ttost_paired(treated, reference, -margin, margin)
        assert eq.p_tost == pytest.approx(p_tost, rel=1e-9)
        inside = -margin < eq.tost_low and eq.tost_high < margin
        assert inside == (eq.p_tost < 0.05)  # the interval and the tests say the same


# ------------------------------------------------------------------- too few seeds, zero spread
def test_two_seeds_are_too_few():
    out = st.paired_test([0.9, 0.5], [0.8, 0.6])
    assert out.n == 2 and out.mean_difference == pytest.approx(0.0)
    assert out.sd_difference == pytest.approx(math.sqrt(0.02))  # still measured, for power
    assert math.isnan(out.ci_low) and math.isnan(out.ci_high) and math.isnan(out.p_value)
    assert math.isnan(out.rho)  # two points are always perfectly correlated
    assert out.note.startswith("too few seeds")
    assert math.isnan(st.tost([0.9, 0.5], [0.8, 0.6]).p_tost)
    assert st.paired_test([], []).note == "no seed has both runs"


def test_zero_spread_has_no_test_and_no_interval():
    # 0.85 - 0.8, 0.75 - 0.7 and 0.95 - 0.9 differ in the last bits; still one difference
    out = st.paired_test([0.85, 0.75, 0.95], [0.8, 0.7, 0.9])
    assert out.sd_difference == 0 and out.mean_difference == pytest.approx(0.05)
    assert math.isnan(out.p_value) and math.isnan(out.ci_low) and math.isnan(out.ci_high)
    assert out.note.startswith("zero spread")
    assert math.isnan(st.tost([0.85, 0.75, 0.95], [0.8, 0.7, 0.9]).p_tost)
    assert st.verdict(out.mean_difference, out.p_value, math.nan) == "inconclusive"
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        st.paired_test([0.1, 0.2], [0.1])


# ------------------------------------------------------------------- Holm
def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 4 * 0.005 = 0.02, 3 * 0.01 = 0.03,
    # 2 * 0.03 = 0.06, 1 * 0.04 = 0.04 -> running maximum 0.02, 0.03, 0.06, 0.06
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # an untested contrast stays NaN and is not counted: m is still 4
    out = st.holm([0.01, math.nan, 0.04, 0.03, 0.005])
    assert math.isnan(out[1]) and np.delete(out, 1) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert st.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 2 * 0.5, capped at 1
    assert st.holm([0.02]) == pytest.approx([0.02]) and st.holm([]).size == 0


def test_holm_agrees_with_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    for m in (2, 5, 14, 45):
        p = rng.uniform(0, 0.2, m) ** 2
        p[rng.integers(m)] = p[0]  # a tie
        assert st.holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)
        p[1] = math.nan
        tested = ~np.isnan(p)
        expected = multipletests(p[tested], method="holm")[1]
        assert st.holm(p)[tested] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------- verdicts on constructed data
REFERENCE = 0.80 + 0.01 * np.sin(np.arange(10))  # seed-to-seed variation shared by both arms
ALTERNATING = np.array([1, -1] * 5)


def _runs(differences: dict, mode: str | None = None, reference=REFERENCE) -> pd.DataFrame:
    """zero runs at `reference` (seed s at index s) and each prior at reference + d."""
    rows = []
    for prior, d in {"zero": np.zeros(len(reference)), **differences}.items():
        for seed, value in enumerate(np.asarray(reference) + d):
            row = {"dataset": "fashion_mnist", "model": "dit", "prior": prior, "seed": seed,
                   "final_top1": value, "best_top1": value}  # fmt: skip
            rows.append(row | ({"mode": mode} if mode else {}))
    return pd.DataFrame(rows)


def test_verdicts_follow_the_rule():
    runs = _runs({
        "helps": 0.01 + 0.001 * ALTERNATING,
        "hurts": -0.01 + 0.001 * ALTERNATING,
        "same": 0.0005 * ALTERNATING,  # mean 0, 90 % interval well inside ±0.3 pp
        "noisy": 0.01 * ALTERNATING,  # mean 0, sd 1 pp: neither
        "tiny": 0.001 + 0.0001 * ALTERNATING,  # significant, but +0.1 pp, inside the margin
    })  # fmt: skip
    contrasts = [st.Contrast(p, "zero") for p in ("helps", "hurts", "same", "noisy", "tiny")]
    table = st.contrast_table(runs, contrasts, ["final_top1"], "final_top1").set_index("treated")
    assert table.verdict.to_dict() == {"helps": "helps", "hurts": "hurts", "same": "equivalent",
                                       "noisy": "inconclusive", "tiny": "equivalent"}  # fmt: skip
    tiny = table.loc["tiny"]
    assert tiny.p_holm < 1e-6 and tiny.p_tost_holm < 0.05 and "significant" in tiny.note
    assert "equivalent within ±0.30 pp (significant, but smaller than the margin)" in tiny.sentence
    assert (table.role == "primary").all() and (table.p_holm >= table.p_value).all()


def test_holm_turns_a_lone_result_inconclusive_and_exploratory_metrics_stay_unadjusted():
    """bio − zero has p = 0.0138 (the hand example): alone it "helps"; among four primary
    contrasts Holm makes it 4 × 0.0138 = 0.055, inconclusive. The same numbers as an
    exploratory metric keep their unadjusted p."""
    alternating = np.array([1, -1, 1, -1])
    differences = {"bio": np.array(BIO) - np.array(ZERO), "a": 0.02 * alternating,
                   "b": 0.03 * alternating, "c": 0.02 * np.array([1, 1, -1, -1])}  # fmt: skip
    runs = _runs(differences, reference=ZERO)
    alone = st.contrast_table(runs, [st.Contrast("bio", "zero")], ["final_top1"], "final_top1")
    assert alone.verdict.item() == "helps" and alone.p_holm.item() == pytest.approx(0.013847, 1e-4)
    contrasts = [st.Contrast(p, "zero") for p in ("bio", "a", "b", "c")]
    table = st.contrast_table(runs, contrasts, ["final_top1", "best_top1"], "final_top1")
    bio = table[table.treated == "bio"].set_index("metric")
    assert bio.loc["final_top1", "role"] == "primary"
    assert bio.loc["final_top1", "p_holm"] == pytest.approx(4 * 0.013847, rel=1e-4)
    assert bio.loc["final_top1", "verdict"] == "inconclusive"
    assert bio.loc["best_top1", "role"] == "exploratory"
    assert math.isnan(bio.loc["best_top1", "p_holm"])
    assert bio.loc["best_top1", "verdict"] == "helps"
    assert bio.loc["best_top1", "sentence"].startswith("Exploratory (not adjusted")
    # a contrast declared exploratory leaves the family: m = 3
    contrasts[3] = st.Contrast("c", "zero", primary=False)
    table = st.contrast_table(runs, contrasts, ["final_top1"], "final_top1")
    assert table.set_index("treated").p_holm["bio"] == pytest.approx(3 * 0.013847, rel=1e-4)


def test_zero_spread_and_two_seeds_in_the_table():
    runs = _runs({"bio": np.full(10, 0.01), "shuffled": 0.01 + 0.001 * ALTERNATING})
    runs = runs[~((runs.prior == "shuffled") & (runs.seed > 1))]  # shuffled: seeds 0 and 1
    contrasts = [st.Contrast("bio", "zero"), st.Contrast("shuffled", "zero")]
    table = st.contrast_table(runs, contrasts, ["final_top1"], "final_top1").set_index("treated")
    assert table.verdict.tolist() == ["inconclusive", "inconclusive"]
    assert table.p_holm.isna().all() and table.ci_low.isna().all()
    bio, shuffled = table.loc["bio"], table.loc["shuffled"]
    assert "zero spread" in bio.sentence and "CI" not in bio.sentence
    assert "no spread to size a design from" in bio.sentence
    assert shuffled.n == 2 and shuffled.seeds == "0 1"
    assert "too few seeds" in shuffled.sentence and "CI" not in shuffled.sentence
    assert "p =" not in shuffled.sentence and "ρ undefined" in shuffled.sentence


def test_the_sentence_and_the_holm_family_across_modes():
    runs = pd.concat([_runs({"bio": 0.01 + 0.001 * ALTERNATING}, mode)
                      for mode in ("init", "anchor")])  # fmt: skip
    table = st.contrast_table(
        runs, [st.Contrast("bio", "zero")], ["final_top1"], "final_top1",
        dataset_titles={"fashion_mnist": "Fashion-MNIST"},
        metric_labels={"final_top1": "final test top-1"},
    )  # fmt: skip
    assert table["mode"].tolist() == ["init", "anchor"]
    assert table.p_holm.tolist() == pytest.approx((2 * table.p_value).tolist())  # m = 2
    row = table.iloc[1]
    sd = 0.001 * math.sqrt(10 / 9)  # ±0.1 pp around the mean, n - 1 = 9
    k = int(st.seeds_for_difference(0.003, sd))
    assert row.sentence == (
        "On Fashion-MNIST, dit (anchor mode): bio − zero changes final test top-1 by +1.00 pp "
        f"(95% CI +0.92 to +1.08 pp, Holm-adjusted p < 0.001, Holm-adjusted TOST p = 1): helps; "
        f"n = 10 seeds; paired sd 0.11 pp, ρ = 0.99; {k} seeds would detect ±0.30 pp with "
        "80 % power."
    )
    # runs without a mode (NaN in the column) are a group of their own, not dropped
    mixed = pd.concat([runs, _runs({"bio": 0.01 + 0.001 * ALTERNATING})])
    table = st.contrast_table(mixed, [st.Contrast("bio", "zero")], ["final_top1"], "final_top1")
    assert len(table) == 3 and table.p_holm.tolist() == pytest.approx((3 * table.p_value).tolist())
    assert table.sentence.iloc[2].startswith("On fashion_mnist, dit: bio − zero changes")
    separate = st.contrast_table(runs, [st.Contrast("bio", "zero")], ["final_top1"],
                                 "final_top1", family=("dataset", "model", "mode"))  # fmt: skip
    assert separate.p_holm.tolist() == pytest.approx(separate.p_value.tolist())


def test_bad_tables_are_refused():
    runs = _runs({"bio": np.full(10, 0.01)})
    contrast = [st.Contrast("bio", "zero")]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['top5'\]"):
        st.contrast_table(runs, contrast, ["final_top1", "top5"], "final_top1")
    with pytest.raises(ValueError, match="endpoint 'top5'"):
        st.contrast_table(runs, contrast, ["final_top1"], "top5")
    with pytest.raises(ValueError, match="two runs of prior 'bio', seed 3"):
        st.contrast_table(pd.concat([runs, runs[(runs.seed == 3) & (runs.prior == "bio")]]), contrast, ["final_top1"],
                          "final_top1")  # fmt: skip
    plain = runs[runs.prior == "zero"].assign(model="resnet20", prior="none")
    assert st.contrast_table(plain, contrast, ["final_top1"], "final_top1").empty


# ------------------------------------------------------------------- power
def test_paired_sd_from_the_arms():
    assert st.paired_sd(1.0, 0.5) == pytest.approx(1.0)
    assert st.paired_sd(0.2, 0.0) == pytest.approx(0.2 * math.sqrt(2))
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8), rng.normal(size=8) + rng.normal(size=8)
    rho = stats.pearsonr(a, b).statistic  # an identity of the sample moments
    expected = np.std(a - b, ddof=1)
    assert st.paired_sd(np.std(a, ddof=1), rho, np.std(b, ddof=1)) == pytest.approx(expected)


def test_t_test_power_against_monte_carlo():
    rng = np.random.default_rng(2024)
    reps, n, sd = 40_000, 6, 1.0
    critical = stats.t.ppf(0.975, n - 1)
    for difference in (0.0, 0.8, 1.3):
        d = rng.normal(difference, sd, (reps, n))
        t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
        simulated = np.mean(np.abs(t) > critical)
        exact = st.t_test_power(n, difference, sd)
        assert abs(simulated - exact) < 4 * math.sqrt(exact * (1 - exact) / reps)
    assert st.t_test_power(n, 0.0, sd) == pytest.approx(0.05)  # the size of the test


def test_tost_power_against_monte_carlo():
    rng = np.random.default_rng(99)
    reps, n, sd, margin = 40_000, 10, 1.0, 0.9
    critical = stats.t.ppf(0.95, n - 1)
    for difference in (0.0, 0.3):
        d = rng.normal(difference, sd, (reps, n))
        se = d.std(1, ddof=1) / math.sqrt(n)
        mean = d.mean(1)
        simulated = np.mean((mean + margin > critical * se) & (mean - margin < -critical * se))
        exact = st.tost_power(n, margin, sd, difference=difference)
        assert abs(simulated - exact) < 4 * math.sqrt(exact * (1 - exact) / reps)
    # at the margin itself TOST's size is at most α
    assert st.tost_power(n, margin, sd, difference=margin) <= 0.05


def test_power_approaches_the_normal_approximation():
    n, sd, difference = 4000, 1.0, 0.045
    shift = difference * math.sqrt(n) / sd
    z = stats.norm.ppf(0.975)
    normal = stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z)
    assert st.t_test_power(n, difference, sd) == pytest.approx(normal, abs=1e-3)
    margin = 0.05
    normal_tost = 2 * stats.norm.cdf(margin * math.sqrt(n) / sd - stats.norm.ppf(0.95)) - 1
    assert st.tost_power(n, margin, sd) == pytest.approx(normal_tost, abs=2e-3)


def test_seeds_needed_are_the_fewest_that_reach_the_power():
    for sd in (0.0015, 0.002, 0.004):
        n = int(st.seeds_for_difference(0.003, sd))
        assert st.t_test_power(n, 0.003, sd) >= 0.8 > st.t_test_power(n - 1, 0.003, sd)
        m = int(st.seeds_for_equivalence(0.003, sd))
        assert st.tost_power(m, 0.003, sd) >= 0.8 > st.tost_power(m - 1, 0.003, sd)
        smallest = st.minimal_detectable_difference(n, sd)
        assert smallest <= 0.003 and st.t_test_power(n, smallest, sd) == pytest.approx(0.8)
    assert st.seeds_for_difference(0.003, 1e-5) == st.MIN_SEEDS  # never below three
    assert math.isnan(st.seeds_for_difference(0.003, 0.0))
    assert st.seeds_for_difference(0.003, 10.0) == math.inf  # over MAX_SEEDS
    assert math.isnan(st.seeds_for_equivalence(0.003, math.nan))
    # the figures: per-arm sd 0.15-0.3 pp, rho = 0 (sd_d = sd sqrt 2), 5 seeds detect
    # 0.36-0.72 pp; 0.2 pp needs 11-38 seeds
    low, high = st.paired_sd(0.0015, 0), st.paired_sd(0.003, 0)
    assert st.minimal_detectable_difference(5, low) == pytest.approx(0.0036, abs=1e-4)
    assert st.minimal_detectable_difference(5, high) == pytest.approx(0.0072, abs=2e-4)
    assert (st.seeds_for_difference(0.002, low), st.seeds_for_difference(0.002, high)) == (11, 38)
