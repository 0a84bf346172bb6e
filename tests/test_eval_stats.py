"""The evaluation statistics against the reference implementations (statsmodels, scipy), to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from oxen_notebook._eval import _stats


@pytest.mark.parametrize("n", [1, 2, 7, 30, 100, 999, 100_000])
def test_wilson_matches_statsmodels(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1}):
        if not 0 <= k <= n:
            continue
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        got = _stats.wilson(k, n)
        assert got.mean == pytest.approx(k / n, abs=1e-12)
        assert got.low == pytest.approx(low, abs=1e-6), (k, n)
        assert got.high == pytest.approx(high, abs=1e-6), (k, n)


def test_wilson_of_nothing_is_nan():
    assert math.isnan(_stats.wilson(0, 0).mean)


@pytest.mark.parametrize(
    ("b", "c"),
    [(0, 0), (0, 1), (1, 0), (3, 9), (10, 10), (25, 40), (170, 230), (4_000, 4_210), (50_000, 49_000)],
)
def test_mcnemar_exact_matches_statsmodels(b, c):
    table = [[100, b], [c, 100]]
    assert _stats.mcnemar_exact(b, c) == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-6, rel=1e-6)


def test_paired_pass_fail_counts_and_p_value_on_generated_outcomes():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(5, 400))
        a = rng.random(n) < rng.uniform(0.3, 0.9)
        b = np.where(rng.random(n) < 0.7, a, rng.random(n) < rng.uniform(0.3, 0.9))
        got = _stats.paired(a.astype(float), b.astype(float), binary=True, seed=trial)
        wins, losses = int((b & ~a).sum()), int((a & ~b).sum())
        assert (got.wins, got.losses, got.ties) == (wins, losses, n - wins - losses)
        table = [[int((a & b).sum()), losses], [wins, int((~a & ~b).sum())]]
        assert got.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-6)
        assert got.difference == pytest.approx(b.mean() - a.mean(), abs=1e-12)
        assert got.low <= got.difference <= got.high


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 5, 12):
        p = rng.random(m) ** 3
        expected = multipletests(p, alpha=0.05, method="holm")[1]
        assert np.allclose(_stats.holm(list(p)), expected, atol=1e-9)


def test_holm_keeps_nan_out_of_the_count():
    adjusted = _stats.holm([0.01, math.nan, 0.04])
    expected = multipletests([0.01, 0.04], method="holm")[1]
    assert adjusted[0] == pytest.approx(expected[0]) and adjusted[2] == pytest.approx(expected[1])
    assert math.isnan(adjusted[1])


def test_sign_flip_exact_matches_scipy_permutation_test():
    rng = np.random.default_rng(11)
    for _ in range(5):
        diff = np.round(rng.normal(0.2, 1.0, size=10), 3)
        a = rng.random(10)
        b = a + diff
        got = _stats.paired(a, b, binary=False, seed=0)
        ref = scipy_stats.permutation_test(
            (diff,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
        )
        assert got.p_value == pytest.approx(ref.pvalue, abs=1e-6)
        assert got.test == "sign-flip permutation (exact)"


def test_sign_flip_monte_carlo_agrees_with_the_paired_t_test_on_many_rows():
    rng = np.random.default_rng(5)
    a = rng.random(800)
    b = a + rng.normal(0.03, 0.3, size=800)
    got = _stats.paired(a, b, binary=False, seed=1)
    ref = scipy_stats.ttest_rel(b, a).pvalue
    assert got.p_value == pytest.approx(ref, abs=0.02)  # a random test with 10,000 flips: ±0.01


def test_graded_intervals_match_scipys_bootstrap_and_the_normal_interval():
    rng = np.random.default_rng(9)
    values = rng.beta(2, 5, size=300)
    got = _stats.mean_interval(values, seed=0)
    ref = scipy_stats.bootstrap((values,), np.mean, method="percentile", n_resamples=20_000, random_state=0)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert abs(got.low - ref.confidence_interval.low) < 0.1 * width
    assert abs(got.high - ref.confidence_interval.high) < 0.1 * width
    many = rng.beta(2, 5, size=20_000)  # beyond BOOTSTRAP_ROWS: the normal interval
    got = _stats.mean_interval(many)
    sem = scipy_stats.sem(many)
    assert got.low == pytest.approx(many.mean() - 1.959963984540054 * sem, abs=1e-9)


def test_rows_needed_grows_as_the_difference_shrinks_and_is_none_once_the_data_tells():
    small = _stats.rows_needed(0.02, 0.0, discordant=0.2)
    large = _stats.rows_needed(0.10, 0.0, discordant=0.2)
    assert small > large > 0
    # Connor's formula by hand for d = 0.1, psi = 0.2.
    z, zb = 1.959963984540054, 0.8416212335729143
    assert large == math.ceil((z * math.sqrt(0.2) + zb * math.sqrt(0.2 - 0.01)) ** 2 / 0.01)
    a = np.array([1.0] * 50 + [0.0] * 50)
    b = np.array([1.0] * 52 + [0.0] * 48)
    few = _stats.paired(a, b, binary=True)
    assert few.p_value > 0.05 and few.rows_needed is not None and few.rows_needed > 100
    clear = _stats.paired(np.zeros(200), np.ones(200), binary=True)
    assert clear.p_value < 1e-10 and clear.rows_needed is None
