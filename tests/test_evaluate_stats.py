"""Statistics helpers (scipy underneath): Wilson interval, exact McNemar, paired bootstrap, checked by hand."""

from __future__ import annotations

import pytest

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
    # by the formula: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    z, k, n = 1.959963984540054, 37, 120
    p, denom = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / denom, z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / denom
    assert wilson_interval(k, n) == pytest.approx([centre - half, centre + half], abs=1e-9)


def test_accuracy_with_ci():
    out = accuracy_with_ci([True, False, True, True])
    assert out["accuracy"] == 0.75 and out["n"] == 4 and out["ci95"] == wilson_interval(3, 4)


def test_mcnemar_exact_matches_binomial_test():
    a = [True] * 30 + [True] * 3 + [False] * 12 + [False] * 55   # A right on 33
    b = [True] * 30 + [False] * 3 + [True] * 12 + [False] * 55   # B right on 42
    out = mcnemar_exact(a, b)
    assert (out["both"], out["a_only"], out["b_only"], out["neither"], out["n"]) == (30, 3, 12, 55, 100)
    assert out["difference"] == pytest.approx(0.09)
    # two-sided exact: 2 * P(X <= 3), X ~ Bin(15, 1/2) = 2 * (1 + 15 + 105 + 455) / 2**15
    assert out["p_value"] == pytest.approx(2 * 576 / 2**15, rel=1e-12)
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
