"""Statistics for accuracies on one test set: intervals, paired tests, paired differences.

Two models scored on the same items are paired: the same item is easy or hard for both,
so a paired test (McNemar) is much more sensitive than comparing two intervals.
"""

from __future__ import annotations

from typing import Sequence

from augscale.tasks.base import wilson_interval

__all__ = ["wilson_interval", "accuracy_with_ci", "mcnemar_exact", "paired_bootstrap_diff"]


def accuracy_with_ci(correct: Sequence[bool]) -> dict:
    """``{"accuracy", "n", "ci95"}`` of a list of per-item outcomes (Wilson interval)."""
    n = len(correct)
    k = sum(bool(c) for c in correct)
    return {"accuracy": k / n if n else 0.0, "n": n, "ci95": wilson_interval(k, n)}


def _binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (scipy's ``binomtest``)."""
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5).pvalue)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact McNemar test of two models' per-item outcomes on the same items.

    Only discordant items count: ``a_only`` (A right, B wrong) and ``b_only``. Under the null
    hypothesis of equal accuracy each discordant item is a fair coin flip, so the p-value is
    the two-sided binomial test of ``a_only`` out of ``a_only + b_only``.

    Returns:
        ``{"n", "both", "a_only", "b_only", "neither", "difference", "p_value"}`` where
        ``difference`` is accuracy(B) - accuracy(A).

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes must have the same length, got {len(a)} and {len(b)}")
    both = sum(1 for x, y in zip(a, b) if x and y)
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = len(a)
    return {"n": n, "both": both, "a_only": a_only, "b_only": b_only, "neither": n - both - a_only - b_only,
            "difference": (b_only - a_only) / n if n else 0.0, "p_value": _binom_two_sided(a_only, a_only + b_only)}


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """Mean of ``b - a`` over paired items and its percentile bootstrap interval.

    Works for 0/1 outcomes (accuracy difference) and for per-item losses alike.

    Returns:
        ``{"difference", "ci": [low, high], "n"}``.

    Raises:
        ValueError: the two lists differ in length.
    """
    import numpy as np
    from scipy.stats import bootstrap

    if len(a) != len(b):
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = len(d)
    if n == 0:
        return {"difference": 0.0, "ci": [0.0, 0.0], "n": 0}
    res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"difference": float(d.mean()), "ci": [float(ci.low), float(ci.high)], "n": n}
