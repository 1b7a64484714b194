"""Elicitation methods: from samples (and judgments) to a verdict on every wrong-over-wrong pair.

WoW pairs of a question (DESIGN.md): every pair of its sampled answers with both wrong and different
proxy values; the less wrong one has the higher proxy. Each method either scores answers (length,
consistency, logits, score judge: the pair's verdict is the higher score, its gap the difference) or
judges pairs (pairwise judge, one row per asked order; *filtered* keeps a pair only when both orders
parsed and agree, counted once). A tie never prefers the less wrong answer. A pair the method could
not judge (an answer without a parsed score, a verdict that did not parse) is left out of that
method's pairs; the report counts the parse failures beside it.

`protocol="paper"` computes each method as the paper's reference code does (preference_generation/
metric.py; docs/methods.md, "The paper's protocol"): length in the generator's tokens, consistency
over the extracted answers only, and the unfiltered pairwise judge on one order per pair (the answer
with the lower index shown first) with an unparsed verdict counted as a miss.
"""
import numpy as np
import pandas as pd

from wow_core.methods import JudgeMethod

VERSION = 1

PROTOCOLS = ("wow", "paper")
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


def length_scores(samples: pd.DataFrame, protocol: str = "wow") -> pd.Series:
    """Longer answers preferred: characters of the answer (paper: its tokens, as generated)."""
    column = samples["n_tokens"] if protocol == "paper" else samples["answer"].str.len()
    return pd.Series(column.astype(float).to_numpy(),
                     index=pd.MultiIndex.from_frame(samples[["question_id", "sample_idx"]]))


def consistency_scores(samples: pd.DataFrame, protocol: str = "wow") -> pd.Series:
    """Share of the question's samples whose extracted answer is the same as this one's (paper: share
    of its extracted answers; the same order within a question, other gaps across questions)."""
    counted = samples["extracted"].notna() if protocol == "paper" else pd.Series(True, index=samples.index)
    n = counted.groupby(samples["question_id"]).transform("sum")
    same = samples.groupby(["question_id", "extracted"])["sample_idx"].transform("size")
    share = (same / n).where(samples["extracted"].notna())
    return pd.Series(share.to_numpy(), index=pd.MultiIndex.from_frame(samples[["question_id", "sample_idx"]]))


def logits_scores(samples: pd.DataFrame, protocol: str = "wow") -> pd.Series:
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


def lower_index_first(judgments: pd.DataFrame) -> pd.DataFrame:
    """The pairwise verdicts of the order the paper's code asks: the lower sample index shown first."""
    return judgments[judgments["first"] == judgments["i"]]


def pairwise_pairs(pairs: pd.DataFrame, judgments: pd.DataFrame, filtered: bool, protocol: str = "wow") -> pd.DataFrame:
    """Verdicts of the pairwise judge. Unfiltered: one row per parsed judgment (either order; paper: one
    row per pair, from the order with the lower index first, an unparsed verdict a miss). Filtered: one
    row per pair whose two orders both parsed and chose the same answer. `gap` is NaN: a verdict has
    no score margin."""
    better = pairs.set_index(["question_id", "i", "j"])["better"]
    parsed = judgments[judgments["preferred"].notna()]
    if filtered:
        votes = parsed.groupby(["dataset", "question_id", "i", "j"])["preferred"].agg(["size", "nunique", "first"])
        agreed = votes[(votes["size"] == 2) & (votes["nunique"] == 1)].reset_index()
        rows = agreed.rename(columns={"first": "preferred"})
    elif protocol == "paper":
        rows = lower_index_first(judgments)[["dataset", "question_id", "i", "j", "preferred"]].copy()
        rows["preferred"] = rows["preferred"].astype("Float64").fillna(-1).astype(int)  # -1: no answer chosen
    else:
        rows = parsed[["dataset", "question_id", "i", "j", "preferred"]].copy()
    rows["better"] = [int(better[(q, i, j)]) for q, i, j in zip(rows.question_id, rows.i, rows.j)]
    rows["score_i"] = (rows["preferred"] == rows["i"]).astype(float)
    rows["score_j"] = (rows["preferred"] == rows["j"]).astype(float)
    rows["gap"] = float("nan")
    rows["prefers_less_wrong"] = rows["preferred"] == rows["better"]
    return rows[PAIR_COLUMNS].astype({"prefers_less_wrong": bool}).reset_index(drop=True)


def majority_pairs(pairs: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """The majority of the members' pairwise verdicts: every parsed verdict, of either order, is one vote
    for the answer it chose; a pair is judged when it has a vote, and preferred as the answer with more
    votes, equal votes preferring neither. `score_i`/`score_j` are the votes; `gap` is NaN (verdicts)."""
    votes = pd.concat([m[m["preferred"].notna()] for m in members], ignore_index=True)
    rows = pairs.merge(votes[["question_id", "i", "j", "preferred"]], on=["question_id", "i", "j"])
    rows["for_i"], rows["for_j"] = rows["preferred"] == rows["i"], rows["preferred"] == rows["j"]
    out = rows.groupby(["dataset", "question_id", "i", "j", "better"], as_index=False, sort=True)[
        ["for_i", "for_j"]].sum()
    out["score_i"], out["score_j"] = out["for_i"].astype(float), out["for_j"].astype(float)
    better_i = out["better"] == out["i"]
    out["gap"] = float("nan")
    out["prefers_less_wrong"] = ((better_i & (out["score_i"] > out["score_j"]))
                                 | (~better_i & (out["score_j"] > out["score_i"])))
    return out[PAIR_COLUMNS].astype({"prefers_less_wrong": bool}).reset_index(drop=True)


def unanimous_pairwise_pairs(pairs: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """The pairs every member judged in both orders, all of its verdicts and all members choosing the same
    answer. `score_i`/`score_j` are the votes (all for one answer); `gap` is NaN (verdicts)."""
    out = majority_pairs(pairs, members)
    asked = pd.concat([m[["question_id", "i", "j", "preferred"]] for m in members], ignore_index=True)
    every = asked.groupby(["question_id", "i", "j"])["preferred"].agg(["size", "count"])
    complete = every[(every["size"] == 2 * len(members)) & (every["count"] == every["size"])].index
    keep = pd.MultiIndex.from_frame(out[["question_id", "i", "j"]]).isin(complete) \
        & ((out["score_i"] == 0) | (out["score_j"] == 0))
    return out[keep].reset_index(drop=True)


def mean_score_pairs(pairs: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """Verdicts from each answer's mean score over the members that scored it (an unparsed score is no
    vote; an answer none scored has none), as any score method: the higher mean, its gap the difference."""
    scores = pd.concat([judge_scores(m) for m in members], axis=1).mean(axis=1, skipna=True)
    return scored_pairs(pairs, scores)


def unanimous_score_pairs(pairs: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """The pairs on which every member scored both answers and each scored the same one strictly higher;
    `score_i`/`score_j` are the members' mean scores and `gap` their difference, as in `mean_score_pairs`."""
    each = [scored_pairs(pairs, judge_scores(m)).set_index(["question_id", "i", "j"]) for m in members]
    signs = pd.concat([np.sign(e["score_i"] - e["score_j"]) for e in each], axis=1, join="inner")  # pairs all scored
    agreed = signs[(signs.iloc[:, 0] != 0) & signs.eq(signs.iloc[:, 0], axis=0).all(axis=1)].index
    mean = mean_score_pairs(pairs, members)
    return mean[pd.MultiIndex.from_frame(mean[["question_id", "i", "j"]]).isin(agreed)].reset_index(drop=True)


ENSEMBLE_RULES = {("majority", "pairwise"): majority_pairs, ("unanimous", "pairwise"): unanimous_pairwise_pairs,
                  ("mean_score", "score"): mean_score_pairs, ("unanimous", "score"): unanimous_score_pairs}


def ensemble_pairs(rule: str, method: str, samples: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """The verdict of a judge ensemble on every WoW pair it can judge (`PAIR_COLUMNS`): the members'
    judgments of `method` (pairwise or score_k<k>, one table per member) combined by `rule` (majority,
    mean_score, unanimous; docs/methods.md, "Judge ensembles"). The same under either protocol."""
    judge_method = JudgeMethod.of(method)
    kind = judge_method.kind if judge_method else method
    if (rule, kind) not in ENSEMBLE_RULES:
        raise ValueError(f"No ensemble rule {rule!r} for method {method!r}. Available: "
                         + ", ".join(f"{r} of {m if m == 'pairwise' else 'score_k<k>'}" for r, m in ENSEMBLE_RULES))
    return ENSEMBLE_RULES[rule, kind](wow_pairs(samples), members)


SELF_SIGNALS = {"length": length_scores, "consistency": consistency_scores, "logits": logits_scores}
PAIRWISE_METHODS = ("pairwise", "pairwise_filtered")
# Verdicts without a score gap, which have no margin filter: the pairwise judge's and its ensembles'.
VERDICT_METHODS = (*PAIRWISE_METHODS, "pairwise_majority", "pairwise_unanimous")


def method_pairs(method: str, samples: pd.DataFrame, judgments: pd.DataFrame | None = None,
                 protocol: str = "wow") -> pd.DataFrame:
    """The verdict of `method` on every WoW pair it can judge (`PAIR_COLUMNS`), computed as `protocol`
    ('wow' or 'paper') says."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}")
    pairs = wow_pairs(samples)
    if method in SELF_SIGNALS:
        return scored_pairs(pairs, SELF_SIGNALS[method](samples, protocol))
    if judgments is None:
        raise ValueError(f"method '{method}' needs the evaluator's judgments")
    if method in PAIRWISE_METHODS:
        return pairwise_pairs(pairs, judgments, filtered=method == "pairwise_filtered", protocol=protocol)
    if (judge_method := JudgeMethod.of(method)) and judge_method.kind == "score":
        return scored_pairs(pairs, judge_scores(judgments))
    raise ValueError(f"Unknown elicitation method '{method}'. Available: {', '.join(SELF_SIGNALS)}, "
                     "pairwise, pairwise_filtered, score_k<k>")
