"""The plan of the two shipped configs, counted by hand from the YAML files (no model, store or Prefect)."""
from pathlib import Path

from wow_core.config import load_config
from wow_core.methods import SELF, JudgeMethod
from wow_core.pairs import heldout_count
from wow_core.plan import Cell, Judging, Shard, grid_plan

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_held_out_count_keeps_one_question_on_each_side():
    assert [heldout_count(n, 0.35) for n in (2, 3, 14, 100)] == [1, 1, 5, 35]
    assert heldout_count(10, 0.99) == 9 and heldout_count(10, 0.01) == 1


def test_the_demo_grid():
    config = load_config(CONFIGS / "demo.yaml")
    grid = grid_plan(config, {"nlgraph_shortest_path": 14, "knowledge_crosswords": 3, "chess_puzzles": 3})
    # 2 generators x (shortest path 14 questions in shards of 8: 2; crosswords 1; chess 1).
    # 2 evaluators x 3 datasets x 2 generators x (pairwise, score_k1); budgets: 1 evaluator x shortest path x
    # 2 generators x 3 picks. Cells per dataset and generator: 3 self signals + 2 evaluators x (pairwise,
    # pairwise_filtered, score_k1) + 2 ensemble rules = 11, x 6.
    # Alignment: 14 questions, 5 held out (0.35 x 14 = 4.9), 9 to train on; 5 sets x 1 grid point; the base
    # model and 5 adapters answer the 5 held-out questions in one shard each. Round 2 of the oracle set:
    # 9 training questions in 2 shards, no judge (oracle), one training, one held-out shard.
    assert grid.counts() == {"sampling shards": 8, "judgings": 24, "report cells": 66, "budget judgings": 6,
                             "preference sets": 5, "trainings": 5, "held-out shards": 6, "round trainings": 1,
                             "round units": 4}
    assert grid.splits == {"nlgraph_shortest_path": (9, 5)}
    assert grid.sampling[:3] == [Shard("nlgraph_shortest_path", "smollm2-135m", 0, 8),
                                 Shard("nlgraph_shortest_path", "smollm2-135m", 8, 14),
                                 Shard("knowledge_crosswords", "smollm2-135m", 0, 3)]
    assert grid.judgings[1] == Judging("nlgraph_shortest_path", "smollm2-135m", "smollm2-135m", JudgeMethod("score", 1))
    assert [c.method for c in grid.cells[:11]] == ["length", "consistency", "logits", "pairwise", "pairwise_filtered",
                                                   "score_k1", "pairwise", "pairwise_filtered", "score_k1",
                                                   "pairwise_majority", "score_k1_mean"]
    assert grid.cells[0] == Cell("nlgraph_shortest_path", "smollm2-135m", SELF, "length")
    assert {b.calls for b in grid.budget} == {16} and {b.evaluator for b in grid.budget} == {"smollm2-135m"}
    assert [p.tag for p in grid.preference_sets] == ["oracle.self", "oracle.all", "pairwise_filtered.self.smollm2-135m",
                                                     "score_k1-top0.5.self.smollm2-135m", "oracle+row.self"]
    assert [p.judge for p in grid.preference_sets] == [None, None, JudgeMethod("pairwise"), JudgeMethod("score", 1),
                                                       None]
    [round_2] = grid.rounds
    assert (round_2.round, round_2.judging, len(round_2.sampling), len(round_2.heldout)) == (2, None, 2, 1)


def test_the_paper_grid():
    config = load_config(CONFIGS / "paper.yaml")
    counts = {d.tag: 500 for d in config.datasets} | {"scibench": 692}  # scibench: every question of its file
    grid = grid_plan(config, counts)
    # Sampling: 3 generators x (10 datasets x 500/50 + scibench ceil(692/50) = 14) = 3 x 114.
    # Judging: 3 evaluators x 11 datasets x 3 generators x (pairwise + score k = 1, 2, 5, 10).
    # Budget: gpt-4o x 11 datasets x 3 generators x 3 picks.
    # Cells: 33 x (3 self signals + 3 evaluators x (2 pairwise + 4 score) + 5 ensemble rules) = 33 x 26.
    # Alignment: llama3-8b; 12 sets x 11 datasets, x 3 learning rates. Held out: 150 of 500 (3 shards of
    # 50), 208 of scibench's 692 (5 shards); 397 models (base + 396 adapters) x (10 x 3 + 5) shards.
    # Rounds 2 and 3 of pairwise_filtered (judged by llama3-8b) on 11 datasets: per round 350/50 = 7
    # training shards (scibench 484: 10) + 1 judging + 1 training + 3 held-out shards (scibench 5).
    assert grid.counts() == {"sampling shards": 342, "judgings": 495, "report cells": 858, "budget judgings": 99,
                             "preference sets": 132, "trainings": 396, "held-out shards": 397 * 35,
                             "round trainings": 22, "round units": 2 * (10 * 12 + 17)}
    assert grid.splits["scibench"] == (484, 208) and grid.splits["medmcqa"] == (350, 150)
    assert {r.judging.evaluator for r in grid.rounds} == {"llama3-8b"}
    assert {r.judging.method for r in grid.rounds} == {JudgeMethod("pairwise")}


def test_a_grid_without_alignment_plans_no_training():
    config = load_config(CONFIGS / "demo.yaml").model_copy(update={"alignment": None})
    grid = grid_plan(config, {"nlgraph_shortest_path": 14, "knowledge_crosswords": 3, "chess_puzzles": 3})
    assert grid.train_points == [] and grid.heldout == [] and grid.rounds == [] and grid.splits == {}
    assert len(grid.sampling) == 8
