"""The exact binomial interval against its closed forms and its defining tail equations."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from benchmark.stats.binomial import clopper_pearson


def test_zero_and_all_successes_have_closed_forms() -> None:
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), abs=1e-12)


def test_bounds_solve_the_tail_equations() -> None:
    k, n = 37, 500
    lo, hi = clopper_pearson(k, n)
    assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)  # P(X >= k | lo)
    assert stats.binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)  # P(X <= k | hi)
    assert lo < k / n < hi


def test_no_rows_is_no_interval() -> None:
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))
