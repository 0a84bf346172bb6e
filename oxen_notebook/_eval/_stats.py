"""The statistics of an evaluation: numbers in, numbers out (no pandas, no I/O).

- a pass rate's 95 % interval: Wilson's score interval (statsmodels' ``proportion_confint(method="wilson")``);
- a graded mean's interval: a percentile bootstrap (``BOOTSTRAP`` resamples, seeded) up to
  ``BOOTSTRAP_ROWS`` rows, the normal interval beyond (where the two agree to a few 1e-4);
- two variants on the same rows are *paired*: McNemar's exact test on the discordant pairs for
  pass/fail (statsmodels' ``mcnemar(table, exact=True)``), a sign-flip permutation test for graded
  scores (exact up to ``EXACT_FLIPS`` rows, ``PERMUTATIONS`` random flips up to ``BOOTSTRAP_ROWS``,
  the paired t-test beyond); the difference's interval is a paired bootstrap (for pass/fail, a
  multinomial draw of the pair counts, which costs the same for 100 rows or 1,000,000);
- several comparisons with one baseline: Holm's step-down correction;
- rows needed to see a difference with 80 % power at 5 %: Connor's formula for paired proportions,
  the paired normal formula for graded scores.

Only numpy and the standard library: scipy and statsmodels are the references the tests check
these against (to 1e-6), not dependencies of the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Interval",
    "Paired",
    "holm",
    "mcnemar_exact",
    "mean_interval",
    "paired",
    "rows_needed",
    "wilson",
]

LEVEL = 0.95
BOOTSTRAP = 2000
BOOTSTRAP_ROWS = 5000
PERMUTATIONS = 10000
EXACT_FLIPS = 12
_Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
_Z_POWER = NormalDist().inv_cdf(0.80)


@dataclass(frozen=True)
class Interval:
    """A mean and its 95 % interval, over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Paired:
    """B against A on the rows both answered: ``wins`` (B better), ``losses``, ``ties``, the
    difference of means (B - A) and its interval, the p-value, and the rows a test this strong
    would need to tell the observed difference from noise (``None`` if it already can, or if
    there is no difference to see)."""

    n: int
    wins: int
    losses: int
    ties: int
    difference: float
    low: float
    high: float
    p_value: float
    test: str
    rows_needed: int | None


def wilson(successes: int, n: int) -> Interval:
    """Wilson's score interval of a pass rate (n = 0: NaN)."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    p = successes / n
    z2 = _Z * _Z
    centre = (successes + z2 / 2) / (n + z2)
    half = _Z * math.sqrt(successes * (n - successes) / n + z2 / 4) / (n + z2)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def mean_interval(values: np.ndarray, *, seed: int = 0) -> Interval:
    """The mean of graded scores and its 95 % interval (bootstrap, or normal for many rows)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    if n == 1 or np.all(values == values[0]):
        return Interval(mean, mean, mean, n)
    if n > BOOTSTRAP_ROWS:
        half = _Z * float(values.std(ddof=1)) / math.sqrt(n)
        return Interval(mean, mean - half, mean + half, n)
    means = _bootstrap_means(values, _rng(seed))
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(mean, float(low), float(high), n)


def _bootstrap_means(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    out = np.empty(BOOTSTRAP)
    step = max(1, 2_000_000 // n)  # bounded memory: step x n indices at a time
    for start in range(0, BOOTSTRAP, step):
        stop = min(BOOTSTRAP, start + step)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (exact to ~1e-12 for large n)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    i = np.arange(1, k + 1, dtype=float)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(n - i + 1) - np.log(i))))  # log C(n, i)
    top = log_terms.max()
    return float(math.exp(top + math.log(np.exp(log_terms - top).sum()) - n * math.log(2)))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact p-value for the discordant counts ``b`` and ``c`` (two-sided)."""
    return min(1.0, 2 * _binom_half_cdf(min(b, c), b + c))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN)."""
    known = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    known.sort()
    m = len(known)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def rows_needed(difference: float, spread: float, *, discordant: float | None = None) -> int | None:
    """Rows a paired test needs to see ``difference`` with 80 % power at 5 % (two-sided).

    Pass/fail (``discordant`` = the share of rows where the two disagree): Connor (1987),
    ``n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2``. Graded: ``n = ((z_a + z_b) sd / d)^2``
    with ``spread`` the standard deviation of the per-row differences."""
    if difference == 0 or math.isnan(difference):
        return None
    d = abs(difference)
    if discordant is not None:
        psi = max(discordant, d)
        n = (_Z * math.sqrt(psi) + _Z_POWER * math.sqrt(max(psi - d * d, 0.0))) ** 2 / (d * d)
    else:
        n = ((_Z + _Z_POWER) * spread / d) ** 2
    return max(2, math.ceil(n))


def paired(a: np.ndarray, b: np.ndarray, *, binary: bool, seed: int = 0) -> Paired:
    """B against A, row by row (both arrays hold the same rows' scores, NaN-free)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(a)
    diff = b - a
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    ties = n - wins - losses
    if n == 0:
        return Paired(0, 0, 0, 0, math.nan, math.nan, math.nan, math.nan, "none", None)
    mean = float(diff.mean())
    rng = _rng(seed)
    if binary:
        p = mcnemar_exact(wins, losses)
        draws = rng.multinomial(n, [wins / n, losses / n, ties / n], size=BOOTSTRAP)
        boot = (draws[:, 0] - draws[:, 1]) / n
        test = "McNemar exact"
        needed = rows_needed(mean, 0.0, discordant=(wins + losses) / n)
    else:
        p, test = _sign_flip(diff, rng)
        boot = _bootstrap_means(diff, rng) if n <= BOOTSTRAP_ROWS else None
        sd = float(diff.std(ddof=1)) if n > 1 else 0.0
        needed = rows_needed(mean, sd)
        if boot is None:
            half = _Z * sd / math.sqrt(n)
            low, high = mean - half, mean + half
    if boot is not None:
        low, high = (float(x) for x in np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    if needed is not None and (p < 1 - LEVEL or needed <= n):
        needed = None  # the rows already tell it from noise, or a test this strong would at n
    return Paired(n, wins, losses, ties, mean, low, high, p, test, needed)


def _sign_flip(diff: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    """A two-sided sign-flip permutation test of mean(diff) = 0 (paired t-test for many rows)."""
    n = len(diff)
    observed = abs(diff.sum())
    if not np.any(diff):
        return 1.0, "sign-flip permutation"
    if n <= EXACT_FLIPS:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        sums = np.abs(signs @ diff)
        return float(np.mean(sums >= observed - 1e-12)), "sign-flip permutation (exact)"
    if n <= BOOTSTRAP_ROWS:
        extreme = 0
        step = max(1, 2_000_000 // n)
        for start in range(0, PERMUTATIONS, step):
            count = min(step, PERMUTATIONS - start)
            signs = rng.integers(0, 2, size=(count, n)) * 2 - 1
            extreme += int((np.abs(signs @ diff) >= observed - 1e-12).sum())
        return (extreme + 1) / (PERMUTATIONS + 1), "sign-flip permutation"
    sd = float(diff.std(ddof=1))
    if sd == 0:
        return 0.0, "paired t-test"
    t = float(diff.mean()) / (sd / math.sqrt(n))
    return 2 * (1 - NormalDist().cdf(abs(t))), "paired t-test (normal)"
