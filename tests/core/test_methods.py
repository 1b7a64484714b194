"""JudgeMethod: the one reader of judge method names, which configs, tables and cache keys spell."""
import pytest

from wow_core.config import JudgeConfig
from wow_core.methods import JudgeMethod


def test_names_round_trip_and_nothing_else_is_a_judge_method():
    assert JudgeMethod.of("pairwise") == JudgeMethod("pairwise")
    assert JudgeMethod.of("score_k10") == JudgeMethod("score", 10) and str(JudgeMethod("score", 10)) == "score_k10"
    for name in ("score_k0", "score_kx", "score_k", "score", "pairwise_filtered", "score_k1_mean", "length",
                 "Pairwise"):
        assert JudgeMethod.of(name) is None, name


def test_the_judge_method_an_elicitation_method_reads():
    reads = {"pairwise": "pairwise", "pairwise_filtered": "pairwise", "pairwise_majority": "pairwise",
             "pairwise_unanimous": "pairwise", "score_k2": "score_k2", "score_k1_mean": "score_k1",
             "score_k5_unanimous": "score_k5", "length": None, "consistency": None, "logits": None, "oracle": None,
             "right_over_wrong": None, "score_kx_mean": None}
    assert {m: (str(j) if (j := JudgeMethod.read_by(m)) else None) for m in reads} == reads


def test_a_method_is_whole():
    with pytest.raises(ValueError, match="score judge method takes k >= 1"):
        JudgeMethod("score")
    with pytest.raises(ValueError, match="pairwise judge method takes no k"):
        JudgeMethod("pairwise", 2)


def test_the_grid_asks_pairwise_then_each_score_k():
    config = JudgeConfig(methods=["length", "score", "pairwise"], score_k=[5, 1])
    assert [str(m) for m in config.judge_methods] == ["pairwise", "score_k1", "score_k5"]
    assert JudgeConfig(methods=["length"]).judge_methods == []
