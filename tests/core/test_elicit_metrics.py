"""WoW pairs, method verdicts, margins, AccWoW and ECE on hand-computed tables."""
import io
import math
import re

import numpy as np
import pandas as pd
import pytest

from wow_core.elicit import (consistency_scores, length_scores, logits_scores, method_pairs,
                             pairwise_pairs, wow_pairs)
from wow_core.metrics import (MIN_QUESTIONS, accwow, effective_pairs, expected_calibration_error, margin_filter,
                              wilson_interval)


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
    df = pd.DataFrame(rows, columns=["question_id", "sample_idx", "extracted", "proxy", "correct", "answer",
                                     "mean_logprob"])
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
    assert accwow(pairs).n == 3


def test_length_verdicts_and_ties():
    pairs = method_pairs("length", samples_table())
    by = {(r.question_id, r.i, r.j): (r.prefers_less_wrong, r.gap) for r in pairs.itertuples()}
    # q1 (1,2): lengths 2 vs 6, better 2 -> True, gap 4. (2,3): 6 vs 3, better 2 -> True, gap 3.
    # q2 (0,1): 8 vs 2, better 1 -> False, gap 6. (0,2): 8 vs 4, better 2 -> False. (1,2): 2 vs 4 -> True.
    assert by == {("q1", 1, 2): (True, 4), ("q1", 2, 3): (True, 3), ("q2", 0, 1): (False, 6),
                  ("q2", 0, 2): (False, 4), ("q2", 1, 2): (True, 2)}
    acc = accwow(pairs)
    assert (acc.value, acc.n) == (3 / 5, 5)


def test_consistency_tie_counts_as_not_preferring():
    pairs = method_pairs("consistency", samples_table())
    # q2 answers are all different: every score 1/3 -> three ties, none preferred.
    q2 = pairs[pairs.question_id == "q2"]
    assert len(q2) == 3 and not q2.prefers_less_wrong.any() and (q2.gap == 0).all()
    # q1 (1,2): "9" 2/5 vs "8" 1/5, better 2 -> False. (2,3): 1/5 vs 2/5 better 2 -> False.
    assert accwow(pairs).value == 0


def test_margin_filter_keeps_largest_gaps():
    pairs = pd.DataFrame({"question_id": ["q1", "q1", "q2", "q3", "q3"], "gap": [0.1, 0.9, 0.5, 0.5, 0.0],
                          "prefers_less_wrong": [False, True, True, False, False]})
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
    assert accwow(pd.DataFrame({"question_id": [], "prefers_less_wrong": []})).value is None


def clustered(per_question: list[tuple[int, int]]) -> pd.DataFrame:
    """A pairs table: (right, pairs) per question."""
    rows = [(f"q{i}", j < right) for i, (right, n) in enumerate(per_question) for j in range(n)]
    return pd.DataFrame(rows, columns=["question_id", "prefers_less_wrong"])


def test_intervals_rest_on_questions_not_pairs():
    z = 1.959963984540054
    # Ten questions, one pair each: the pairs are independent and the interval is Wilson's on them.
    independent = accwow(clustered([(1, 1)] * 7 + [(0, 1)] * 3))
    assert (independent.n, independent.n_questions) == (10, 10)
    assert (independent.low, independent.high) == pytest.approx(wilson_interval(7, 10))
    # One question with ten pairs, all right: no interval; ten questions, one right pair each: Wilson
    # on 10 of 10, [10 / (10 + z^2), 1].
    one = accwow(clustered([(10, 10)]))
    assert (one.value, one.n, one.n_questions, one.low, one.high) == (1.0, 10, 1, None, None)
    ten = accwow(clustered([(1, 1)] * 10))
    assert (ten.low, ten.high) == pytest.approx((10 / (10 + z * z), 1.0))
    # Twenty pairs, all right, from five questions count as five: the interval of 5 of 5, not of 20 of 20.
    five = accwow(clustered([(4, 4)] * 5))
    assert (five.low, five.high) == pytest.approx((5 / (5 + z * z), 1.0))
    assert five.low < wilson_interval(20, 20)[0]
    # Ten questions of 2 pairs, five all right and five all wrong: p = 0.5, Var = 10 * 1^2 / 20^2 =
    # 0.025, n_eff = 0.25 / 0.025 = 10 (the questions); Wilson at 5 of 10.
    split = accwow(clustered([(2, 2)] * 5 + [(0, 2)] * 5))
    assert (split.low, split.high) == pytest.approx(wilson_interval(5, 10))
    # Each question one right and one wrong: no spread between questions, n_eff capped at the 20 pairs.
    even = accwow(clustered([(1, 2)] * 10))
    assert (even.low, even.high) == pytest.approx(wilson_interval(10, 20))
    # Unequal questions by hand: (3 of 4), (0 of 1), (1 of 1), (2 of 2), (0 of 2): p = 6/10,
    # sum (k - p n)^2 = 0.36 + 0.36 + 0.16 + 0.64 + 1.44 = 2.96, Var = 0.0296, n_eff = 0.24 / 0.0296.
    mixed = accwow(clustered([(3, 4), (0, 1), (1, 1), (2, 2), (0, 2)]))
    n_eff = 0.24 / 0.0296
    assert effective_pairs(np.array([3, 0, 1, 2, 0]), np.array([4, 1, 1, 2, 2])) == pytest.approx(n_eff)
    assert (mixed.low, mixed.high) == pytest.approx(wilson_interval(0.6 * n_eff, n_eff))
    # Four questions are too few for any interval; five are enough.
    assert accwow(clustered([(1, 2)] * 4)).low is None and MIN_QUESTIONS == 5

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
    assert filtered["gap"].isna().all()


def test_ece_by_hand():
    conf = np.array([0.05, 0.15, 0.95, 0.9, 1.0])
    correct = np.array([0, 1, 1, 0, 1])
    # bins: (0,.1]: {.05 wrong} -> |0-.05| * 1/5; (.1,.2]: {.15 right} -> |1-.15| * 1/5;
    # (.8,.9]: {.9 wrong} -> .9 * 1/5; (.9,1]: {.95, 1.0 both right} -> |1-.975| * 2/5.
    want = (0.05 + 0.85 + 0.9) / 5 + 0.025 * 2 / 5
    assert expected_calibration_error(conf, correct) == pytest.approx(want)
    assert expected_calibration_error(np.array([0.0]), np.array([0])) == 0


def test_report_cells_say_their_questions_and_print_no_interval_on_too_few():
    from wow_core.report import accwow_table, render_markdown
    entry = {"dataset": "toy", "generator": "g", "evaluator": "(self)", "method": "length"}
    few = {**entry, "pairs": clustered([(3, 4), (1, 3), (2, 2)]).assign(gap=1.0)}
    many = {**entry, "method": "logits", "pairs": clustered([(1, 1)] * 7 + [(0, 1)] * 3).assign(gap=1.0)}
    table = accwow_table([few, many], margins=[1.0], confidence=0.95)
    assert table[["n_pairs", "n_questions"]].values.tolist() == [[9, 3], [10, 10]]
    assert table.ci_low.isna().tolist() == [True, False]
    md = render_markdown("toy", table, [], [], {"toy": "plot.png"}, 0.95)
    assert "| toy | g | (self) | length | 1 | 0.667 | 9 | 3 | none: 3 questions |" in md
    low, high = wilson_interval(7, 10)
    assert f"| toy | g | (self) | logits | 1 | 0.700 | 10 | 10 | [{low:.3f}, {high:.3f}] |" in md


def accwow_cells(dataset: str, generator: str, cells: list[tuple]) -> pd.DataFrame:
    """Hand AccWoW table rows: (evaluator, method, margin, accwow, n_pairs, n_questions, low, high)."""
    from wow_core.report import ACCWOW_COLUMNS
    return pd.DataFrame([dict(zip(ACCWOW_COLUMNS, (dataset, generator, *c))) for c in cells], columns=ACCWOW_COLUMNS)


def test_plotted_methods_are_sorted_by_their_best_accwow_on_all_pairs():
    from wow_core.methods import SELF
    from wow_core.report import accwow_row_order
    table = accwow_cells("toy", "g", [
        (SELF, "length", 1.0, 0.55, 40, 10, 0.4, 0.7), (SELF, "length", 0.5, 0.95, 20, 10, 0.8, 1.0),
        ("a", "pairwise", 1.0, 0.52, 40, 10, 0.4, 0.65), ("b", "pairwise", 1.0, 0.80, 40, 10, 0.7, 0.9),
        ("a", "score_k1", 1.0, 0.70, 40, 10, 0.6, 0.8), ("b", "score_k1", 1.0, 0.10, 40, 10, 0.0, 0.2),
        (SELF, "logits", 1.0, None, 0, 0, None, None),
        (SELF, "consistency", 1.0, 0.55, 40, 3, None, None)])
    # pairwise by evaluator b (0.80) over score_k1 by a (0.70); margin 0.5's 0.95 of length does not count;
    # length and consistency tie at 0.55 (by name); logits has no pairs: last.
    assert accwow_row_order(table) == ["pairwise", "score_k1", "consistency", "length", "logits"]


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()  # raises on a truncated or corrupt file
    return image.size


def test_one_accwow_plot_per_dataset_of_a_size_that_grows_with_its_rows():
    from wow_core.methods import SELF
    from wow_core.report import plot_accwow
    few = accwow_cells("small", "g", [
        (SELF, "length", m, 0.6, 40, 10, 0.45, 0.73) for m in (1.0, 0.5)] + [
        (e, "score_k1", m, 0.7, 40, 10, 0.55, 0.82) for e in ("a", "b") for m in (1.0, 0.5)] + [
        ("a", "pairwise", 1.0, 1.0, 40, 10, 0.72, 1.0), ("b", "pairwise", 1.0, 0.6, 12, 3, None, None)])
    methods = ["length", "consistency", "logits", "score_k1", "score_k5", "pairwise", "pairwise_filtered"]
    many = pd.concat([accwow_cells("large", g, [(SELF if m in ("length", "consistency", "logits") else "a", m, 1.0,
                                                 0.5 + i / 20, 40, 10, 0.4, 0.8) for i, m in enumerate(methods)])
                      for g in ("g1", "g2")])
    plots = plot_accwow(pd.concat([few, many], ignore_index=True), 0.95, ["small", "large", "empty"])
    assert list(plots) == ["small", "large", "empty"]
    (w_small, h_small), (w_large, h_large) = png_size(plots["small"]), png_size(plots["large"])
    # Two margins side by side against one; seven methods for each of two generators against three methods.
    assert 800 <= w_small < 2000 and 300 <= h_small < 900 and w_large < w_small and h_large > 1.5 * h_small
    assert png_size(plots["empty"])[0] > 100  # a dataset without cells says so instead of failing the report
    assert list(plot_accwow(few)) == ["small"]


def test_plot_file_labels_are_file_safe_and_distinct():
    from wow_core.report import plot_labels
    assert plot_labels(["nlgraph_shortest_path", "mmlu pro/law", "mmlu pro law", "nlgraph_shortest_path"]) == {
        "nlgraph_shortest_path": "nlgraph_shortest_path", "mmlu pro/law": "mmlu_pro_law",
        "mmlu pro law": "mmlu_pro_law.2"}


def test_the_markdown_links_each_datasets_plot_under_its_heading():
    from wow_core.methods import SELF
    from wow_core.report import render_markdown
    table = pd.concat([accwow_cells(ds, "g", [(SELF, "length", 1.0, 0.6, 40, 10, 0.45, 0.73)]) for ds in ("d1", "d2")])
    md = render_markdown("toy", table, [], [], {"d1": "toy.d1-abc.png", "d2": "toy.d2-abc.png"}, 0.95)
    plots = md.split("## AccWoW plots")[1]
    sections = dict(s.split("\n", 1) for s in plots.split("\n### ")[1:])
    assert list(sections) == ["d1", "d2"]
    for ds, body in sections.items():
        images = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", body, flags=re.M)  # on a line of its own
        assert images == [f"toy.{ds}-abc.png"]
    assert "![" not in md.split("## AccWoW plots")[0] and "![" not in render_markdown("toy", table, [], [], {}, 0.95)


def test_the_papers_protocol_by_hand():
    s = samples_table()
    # Lengths in tokens, not characters: q2 (0, 1) is 8 characters vs 2, but 3 tokens vs 7.
    s["n_tokens"] = [4, 2, 6, 3, 1, 3, 7, 4]
    wow, paper = method_pairs("length", s), method_pairs("length", s, protocol="paper")
    assert wow.set_index(["question_id", "i", "j"]).loc[("q2", 0, 1), "prefers_less_wrong"] == False  # noqa: E712
    assert paper.set_index(["question_id", "i", "j"]).loc[("q2", 0, 1), "prefers_less_wrong"] == True  # noqa: E712
    # Consistency over the extracted answers: q1's "9" is 2 of 4 extracted (wow: 2 of 5 samples), "8" 1 of 4.
    c = consistency_scores(s, "paper")
    assert (c[("q1", 1)], c[("q1", 2)]) == (pytest.approx(2 / 4), pytest.approx(1 / 4))
    gaps = method_pairs("consistency", s, protocol="paper").set_index(["question_id", "i", "j"]).gap
    assert gaps[("q1", 1, 2)] == pytest.approx(1 / 4)  # wow: 1/5
    # Unfiltered pairwise: the paper asks one order (lower index first) and counts an unparsed verdict as
    # a miss. q2's three orders (0,1) first 0 -> chose 1, right; (0,2) first 0 -> chose 0, wrong; (1,2)
    # first 1 -> chose 1, wrong; 1 of 3. wow: the 5 parsed verdicts of both orders, 3 of 5.
    pairs, j = wow_pairs(samples_table()), pairwise_judgments()
    paper_pw = pairwise_pairs(pairs, j, filtered=False, protocol="paper")
    assert paper_pw[["i", "j", "prefers_less_wrong"]].values.tolist() == [[0, 1, True], [0, 2, False], [1, 2, False]]
    j.loc[(j.i == 0) & (j.j == 2) & (j["first"] == 0), "preferred"] = None     # unparsed: still a miss
    assert (pairwise_pairs(pairs, j, filtered=False, protocol="paper").prefers_less_wrong.tolist()
            == [True, False, False])
    assert len(pairwise_pairs(pairs, j, filtered=False)) == 4                    # wow leaves it out
    # Top-p: floor(p N) pairs (wow: ceil); floor 0 keeps every pair.
    table = pd.DataFrame({"question_id": list("abcde"), "gap": [5.0, 4, 3, 2, 1], "prefers_less_wrong": [True] * 5})
    assert len(margin_filter(table, 0.5, "paper")) == 2 and len(margin_filter(table, 0.5)) == 3
    assert len(margin_filter(table, 0.1, "paper")) == 5 and len(margin_filter(table, 0.1)) == 1
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        method_pairs("length", s, protocol="reference")
