"""Counts the flow tests check wow's tables against, computed without wow_core."""
from itertools import combinations


def wow_pair_count(samples) -> int:
    """Pairs of wrong, extracted answers with different proxies."""
    n = 0
    for _, g in samples.groupby("question_id"):
        wrong = [p for p, c in zip(g["proxy"], g["correct"]) if p == p and p is not None and c is False]
        n += sum(1 for a, b in combinations(wrong, 2) if a != b)
    return n
