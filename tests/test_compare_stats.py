"""Paired statistics against independent computations: the paired t test (scipy), Tango's
score interval (its restricted likelihood maximised numerically), the mid-p McNemar test,
Holm and Benjamini-Hochberg, the paired BCa bootstrap; and interval and test never
disagreeing."""

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from harness.adjust import adjust
from harness.metrics.bleu import bleu
from harness.stats import (
    ALPHA,
    BCA_PAIRED,
    T_PAIRED,
    TANGO,
    mcnemar_exact,
    mcnemar_midp,
    mde_paired_proportion,
    paired_delta,
    paired_delta_corpus,
    paired_proportion_tables,
    tango_interval,
    tango_score,
)


def test_paired_t_equals_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(0.3, 0.1, 60)
    after = base + rng.normal(0.02, 0.03, 60)
    ours = paired_delta(base, after)
    ref = sps.ttest_rel(after, base)
    ci = ref.confidence_interval(0.95)
    assert ours.method == T_PAIRED
    assert ours.delta == pytest.approx(float(np.mean(after - base)))
    assert ours.ci95 == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.significant == (ref.pvalue < 0.05)
    # MDE: (t_.975 + t_.80) * sd / sqrt(n)
    sd = np.std(after - base, ddof=1)
    expected = (sps.t.ppf(0.975, 59) + sps.t.ppf(0.8, 59)) * sd / np.sqrt(60)
    assert ours.mde == pytest.approx(expected, rel=1e-9)


def test_pairing_is_much_tighter_than_unpaired_errors():
    """Correlated scores: the paired CI is far narrower than 1.96*sqrt(se1^2 + se2^2)."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.4, 0.2, 500)
    after = base + rng.normal(0.01, 0.02, 500)
    d = paired_delta(base, after)
    se = np.sqrt(base.var(ddof=1) / 500 + after.var(ddof=1) / 500)
    assert (d.ci95[1] - d.ci95[0]) < 0.25 * (2 * 1.96 * se)
    assert d.significant


def _tango_by_optimisation(b: int, c: int, n: int, delta: float) -> float:
    """Tango's statistic with the restricted MLE found numerically: maximise the multinomial
    likelihood over q_b with q_c = q_b + delta."""
    a_plus_d = n - b - c

    def nll(qb: float) -> float:
        qc = qb + delta
        rest = 1 - qb - qc
        return -(b * np.log(qb) + c * np.log(qc) + a_plus_d * np.log(rest))

    lo, hi = max(1e-12, -delta + 1e-12), (1 - delta) / 2 - 1e-12
    qb = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                                  options={"xatol": 1e-13}).x
    return (c - b - n * delta) / np.sqrt(n * (2 * qb + delta - delta * delta))


@pytest.mark.parametrize("b,c,n", [(3, 9, 40), (12, 5, 87), (0, 4, 24), (7, 7, 50)])
def test_tango_score_equals_the_restricted_likelihood_statistic(b, c, n):
    for delta in (-0.2, -0.05, 0.03, 0.1, 0.25):
        if abs(delta) >= 1 - (b + c) / n:
            continue
        ours = float(tango_score(np.array([b]), np.array([c]), np.array([n]),
                                 np.array([delta]))[0])
        assert ours == pytest.approx(_tango_by_optimisation(b, c, n, delta), rel=1e-5)
    # at delta = 0 it is McNemar's statistic
    z0 = float(tango_score(np.array([b]), np.array([c]), np.array([n]), np.array([0.0]))[0])
    assert z0 == pytest.approx((c - b) / np.sqrt(b + c))
    # the interval's ends are where the statistic crosses -+1.96
    lo, hi = tango_interval(np.array([b]), np.array([c]), np.array([n]))
    for end, target in ((lo, 1.959963984540054), (hi, -1.959963984540054)):
        assert float(tango_score(np.array([b]), np.array([c]), np.array([n]), end)[0]) == \
            pytest.approx(target, abs=1e-6)


def test_tango_without_discordant_pairs_keeps_a_width():
    lo, hi = tango_interval(np.array([0]), np.array([0]), np.array([24]))
    z2 = 1.959963984540054 ** 2
    assert float(hi[0]) == pytest.approx(z2 / (24 + z2), abs=1e-9)
    assert float(lo[0]) == pytest.approx(-z2 / (24 + z2), abs=1e-9)


def test_mcnemar_exact_and_midp():
    before = [1] * 40 + [0] * 30 + [1] * 12 + [0] * 5   # 12 right->wrong, 5 wrong->right
    after = [1] * 40 + [0] * 30 + [0] * 12 + [1] * 5
    assert mcnemar_exact(before, after) == pytest.approx(sps.binomtest(5, 17).pvalue, rel=1e-9)
    # mid-p: the exact p-value less the probability of the observed table (two-sided)
    expected = sps.binomtest(5, 17).pvalue - sps.binom.pmf(5, 17, 0.5)
    assert mcnemar_midp(12, 5) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_midp(0, 0) == 1.0 and mcnemar_midp(3, 3) == 1.0
    # Textbook: b=1, c=9: exact 22/1024, mid-p (22 - 10) / 1024
    assert mcnemar_midp(1, 9) == pytest.approx(12 / 1024)


def test_interval_and_test_never_disagree():
    """Every table with up to 400 discordant pairs (n = 1,000): Tango's interval, extended to
    0 where the mid-p test does not reject, excludes 0 exactly when the test rejects; and the
    mid-p test never rejects a table whose plain Tango interval holds 0."""
    b, c = np.meshgrid(np.arange(401), np.arange(401), indexing="ij")
    keep = (b + c) <= 400
    b, c = b[keep], c[keep]
    n = np.full(b.shape, 1000)
    lo, hi, p = paired_proportion_tables(b, c, n)
    assert np.array_equal((lo > 0) | (hi < 0), p < ALPHA)
    tlo, thi = tango_interval(b, c, n)
    assert not np.any((p < ALPHA) & (tlo <= 0) & (thi >= 0))
    extended = np.mean(((tlo > 0) | (thi < 0)) != ((lo > 0) | (hi < 0)))
    assert extended < 0.002  # a few edge tables (e.g. b=0, c=4)


def test_paired_proportions_report_tango_midp_and_mde():
    before = np.array([1] * 30 + [0] * 20 + [1] * 3 + [0] * 11, dtype=float)
    after = np.array([1] * 30 + [0] * 20 + [0] * 3 + [1] * 11, dtype=float)
    d = paired_delta(before, after)
    assert d.method == TANGO and d.p_value == mcnemar_midp(3, 11)
    assert d.delta == pytest.approx(8 / 64) and d.significant
    assert d.mde == mde_paired_proportion(14 / 64, 64)


def test_mde_of_paired_proportions():
    # Connor (1987): n = (za sqrt(psi) + zb sqrt(psi - d^2))^2 / d^2; at the MDE, n matches
    n, psi = 200, 0.15
    d = mde_paired_proportion(psi, n)
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    assert (za * np.sqrt(psi) + zb * np.sqrt(psi - d * d)) ** 2 / d ** 2 == pytest.approx(n)
    # no discordant pairs: a change of d flips at least d of the pairs, so the MDE stays > 0
    assert 0.05 < mde_paired_proportion(0.0, 80) < 0.15
    assert mde_paired_proportion(0.1, 1000) < mde_paired_proportion(0.1, 100)


def test_holm_and_benjamini_hochberg():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # Holm by hand: sorted 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.5*1, running max
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
    assert adjust(p, "bh") == pytest.approx(list(sps.false_discovery_control(p, method="bh")))
    assert adjust(p, "none") == p and adjust([], "holm") == []


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
    assert d.method == BCA_PAIRED
    assert d.delta == pytest.approx(expected, abs=1e-12)
    assert d.ci95[0] <= d.delta <= d.ci95[1]
    assert (d.ci95[0] > 0 or d.ci95[1] < 0) == d.significant


def test_paired_corpus_bca_matches_scipy_on_a_ratio():
    rng = np.random.default_rng(2)
    den = rng.uniform(1, 3, 150)
    num_b = rng.gamma(2.0, 1.0, 150)
    num_a = num_b + rng.normal(0.2, 0.5, 150)
    before, after = np.stack([num_b, den], 1), np.stack([num_a, den], 1)
    d = paired_delta_corpus(before, after, lambda s: s[0] / s[1], resamples=20_000, seed=0)
    ref = sps.bootstrap((num_b, num_a, den),
                        lambda x, y, z, axis: (y.sum(axis) - x.sum(axis)) / z.sum(axis),
                        paired=True, vectorized=True, method="BCa", n_resamples=20_000,
                        random_state=3)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert d.ci95[0] == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert d.ci95[1] == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)
