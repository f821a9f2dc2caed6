"""Paired statistics against independent computations, and CI coverage by simulation."""

import numpy as np
import pytest
from scipy import stats as sps

from harness.metrics.bleu import bleu
from harness.stats import mcnemar_exact, paired_delta, paired_delta_corpus


def test_paired_delta_matches_scipy_bootstrap():
    rng = np.random.default_rng(0)
    base = rng.normal(0.3, 0.1, 300)
    after = base + rng.normal(0.02, 0.03, 300)
    ours = paired_delta(base, after, resamples=10_000, seed=1)
    ref = sps.bootstrap((base, after), lambda b, a, axis: np.mean(a - b, axis=axis),
                        paired=True, vectorized=True, method="percentile", n_resamples=10_000,
                        random_state=2)
    assert ours.delta == pytest.approx(float(np.mean(after - base)))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert ours.ci95[0] == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert ours.ci95[1] == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)
    assert ours.significant


def test_pairing_is_much_tighter_than_unpaired_errors():
    """Correlated scores: the paired CI is far narrower than 1.96*sqrt(se1^2 + se2^2)."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.4, 0.2, 500)
    after = base + rng.normal(0.01, 0.02, 500)
    d = paired_delta(base, after, resamples=5000, seed=0)
    se = np.sqrt(base.var(ddof=1) / 500 + after.var(ddof=1) / 500)
    assert (d.ci95[1] - d.ci95[0]) < 0.25 * (2 * 1.96 * se)
    assert d.significant


def test_mcnemar_exact_equals_binomial_test():
    before = [1] * 40 + [0] * 30 + [1] * 12 + [0] * 5   # 12 right->wrong, 5 wrong->right
    after = [1] * 40 + [0] * 30 + [0] * 12 + [1] * 5
    expected = sps.binomtest(5, 17, 0.5).pvalue
    assert mcnemar_exact(before, after) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0
    # Textbook value: b=1, c=9 -> 2 * P(X <= 1 | n=10, p=.5) = 22/1024.
    assert mcnemar_exact([1] + [0] * 9, [0] + [1] * 9) == pytest.approx(22 / 1024)


def test_corpus_delta_is_difference_of_sacrebleu_scores():
    import sacrebleu

    refs = ["the cat sat on the mat", "a dog ran in the park today", "rain fell all night long",
            "we ate bread and cheese", "the train left at noon"]
    before = ["a cat on a mat", "dog park", "it rained", "bread", "the train left"]
    after = ["the cat sat on a mat", "a dog ran in the park", "rain fell all night",
             "we ate bread", "the train left at noon"]
    b, a = bleu(before, refs).corpus["bleu"], bleu(after, refs).corpus["bleu"]
    d = paired_delta_corpus(b.stats, a.stats, b.compute, resamples=500, seed=0)
    expected = (sacrebleu.corpus_bleu(after, [refs]).score
                - sacrebleu.corpus_bleu(before, [refs]).score) / 100
    assert d.delta == pytest.approx(expected, abs=1e-12)
    assert d.ci95[0] <= d.delta <= d.ci95[1]


def test_paired_ci_covers_true_difference_at_nominal_rate():
    """Simulation: 400 data sets with a known true Δ; the 95% CI covers it ~95% of the time."""
    rng = np.random.default_rng(11)
    true_delta, covered, trials = 0.05, 0, 400
    for t in range(trials):
        skill = rng.normal(0.5, 0.2, 120)
        before = skill + rng.normal(0, 0.1, 120)
        after = skill + true_delta + rng.normal(0, 0.1, 120)
        d = paired_delta(before, after, resamples=1000, seed=t)
        covered += d.ci95[0] <= true_delta <= d.ci95[1]
    rate = covered / trials
    # Binomial sd at 95% over 400 trials is ~1.1 pp; the percentile bootstrap runs a bit narrow.
    assert 0.91 <= rate <= 0.985, rate
