"""Statistics shared by the evaluation tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of the paired values (scipy); ``(statistic, p)``.

    Pairs with a NaN are left out. When every difference is zero the methods do not differ:
    statistic 0, p = 1 (scipy would give NaN).
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return float("nan"), float("nan")
    if np.all(x - y == 0):
        return 0.0, 1.0
    res = wilcoxon(x, y)
    return float(res.statistic), float(res.pvalue)
