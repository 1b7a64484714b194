"""The judge leaderboard: every evaluator and elicitation method of a grid ranked by AccWoW pooled over all
of its datasets and generators, beside what makes a judge usable (position consistency, parse rate) and
what it costs (judge calls, prompt and generated tokens). The table a user reads to pick a judge.

One row per (evaluator, method) of the AccWoW report, at margin 1.0 (all pairs):
- AccWoW over all the row's pairs pooled (`datasets`: how many of the grid's `grid_datasets` gave it any),
  with the question-clustered interval of `metrics.clustered_rate` over the pooled pairs (not a mean of
  the per-dataset values), a question being one dataset's question: the pairs of every generator's answers
  to it are one cluster;
- position consistency (pairwise methods) and parse rate of the judgments the method reads, pooled the
  same way (`judge_reliability`); none for the self signals and for judge ensembles (properties of one
  judge: its members have rows of their own);
- cost: the judge calls and tokens of the judgments the method reads (`judge_cost`); a judge ensemble's
  are its members', summed; the self signals' are 0 (they come with sampling).
Rows are sorted by AccWoW, highest first, rows without pairs last (docs/methods.md, "Judge leaderboard").
"""
import pandas as pd

from wow_core.elicit import SELF_SIGNALS
from wow_core.judge import TOKEN_COLUMNS
from wow_core.judge_reliability import both_orders
from wow_core.methods import JudgeMethod
from wow_core.metrics import Rate, clustered_rate

VERSION = 1

RATES = ("position_consistency", "parse_rate")
LEADERBOARD_COLUMNS = (["evaluator", "method", "members", "accwow", "n_pairs", "n_questions", "ci_low", "ci_high",
                        "datasets", "grid_datasets"]
                       + [f"{r}{part}" for r in RATES for part in ("", "_n", "_questions", "_low", "_high")]
                       + ["judge_calls", *TOKEN_COLUMNS])


def judged_by(method: str) -> str | None:
    """The judge method whose judgments `method` reads: pairwise, score_k<k>, or None (a self signal)."""
    if method in SELF_SIGNALS:
        return None
    judge_method = JudgeMethod.read_by(method)
    if judge_method is None:
        raise ValueError(f"Unknown elicitation method '{method}' for the leaderboard")
    return str(judge_method)


def judge_cost(judgments: pd.DataFrame) -> dict:
    """{judge_calls, prompt_tokens, generated_tokens} of one judgments table. A prompt is one row of a
    pairwise table and one `group` of a score table (its k answers' rows repeat its counts); it is one
    call, two with a follow-up turn. Token counts are None when any prompt lacks them (judged before
    wow recorded them, or by a backend that did not report them)."""
    prompts = judgments.drop_duplicates("group") if "group" in judgments.columns else judgments
    cost = {"judge_calls": len(prompts) + int(prompts["follow_up_output"].notna().sum())}
    for column in TOKEN_COLUMNS:
        known = column in prompts.columns and not prompts[column].isna().any()
        cost[column] = int(prompts[column].sum()) if known else None
    return cost


def _sum_costs(costs: list[dict]) -> dict:
    out = {"judge_calls": sum(c["judge_calls"] for c in costs)}
    for column in TOKEN_COLUMNS:
        values = [c[column] for c in costs]
        out[column] = None if None in values else sum(values)
    return out


def _questions(dataset: str, question_ids: pd.Series) -> pd.Series:
    """A question's cluster key: its dataset's tag and its id (ids repeat across datasets)."""
    return dataset + "\x1f" + question_ids.astype(str)


def _pooled(rate: Rate, name: str) -> dict:
    return {name: rate.value, f"{name}_n": rate.n, f"{name}_questions": rate.n_questions,
            f"{name}_low": rate.low, f"{name}_high": rate.high}


def _judge_rates(judgments: list[tuple[str, pd.DataFrame]], pairwise: bool, confidence: float) -> dict:
    """Parse rate (and, pairwise, position consistency) pooled over (dataset, judgments) tables."""
    verdict = "preferred" if pairwise else "score"
    parsed = pd.concat([t[verdict].notna() for _, t in judgments], ignore_index=True)
    keys = pd.concat([_questions(ds, t["question_id"]) for ds, t in judgments], ignore_index=True)
    out = _pooled(clustered_rate(parsed, keys, confidence), "parse_rate")
    if pairwise:
        orders = [(ds, both_orders(t)) for ds, t in judgments]
        agree = pd.concat([p["forward"] == p["reverse"] for _, p in orders], ignore_index=True)
        keys = pd.concat([_questions(ds, p["question_id"]) for ds, p in orders], ignore_index=True)
        out |= _pooled(clustered_rate(agree.astype(bool), keys, confidence), "position_consistency")
    return out


def leaderboard_table(entries: list[dict], judges: list[dict], ensembles: dict[str, list[str]],
                      confidence: float = 0.95) -> pd.DataFrame:
    """The leaderboard (`LEADERBOARD_COLUMNS`), one row per (evaluator, method) of `entries`.

    Args:
        entries: the AccWoW report's entries: dataset (tag), generator, evaluator, method, pairs (DataFrame).
        judges: dataset, generator, evaluator, method (pairwise or score_k<k>), judgments (DataFrame).
        ensembles: judge ensemble name -> its members (evaluators), whose judgments it reads.
        confidence: level of the intervals.
    """
    rows, grid_datasets = [], len({e["dataset"] for e in entries})
    for (evaluator, method), group in _groups(entries):
        pairs = [e for e in group if len(e["pairs"])]
        outcomes = pd.concat([e["pairs"]["prefers_less_wrong"] for e in pairs], ignore_index=True) if pairs \
            else pd.Series([], dtype=bool)
        keys = pd.concat([_questions(e["dataset"], e["pairs"]["question_id"]) for e in pairs], ignore_index=True) \
            if pairs else pd.Series([], dtype=str)
        acc = clustered_rate(outcomes, keys, confidence)
        row = {"evaluator": evaluator, "method": method, "members": " + ".join(ensembles.get(evaluator, [])),
               "accwow": acc.value, "n_pairs": acc.n, "n_questions": acc.n_questions, "ci_low": acc.low,
               "ci_high": acc.high, "datasets": len({e["dataset"] for e in pairs}), "grid_datasets": grid_datasets}
        source = judged_by(method)
        if source is None:
            row |= {"judge_calls": 0, **dict.fromkeys(TOKEN_COLUMNS, 0)}
        else:
            cells = {(e["dataset"], e["generator"]) for e in group}
            judges_of = ensembles.get(evaluator, [evaluator])
            read = [j for j in judges if j["evaluator"] in judges_of and j["method"] == source
                    and (j["dataset"], j["generator"]) in cells]
            row |= _sum_costs([judge_cost(j["judgments"]) for j in read])
            if evaluator not in ensembles and read:
                row |= _judge_rates([(j["dataset"], j["judgments"]) for j in read], source == "pairwise", confidence)
        rows.append(row)
    table = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    order = table.assign(_missing=table["accwow"].isna(), _acc=-table["accwow"].fillna(0), _pairs=-table["n_pairs"])
    order = order.sort_values(["_missing", "_acc", "_pairs", "evaluator", "method"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def _groups(entries: list[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    """Entries by (evaluator, method), in the order they first appear."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        groups.setdefault((e["evaluator"], e["method"]), []).append(e)
    return list(groups.items())
