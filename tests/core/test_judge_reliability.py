"""Judge reliability (position consistency, first-position share, Cohen's kappa, parse rate) on
hand-computed pairwise tables."""
import pandas as pd
import pytest

from wow_core.judge_reliability import both_orders, cohens_kappa, pairwise_reliability, picks_by_position
from wow_core.metrics import wilson_interval
from wow_core.report import judge_summary, position_findings

Z2 = 1.959963984540054 ** 2


def judgments(rows: list[tuple]) -> pd.DataFrame:
    """(question, i, j, shown first, preferred or None): both orders are rows of their own."""
    df = pd.DataFrame([{"dataset": "toy", "question_id": q, "i": i, "j": j, "first": first,
                        "second": j if first == i else i, "preferred": chosen, "verdict_source": "direct"}
                       for q, i, j, first, chosen in rows])
    return df.astype({"preferred": "Int64"})


def asked_both_ways(pairs: list[tuple], pick) -> list[tuple]:
    """Both orders of each (question, i, j); `pick(i, j, first)` is the verdict."""
    return [(q, i, j, first, pick(i, j, first)) for q, i, j in pairs for first in (i, j)]


SIX_QUESTIONS = [(f"q{n}", i, j) for n in range(6) for i, j in ((0, 1), (1, 2))]


def test_a_judge_that_always_picks_the_first_answer():
    table = judgments(asked_both_ways(SIX_QUESTIONS, lambda i, j, first: first))
    rel = pairwise_reliability(table)
    # 24 verdicts, all parsed, all for the first answer; 12 pairs, none consistent. All-or-nothing
    # rates count each of the 6 questions once: Wilson on 6 of 6, or 0 of 6.
    assert (rel["parse_rate"].value, rel["parse_rate"].n, rel["parse_rate"].n_questions) == (1.0, 24, 6)
    assert rel["first_position"].value == 1.0
    assert (rel["first_position"].low, rel["first_position"].high) == pytest.approx((6 / (6 + Z2), 1.0))
    assert (rel["position_consistency"].value, rel["position_consistency"].n) == (0.0, 12)
    assert (rel["position_consistency"].low, rel["position_consistency"].high) == pytest.approx((0.0, Z2 / (6 + Z2)))
    # Forward always picks i, reverse always j: observed agreement 0, chance 1*0 + 0*1 = 0, kappa 0.
    assert rel["kappa"] == 0 and (rel["kappa_low"], rel["kappa_high"]) == (0, 0)
    assert picks_by_position(rel["first_position"])
    summary = {"dataset": "toy", "generator": "g", "evaluator": "e", "method": "pairwise",
               **judge_summary("pairwise", table)}
    [line] = position_findings([summary])
    assert line.startswith("- **e judging g's answers on toy picks the answer shown first in 100% of its 24 "
                           "parsed verdicts**") and "the two orders agree on 0% of the pairs" in line


def test_kappa_and_the_unparsed_by_hand():
    # Five pairs of one question with both orders parsed; forward (i shown first) chose i on pairs
    # 1, 2, 5; reverse (j first) chose i on 1 and 5. A sixth pair's reverse verdict did not parse.
    forward = {1: 1, 2: 2, 3: 4, 4: 5, 5: 5}    # pair n is (n, n + 1): choosing n = the lower index
    rows = [("q", n, n + 1, n, forward[n]) for n in range(1, 6)]
    rows += [("q", n, n + 1, n + 1, n if n in (1, 5) else n + 1) for n in range(1, 6)]
    rows += [("q", 7, 8, 7, 7), ("q", 7, 8, 8, None)]
    table = judgments(rows)
    pairs = both_orders(table)
    assert len(pairs) == 5
    # Forward chose the lower index on 1, 2, 5 (0.6), reverse on 1, 5 (0.4); they agree on 1, 3, 4, 5.
    # Observed 0.8, chance 0.6*0.4 + 0.4*0.6 = 0.48, kappa = 0.32 / 0.52.
    assert cohens_kappa(pairs) == pytest.approx(0.32 / 0.52)
    rel = pairwise_reliability(table)
    assert (rel["parse_rate"].value, rel["parse_rate"].n) == (11 / 12, 12)
    assert rel["position_consistency"].value == pytest.approx(0.8)
    # One question: rates and kappa without intervals.
    assert rel["parse_rate"].low is None and rel["kappa_low"] is None
    assert not picks_by_position(rel["first_position"])


def test_a_judge_that_always_picks_the_lower_index_has_no_kappa_and_no_position_bias():
    rel = pairwise_reliability(judgments(asked_both_ways(SIX_QUESTIONS, lambda i, j, first: i)))
    assert rel["kappa"] is None  # both orders always the same side: chance agreement is 1
    assert rel["position_consistency"].value == 1.0 and rel["first_position"].value == 0.5
    # Each question one first and one second pick per pair: no spread between questions, n_eff = 24.
    assert (rel["first_position"].low, rel["first_position"].high) == pytest.approx(wilson_interval(12, 24))
    assert not picks_by_position(rel["first_position"])


def test_the_judge_table_of_a_config_without_a_judge_model(tmp_path):
    # A grid of self signals only has no judge rows; the table is still written with its key columns
    # (the report step of such a grid once failed on `drop(columns="uri")` of an empty frame).
    from wow_core.report import judge_table
    from wow_core.store import Store
    store = Store(str(tmp_path))
    store.write_table(str(tmp_path / "judges.parquet"), judge_table([]))
    back = store.read_table(str(tmp_path / "judges.parquet"))
    assert list(back.columns) == ["dataset", "generator", "evaluator", "method"] and back.empty
    row = {"dataset": "toy", "generator": "g", "evaluator": "e", "method": "pairwise", "uri": "x", "verdicts": 4}
    assert judge_table([row]).to_dict("records") == [{k: v for k, v in row.items() if k != "uri"}]
