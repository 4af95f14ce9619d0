"""Statistics of evaluation: standard errors, bootstrap intervals, paired tests and the gate,
checked against numpy, scipy.stats and statsmodels."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from demoai.errors import InvalidArtifact
from demoai.eval.stats import (
    MCNEMAR_EXACT_BELOW, Estimate, PairedTest, align, binom_two_sided_p, bootstrap_ci, flips,
    gate_decision, mcnemar, paired_bootstrap, summarize,
)


def _scipy_ci(data, statistic, rounds=4000, paired=False, seed=123):
    res = sps.bootstrap(data, statistic, n_resamples=rounds, method="percentile",
                        paired=paired, vectorized=True, random_state=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


# -- summarize ------------------------------------------------------------------------------

def test_summarize_mean_and_stderr_match_numpy():
    x = np.random.default_rng(0).normal(0.6, 0.2, 257)
    e = summarize(x, seed=1)
    assert e.n == 257 and e.mean == e.value
    assert e.value == pytest.approx(np.mean(x), rel=1e-12)
    assert e.stderr == pytest.approx(np.std(x, ddof=1) / math.sqrt(257), rel=1e-12)


@pytest.mark.parametrize("dist", ["binary", "skewed"])
def test_summarize_interval_matches_scipy_bootstrap(dist):
    rng = np.random.default_rng(5)
    x = (rng.random(400) < 0.7).astype(float) if dist == "binary" else rng.lognormal(0, 1, 400)
    e = summarize(x, seed=2, rounds=4000)
    lo, hi = _scipy_ci((x,), np.mean)
    width = hi - lo
    # Two independent Monte Carlo estimates of the same percentiles (4,000 rounds each).
    assert abs(e.lower - lo) < 0.08 * width and abs(e.upper - hi) < 0.08 * width
    assert e.confidence == 0.95 and e.rounds == 4000


def test_summarize_confidence_widens_interval():
    x = np.random.default_rng(3).random(300)
    e90, e99 = summarize(x, confidence=0.90), summarize(x, confidence=0.99)
    assert e99.lower < e90.lower < e90.upper < e99.upper


def test_summarize_seeded_determinism():
    x = np.random.default_rng(4).random(1000)
    a, b, c = summarize(x, seed=7), summarize(x, seed=7), summarize(x, seed=8)
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert (a.lower, a.upper) != (c.lower, c.upper)


def test_summarize_degenerate_inputs():
    with pytest.raises(InvalidArtifact, match="n=0"):
        summarize([])
    one = summarize([0.25])
    assert one.value == one.lower == one.upper == 0.25 and math.isnan(one.stderr)
    assert one.to_dict()["stderr"] is None
    json.dumps(one.to_dict())
    same = summarize([1.0] * 50)
    assert same.stderr == 0.0 and same.lower == same.upper == 1.0
    for bad in ([1.0, float("nan")], [[1.0, 2.0]], ["x"]):
        with pytest.raises(InvalidArtifact):
            summarize(bad)
    with pytest.raises(InvalidArtifact):
        summarize([1.0, 2.0], rounds=0)
    with pytest.raises(InvalidArtifact):
        summarize([1.0, 2.0], confidence=1.0)


def test_summarize_is_fast_on_10k_items():
    x = np.random.default_rng(0).random(10_000)
    summarize(x[:100])
    t = time.perf_counter()
    summarize(x, rounds=1000)
    assert time.perf_counter() - t < 1.0


# -- pooled statistics -----------------------------------------------------------------------

def _ppl(nll, tok, axis=-1):
    return np.exp(np.sum(nll, axis=axis) / np.sum(tok, axis=axis))


def test_bootstrap_ci_pooled_perplexity_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(11)
    tok = rng.integers(5, 60, 500).astype(float)
    nll = tok * rng.gamma(4.0, 0.5, 500)
    e = bootstrap_ci(lambda a, b: _ppl(a, b, axis=1), [nll, tok], seed=3, rounds=4000)
    assert e.value == pytest.approx(math.exp(nll.sum() / tok.sum()), rel=1e-12)
    lo, hi = _scipy_ci((nll, tok), _ppl, paired=True)
    width = hi - lo
    assert abs(e.lower - lo) < 0.08 * width and abs(e.upper - hi) < 0.08 * width


def test_bootstrap_ci_totals_mode_gives_the_same_resamples():
    rng = np.random.default_rng(12)
    tok = rng.integers(5, 60, 2000).astype(float)
    nll = tok * rng.gamma(4.0, 0.5, 2000)
    rows = bootstrap_ci(lambda a, b: _ppl(a, b, axis=1), [nll, tok], seed=9)
    sums = bootstrap_ci(lambda a, b: np.exp(a / b), [nll, tok], seed=9, totals=True)
    assert rows.value == pytest.approx(sums.value, rel=1e-12)
    assert rows.lower == pytest.approx(sums.lower, rel=1e-9)
    assert rows.upper == pytest.approx(sums.upper, rel=1e-9)


def test_bootstrap_ci_two_dimensional_column_like_corpus_counts():
    # Per-item (matches, total) counts summed over the corpus, as corpus BLEU pools them.
    rng = np.random.default_rng(13)
    total = rng.integers(3, 30, (800,))
    matches = rng.binomial(total, 0.4)
    counts = np.stack([matches, total], axis=1).astype(float)
    e = bootstrap_ci(lambda c: c[:, 0] / c[:, 1], [counts], totals=True, seed=1, rounds=4000)
    assert e.value == pytest.approx(matches.sum() / total.sum())
    lo, hi = _scipy_ci((matches.astype(float), total.astype(float)),
                       lambda m, t, axis=-1: m.sum(axis) / t.sum(axis), paired=True)
    width = hi - lo
    assert abs(e.lower - lo) < 0.08 * width and abs(e.upper - hi) < 0.08 * width
    assert e.stderr > 0


def test_bootstrap_ci_is_fast_and_checks_its_input():
    rng = np.random.default_rng(0)
    nll, tok = rng.random(10_000), rng.integers(1, 9, 10_000).astype(float)
    t = time.perf_counter()
    bootstrap_ci(lambda a, b: _ppl(a, b, axis=1), [nll, tok], rounds=1000)
    assert time.perf_counter() - t < 1.0
    with pytest.raises(InvalidArtifact, match="differ in length"):
        bootstrap_ci(lambda a, b: a.sum(1), [nll, tok[:5]])
    with pytest.raises(InvalidArtifact, match="n=0"):
        bootstrap_ci(lambda a: a.sum(1), [np.array([])])
    with pytest.raises(InvalidArtifact, match="reduce over axis 1"):
        bootstrap_ci(lambda a: a, [nll[:10]])


# -- paired comparisons ----------------------------------------------------------------------

def test_paired_bootstrap_delta_interval_and_pvalue():
    rng = np.random.default_rng(21)
    a = rng.normal(0.5, 0.2, 600)
    b = a + rng.normal(0.008, 0.1, 600)
    t = paired_bootstrap(a, b, seed=4, rounds=4000)
    assert t.delta == pytest.approx(np.mean(b) - np.mean(a), rel=1e-12)
    assert t.mean_a == pytest.approx(a.mean()) and t.mean_b == pytest.approx(b.mean())
    lo, hi = _scipy_ci((b - a,), np.mean)
    width = hi - lo
    assert abs(t.lower - lo) < 0.08 * width and abs(t.upper - hi) < 0.08 * width
    # The bootstrap p-value agrees with the paired t-test's on a sample this size.
    ref = sps.ttest_rel(b, a).pvalue
    assert 1e-4 < ref < 0.5
    assert t.p_value == pytest.approx(ref, abs=0.01 + 0.25 * ref)
    assert t.replicates is not None and len(t.replicates) == 4000
    d = t.to_dict()
    assert "replicates" not in d and d["method"] == "paired_bootstrap"
    json.dumps(d)


def test_paired_bootstrap_no_difference_and_certain_difference():
    x = np.random.default_rng(2).random(100)
    same = paired_bootstrap(x, x)
    assert same.delta == 0 and same.lower == same.upper == 0 and same.p_value == 1.0
    shifted = paired_bootstrap(x, x + 0.1, rounds=999)
    assert shifted.p_value == pytest.approx(1 / 1000)
    with pytest.raises(InvalidArtifact, match="share"):
        paired_bootstrap(x, x[:-1])


def test_binomial_p_matches_scipy_binomtest():
    for n in (1, 2, 7, 24, 25, 60, 501, 2000, 2001, 4000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1}):
            if 0 <= k <= n:
                assert binom_two_sided_p(k, n) == pytest.approx(
                    sps.binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-300)
    assert binom_two_sided_p(0, 0) == 1.0


def _table(a, b):
    return [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]


@pytest.mark.parametrize("n,pa,pb,seed", [(12, 0.5, 0.6, 0), (40, 0.6, 0.8, 1), (300, 0.6, 0.65, 2),
                                          (2000, 0.7, 0.7, 3), (30, 0.9, 0.9, 4)])
def test_mcnemar_matches_statsmodels(n, pa, pb, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < pa, rng.random(n) < pb
    tab = _table(a, b)
    exact = mcnemar(a, b, exact=True)
    assert exact.b01 == tab[1][0] and exact.b10 == tab[0][1]
    assert exact.p_value == pytest.approx(sm_mcnemar(tab, exact=True).pvalue, rel=1e-12)
    chi2 = mcnemar(a, b, exact=False)
    ref = sm_mcnemar(tab, exact=False, correction=True)
    if exact.b01 + exact.b10:
        assert chi2.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert chi2.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    auto = mcnemar(a, b)
    want = "mcnemar_exact" if exact.b01 + exact.b10 < MCNEMAR_EXACT_BELOW else "mcnemar_chi2"
    assert auto.method == want
    assert auto.delta == pytest.approx((exact.b01 - exact.b10) / n)
    assert auto.lower <= auto.delta <= auto.upper


def test_mcnemar_edge_cases():
    same = mcnemar([True, False, True], [True, False, True])
    assert same.p_value == 1.0 and same.b01 == same.b10 == 0 and same.delta == 0
    allflip = mcnemar([False] * 10, [True] * 10)
    assert allflip.p_value == pytest.approx(2 / 2 ** 10)
    assert mcnemar([0, 1, 1], [1, 1, 0]).b01 == 1
    with pytest.raises(InvalidArtifact, match="0/1"):
        mcnemar([0, 2], [1, 1])
    with pytest.raises(InvalidArtifact, match="n=0"):
        mcnemar([], [])


def test_flips_indices_and_ids():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    f = flips(a, b)
    assert f.pass_to_fail == (1, 4) and f.fail_to_pass == (2,)
    g = flips(a, b, ids=["q1", "q2", "q3", "q4", "q5"])
    assert g.to_dict() == {"pass_to_fail": ["q2", "q5"], "fail_to_pass": ["q3"]}
    with pytest.raises(InvalidArtifact):
        flips(a, b, ids=["x"])


def test_align_keeps_shared_items_in_id_order():
    ids, xa, xb = align({"b": 1.0, "a": 0.0, "c": 1.0}, {"c": 0.0, "a": 1.0, "d": 1.0})
    assert ids == ["a", "c"] and xa.tolist() == [0.0, 1.0] and xb.tolist() == [1.0, 0.0]


# -- the gate --------------------------------------------------------------------------------

def _test(delta_true, n, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.6, 0.2, n)
    return paired_bootstrap(a, a + delta_true + rng.normal(0, noise, n), seed=seed)


def test_gate_fails_a_clear_regression():
    t = _test(-0.2, 400)
    g = gate_decision(t, margin=0.05, alpha=0.05)
    assert g.outcome == "fail" and g.upper < -0.05
    assert g.effect == t.delta and g.method == "paired_bootstrap" and g.n == 400
    assert "worse by more than the margin" in g.reason


def test_gate_passes_when_not_worse_and_is_inconclusive_when_unsure():
    assert gate_decision(_test(0.0, 2000), margin=0.05).outcome == "pass"
    unsure = gate_decision(_test(-0.05, 40), margin=0.05)
    assert unsure.outcome == "inconclusive" and unsure.lower < -0.05 <= unsure.upper


def test_gate_rule_uses_the_one_minus_alpha_interval_of_the_replicates():
    t = _test(-0.08, 300, seed=3)
    for alpha in (0.01, 0.05, 0.2):
        for margin in (0.0, 0.03, 0.06, 0.1, 0.2):
            g = gate_decision(t, margin=margin, alpha=alpha)
            lo, hi = np.percentile(t.replicates, [50 * alpha, 100 - 50 * alpha])
            assert (g.lower, g.upper) == pytest.approx((lo, hi))
            want = "fail" if hi < -margin else "pass" if lo >= -margin else "inconclusive"
            assert g.outcome == want, (alpha, margin)
    # A wider margin never turns a pass into a fail.
    outcomes = [gate_decision(t, margin=m).outcome for m in (0.0, 0.05, 0.1, 0.3)]
    assert outcomes[0] == "fail" and outcomes[-1] == "pass"


def test_gate_lower_is_better_orients_the_effect():
    rng = np.random.default_rng(8)
    base = rng.gamma(5, 20, 500)                    # latencies
    slower = paired_bootstrap(base, base * 1.5)
    g = gate_decision(slower, margin=5.0, higher_is_better=False)
    assert g.outcome == "fail" and g.effect == -slower.delta < 0
    faster = gate_decision(paired_bootstrap(base, base * 0.8), margin=5.0,
                           higher_is_better=False)
    assert faster.outcome == "pass" and faster.lower > 0


def test_gate_on_mcnemar_and_from_stored_json():
    rng = np.random.default_rng(9)
    a = rng.random(500) < 0.7
    b = a.copy()
    b[rng.choice(500, 60, replace=False)] = False    # candidate breaks 60 items
    t = mcnemar(a, b)
    assert gate_decision(t, margin=0.02).outcome == "fail"
    stored = PairedTest(**{k: v for k, v in t.to_dict().items()})
    assert stored.replicates is None
    g = gate_decision(stored, margin=0.02, alpha=0.05)
    assert g.outcome == "fail" and (g.lower, g.upper) == (t.lower, t.upper)
    with pytest.raises(InvalidArtifact, match="no replicates"):
        gate_decision(stored, margin=0.02, alpha=0.1)
    json.dumps(g.to_dict())


def test_gate_rejects_bad_parameters():
    t = _test(0.0, 50)
    for kw in ({"margin": -0.1}, {"margin": float("nan")}, {"alpha": 0.0}, {"alpha": 1.5}):
        with pytest.raises(InvalidArtifact):
            gate_decision(t, **kw)
    with pytest.raises(InvalidArtifact):
        gate_decision(Estimate(0, 0, 0, 0, 1, 0.95, 1, 0), margin=0.1)  # type: ignore[arg-type]
