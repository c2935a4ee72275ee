"""Statistics helpers: Wilson interval, exact McNemar, paired bootstrap (checked against scipy and by hand)."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from augscale.evaluate.stats import accuracy_with_ci, mcnemar_exact, paired_bootstrap_diff, wilson_interval


def test_wilson_interval_known_values():
    # 8 of 10: the textbook Wilson 95% interval is [0.490, 0.943]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == [0.0, 0.0]
    lo, hi = wilson_interval(0, 50)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0 < hi < 0.08  # never a zero-width interval at 0 successes
    lo, hi = wilson_interval(50, 50)
    assert 0.92 < lo < 1 and hi == 1.0
    ours = wilson_interval(37, 120)
    ref = sps.binomtest(37, 120).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours == pytest.approx([ref.low, ref.high], abs=1e-9)


def test_accuracy_with_ci():
    out = accuracy_with_ci([True, False, True, True])
    assert out["accuracy"] == 0.75 and out["n"] == 4 and out["ci95"] == wilson_interval(3, 4)


def test_mcnemar_exact_matches_binomial_test():
    a = [True] * 30 + [True] * 3 + [False] * 12 + [False] * 55   # A right on 33
    b = [True] * 30 + [False] * 3 + [True] * 12 + [False] * 55   # B right on 42
    out = mcnemar_exact(a, b)
    assert (out["both"], out["a_only"], out["b_only"], out["neither"], out["n"]) == (30, 3, 12, 55, 100)
    assert out["difference"] == pytest.approx(0.09)
    assert out["p_value"] == pytest.approx(sps.binomtest(3, 15, 0.5).pvalue, rel=1e-12)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # no discordant pairs
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_diff():
    a = [0, 1, 0, 1, 0, 0, 1, 0] * 10
    b = [1, 1, 0, 1, 1, 0, 1, 0] * 10
    out = paired_bootstrap_diff(a, b, n_boot=500, seed=1)
    assert out["difference"] == pytest.approx(0.25) and out["n"] == 80
    assert 0 < out["ci"][0] < 0.25 < out["ci"][1] < 0.5
    assert paired_bootstrap_diff(a, b, n_boot=500, seed=1) == out  # seeded
