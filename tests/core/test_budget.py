"""Budget-aware judging on hand-made tables: each pick's order written out by hand, never read from the
proxy; each budget's point (calls spent, AccWoW unfiltered and filtered, set size) counted by hand."""
import numpy as np
import pandas as pd
import pytest

from wow_core.budget import (ALL_PAIRS, BUDGET_COLUMNS, budget_rows, budget_table, pairs_within, plot_budget,
                             ranked_pairs, reference_row, render_budget)


def samples(proxies=((0.2, 0.5, 0.9), (0.2, 0.5, 0.9))) -> pd.DataFrame:
    """Two questions, three wrong answers each and a correct one. Extracted answers a, b, a, c (consistency
    0.5, 0.25, 0.5, 0.25); mean log-probs -1.0, -1.1, -2.0 (gaps: 0-1 0.1, 1-2 0.9, 0-2 1.0)."""
    rows = []
    for q, proxy in zip(("q1", "q2"), proxies):
        for k, (p, ext, lp) in enumerate(zip((*proxy, 1.0), "abac", (-1.0, -1.1, -2.0, -0.5))):
            rows.append({"dataset": "d", "question_id": q, "sample_idx": k, "proxy": p, "correct": k == 3,
                         "extracted": ext, "answer": f"{q}-{k}", "mean_logprob": lp, "n_tokens": 3})
    return pd.DataFrame(rows)


SORTED = [("q1", 0, 1), ("q1", 0, 2), ("q1", 1, 2), ("q2", 0, 1), ("q2", 0, 2), ("q2", 1, 2)]
RANDOM = [SORTED[k] for k in np.random.default_rng(0).permutation(6)]  # seed 0: 3, 2, 5, 4, 0, 1


def order(ranked: pd.DataFrame) -> list[tuple]:
    return list(zip(ranked.question_id, ranked.i, ranked.j))


def test_random_is_the_seeded_permutation_of_the_sorted_pairs():
    assert order(ranked_pairs(samples(), "random", 0)) == RANDOM
    assert RANDOM == [("q2", 0, 1), ("q1", 1, 2), ("q2", 1, 2), ("q2", 0, 2), ("q1", 0, 1), ("q1", 0, 2)]
    assert order(ranked_pairs(samples(), "random", 1)) != RANDOM


def test_smallest_gap_first_and_ties_in_the_random_order():
    # Gaps 0.1 (0-1), 0.9 (1-2), 1.0 (0-2), each question's pair in the order random draws them.
    assert order(ranked_pairs(samples(), "smallest_gap", 0)) == [
        ("q2", 0, 1), ("q1", 0, 1), ("q1", 1, 2), ("q2", 1, 2), ("q2", 0, 2), ("q1", 0, 2)]


def test_disagreement_first_then_smallest_gap():
    # 0-1: both prefer 0 (agree). 1-2: consistency prefers 2, logits 1. 0-2: consistency ties (no preference).
    assert order(ranked_pairs(samples(), "disagreement", 0)) == [
        ("q1", 1, 2), ("q2", 1, 2), ("q2", 0, 2), ("q1", 0, 2), ("q2", 0, 1), ("q1", 0, 1)]


def test_a_missing_log_prob_ranks_last():
    s = samples()
    s.loc[(s.question_id == "q1") & (s.sample_idx == 1), "mean_logprob"] = np.nan
    assert order(ranked_pairs(s, "smallest_gap", 0)) == [
        ("q2", 0, 1), ("q2", 1, 2), ("q2", 0, 2), ("q1", 0, 2), ("q1", 1, 2), ("q1", 0, 1)]


def test_a_missing_log_prob_prefers_neither_answer():
    # q1's answer 1 without log-probs: q1 0-1 is a disagreement now (logits prefer neither). Disagreements
    # by gap: q2 1-2 (0.9), q2 0-2 and q1 0-2 (1.0, random order), q1 1-2 and q1 0-1 (none); then q2 0-1.
    s = samples()
    s.loc[(s.question_id == "q1") & (s.sample_idx == 1), "mean_logprob"] = np.nan
    assert order(ranked_pairs(s, "disagreement", 0)) == [
        ("q2", 1, 2), ("q2", 0, 2), ("q1", 0, 2), ("q1", 1, 2), ("q1", 0, 1), ("q2", 0, 1)]


@pytest.mark.parametrize("pick", ["random", "disagreement", "smallest_gap"])
def test_no_pick_reads_the_proxy(pick):
    # Other proxies, the same WoW pairs (all distinct): the same order.
    other = samples(proxies=((0.9, 0.1, 0.3), (0.4, 0.8, 0.0)))
    assert order(ranked_pairs(other, pick, 0)) == order(ranked_pairs(samples(), pick, 0))


def test_unknown_pick():
    with pytest.raises(ValueError, match="unknown pick 'best'; one of random, disagreement, smallest_gap"):
        ranked_pairs(samples(), "best", 0)


def test_a_budget_asks_whole_pairs():
    ranked = ranked_pairs(samples(), "random", 0)
    assert [len(pairs_within(ranked, c)) for c in (2, 3, 5, 12, 40)] == [1, 1, 2, 6, 6]


def judgments(verdicts: dict[tuple, tuple], follow_ups: int = 0) -> pd.DataFrame:
    """Both orders of each pair: (pair) -> (preferred shown i first, preferred shown j first); the first
    `follow_ups` rows needed a follow-up turn; each prompt 100 tokens, 2 generated."""
    rows = [{"dataset": "d", "question_id": q, "i": i, "j": j, "first": a, "second": b, "output": "",
             "follow_up_output": None, "verdict_source": "direct", "preferred": v, "prompt_tokens": 100,
             "generated_tokens": 2}
            for (q, i, j), both in verdicts.items() for (a, b), v in zip(((i, j), (j, i)), both)]
    table = pd.DataFrame(rows).astype({"preferred": "Int64", "prompt_tokens": "Int64", "generated_tokens": "Int64"})
    table.loc[:follow_ups - 1, "follow_up_output"] = "Preferred output: 1"
    return table


# The random pick's first 3 pairs (the largest budget, 6 calls). The less wrong answer is the higher index.
VERDICTS = {("q2", 0, 1): (1, 1),       # right, both orders agree
            ("q1", 1, 2): (1, 2),       # by position: one right, one wrong, no agreement
            ("q2", 1, 2): (1, None)}    # wrong, one order unparsed


def test_each_budget_is_counted_from_its_own_pairs():
    two, six = budget_rows(samples(), judgments(VERDICTS, follow_ups=1), "random", 0, [6, 2])
    assert two == pytest.approx({
        "pick": "random", "budget": 2, "pairs_asked": 1, "wow_pairs": 6, "judge_calls": 3,  # 2 + 1 follow-up
        "prompt_tokens": 200, "generated_tokens": 4,
        "accwow": 1.0, "accwow_n": 2, "accwow_questions": 1, "accwow_low": None, "accwow_high": None,
        "filtered": 1.0, "filtered_n": 1, "filtered_questions": 1, "filtered_low": None, "filtered_high": None,
        "set_size": 1}, nan_ok=True)
    # 6 calls: 5 parsed verdicts, 3 prefer the less wrong answer; one pair agrees in both orders.
    assert (six["budget"], six["pairs_asked"], six["judge_calls"], six["prompt_tokens"]) == (6, 3, 7, 600)
    assert (six["accwow"], six["accwow_n"], six["accwow_questions"]) == (pytest.approx(3 / 5), 5, 2)
    assert (six["filtered"], six["set_size"]) == (1.0, 1)


def test_judgments_of_another_ranking_are_refused():
    with pytest.raises(ValueError, match="2 of the 3 asked pairs have no judgment"):
        budget_rows(samples(), judgments({("q2", 0, 1): (1, 1)}), "random", 0, [6])


def test_a_budget_beyond_every_pair_asks_them_all():
    every = {p: (max(p[1:]), max(p[1:])) for p in SORTED}  # always right, always agreeing
    [row] = budget_rows(samples(), judgments(every), "smallest_gap", 0, [100])
    assert (row["pairs_asked"], row["judge_calls"], row["accwow"], row["set_size"]) == (6, 12, 1.0, 6)


def test_a_budget_under_one_pair_asks_nothing():
    nothing = judgments(VERDICTS).iloc[:0]  # no rows, the schema's columns
    for row in budget_rows(samples(), nothing, "disagreement", 0, [1, 0]):
        assert (row["pairs_asked"], row["judge_calls"], row["accwow"], row["accwow_n"], row["set_size"]) \
            == (0, 0, None, 0, 0)


def test_the_reference_is_every_pair_its_judgments_hold():
    # A judge capped at some pairs: the 3 of VERDICTS, 6 calls + 2 follow-ups.
    row = reference_row(samples(), judgments(VERDICTS, follow_ups=2))
    assert (row["pick"], row["budget"], row["pairs_asked"], row["wow_pairs"], row["judge_calls"]) \
        == (ALL_PAIRS, 8, 3, 6, 8)
    assert (row["accwow"], row["filtered"], row["set_size"]) == (pytest.approx(3 / 5), 1.0, 1)


def table_with_reference() -> pd.DataFrame:
    every = {p: (max(p[1:]), min(p[1:])) for p in SORTED}  # by position: each pair one right, one wrong
    cell = {"dataset": "d", "generator": "g", "evaluator": "e", "seed": 0, "samples": samples()}
    rank = {p: n for n, p in enumerate(order(ranked_pairs(samples(), "disagreement", 0)))}
    first_three = {p: v for p, v in every.items() if rank[p] < 3}
    return budget_table([{**cell, "pick": ALL_PAIRS, "judgments": judgments(every)},
                         {**cell, "pick": "disagreement", "judgments": judgments(first_three)},
                         {**cell, "pick": "random", "judgments": judgments(VERDICTS)}], [2, 6])


def test_the_table_sorts_picks_with_the_reference_last():
    table = table_with_reference()
    assert list(zip(table.pick, table.budget)) == [("random", 2), ("random", 6), ("disagreement", 2),
                                                   ("disagreement", 6), (ALL_PAIRS, 12)]
    assert list(table.columns) == BUDGET_COLUMNS
    reference = table.iloc[-1]
    assert (reference.pairs_asked, reference.accwow, reference.accwow_n, reference.set_size) == (6, 0.5, 12, 0)


def test_report_and_plot():
    table = table_with_reference()
    markdown = render_budget("t", table, "t.budget.png", 0.95)
    assert markdown.startswith("# Budget-aware judging: t") and "![" in markdown and "(t.budget.png)" in markdown
    assert "| g | e | 6 | random | 3 of 6 | 6 | 0.600 | none: 2 questions | 1.000 | none: 1 question | 1 |" in markdown
    # disagreement asks q1 1-2, then q2 1-2 and q2 0-2: one right and one wrong order each, none agree.
    assert "| g | e | 2 | disagreement | 1 of 6 | 2 | 0.500 | none: 1 question | — | — | 0 |" in markdown
    assert "| g | e | 6 | disagreement | 3 of 6 | 6 | 0.500 | none: 2 questions | — | — | 0 |" in markdown
    assert "| g | e | all | all pairs | 6 of 6 | 12 | 0.500 | none: 2 questions | — | — | 0 |" in markdown
    assert "2 calls" in markdown and "fewer than 5 questions" in markdown
    two_cells = pd.concat([table, table.assign(generator="g2")], ignore_index=True)
    assert plot_budget(two_cells, 0.95).startswith(b"\x89PNG")


def png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk


def test_the_plot_wraps_after_four_cells():
    table = table_with_reference()
    cells = lambda n: pd.concat([table.assign(generator=f"g{k}") for k in range(n)], ignore_index=True)  # noqa: E731
    (w2, h2), (w4, h4), (w5, h5) = (png_size(plot_budget(cells(n), 0.95)) for n in (2, 4, 5))
    assert w2 < w4 == w5 and h2 == h4 and h5 > 1.8 * h4
