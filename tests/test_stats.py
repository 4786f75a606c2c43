"""The shared statistics module: intervals against hand-computed values, verdicts on synthetic metrics."""
import math

import numpy as np
import pytest

from mlpapers.stats import Claim, bootstrap, exact, fmt, fmt_verdict, paired, ratio, summarize, unpaired, verdict


def test_t_interval_matches_hand_computation():
    # values 1, 2, 3: mean 2, std 1, se 1/sqrt(3); t_{0.975, 2} = 4.302652729911275
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    half = 4.302652729911275 / math.sqrt(3)
    assert s["ci_lo"] == pytest.approx(2 - half) and s["ci_hi"] == pytest.approx(2 + half)


def test_paired_uses_per_seed_differences_not_pooled_spread():
    # a large seed effect shared by both models cancels in the paired difference
    a = [10.0, 20.0, 30.0]
    b = [9.0, 19.1, 28.9]
    d = paired(a, b)
    assert d["mean"] == pytest.approx(1.0)
    assert d["std"] < 0.2  # an unpaired comparison would see a spread of ~10
    assert verdict(d, Claim("above", 0.0)) == "holds"
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])


def test_one_seed_is_never_decided_without_an_interval():
    s = summarize([0.5])
    assert s["n"] == 1 and math.isnan(s["ci_lo"])
    assert verdict(s, Claim("above", 0.0)) == "inconclusive"
    assert "1 seed" in fmt(s)


@pytest.mark.parametrize("values, claim, expected", [
    ([1.0, 1.1, 0.9, 1.05], Claim("above", 0.0), "holds"),
    ([-1.0, -1.1, -0.9, -1.05], Claim("above", 0.0), "does not hold"),
    ([0.5, -0.4, 0.2, -0.1], Claim("above", 0.0), "inconclusive"),
    ([-1.0, -1.1, -0.9], Claim("below", 0.0), "holds"),
    ([1.0, 1.1, 0.9], Claim("below", 0.0), "does not hold"),
    ([0.97, 0.975, 0.98], Claim("above", 0.95), "holds"),
    ([0.90, 0.91, 0.89], Claim("above", 0.95), "does not hold"),
    ([0.01, -0.01, 0.0, 0.005], Claim("within", 0.0, 0.1), "holds"),
    ([0.5, 0.52, 0.49], Claim("within", 0.0, 0.1), "does not hold"),
    ([0.0, 0.2, -0.1], Claim("within", 0.0, 0.1), "inconclusive"),
])
def test_verdicts_on_synthetic_metrics(values, claim, expected):
    assert verdict(summarize(values), claim) == expected


def test_verdict_direction_is_not_symmetric():
    # the same interval can hold for "below" and not for "above": a swapped comparison would be caught
    s = summarize([-2.0, -2.1, -1.9])
    assert (verdict(s, Claim("below")), verdict(s, Claim("above"))) == ("holds", "does not hold")


def test_within_needs_a_margin():
    with pytest.raises(ValueError):
        Claim("within", 0.0)


def test_bootstrap_interval_is_repeatable_and_covers_the_mean():
    rng = np.random.default_rng(1)
    u = rng.normal(0.3, 1.0, size=400)
    b1, b2 = bootstrap(u), bootstrap(u)
    assert b1 == b2  # seeded
    assert b1["ci_lo"] < u.mean() < b1["ci_hi"]
    # width ~ 2 * 1.96 * sigma / sqrt(n) = 0.196
    assert 0.15 < b1["ci_hi"] - b1["ci_lo"] < 0.25
    assert b1["n"] == 1 and b1["units"] == 400
    assert verdict(b1, Claim("above", 0.0)) == "holds"
    assert "bootstrap over 400" in fmt(b1)


def test_ratio_interval():
    r = ratio([1.0, 1.1, 0.9], [1.0, 1.0, 1.0])
    assert r["mean"] == pytest.approx(1.0)
    assert verdict(r, Claim("above", 0.95)) == "inconclusive"


def test_unpaired_is_welchs_interval_from_the_two_summaries():
    from scipy.stats import ttest_ind

    a, b = [31.2, 31.9, 31.5], [21.4, 24.9, 23.1, 22.8]
    d = unpaired(summarize(a), summarize(b))
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d["mean"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (d["ci_lo"], d["ci_hi"]) == pytest.approx((ci.low, ci.high))
    # swapping the sides mirrors the interval
    e = unpaired(summarize(b), summarize(a))
    assert (e["ci_lo"], e["ci_hi"]) == pytest.approx((-d["ci_hi"], -d["ci_lo"]))


def test_exact_values_are_decided_by_the_value_and_not_called_one_seed():
    assert verdict(exact(0.0), Claim("below", 1.0)) == "holds"
    assert verdict(exact(2.0), Claim("below", 1.0)) == "does not hold"
    assert fmt_verdict(exact(0.0), Claim("below", 1.0)) == "**holds**"
    one_run = bootstrap([0.1, 0.2, 0.3, 0.25])
    assert fmt_verdict(one_run, Claim("above", 0.0)).endswith("(1 seed)")
