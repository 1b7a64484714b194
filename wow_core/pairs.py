"""Preference sets: from samples and elicited verdicts to prompt / chosen / rejected pairs (paper §3.1).

- oracle: WoW pairs ordered by the proxy (the less wrong answer is chosen);
- a method's set (self signals, pairwise, pairwise_filtered, score_k<k>): the pairs it judged, the
  answer it prefers chosen; a tie prefers neither and gives no pair; top-p keeps the largest gaps;
- right_over_wrong: each correct answer over each wrong one of the same question (the contrast);
- mixes: half right-over-wrong, half the WoW set.

The prompt is the one the chosen answer was asked. Where every sample saw its own option order
(multiple choice), the rejected answer was written for another order: its letters are its own.

Pairs come from the training questions only: `split_questions` holds a fixed share of every
dataset's questions out for evaluation, and no preference set ever sees them. Every set is capped
by seeded sampling after duplicates (same prompt, chosen and rejected text) are dropped.
"""
import hashlib

import pandas as pd

from wow_core import elicit
from wow_core.metrics import margin_filter

VERSION = 2  # 2: the unfiltered pairwise set takes one order per pair

PREFERENCE_COLUMNS = ["prompt", "chosen", "rejected", "dataset", "question_id", "generator", "evaluator", "method",
                      "chosen_idx", "rejected_idx", "gap", "chosen_proxy", "rejected_proxy"]


def heldout_count(n: int, fraction: float) -> int:
    """How many of `n` questions are held out: round(fraction * n), at least one, and at least one left
    to train on."""
    return min(n - 1, max(1, round(fraction * n)))


def split_questions(question_ids: list[str], heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids): `heldout_count` of them held out.

    The split is a fixed function of the ids and the seed (the ids ordered by a hash), so every
    stage and every rerun agrees on it.
    """
    def rank(qid: str) -> str:
        return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()
    heldout = set(sorted(question_ids, key=rank)[:heldout_count(len(question_ids), heldout_fraction)])
    return [q for q in question_ids if q not in heldout], [q for q in question_ids if q in heldout]


def verdict_pairs(method: str, samples: pd.DataFrame, judgments: pd.DataFrame | None, top_p: float) -> pd.DataFrame:
    """(dataset, question_id, chosen_idx, rejected_idx, gap) for one method's preferences."""
    columns = ["dataset", "question_id", "chosen_idx", "rejected_idx", "gap"]
    if method == "oracle":
        pairs = elicit.wow_pairs(samples)
        pairs["gap"] = (pairs["proxy_i"] - pairs["proxy_j"]).abs()
        pairs["chosen_idx"] = pairs["better"]
        pairs["rejected_idx"] = pairs["i"] + pairs["j"] - pairs["better"]
    elif method == "right_over_wrong":
        extracted = samples[samples["proxy"].notna()]
        right = extracted[extracted["correct"] == True]  # noqa: E712 (nullable column)
        wrong = extracted[extracted["correct"] == False]  # noqa: E712
        pairs = right.merge(wrong, on=["dataset", "question_id"], suffixes=("_r", "_w"))
        pairs = pairs.rename(columns={"sample_idx_r": "chosen_idx", "sample_idx_w": "rejected_idx"})
        pairs["gap"] = 1.0 - pairs["proxy_w"]
    else:
        if method == "pairwise":
            # As the paper's code builds it: one preference per pair, from the order with the lower index
            # shown first, so two orders that contradict each other never give both a > b and b > a.
            judgments = elicit.lower_index_first(judgments)
        pairs = elicit.method_pairs(method, samples, judgments)
        pairs = pairs[pairs["score_i"] != pairs["score_j"]].copy()  # a tie prefers neither answer
        i_wins = pairs["score_i"] > pairs["score_j"]
        pairs["chosen_idx"] = pairs["i"].where(i_wins, pairs["j"])
        pairs["rejected_idx"] = pairs["j"].where(i_wins, pairs["i"])
    pairs = pairs.sort_values(["dataset", "question_id", "chosen_idx", "rejected_idx"], kind="stable")
    if top_p < 1:
        pairs = margin_filter(pairs, top_p)
    return pairs[columns].astype({"chosen_idx": int, "rejected_idx": int, "gap": float}).reset_index(drop=True)


def with_texts(pairs: pd.DataFrame, samples: pd.DataFrame, generator: str, evaluator: str | None,
               method: str) -> pd.DataFrame:
    """Prompt, chosen and rejected answer texts and provenance for verdict pairs."""
    answers = samples.set_index(["question_id", "sample_idx"])
    chosen = answers.loc[list(zip(pairs["question_id"], pairs["chosen_idx"]))]
    rejected = answers.loc[list(zip(pairs["question_id"], pairs["rejected_idx"]))]
    return pd.DataFrame({
        "prompt": chosen["prompt"].to_numpy(), "chosen": chosen["answer"].to_numpy(),
        "rejected": rejected["answer"].to_numpy(), "dataset": pairs["dataset"].to_numpy(),
        "question_id": pairs["question_id"].to_numpy(), "generator": generator, "evaluator": evaluator,
        "method": method, "chosen_idx": pairs["chosen_idx"].to_numpy(),
        "rejected_idx": pairs["rejected_idx"].to_numpy(),
        "gap": pairs["gap"].to_numpy(), "chosen_proxy": chosen["proxy"].to_numpy(dtype=float),
        "rejected_proxy": rejected["proxy"].to_numpy(dtype=float),
    }, columns=PREFERENCE_COLUMNS)


def cap(pairs: pd.DataFrame, max_pairs: int, seed: int) -> pd.DataFrame:
    """Duplicates dropped, then at most `max_pairs` drawn by seeded sampling (table order kept)."""
    pairs = pairs.drop_duplicates(subset=["prompt", "chosen", "rejected"])
    if len(pairs) > max_pairs:
        pairs = pairs.sample(n=max_pairs, random_state=seed).sort_index()
    return pairs.reset_index(drop=True)


def preference_set(wow_parts: list[pd.DataFrame], row_parts: list[pd.DataFrame] | None, max_pairs: int,
                   seed: int) -> pd.DataFrame:
    """One preference set from per-generator pair tables (`with_texts` output).

    `row_parts` given: a 50/50 mix, max_pairs // 2 from each side, both sides cut to the smaller
    so the mix stays half and half.
    """
    wow = pd.concat(wow_parts, ignore_index=True) if wow_parts else pd.DataFrame(columns=PREFERENCE_COLUMNS)
    if row_parts is None:
        return cap(wow, max_pairs, seed)
    row = pd.concat(row_parts, ignore_index=True)
    wow, row = cap(wow, max_pairs // 2, seed), cap(row, max_pairs // 2, seed)
    half = min(len(wow), len(row))
    return pd.concat([cap(wow, half, seed), cap(row, half, seed)], ignore_index=True)
