"""Aggregation: mean, standard error by formula, bootstrap CI behaviour."""

import numpy as np
import pytest

from harness.stats import summarize


def test_mean_and_stderr_by_hand():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    m = summarize(values, resamples=500, seed=0)
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert m.value == pytest.approx(mean)
    assert m.stderr == pytest.approx((var / len(values)) ** 0.5)
    assert m.n == 8
    assert m.ci95[0] < m.value < m.ci95[1]


def test_bootstrap_is_seeded_and_close_to_normal_interval():
    rng = np.random.default_rng(1)
    values = rng.normal(0.4, 0.2, size=400).tolist()
    a = summarize(values, resamples=2000, seed=3)
    b = summarize(values, resamples=2000, seed=3)
    assert a == b
    # For a mean of 400 normal draws the percentile bootstrap ~ mean ± 1.96 se.
    assert a.ci95[0] == pytest.approx(a.value - 1.96 * a.stderr, abs=0.25 * a.stderr)
    assert a.ci95[1] == pytest.approx(a.value + 1.96 * a.stderr, abs=0.25 * a.stderr)


def test_single_value_has_zero_width():
    m = summarize([0.5])
    assert m.ci95 == (0.5, 0.5) and m.stderr == 0.0
