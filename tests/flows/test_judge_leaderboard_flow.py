"""Judge ensembles and the judge leaderboard in the elicitation flow, on the real packaged model: two
evaluators (the demo's two configurations of the packaged weights), one ensemble of them by two rules, two
datasets; the ensemble's cells and the leaderboard are recomputed here from the stored judgments."""
import json
import re

import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness
from servers import run_artifacts

from flows.elicit import elicit
from wow_core.config import (DatasetConfig, EnsembleConfig, ExperimentConfig, JudgeConfig, ReportConfig,
                             SamplingConfig, TransformersModel)
from wow_core.store import Store

pytestmark = pytest.mark.slow

PLAIN, STEPWISE = "smollm2-135m", "smollm2-135m-stepwise"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store"))
    config = ExperimentConfig(
        name="tiny-lb", store=store,
        models=[TransformersModel(name=PLAIN),
                TransformersModel(name=STEPWISE, temperature=0.7,
                                  system_prompt="You are a careful solver. Work step by step, check each step, "
                                                "then state one final answer.")],
        generators=[PLAIN], evaluators=[PLAIN, STEPWISE],
        datasets=[DatasetConfig(name="nlgraph_shortest_path", label="sp-1", n_questions=3, seed=1),
                  DatasetConfig(name="nlgraph_shortest_path", label="sp-2", n_questions=3, seed=2)],
        sampling=SamplingConfig(n=4, max_new_tokens=32, shard_size=3, extraction_max_new_tokens=12),
        judge=JudgeConfig(score_k=[1], reasoning=False, max_new_tokens=12, max_pairs_per_question=2,
                          ensembles=[EnsembleConfig(name="both", members=[PLAIN, STEPWISE], rule="majority"),
                                     EnsembleConfig(name="both", members=[PLAIN, STEPWISE], rule="mean_score",
                                                    method="score_k1")]),
        report=ReportConfig(leaderboard=True))
    with prefect_test_harness(server_startup_timeout=180):
        state = elicit(config, return_state=True)
        assert state.is_completed(), state
        artifacts = run_artifacts(state)
    return config, state.result(), {a.key: a for a in artifacts if a.key}


def stored(config, what: str, questions: set[str]) -> pd.DataFrame:
    """The rows of `questions` in the stored tables whose names match `what` (a glob under the store; the
    files of one dataset's two labels share their name but for the key)."""
    store = Store(config.store)
    tables = [store.read_table(u) for u in store.fs.glob(f"{config.store}/{what}")]
    table = pd.concat(tables, ignore_index=True)
    return table[table.question_id.isin(questions)]


def majority_by_hand(samples, tables) -> tuple[int, int]:
    """(pairs preferring the less wrong answer, pairs with a vote) of the majority of both members' parsed
    verdicts, both orders each a vote, computed from the rows themselves."""
    proxy = {(q, i): p for q, i, p in zip(samples.question_id, samples.sample_idx, samples.proxy)}
    votes: dict[tuple, list[int]] = {}
    for t in tables:
        for q, i, j, chosen in zip(t.question_id, t.i, t.j, t.preferred.astype(object)):
            if not pd.isna(chosen):
                votes.setdefault((q, i, j), []).append(int(chosen))
    right = 0
    for (q, i, j), chosen in votes.items():
        better = i if proxy[(q, i)] > proxy[(q, j)] else j
        worse = j if better == i else i
        right += chosen.count(better) > chosen.count(worse)
    return right, len(votes)


def test_ensemble_rows_sit_beside_their_members_and_match_the_judgments(run):
    config, uris, _ = run
    table = Store(config.store).read_table(uris["parquet"])
    both = table[table.evaluator == "both"]
    assert both[both.method == "pairwise_majority"].margin.tolist() == [1.0, 1.0]  # one per dataset, margin 1 only
    assert sorted(both[both.method == "score_k1_mean"].margin) == [0.1, 0.1, 0.5, 0.5, 1.0, 1.0]
    for member in (PLAIN, STEPWISE):
        assert {"pairwise", "pairwise_filtered", "score_k1"} <= set(table[table.evaluator == member].method)
    # sp-1's majority cell, recounted from both members' stored verdicts.
    sp1 = {q.id for q in config.datasets[0].load()}
    samples = stored(config, f"samples/nlgraph_shortest_path.{PLAIN}-*.parquet", sp1)
    assert len(samples) == 3 * 4
    tables = [stored(config, f"judgments/nlgraph_shortest_path.{m}.pairwise-*.parquet", sp1) for m in (PLAIN, STEPWISE)]
    right, n = majority_by_hand(samples, tables)
    cell = both[(both.method == "pairwise_majority") & (both.dataset == "sp-1")].iloc[0]
    assert cell.n_pairs == n
    if n:
        assert cell.accwow == pytest.approx(right / n)
    # No model call for the ensembles: every judgments file is one of a member's.
    store = Store(config.store)
    judged = store.fs.glob(f"{config.store}/judgments/*.parquet")
    assert len(judged) == 2 * 2 * 2  # two datasets x two evaluators x (pairwise, score_k1)


def test_the_leaderboard_ranks_every_evaluator_and_method_over_both_datasets(run):
    config, uris, _ = run
    store = Store(config.store)
    accwow = store.read_table(uris["parquet"])
    board = store.read_table(uris["leaderboard"]["parquet"])
    at_one = accwow[accwow.margin == 1.0]
    assert sorted(zip(board.evaluator, board.method)) == sorted(set(zip(at_one.evaluator, at_one.method)))
    ranked = board.accwow.dropna().tolist()
    assert ranked == sorted(ranked, reverse=True) and (board.grid_datasets == 2).all()
    # Pooled, not averaged: each row's pairs and right verdicts are its two cells' sums, and its questions
    # too (the datasets' questions are distinct).
    for r in board.itertuples():
        cells = at_one[(at_one.evaluator == r.evaluator) & (at_one.method == r.method)]
        assert r.n_pairs == cells.n_pairs.sum() and r.n_questions == cells.n_questions.sum(), r
        if r.n_pairs:
            assert r.accwow == pytest.approx((cells.accwow.fillna(0) * cells.n_pairs).sum() / r.n_pairs), r
    # Costs from the stored judgments: verdicts without reasoning are one call each, a score prompt per
    # answer at k = 1; the ensemble costs both members' calls; the self signals none.
    def judgments(member, method):
        return [store.read_table(u) for u in store.fs.glob(f"{config.store}/judgments/*.{member}.{method}-*.parquet")]
    rows = board.set_index(["evaluator", "method"])
    for member in (PLAIN, STEPWISE):
        pairwise = judgments(member, "pairwise")
        assert rows.loc[(member, "pairwise"), "judge_calls"] == sum(len(t) for t in pairwise)
        assert rows.loc[(member, "pairwise"), "prompt_tokens"] == sum(int(t.prompt_tokens.sum()) for t in pairwise)
        assert all((t.prompt_tokens > 50).all() and (t.generated_tokens >= 0).all() for t in pairwise)
        parsed = sum(int(t.preferred.notna().sum()) for t in pairwise)
        assert rows.loc[(member, "pairwise"), "parse_rate"] == pytest.approx(parsed / sum(len(t) for t in pairwise))
    calls = {m: sum(len(t) for t in judgments(m, "pairwise")) for m in (PLAIN, STEPWISE)}
    assert rows.loc[("both", "pairwise_majority"), "judge_calls"] == calls[PLAIN] + calls[STEPWISE]
    assert rows.loc[("both", "pairwise_majority"), "members"] == f"{PLAIN} + {STEPWISE}"
    assert (rows.loc["(self)", "judge_calls"] == 0).all()
    markdown = store.read_text(uris["leaderboard"]["md"])
    assert "# Judge leaderboard: tiny-lb" in markdown and "pooled over the grid's 2 datasets" in markdown
    assert store.read_bytes(uris["leaderboard"]["png"]).startswith(b"\x89PNG")
    print("\n" + markdown)  # the leaderboard this test produced (pytest -s)


def test_the_leaderboard_is_published_with_its_plot_inline(run):
    config, _, keyed = run
    assert {"tiny-lb-elicit-judge-leaderboard", "tiny-lb-elicit-judge-leaderboard-report"} <= set(keyed)
    report = keyed["tiny-lb-elicit-judge-leaderboard-report"].data
    assert report.count("](data:image/png;base64,iVBORw0KGgo") == 1 and not re.search(r"\]\([^)]+\.png\)", report)
    rows = json.loads(keyed["tiny-lb-elicit-judge-leaderboard"].data)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert list(rows[0]) == ["rank", "evaluator", "method", "AccWoW", "95 % interval", "pairs", "questions", "datasets",
                             "position consistency", "parse rate", "judge calls", "prompt tokens", "generated tokens"]
