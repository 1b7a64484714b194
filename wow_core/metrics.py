"""AccWoW, margin filtering, intervals and calibration (DESIGN.md, "Definitions").

AccWoW: share of kept WoW pairs on which the method prefers the less wrong answer; ties count as not
preferring it; random = 0.5. Margin filtering top-p: of all pairs pooled over the questions, keep the
fraction p with the largest gap between the two scores.
"""
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class AccWoW:
    value: float | None  # None when no pair is kept
    n_pairs: int
    low: float | None
    high: float | None


def margin_filter(pairs: pd.DataFrame, top_p: float) -> pd.DataFrame:
    """The ceil(top_p * N) pairs with the largest `gap`; equal gaps keep their table order."""
    if not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p}.")
    if top_p == 1:
        return pairs
    return pairs.sort_values("gap", ascending=False, kind="stable").head(math.ceil(top_p * len(pairs)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0, 1 and small n)."""
    if n == 0:
        raise ValueError("`n` must be >= 1 for an interval, got 0.")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accwow(pairs: pd.DataFrame, confidence: float = 0.95) -> AccWoW:
    """AccWoW of a table with a boolean `prefers_less_wrong` column, with its Wilson interval."""
    n = len(pairs)
    if n == 0:
        return AccWoW(None, 0, None, None)
    k = int(pairs["prefers_less_wrong"].sum())
    low, high = wilson_interval(k, n, confidence)
    return AccWoW(k / n, n, low, high)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE over `bins` equal-width confidence bins: sum_b (n_b / N) |acc_b - conf_b|."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if len(confidence) == 0:
        raise ValueError("ECE needs at least one answer, got 0.")
    # Bin b holds (b/bins, (b+1)/bins]; confidence 0 falls in the first bin.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)
