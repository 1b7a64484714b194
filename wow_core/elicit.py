"""Elicitation methods: from samples (and judgments) to a verdict on every wrong-over-wrong pair.

WoW pairs of a question (DESIGN.md): every pair of its sampled answers with both wrong and different
proxy values; the less wrong one has the higher proxy. Each method either scores answers (length,
consistency, logits, score judge: the pair's verdict is the higher score, its gap the difference) or
judges pairs (pairwise judge, one row per asked order; *filtered* keeps a pair only when both orders
parsed and agree, counted once). A tie never prefers the less wrong answer. A pair the method could
not judge (an answer without a parsed score, a verdict that did not parse) is left out of that
method's pairs; the report counts the parse failures beside it.
"""
import pandas as pd

VERSION = 1

PAIR_COLUMNS = ["dataset", "question_id", "i", "j", "better", "score_i", "score_j", "gap", "prefers_less_wrong"]


def wow_pairs(samples: pd.DataFrame) -> pd.DataFrame:
    """All WoW pairs (i < j) with `better` = the sample index of the less wrong answer."""
    wrong = samples[samples["proxy"].notna() & (samples["correct"] == False)]  # noqa: E712 (nullable column)
    rows = []
    for (ds, q), group in wrong.groupby(["dataset", "question_id"], sort=True):
        items = sorted(zip(group["sample_idx"], group["proxy"]))
        for a, (i, pi) in enumerate(items):
            for j, pj in items[a + 1:]:
                if pi != pj:
                    rows.append({"dataset": ds, "question_id": q, "i": int(i), "j": int(j),
                                 "proxy_i": float(pi), "proxy_j": float(pj), "better": int(i if pi > pj else j)})
    return pd.DataFrame(rows, columns=["dataset", "question_id", "i", "j", "proxy_i", "proxy_j", "better"])


def length_scores(samples: pd.DataFrame) -> pd.Series:
    """Longer answers preferred: characters of the answer."""
    return samples.set_index(["question_id", "sample_idx"])["answer"].str.len().astype(float)


def consistency_scores(samples: pd.DataFrame) -> pd.Series:
    """Share of the question's samples whose extracted answer is the same as this one's."""
    n = samples.groupby("question_id")["sample_idx"].transform("size")
    same = samples.groupby(["question_id", "extracted"])["sample_idx"].transform("size")
    share = (same / n).where(samples["extracted"].notna())
    return pd.Series(share.to_numpy(), index=pd.MultiIndex.from_frame(samples[["question_id", "sample_idx"]]))


def logits_scores(samples: pd.DataFrame) -> pd.Series:
    """Mean token log-probability of the answer under the generator."""
    return samples.set_index(["question_id", "sample_idx"])["mean_logprob"].astype(float)


def judge_scores(judgments: pd.DataFrame) -> pd.Series:
    """The score judge's 0-5 score per answer (NaN where unparsed)."""
    return judgments.set_index(["question_id", "sample_idx"])["score"].astype("Float64").astype(float)


def scored_pairs(pairs: pd.DataFrame, scores: pd.Series) -> pd.DataFrame:
    """Verdicts from per-answer scores; pairs where either answer has no score are dropped."""
    out = pairs.copy()
    out["score_i"] = [scores.get((q, i), float("nan")) for q, i in zip(pairs.question_id, pairs.i)]
    out["score_j"] = [scores.get((q, j), float("nan")) for q, j in zip(pairs.question_id, pairs.j)]
    out = out[out["score_i"].notna() & out["score_j"].notna()]
    better_i = out["better"] == out["i"]
    out["gap"] = (out["score_i"] - out["score_j"]).abs()
    out["prefers_less_wrong"] = ((better_i & (out["score_i"] > out["score_j"]))
                                 | (~better_i & (out["score_j"] > out["score_i"])))
    return out[PAIR_COLUMNS].reset_index(drop=True)


def pairwise_pairs(pairs: pd.DataFrame, judgments: pd.DataFrame, filtered: bool) -> pd.DataFrame:
    """Verdicts of the pairwise judge. Unfiltered: one row per parsed judgment (either order).
    Filtered: one row per pair whose two orders both parsed and chose the same answer. `gap` is NaN:
    a verdict has no score margin."""
    better = pairs.set_index(["question_id", "i", "j"])["better"]
    parsed = judgments[judgments["preferred"].notna()]
    if filtered:
        votes = parsed.groupby(["dataset", "question_id", "i", "j"])["preferred"].agg(["size", "nunique", "first"])
        agreed = votes[(votes["size"] == 2) & (votes["nunique"] == 1)].reset_index()
        rows = agreed.rename(columns={"first": "preferred"})
    else:
        rows = parsed[["dataset", "question_id", "i", "j", "preferred"]].copy()
    rows["better"] = [int(better[(q, i, j)]) for q, i, j in zip(rows.question_id, rows.i, rows.j)]
    rows["score_i"] = (rows["preferred"] == rows["i"]).astype(float)
    rows["score_j"] = (rows["preferred"] == rows["j"]).astype(float)
    rows["gap"] = float("nan")
    rows["prefers_less_wrong"] = rows["preferred"] == rows["better"]
    return rows[PAIR_COLUMNS].astype({"prefers_less_wrong": bool}).reset_index(drop=True)


def pairwise_agreement(judgments: pd.DataFrame) -> tuple[int, int]:
    """(pairs whose two orders agree, pairs with both orders parsed)."""
    parsed = judgments[judgments["preferred"].notna()]
    votes = parsed.groupby(["question_id", "i", "j"])["preferred"].agg(["size", "nunique"])
    both = votes[votes["size"] == 2]
    return int((both["nunique"] == 1).sum()), len(both)


SELF_SIGNALS = {"length": length_scores, "consistency": consistency_scores, "logits": logits_scores}
VERDICT_METHODS = ("pairwise", "pairwise_filtered")  # verdicts without a score gap: no margin filter


def method_pairs(method: str, samples: pd.DataFrame, judgments: pd.DataFrame | None = None) -> pd.DataFrame:
    """The verdict of `method` on every WoW pair it can judge (`PAIR_COLUMNS`)."""
    pairs = wow_pairs(samples)
    if method in SELF_SIGNALS:
        return scored_pairs(pairs, SELF_SIGNALS[method](samples))
    if judgments is None:
        raise ValueError(f"method '{method}' needs the evaluator's judgments")
    if method in VERDICT_METHODS:
        return pairwise_pairs(pairs, judgments, filtered=method == "pairwise_filtered")
    if method.startswith("score_k"):
        return scored_pairs(pairs, judge_scores(judgments))
    raise ValueError(f"Unknown elicitation method '{method}'. Available: {', '.join(SELF_SIGNALS)}, "
                     "pairwise, pairwise_filtered, score_k<k>")
