"""How far an LLM judge's verdicts can be trusted, measured the way the field measures it (Zheng et al.
2023, MT-Bench: position consistency and position bias; Thakur et al. 2024, "Judging the Judges",
arXiv 2406.07791: agreement beyond chance as Cohen's kappa), per evaluator, dataset and generator.

A pairwise judge is asked each pair in both orders, so the order is a controlled experiment:
- parse rate: share of verdicts that named an answer;
- position consistency: of the pairs with both orders parsed, the share whose two verdicts chose the
  same answer (an unbiased, attentive judge: 1; a judge that always picks one position: 0);
- first-position share: of the parsed verdicts, the share that chose the answer shown first
  (no position bias: 0.5);
- Cohen's kappa between the two orders, read as two raters of which answer (lower index, higher
  index) is better: agreement beyond what their own choice rates give by chance (0 = chance; a judge
  that always picks the first answer also gets 0, having agreed with itself never).
Rates carry the question-clustered interval of `metrics.clustered_rate`; kappa a percentile bootstrap
over questions. None of them on fewer than `metrics.MIN_QUESTIONS` questions.
"""
import numpy as np
import pandas as pd

from wow_core.elicit import lower_index_first
from wow_core.metrics import MIN_QUESTIONS, Rate, clustered_rate

KAPPA_RESAMPLES = 1000


def both_orders(judgments: pd.DataFrame) -> pd.DataFrame:
    """One row per pair (question_id, i, j) with both orders parsed: `forward` (the verdict with i shown
    first) and `reverse` (j first), each as the chosen sample index."""
    parsed = judgments[judgments["preferred"].notna()]
    forward = lower_index_first(parsed).set_index(["question_id", "i", "j"])["preferred"]
    reverse = parsed[parsed["first"] == parsed["j"]].set_index(["question_id", "i", "j"])["preferred"]
    pairs = pd.concat({"forward": forward, "reverse": reverse}, axis=1, join="inner").reset_index()
    return pairs.astype({"forward": int, "reverse": int})


def cohens_kappa(pairs: pd.DataFrame) -> float | None:
    """Kappa between the forward and reverse verdicts of `both_orders` pairs; None where chance
    agreement is 1 (both orders always chose the same side) or there is no pair."""
    if pairs.empty:
        return None
    forward_low = (pairs["forward"] == pairs["i"]).to_numpy()
    reverse_low = (pairs["reverse"] == pairs["i"]).to_numpy()
    observed = float((forward_low == reverse_low).mean())
    f, r = forward_low.mean(), reverse_low.mean()
    chance = float(f * r + (1 - f) * (1 - r))
    return None if chance == 1 else (observed - chance) / (1 - chance)


def kappa_interval(pairs: pd.DataFrame, confidence: float, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap of kappa over questions (none on fewer than MIN_QUESTIONS questions)."""
    by_question = [g for _, g in pairs.groupby("question_id", sort=True)]
    if len(by_question) < MIN_QUESTIONS:
        return None, None
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(KAPPA_RESAMPLES):
        kappa = cohens_kappa(pd.concat([by_question[i] for i in rng.integers(0, len(by_question), len(by_question))]))
        if kappa is not None:
            draws.append(kappa)
    if not draws:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def pairwise_reliability(judgments: pd.DataFrame, confidence: float = 0.95) -> dict:
    """{parse_rate, position_consistency, first_position: Rate; kappa, kappa_low, kappa_high} of one
    pairwise judgments table."""
    parsed = judgments[judgments["preferred"].notna()]
    pairs = both_orders(judgments)
    kappa_low, kappa_high = kappa_interval(pairs, confidence) if cohens_kappa(pairs) is not None else (None, None)
    return {
        "parse_rate": clustered_rate(judgments["preferred"].notna(), judgments["question_id"], confidence),
        "position_consistency": clustered_rate(pairs["forward"] == pairs["reverse"], pairs["question_id"], confidence),
        "first_position": clustered_rate(parsed["preferred"] == parsed["first"], parsed["question_id"], confidence),
        "kappa": cohens_kappa(pairs), "kappa_low": kappa_low, "kappa_high": kappa_high,
    }


def score_reliability(judgments: pd.DataFrame, confidence: float = 0.95) -> dict:
    """{parse_rate: Rate} of one score judgments table (one row per scored answer)."""
    return {"parse_rate": clustered_rate(judgments["score"].notna(), judgments["question_id"], confidence)}


def picks_by_position(first_position: Rate) -> bool:
    """Whether the first-position share is beyond chance: its whole interval on one side of 0.5."""
    return first_position.low is not None and (first_position.low > 0.5 or first_position.high < 0.5)
