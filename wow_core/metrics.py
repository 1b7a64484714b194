"""AccWoW, margin filtering, intervals and calibration (DESIGN.md, "Definitions").

AccWoW: share of kept WoW pairs on which the method prefers the less wrong answer; ties count as not
preferring it; random = 0.5. Margin filtering top-p: of all pairs pooled over the questions, keep the
fraction p with the largest gap between the two scores.

Intervals respect questions: the pairs of one question share its answers and the judge's reading of
them, so they are not independent draws. AccWoW's interval is Wilson's at the effective number of
pairs of a question-clustered variance (Korn & Graubard 1998), and a cell on fewer than MIN_QUESTIONS
questions gets none (docs/methods.md, "Intervals").
"""
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd


MIN_QUESTIONS = 5  # fewer questions give no interval: their spread cannot be estimated


@dataclass(frozen=True)
class Rate:
    """A share of yes/no outcomes clustered by question, with its interval."""
    value: float | None  # None when there is no outcome
    n: int               # outcomes (pairs, verdicts)
    n_questions: int
    low: float | None    # None without outcomes, or on fewer than MIN_QUESTIONS questions
    high: float | None


def margin_filter(pairs: pd.DataFrame, top_p: float, protocol: str = "wow") -> pd.DataFrame:
    """The ceil(top_p * N) pairs with the largest `gap`; equal gaps keep their table order. The paper's
    code (`protocol="paper"`) keeps floor(top_p * N), and all N when that is 0 (`argsort(...)[-0:]`)."""
    if not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p}.")
    if top_p == 1:
        return pairs
    keep = (math.floor(top_p * len(pairs)) or len(pairs)) if protocol == "paper" else math.ceil(top_p * len(pairs))
    return pairs.sort_values("gap", ascending=False, kind="stable").head(keep)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0, 1 and small n); `n` may be an
    effective sample size, not a whole number."""
    if n <= 0:
        raise ValueError(f"`n` must be > 0 for an interval, got {n}.")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_pairs(successes: np.ndarray, pairs: np.ndarray) -> float:
    """The number of independent pairs the clustered pairs are worth (Kish's n / design effect):
    p(1-p) / Var(p), with Var(p) = sum_i (k_i - p n_i)^2 / N^2 the cluster-robust variance of the ratio
    p = sum k / sum n over questions, at most N. One pair per question gives N back (Wilson's own
    interval), questions whose pairs all agree give the number of questions. With p at 0 or 1 that
    variance is 0 whatever the clustering, so each question counts as one pair (the worst case)."""
    k, n = np.asarray(successes, dtype=float), np.asarray(pairs, dtype=float)
    q, total = len(n), n.sum()
    p = k.sum() / total
    if p in (0.0, 1.0):
        return float(q)
    variance = ((k - p * n) ** 2).sum() / total ** 2
    return float(total) if variance == 0 else float(min(total, p * (1 - p) / variance))


def clustered_rate(outcomes: pd.Series, questions: pd.Series, confidence: float = 0.95) -> Rate:
    """The share of true `outcomes`, each belonging to the question beside it in `questions`, with its
    question-clustered interval (none on fewer than MIN_QUESTIONS questions)."""
    n = len(outcomes)
    if n == 0:
        return Rate(None, 0, 0, None, None)
    per_question = pd.DataFrame({"q": questions.to_numpy(), "yes": outcomes.to_numpy(dtype=bool)}) \
        .groupby("q", sort=False)["yes"].agg(["sum", "size"])
    k, q = int(per_question["sum"].sum()), len(per_question)
    if q < MIN_QUESTIONS:
        return Rate(k / n, n, q, None, None)
    n_eff = effective_pairs(per_question["sum"].to_numpy(), per_question["size"].to_numpy())
    low, high = wilson_interval(k / n * n_eff, n_eff, confidence)
    return Rate(k / n, n, q, low, high)


def accwow(pairs: pd.DataFrame, confidence: float = 0.95) -> Rate:
    """AccWoW of a pairs table (`question_id`, boolean `prefers_less_wrong`), clustered by question."""
    return clustered_rate(pairs["prefers_less_wrong"], pairs["question_id"], confidence)


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
