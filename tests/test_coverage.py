"""Do the 95% intervals keep their promise? Vectorised simulations with a known true Δ, run
through the production interval code (harness.stats), fast enough for make test.

Monte-Carlo error: with S simulations a true coverage of 95% is measured to within
sqrt(0.95 * 0.05 / S), i.e. ±0.15 pp at S = 20,000 and ±0.24 pp at S = 8,000, so the
[93%, 97%] band is 8 or more standard errors wide on each side: a sound method passes every
time, and the percentile bootstrap this replaced (84% and 90% on paired 0/1 data at n = 30 and
100) fails. The null checks (no true change, significant in at most 6% of runs) have a
Monte-Carlo error of ±0.17 pp at 5% and S = 20,000.
"""

import zlib

import numpy as np
import pytest
from coverage_shapes import SHAPES, paired_binary, paired_binary_tables, rouge_like, shape

from harness.stats import ALPHA, paired_proportion_tables, paired_t_intervals

LOW, HIGH = 0.93, 0.97
NULL_MAX = 0.06
SIMS_BINARY = 20_000
SIMS_CONTINUOUS = 8_000


def _mc_error(rate: float, sims: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / sims))


@pytest.mark.parametrize("n", [30, 100, 1000])
def test_paired_proportions_cover_the_true_difference(n):
    """Tango's interval (with the mid-p McNemar test) over discordant rates 5-40%."""
    rng = np.random.default_rng(n)
    b, c, delta = paired_binary_tables(rng, n, SIMS_BINARY)
    lo, hi, _ = paired_proportion_tables(b, c, np.full(b.shape, n))
    rate = float(np.mean((lo <= delta) & (delta <= hi)))
    assert LOW <= rate <= HIGH, f"coverage {rate:.4f} ± {_mc_error(rate, SIMS_BINARY):.4f}"


@pytest.mark.parametrize("n", [100, 1000])
def test_paired_proportions_cover_at_the_issue_setting(n):
    """The issue's table: 10-12% discordant pairs. (At n = 30 that is 3.3 discordant pairs on
    average; an interval that agrees with the mid-p test covers 97.5-99% there: see
    docs/statistics.md.)"""
    rng = np.random.default_rng(7 + n)
    for p10, p01 in ((0.055, 0.055), (0.05, 0.07)):
        cells, delta = paired_binary(rng, n, SIMS_BINARY, p10, p01)
        lo, hi, _ = paired_proportion_tables(cells[:, 0], cells[:, 1], np.full(len(cells), n))
        rate = float(np.mean((lo <= delta) & (delta <= hi)))
        assert LOW <= rate <= HIGH, (p10, p01, rate)


@pytest.mark.parametrize("n", [10, 30, 100, 1000])
def test_paired_proportions_under_no_change_are_rarely_significant(n):
    rng = np.random.default_rng(100 + n)
    b, c, _ = paired_binary_tables(rng, n, SIMS_BINARY, null=True)
    lo, hi, p = paired_proportion_tables(b, c, np.full(b.shape, n))
    rate = float(np.mean(p < ALPHA))
    assert rate <= NULL_MAX, f"{rate:.4f} ± {_mc_error(rate, SIMS_BINARY):.4f}"
    # interval and test agree on every table
    assert np.array_equal((lo > 0) | (hi < 0), p < ALPHA)


@pytest.mark.parametrize("n", [30, 100, 1000])
@pytest.mark.parametrize("delta", [0.0, 0.05])
def test_paired_t_covers_rouge_like_differences(n, delta):
    rng = np.random.default_rng(n + int(delta * 100))
    before, after, truth = rouge_like(rng, n, SIMS_CONTINUOUS, delta)
    lo, hi, _ = paired_t_intervals(before, after)
    rate = float(np.mean((lo <= truth) & (truth <= hi)))
    assert LOW <= rate <= HIGH, f"coverage {rate:.4f} ± {_mc_error(rate, SIMS_CONTINUOUS):.4f}"


@pytest.mark.parametrize("n", [10, 30, 100])
def test_paired_t_under_no_change_is_rarely_significant(n):
    """No true change: both models' scores come from the same process (exchangeable)."""
    rng = np.random.default_rng(200 + n)
    u = rng.beta(2, 3, (SIMS_BINARY, n))
    before = np.clip(u + rng.normal(0, 0.12, u.shape), 0, 1)
    after = np.clip(u + rng.normal(0, 0.12, u.shape), 0, 1)
    _, _, p = paired_t_intervals(before, after)
    rate = float(np.mean(p < ALPHA))
    assert rate <= NULL_MAX, f"{rate:.4f} ± {_mc_error(rate, SIMS_BINARY):.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("n", [30, 100, 1000])
def test_paired_t_on_harder_shapes(name, n):
    """Skewed, heavy-tailed, tied (80% of outputs unchanged), near-0 and near-1 scores. At
    n >= 100 the t interval keeps [93%, 97%] on every shape. At n = 30 two shapes run narrow
    (measured: ties 89.5%, skewed 92.7%; the percentile and BCa bootstraps do no better
    overall, bench/RESULTS.md), so the check there is >= 88%: a floor that catches a
    regression, not a promise of 95%."""
    rng = np.random.default_rng(zlib.crc32(f"{name}{n}".encode()))
    before, after, truth = shape(name, rng, n, SIMS_CONTINUOUS, 0.03)
    lo, hi, _ = paired_t_intervals(before, after)
    rate = float(np.mean((lo <= truth) & (truth <= hi)))
    low = LOW if n >= 100 else 0.88
    assert low <= rate <= HIGH, f"{name} n={n}: {rate:.4f} ± {_mc_error(rate, SIMS_CONTINUOUS):.4f}"
