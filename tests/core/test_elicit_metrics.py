"""WoW pairs, method verdicts, margins, AccWoW and ECE on hand-computed tables."""
import math

import numpy as np
import pandas as pd
import pytest

from wow_core.elicit import (consistency_scores, length_scores, logits_scores, method_pairs, pairwise_agreement,
                             pairwise_pairs, wow_pairs)
from wow_core.metrics import accwow, expected_calibration_error, margin_filter, wilson_interval


def samples_table():
    # q1: 5 samples. 0 correct, 1-3 wrong with proxies .5 .8 .5, 4 unextractable.
    # q2: 3 samples, all wrong: proxies .2 .6 .9.
    rows = [
        ("q1", 0, "7", 1.0, True, "aaaa", -0.5),
        ("q1", 1, "9", 0.5, False, "aa", -1.0),
        ("q1", 2, "8", 0.8, False, "aaaaaa", -2.0),
        ("q1", 3, "9", 0.5, False, "aaa", -0.1),
        ("q1", 4, None, None, None, "a", -3.0),
        ("q2", 0, "3", 0.2, False, "bbbbbbbb", -0.2),
        ("q2", 1, "5", 0.6, False, "bb", -0.9),
        ("q2", 2, "6", 0.9, False, "bbbb", -0.4),
    ]
    df = pd.DataFrame(rows, columns=["question_id", "sample_idx", "extracted", "proxy", "correct", "answer", "mean_logprob"])
    df["dataset"] = "toy"
    df["correct"] = df["correct"].astype("boolean")
    return df


def test_wow_pairs_only_wrong_and_different_proxy():
    pairs = wow_pairs(samples_table())
    got = {(r.question_id, r.i, r.j, r.better) for r in pairs.itertuples()}
    # q1: (1,2) better 2; (2,3) better 2; (1,3) equal proxy -> no pair. 0 correct and 4 unextractable excluded.
    # q2: (0,1)->1, (0,2)->2, (1,2)->2.
    assert got == {("q1", 1, 2, 2), ("q1", 2, 3, 2), ("q2", 0, 1, 1), ("q2", 0, 2, 2), ("q2", 1, 2, 2)}


def test_self_signal_scores():
    s = samples_table()
    assert length_scores(s)[("q2", 0)] == 8
    assert logits_scores(s)[("q1", 3)] == -0.1
    c = consistency_scores(s)
    assert c[("q1", 1)] == pytest.approx(2 / 5)  # "9" twice among 5 samples
    assert c[("q1", 2)] == pytest.approx(1 / 5)
    assert math.isnan(c[("q1", 4)])


def test_logits_leave_out_answers_without_logprobs():
    # An endpoint that returned no log-probs for q2's sample 1: its two pairs drop out, the rest stay.
    s = samples_table()
    s.loc[(s.question_id == "q2") & (s.sample_idx == 1), "mean_logprob"] = None
    pairs = method_pairs("logits", s)
    assert {(r.question_id, r.i, r.j) for r in pairs.itertuples()} == {("q1", 1, 2), ("q1", 2, 3), ("q2", 0, 2)}
    assert accwow(pairs).n_pairs == 3


def test_length_verdicts_and_ties():
    pairs = method_pairs("length", samples_table())
    by = {(r.question_id, r.i, r.j): (r.prefers_less_wrong, r.gap) for r in pairs.itertuples()}
    # q1 (1,2): lengths 2 vs 6, better 2 -> True, gap 4. (2,3): 6 vs 3, better 2 -> True, gap 3.
    # q2 (0,1): 8 vs 2, better 1 -> False, gap 6. (0,2): 8 vs 4, better 2 -> False. (1,2): 2 vs 4 -> True.
    assert by == {("q1", 1, 2): (True, 4), ("q1", 2, 3): (True, 3), ("q2", 0, 1): (False, 6),
                  ("q2", 0, 2): (False, 4), ("q2", 1, 2): (True, 2)}
    acc = accwow(pairs)
    assert (acc.value, acc.n_pairs) == (3 / 5, 5)


def test_consistency_tie_counts_as_not_preferring():
    pairs = method_pairs("consistency", samples_table())
    # q2 answers are all different: every score 1/3 -> three ties, none preferred.
    q2 = pairs[pairs.question_id == "q2"]
    assert len(q2) == 3 and not q2.prefers_less_wrong.any() and (q2.gap == 0).all()
    # q1 (1,2): "9" 2/5 vs "8" 1/5, better 2 -> False. (2,3): 1/5 vs 2/5 better 2 -> False.
    assert accwow(pairs).value == 0


def test_margin_filter_keeps_largest_gaps():
    pairs = pd.DataFrame({"gap": [0.1, 0.9, 0.5, 0.5, 0.0], "prefers_less_wrong": [False, True, True, False, False]})
    assert margin_filter(pairs, 1.0).index.tolist() == [0, 1, 2, 3, 4]
    assert margin_filter(pairs, 0.5).index.tolist() == [1, 2, 3]  # ceil(2.5) = 3, equal gaps in table order
    assert margin_filter(pairs, 0.1).index.tolist() == [1]
    assert accwow(margin_filter(pairs, 0.5)).value == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="top_p"):
        margin_filter(pairs, 0)


def test_wilson_interval_by_hand():
    # k=8, n=10, z=1.959964: centre = (0.8 + z^2/20) / (1 + z^2/10); half-width from the formula.
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert accwow(pd.DataFrame({"prefers_less_wrong": []})).value is None


def pairwise_judgments():
    # q2 pairs: (0,1) better 1; (0,2) better 2; (1,2) better 2.
    rows = [
        ("q2", 0, 1, 0, 1, 1), ("q2", 0, 1, 1, 0, 1),        # both orders choose 1: agree, right
        ("q2", 0, 2, 0, 2, 0), ("q2", 0, 2, 2, 0, 2),        # disagree (position bias)
        ("q2", 1, 2, 1, 2, 1), ("q2", 1, 2, 2, 1, None),     # one unparsed
    ]
    df = pd.DataFrame(rows, columns=["question_id", "i", "j", "first", "second", "preferred"])
    df["dataset"] = "toy"
    df["preferred"] = df["preferred"].astype("Int64")
    return df


def test_pairwise_unfiltered_and_filtered():
    pairs = wow_pairs(samples_table())
    j = pairwise_judgments()
    unfiltered = pairwise_pairs(pairs, j, filtered=False)
    # 5 parsed judgments: right, right, wrong, right, wrong -> 3/5.
    assert len(unfiltered) == 5 and unfiltered.prefers_less_wrong.sum() == 3
    filtered = pairwise_pairs(pairs, j, filtered=True)
    assert filtered[["i", "j"]].values.tolist() == [[0, 1]] and filtered.prefers_less_wrong.all()
    assert pairwise_agreement(j) == (1, 2)
    assert filtered["gap"].isna().all()


def test_ece_by_hand():
    conf = np.array([0.05, 0.15, 0.95, 0.9, 1.0])
    correct = np.array([0, 1, 1, 0, 1])
    # bins: (0,.1]: {.05 wrong} -> |0-.05| * 1/5; (.1,.2]: {.15 right} -> |1-.15| * 1/5;
    # (.8,.9]: {.9 wrong} -> .9 * 1/5; (.9,1]: {.95, 1.0 both right} -> |1-.975| * 2/5.
    want = (0.05 + 0.85 + 0.9) / 5 + 0.025 * 2 / 5
    assert expected_calibration_error(conf, correct) == pytest.approx(want)
    assert expected_calibration_error(np.array([0.0]), np.array([0])) == 0
