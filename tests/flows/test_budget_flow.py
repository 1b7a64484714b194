"""Budget-aware judging in the elicitation flow, on the real packaged model: each pick's judge is asked
only about the first pairs of its ranking at the largest budget, and each smaller budget's point is
recomputed here, by hand, from the stored samples and verdicts."""
import json

import numpy as np
import pytest
from prefect.testing.utilities import prefect_test_harness
from servers import run_artifacts

from flows.elicit import elicit
from wow_core.config import BudgetConfig, DatasetConfig, ExperimentConfig, JudgeConfig, SamplingConfig
from wow_core.store import Store

pytestmark = pytest.mark.slow

SEED = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = ExperimentConfig(
        name="tiny-budget", store=str(tmp_path_factory.mktemp("store")),
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=6, seed=1)],
        sampling=SamplingConfig(n=4, max_new_tokens=32, shard_size=3, extraction_max_new_tokens=12),
        judge=JudgeConfig(methods=["consistency", "logits", "pairwise"], reasoning=False, max_new_tokens=12,
                          budget=BudgetConfig(calls=[4, 8], seed=SEED)))
    with prefect_test_harness(server_startup_timeout=180):
        state = elicit(config, return_state=True)
        assert state.is_completed(), state
        artifacts = run_artifacts(state)
    return config, state.result(), {a.key: a for a in artifacts if a.key}


def stored(config, pattern: str):
    store = Store(config.store)
    [uri] = store.fs.glob(f"{config.store}/{pattern}")
    return store.read_table(uri)


def wow_pairs_by_hand(samples) -> list[tuple[str, int, int, int]]:
    """(question, i, j, the less wrong index) of every pair of wrong answers with different proxies."""
    out = []
    wrong = samples[(samples.correct == False) & samples.proxy.notna()]  # noqa: E712
    for q, g in wrong.groupby("question_id"):
        rows = sorted(zip(g.sample_idx.astype(int), g.proxy))
        out += [(q, i, j, i if pi > pj else j) for a, (i, pi) in enumerate(rows) for j, pj in rows[a + 1:] if pi != pj]
    return sorted(out)


def test_random_pick_asks_the_seeded_draw_and_each_budget_is_its_start(run):
    config, uris, _ = run
    samples = stored(config, "samples/nlgraph_shortest_path.smollm2-135m-*.parquet")
    pairs = wow_pairs_by_hand(samples)
    assert len(pairs) > 4  # the budgets ask a part of them
    drawn = [pairs[k] for k in np.random.default_rng(SEED).permutation(len(pairs))]
    judged = stored(config, "judgments/nlgraph_shortest_path.smollm2-135m.budget-random-8-*.parquet")
    # The largest budget, 8 calls: the first 4 pairs of the draw, each in both orders, nothing else.
    asked = list(dict.fromkeys(zip(judged.question_id, judged.i, judged.j)))
    assert asked == [p[:3] for p in drawn[:4]] and len(judged) == 8
    assert sorted(zip(judged.first, judged.second)) == sorted(
        [(i, j) for _, i, j, _ in drawn[:4]] + [(j, i) for _, i, j, _ in drawn[:4]])
    table = Store(config.store).read_table(uris["budget"]["parquet"])
    better = {p[:3]: p[3] for p in pairs}
    for calls in (4, 8):
        row = table[(table.pick == "random") & (table.budget == calls)].iloc[0]
        mine = judged[[(q, i, j) in {p[:3] for p in drawn[:calls // 2]} for q, i, j in
                       zip(judged.question_id, judged.i, judged.j)]]
        parsed = mine[mine.preferred.notna()]
        right = [int(p) == better[(q, i, j)] for q, i, j, p in
                 zip(parsed.question_id, parsed.i, parsed.j, parsed.preferred)]
        assert row.pairs_asked == calls // 2 and row.wow_pairs == len(pairs) and row.judge_calls == calls
        assert row.accwow_n == len(right) and (row.accwow == pytest.approx(np.mean(right)) if right
                                               else np.isnan(row.accwow))
        # The filtered set: pairs whose two parsed verdicts agree.
        agreed = parsed.groupby(["question_id", "i", "j"]).preferred.agg(["size", "nunique"])
        assert row.set_size == int(((agreed["size"] == 2) & (agreed["nunique"] == 1)).sum())


def test_signal_picks_rank_by_the_log_prob_gap(run):
    config, uris, _ = run
    samples = stored(config, "samples/nlgraph_shortest_path.smollm2-135m-*.parquet")
    logprob = {(q, int(i)): lp for q, i, lp in zip(samples.question_id, samples.sample_idx, samples.mean_logprob)}
    judged = stored(config, "judgments/nlgraph_shortest_path.smollm2-135m.budget-smallest_gap-8-*.parquet")
    asked = list(dict.fromkeys(zip(judged.question_id, judged.i, judged.j)))
    gaps = sorted(abs(logprob[(q, i)] - logprob[(q, j)]) for q, i, j, _ in wow_pairs_by_hand(samples))
    assert [abs(logprob[(q, i)] - logprob[(q, j)]) for q, i, j in asked] == pytest.approx(gaps[:4])
    table = Store(config.store).read_table(uris["budget"]["parquet"])
    assert set(table.pick) == {"random", "disagreement", "smallest_gap", "all pairs"}
    assert sorted(table[table.pick == "disagreement"].budget) == [4, 8]
    # The grid's full pairwise judge is the reference point: every pair, both orders.
    full = table[table.pick == "all pairs"].iloc[0]
    assert full.pairs_asked == full.wow_pairs == len(wow_pairs_by_hand(samples))
    assert full.judge_calls == 2 * full.wow_pairs


def test_the_report_and_the_ui(run):
    config, uris, artifacts = run
    store = Store(config.store)
    markdown = store.read_text(uris["budget"]["md"])
    assert markdown.startswith("# Budget-aware judging: tiny-budget") and "random" in markdown
    assert store.read_bytes(uris["budget"]["png"]).startswith(b"\x89PNG")
    assert artifacts["tiny-budget-elicit-judge-budget-report"].data.count("](data:image/png;base64,") == 1
    rows = json.loads(artifacts["tiny-budget-elicit-judge-budget"].data)
    assert len(rows) == 3 * 2 + 1
