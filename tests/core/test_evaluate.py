"""Alignment metrics against hand-computed values, paired bootstrap deltas, and the selection protocol."""
import math

import numpy as np
import pandas as pd
import pytest

from wow_core import evaluate


def answers(rows: dict[str, list[tuple]]) -> pd.DataFrame:
    """question id -> [(proxy, correct, confidence), ...]."""
    return pd.DataFrame([{"question_id": q, "sample_idx": i, "proxy": p, "correct": c,
                          "mean_logprob": math.log(conf) if conf else None}
                         for q, xs in rows.items() for i, (p, c, conf) in enumerate(xs)])


def test_metrics_by_hand():
    table = answers({"a": [(1.0, True, 0.9), (0.5, False, 0.5)], "b": [(None, None, 0.2), (0.2, False, 0.1)]})
    m = evaluate.alignment_metrics(table)
    assert m["proxy_score"] == pytest.approx((1 + 0.5 + 0 + 0.2) / 4)   # unextractable counts 0
    assert m["wrong_only_proxy"] == pytest.approx((0.5 + 0.2) / 2)      # extracted wrong answers only
    assert m["accuracy"] == pytest.approx(1 / 4)
    # Each answer alone in its bin: (|1-.9| + |0-.5| + |0-.2| + |0-.1|) / 4.
    assert m["ece"] == pytest.approx((0.1 + 0.5 + 0.2 + 0.1) / 4)


def test_empty_answer_has_no_confidence_and_is_left_out_of_ece_only():
    table = answers({"a": [(1.0, True, 0.8), (0.5, False, None)]})
    m = evaluate.alignment_metrics(table)
    assert m["accuracy"] == 0.5 and m["ece"] == pytest.approx(0.2)


def test_bootstrap_of_identical_models_is_zero_and_of_a_uniform_gain_is_that_gain():
    base = answers({q: [(0.2, False, 0.5), (0.4, False, 0.5)] for q in "abcdef"})
    same = evaluate.bootstrap_deltas(base, base, 200, seed=0)
    assert same["proxy_score"] == (0.0, 0.0, 0.0)
    better = base.assign(proxy=base["proxy"] + 0.1)
    delta, low, high = evaluate.bootstrap_deltas(base, better, 200, seed=0)["proxy_score"]
    assert delta == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_bootstrap_interval_covers_the_delta_and_resamples_questions():
    rng = np.random.default_rng(0)
    base = answers({f"q{i}": [(float(rng.uniform(0, .9)), False, 0.5) for _ in range(3)] for i in range(30)})
    aligned = base.assign(proxy=np.clip(base["proxy"] + rng.normal(0.05, 0.1, len(base)), 0, 0.99))
    delta, low, high = evaluate.bootstrap_deltas(base, aligned, 500, seed=1)["proxy_score"]
    assert low < delta < high and high - low > 0.01


def test_too_few_questions_get_no_interval():
    four = answers({q: [(0.2, False, 0.5), (0.6, False, 0.5)] for q in "abcd"})
    delta, low, high = evaluate.bootstrap_deltas(four, four.assign(proxy=four["proxy"] / 2), 200, seed=0)["proxy_score"]
    assert delta == pytest.approx(-0.2) and math.isnan(low) and math.isnan(high)
    one = evaluate.bootstrap_deltas(four[four.question_id == "a"], four[four.question_id == "a"], 200, seed=0)
    assert one["accuracy"][0] == 0 and all(math.isnan(x) for x in one["accuracy"][1:])


def test_selection_by_eval_loss_or_by_proxy_on_one_half():
    ids = [f"q{i}" for i in range(8)]
    select, report = evaluate.selection_halves(ids, seed=0)
    assert len(select) == len(report) == 4 and not set(select) & set(report)
    base = answers({q: [(0.5, False, 0.5)] for q in ids})

    def run(g: int, on_select: float, on_report: float, eval_loss: float | None) -> dict:
        table = answers({q: [(on_select if q in select else on_report, False, 0.5)] for q in ids})
        return {"preference_set": "oracle.self", "trained_on": "toy", "grid_point": g, "n_pairs": 10,
                "summary": {"eval_loss": eval_loss}, "samples": {"toy": table}}

    # Grid point 1 looks best where it is selected and is worse where it is reported; grid point 0
    # has the lower eval loss. A run without an eval loss is never chosen by it.
    runs = [run(0, 0.6, 0.6, 0.62), run(1, 0.9, 0.1, 0.69), run(2, 1.0, 1.0, None)]
    by_proxy = evaluate.alignment_table({"toy": base}, runs, seed=0, n_resamples=100, selection="proxy")
    row = by_proxy[by_proxy.metric == "proxy_score"].iloc[0]
    assert row.grid_point == 2 and row.selected_by == "proxy" and row.n_questions == 4
    row = evaluate.alignment_table({"toy": base}, runs[:2], seed=0, n_resamples=100, selection="proxy").iloc[0]
    assert row.grid_point == 1 and row.aligned == pytest.approx(0.1) and row.delta == pytest.approx(-0.4)
    # The paper's: the lowest eval loss, and every held-out question reported (none spent on selecting).
    by_loss = evaluate.alignment_table({"toy": base}, runs, seed=0, n_resamples=100)
    row = by_loss[by_loss.metric == "proxy_score"].iloc[0]
    assert (row.grid_point, row.selected_by, row.n_questions) == (0, "eval_loss", 8)
    assert row.aligned == pytest.approx(0.6) and row.delta == pytest.approx(0.1)
    # A single grid point has nothing to select: all held-out questions are reported.
    single = evaluate.alignment_table({"toy": base}, [run(0, 0.6, 0.6, None)], seed=0, n_resamples=100,
                                      selection="proxy")
    assert single[single.metric == "proxy_score"][["n_questions", "selected_by"]].values.tolist() == [[8, "single"]]
    with pytest.raises(ValueError, match="`selection` must be 'eval_loss' or 'proxy', got 'loss'"):
        evaluate.alignment_table({"toy": base}, runs, seed=0, n_resamples=100, selection="loss")


def test_reliability_bins_match_the_ece_bins():
    table = answers({"a": [(1.0, True, 0.95), (0.5, False, 0.91), (0.5, False, 0.15)]})
    bins = evaluate.reliability_bins(table)
    top = bins[bins.bin == 9].iloc[0]
    assert top.n == 2 and top.accuracy == 0.5 and top.confidence == pytest.approx(0.93)
    assert bins.n.sum() == 3
