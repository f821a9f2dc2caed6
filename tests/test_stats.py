"""One-model aggregation: Wilson for proportions, Student t for continuous values, BCa for
corpus metrics, each against an independent computation."""

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import BCA, T_MEAN, WILSON, summarize, summarize_corpus


def test_proportions_get_the_wilson_interval():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    m = summarize(values, proportion=True)
    ref = sps.binomtest(5, 8).proportion_ci(confidence_level=0.95, method="wilson")
    assert m.method == WILSON
    assert m.ci95 == pytest.approx((ref.low, ref.high), abs=1e-12)
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert m.value == pytest.approx(mean) and m.n == 8
    assert m.stderr == pytest.approx((var / len(values)) ** 0.5)
    # all right: Wilson stays inside [0, 1] and keeps a width, where a bootstrap gives [1, 1]
    top = summarize([1.0] * 20, proportion=True)
    assert top.ci95[1] == pytest.approx(1.0) and top.ci95[0] < 0.9


def test_continuous_values_get_the_t_interval():
    rng = np.random.default_rng(1)
    values = rng.normal(0.4, 0.2, size=40)
    m = summarize(values)
    ref = sps.ttest_1samp(values, 0).confidence_interval(0.95)
    assert m.method == T_MEAN
    assert m.ci95 == pytest.approx((ref.low, ref.high), abs=1e-12)
    # a 0/1 column of a metric declared continuous keeps the t interval
    assert summarize([0.0, 1.0, 1.0, 0.0], proportion=False).method == T_MEAN


def test_corpus_metric_bca_matches_scipy_on_a_ratio():
    """A corpus metric that is a ratio of sums: ours vs scipy's BCa on the same statistic."""
    rng = np.random.default_rng(5)
    num, den = rng.gamma(2.0, 1.0, 200), rng.uniform(1, 3, 200)
    stats = np.stack([num, den], axis=1)
    ours = summarize_corpus(stats, lambda s: s[0] / s[1], resamples=20_000, seed=0)
    ref = sps.bootstrap((num, den), lambda a, b, axis: a.sum(axis) / b.sum(axis), paired=True,
                        vectorized=True, method="BCa", n_resamples=20_000, random_state=1)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert ours.method == BCA
    assert ours.ci95[0] == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert ours.ci95[1] == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)


def test_single_value_has_zero_width():
    m = summarize([0.5])
    assert m.ci95 == (0.5, 0.5) and m.stderr == 0.0
