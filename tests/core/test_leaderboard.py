"""The judge leaderboard on hand-computed tables: pooled AccWoW clustered by (dataset, question), pooled judge
rates, costs counted per prompt, ensembles costing their members' calls, and the rank order."""
import pandas as pd
import pytest

from wow_core.leaderboard import judge_cost, judged_by, leaderboard_table
from wow_core.metrics import wilson_interval
from wow_core.methods import SELF
from wow_core.report import leaderboard_rows, plot_leaderboard, render_leaderboard


def pairs(outcomes: list[tuple[str, bool]]) -> pd.DataFrame:
    """A pairs table with only what the leaderboard reads: the question and whether the verdict was right."""
    return pd.DataFrame({"question_id": [q for q, _ in outcomes],
                         "prefers_less_wrong": [ok for _, ok in outcomes]},
                        columns=["question_id", "prefers_less_wrong"])


def pairwise(rows: list[tuple], tokens: list[tuple] | None = None) -> pd.DataFrame:
    """(question, i, j, first, preferred or None, follow-up asked); `tokens`: (prompt, generated) per row."""
    df = pd.DataFrame([{"question_id": q, "i": i, "j": j, "first": first, "second": j if first == i else i,
                        "preferred": chosen, "follow_up_output": "Preferred output: 1" if follow else None}
                       for q, i, j, first, chosen, follow in rows]).astype({"preferred": "Int64"})
    if tokens is not None:
        df["prompt_tokens"] = pd.array([p for p, _ in tokens], dtype="Int64")
        df["generated_tokens"] = pd.array([g for _, g in tokens], dtype="Int64")
    return df


# Judge a on d1: q1 consistent (both orders for 1), q2 not (each order for the answer shown first); one
# follow-up turn. On d2, judged before token counts were recorded: q1 with one order unparsed.
A_D1 = pairwise([("q1", 0, 1, 0, 1, False), ("q1", 0, 1, 1, 1, True), ("q2", 0, 1, 0, 0, False),
                 ("q2", 0, 1, 1, 1, False)], tokens=[(10, 1), (12, 1), (20, 3), (22, 1)])
A_D2 = pairwise([("q1", 0, 1, 0, 1, False), ("q1", 0, 1, 1, None, False)])
B_D1 = pairwise([("q1", 0, 1, 0, 1, False), ("q1", 0, 1, 1, 0, False)], tokens=[(7, 2), (7, 2)])
SIX = [("d1", "q1"), ("d1", "q2"), ("d1", "q3"), ("d2", "q1"), ("d2", "q2"), ("d2", "q3")]


def entries() -> list[dict]:
    def entry(ds, evaluator, method, outcomes):
        return {"dataset": ds, "generator": "g", "evaluator": evaluator, "method": method, "pairs": pairs(outcomes)}
    return [
        # One pair per question, six questions (ids repeat across the two datasets), 4 right.
        *[entry(ds, SELF, "length", [(q, ok)]) for (ds, q), ok in zip(SIX, [True, True, False, True, False, True])],
        entry("d1", "a", "pairwise", [("q1", True), ("q1", True), ("q2", True), ("q2", False)]),
        entry("d2", "a", "pairwise", [("q1", True)]),
        entry("d1", "b", "pairwise", [("q1", True), ("q1", False)]),
        entry("d2", "b", "pairwise", []),
        entry("d1", "ab", "pairwise_majority", [("q1", True), ("q2", True), ("q3", True)]),
        entry("d1", "b", "score_k1", []),
    ]


def judges() -> list[dict]:
    return [{"dataset": ds, "generator": "g", "evaluator": ev, "method": "pairwise", "judgments": t}
            for ds, ev, t in [("d1", "a", A_D1), ("d2", "a", A_D2), ("d1", "b", B_D1),
                              ("d2", "b", B_D1.iloc[:0])]]


def board() -> pd.DataFrame:
    return leaderboard_table(entries(), judges(), {"ab": ["a", "b"]})


def test_rows_are_ranked_by_pooled_accwow_and_a_row_without_pairs_is_last():
    table = board()
    assert list(zip(table.evaluator, table.method)) == [("ab", "pairwise_majority"), ("a", "pairwise"),
                                                         (SELF, "length"), ("b", "pairwise"), ("b", "score_k1")]
    assert table.accwow.tolist()[:4] == [1.0, 0.8, pytest.approx(4 / 6), 0.5] and pd.isna(table.accwow.iloc[4])
    assert table.n_pairs.tolist() == [3, 5, 6, 2, 0]
    assert table.datasets.tolist() == [1, 2, 2, 1, 0] and (table.grid_datasets == 2).all()
    assert table.members.tolist() == ["a + b", "", "", "", ""]


def test_accwow_is_pooled_over_datasets_with_questions_told_apart_by_dataset():
    row = board().set_index(["evaluator", "method"]).loc[(SELF, "length")]
    # Six questions, not three: d1's q1 is not d2's q1. One pair each: the clustered interval is Wilson's
    # own on 4 of 6.
    assert (row.n_pairs, row.n_questions) == (6, 6)
    assert (row.ci_low, row.ci_high) == pytest.approx(wilson_interval(4, 6))
    # a: five pairs on three questions (d1 q1, d1 q2, d2 q1), too few for an interval.
    a = board().set_index(["evaluator", "method"]).loc[("a", "pairwise")]
    assert (a.accwow, a.n_questions) == (0.8, 3) and pd.isna(a.ci_low)


def test_judge_rates_are_pooled_over_the_cells():
    a = board().set_index(["evaluator", "method"]).loc[("a", "pairwise")]
    # Both orders parsed: d1 q1 (agree) and d1 q2 (disagree); d2 q1 has one order unparsed.
    assert (a.position_consistency, a.position_consistency_n, a.position_consistency_questions) == (0.5, 2, 2)
    assert (a.parse_rate, a.parse_rate_n, a.parse_rate_questions) == (pytest.approx(5 / 6), 6, 3)
    ens = board().set_index(["evaluator", "method"]).loc[("ab", "pairwise_majority")]
    assert pd.isna(ens.position_consistency) and pd.isna(ens.parse_rate)  # see its members' rows


def test_cost_counts_calls_and_tokens_per_prompt():
    table = board().set_index(["evaluator", "method"])
    # a on d1: 4 prompts + 1 follow-up = 5 calls, 10+12+20+22 = 64 prompt and 1+1+3+1 = 6 generated tokens;
    # on d2: 2 calls, tokens not recorded: a's token totals are unknown.
    assert judge_cost(A_D1) == {"judge_calls": 5, "prompt_tokens": 64, "generated_tokens": 6}
    assert judge_cost(A_D2) == {"judge_calls": 2, "prompt_tokens": None, "generated_tokens": None}
    a = table.loc[("a", "pairwise")]
    assert a.judge_calls == 7 and pd.isna(a.prompt_tokens) and pd.isna(a.generated_tokens)
    # The ensemble (on d1 only) costs its members' d1 judgments: a's 5 calls, 64 + 6 tokens and b's 2 calls,
    # 14 + 4 tokens.
    ab = table.loc[("ab", "pairwise_majority")]
    assert (ab.judge_calls, ab.prompt_tokens, ab.generated_tokens) == (7, 78, 10)
    # The self signals come with sampling: no judge call.
    assert tuple(table.loc[(SELF, "length")][["judge_calls", "prompt_tokens", "generated_tokens"]]) == (0, 0, 0)


def test_a_score_prompt_is_counted_once_for_its_k_answers():
    # Two prompts: group 0 scored two answers (asked again in a follow-up turn), group 1 one answer.
    scores = pd.DataFrame({"question_id": ["q1", "q1", "q2"], "sample_idx": [0, 1, 0], "group": [0, 0, 1],
                           "follow_up_output": ["Answer 1: Score: 2", "Answer 1: Score: 2", None],
                           "score": pd.array([2, None, 3], dtype="Int64"),
                           "prompt_tokens": pd.array([30, 30, 15], dtype="Int64"),
                           "generated_tokens": pd.array([4, 4, 2], dtype="Int64")})
    assert judge_cost(scores) == {"judge_calls": 3, "prompt_tokens": 45, "generated_tokens": 6}


def test_which_judgments_a_method_reads():
    assert [judged_by(m) for m in ["length", "pairwise_filtered", "pairwise_majority", "score_k5", "score_k10_mean"]] \
        == [None, "pairwise", "pairwise", "score_k5", "score_k10"]


def test_the_leaderboard_as_the_report_shows_it():
    table = board()
    rows = leaderboard_rows(table, 0.95)
    assert rows[0] == {"rank": 1, "evaluator": "ab (a + b)", "method": "pairwise_majority", "AccWoW": "1.000",
                       "95 % interval": "none: 3 questions", "pairs": 3, "questions": 3, "datasets": "1 of 2",
                       "position consistency": "—", "parse rate": "—", "judge calls": "7", "prompt tokens": "78",
                       "generated tokens": "10"}
    low, high = wilson_interval(4, 6)
    assert rows[2]["95 % interval"] == f"[{low:.3f}, {high:.3f}]" and rows[2]["judge calls"] == "0"
    assert rows[1]["position consistency"] == "0.50 (none: 2 questions) of 2" and rows[1]["prompt tokens"] == "—"
    assert rows[4]["AccWoW"] == "—" and rows[4]["95 % interval"] == "—"
    markdown = render_leaderboard("toy", table, "toy.leaderboard.png", 0.95)
    assert "pooled over the grid's 2 datasets" in markdown and "**Random baseline: 0.500.**" in markdown
    assert "| 1 | ab (a + b) | pairwise_majority | 1.000 | none: 3 questions | 3 | 3 | 1 of 2 |" in markdown
    assert markdown.rstrip().endswith("(toy.leaderboard.png)")
    assert plot_leaderboard(table, 0.95).startswith(b"\x89PNG")
