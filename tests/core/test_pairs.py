"""Preference sets on hand-built tables: which pairs, which order, caps, mixes, self vs all, and the
held-out split that keeps evaluation questions out of every set."""
import math

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from tasks.stages import build_preference_set
from wow_core import pairs
from wow_core.config import PreferenceSetConfig
from wow_core.store import Store


def samples_table(rows: dict[str, list[tuple]], generator_tag: str = "") -> pd.DataFrame:
    """rows: question id -> [(proxy, correct, mean_logprob), ...] in sample order."""
    out = []
    for q, answers in rows.items():
        for idx, (proxy, correct, logprob) in enumerate(answers):
            out.append({"dataset": "toy", "question_id": q, "question": f"question {q}", "prompt": f"question {q}",
                        "sample_idx": idx, "view": "{}", "answer": f"{generator_tag}answer {q}.{idx}",
                        "extracted": None if proxy is None else str(proxy), "proxy": proxy, "correct": correct,
                        "mean_logprob": logprob})
    return pd.DataFrame(out)


SAMPLES = samples_table({
    # q1: one correct answer, two wrong ones (0.6 less wrong than 0.3), one not extracted.
    "q1": [(1.0, True, -0.1), (0.6, False, -0.5), (0.3, False, -0.2), (None, None, -0.9)],
    # q2: all wrong; logits tie between 0 and 1.
    "q2": [(0.5, False, -0.4), (0.4, False, -0.4), (0.2, False, -0.3)],
})


def as_tuples(table: pd.DataFrame) -> list[tuple]:
    return [(q, c, r, round(g, 6)) for q, c, r, g in
            zip(table.question_id, table.chosen_idx, table.rejected_idx, table.gap)]


def test_oracle_prefers_the_higher_proxy_on_wow_pairs_only():
    got = pairs.verdict_pairs("oracle", SAMPLES, None, 1.0)
    assert as_tuples(got) == [("q1", 1, 2, 0.3), ("q2", 0, 1, 0.1), ("q2", 0, 2, 0.3), ("q2", 1, 2, 0.2)]


def test_oracle_top_p_keeps_the_largest_gaps():
    got = pairs.verdict_pairs("oracle", SAMPLES, None, 0.5)  # ceil(0.5 * 4) = 2 pairs
    assert as_tuples(got) == [("q1", 1, 2, 0.3), ("q2", 0, 2, 0.3)]


def test_right_over_wrong_pairs_each_correct_with_each_extracted_wrong_answer():
    got = pairs.verdict_pairs("right_over_wrong", SAMPLES, None, 1.0)
    assert as_tuples(got) == [("q1", 0, 1, 0.4), ("q1", 0, 2, 0.7)]


def test_method_pairs_follow_the_method_not_the_proxy_and_drop_ties():
    got = pairs.verdict_pairs("logits", SAMPLES, None, 1.0)
    # q1: logprob of 2 (-0.2) beats 1 (-0.5): the method prefers the *more* wrong answer, and the set says so.
    # q2: 0 and 1 tie (-0.4): no pair; 2 (-0.3) beats both.
    assert as_tuples(got) == [("q1", 2, 1, 0.3), ("q2", 2, 0, 0.1), ("q2", 2, 1, 0.1)]


def test_pairwise_filtered_keeps_agreeing_verdicts_in_the_judges_order():
    judgments = pd.DataFrame({
        "dataset": "toy", "question_id": ["q1", "q1", "q2", "q2"], "i": [1, 1, 0, 0], "j": [2, 2, 2, 2],
        "first": [1, 2, 0, 2], "second": [2, 1, 2, 0], "preferred": pd.array([2, 2, 0, 2], dtype="Int64"),
    })
    got = pairs.verdict_pairs("pairwise_filtered", SAMPLES, judgments, 1.0)
    assert [(q, c, r) for q, c, r, _ in as_tuples_nan(got)] == [("q1", 2, 1)]  # q2's orders disagree


def test_pairwise_set_takes_one_order_so_contradicting_orders_never_give_both_directions():
    judgments = pd.DataFrame({
        "dataset": "toy", "question_id": ["q1", "q1", "q2", "q2", "q2", "q2"], "i": [1, 1, 0, 0, 0, 0],
        "j": [2, 2, 2, 2, 1, 1], "first": [1, 2, 0, 2, 0, 1], "second": [2, 1, 2, 0, 1, 0],
        "preferred": pd.array([2, 2, 0, 2, None, 1], dtype="Int64"),
    })
    got = pairs.verdict_pairs("pairwise", SAMPLES, judgments, 1.0)
    # q1's orders agree: one pair. q2 (0, 2): the orders contradict; the order with 0 shown first chose 0.
    # q2 (0, 1): that order did not parse, so no pair (the other order is not asked in its place).
    assert [(q, c, r) for q, c, r, _ in as_tuples_nan(got)] == [("q1", 2, 1), ("q2", 0, 2)]


def as_tuples_nan(table: pd.DataFrame) -> list[tuple]:
    return list(zip(table.question_id, table.chosen_idx, table.rejected_idx, table.gap))


def test_with_texts_carries_texts_and_provenance():
    table = pairs.with_texts(pairs.verdict_pairs("oracle", SAMPLES, None, 1.0), SAMPLES, "gen-a", None, "oracle")
    first = table.iloc[0]
    assert (first.prompt, first.chosen, first.rejected) == ("question q1", "answer q1.1", "answer q1.2")
    assert (first.generator, first.method, first.chosen_proxy, first.rejected_proxy) == ("gen-a", "oracle", 0.6, 0.3)
    assert list(table.columns) == pairs.PREFERENCE_COLUMNS


def test_cap_drops_duplicates_then_samples_with_a_seed():
    table = pairs.with_texts(pairs.verdict_pairs("oracle", SAMPLES, None, 1.0), SAMPLES, "g", None, "oracle")
    doubled = pd.concat([table, table], ignore_index=True)
    assert len(pairs.cap(doubled, 100, seed=0)) == 4
    two = pairs.cap(doubled, 2, seed=3)
    assert len(two) == 2 and two.equals(pairs.cap(doubled, 2, seed=3))
    assert any(not pairs.cap(doubled, 2, seed=s).equals(two) for s in range(10))  # the seed matters


def test_mix_is_half_right_over_wrong_cut_to_the_smaller_side():
    wow = pairs.with_texts(pairs.verdict_pairs("oracle", SAMPLES, None, 1.0), SAMPLES, "g", None, "oracle")
    row = pairs.with_texts(pairs.verdict_pairs("right_over_wrong", SAMPLES, None, 1.0), SAMPLES, "g", None,
                           "right_over_wrong")
    mixed = pairs.preference_set([wow], [row], max_pairs=4000, seed=0)
    assert mixed.method.value_counts().to_dict() == {"oracle": 2, "right_over_wrong": 2}
    capped = pairs.preference_set([wow], [row], max_pairs=2, seed=0)  # 1 + 1
    assert capped.method.value_counts().to_dict() == {"oracle": 1, "right_over_wrong": 1}


def test_split_is_disjoint_fixed_and_sized():
    ids = [f"q{i}" for i in range(20)]
    train, heldout = pairs.split_questions(ids, 0.3, seed=0)
    assert len(heldout) == 6 and set(train) | set(heldout) == set(ids) and not set(train) & set(heldout)
    assert (train, heldout) == pairs.split_questions(ids, 0.3, seed=0)
    assert heldout != pairs.split_questions(ids, 0.3, seed=1)[1]
    assert len(pairs.split_questions(["a", "b"], 0.01, seed=0)[1]) == 1  # at least one held out, one kept


def test_preference_set_task_uses_training_questions_and_its_sources(tmp_path):
    store = Store(str(tmp_path))
    own = store.write_table(f"{tmp_path}/own.parquet", SAMPLES)
    other = store.write_table(f"{tmp_path}/other.parquet", samples_table({
        "q1": [(0.9, False, -0.1), (0.1, False, -0.2)], "q2": [(0.7, False, -0.1), (0.6, False, -0.2)]}, "other "))
    spec = PreferenceSetConfig(method="oracle")
    mine = [{"generator": "own", "samples_uri": own, "judgments_uri": None}]
    theirs = [{"generator": "other", "samples_uri": other, "judgments_uri": None}]
    def run(*args):
        with disable_run_logger():  # the task logs where its dataset lies
            return build_preference_set.fn(*args)
    self_set = store.read_table(run(spec, None, mine, ["q1", "q2"], 4000, 0, "self", str(tmp_path))["uri"])
    all_set = store.read_table(run(spec, None, mine + theirs, ["q1", "q2"], 4000, 0, "all", str(tmp_path))["uri"])
    assert set(self_set.generator) == {"own"} and len(self_set) == 4
    assert all_set.generator.value_counts().to_dict() == {"own": 4, "other": 2}
    train_only = store.read_table(run(spec, None, mine + theirs, ["q2"], 4000, 0, "q2", str(tmp_path))["uri"])
    assert set(train_only.question_id) == {"q2"} and len(train_only) == 4
    # A set exported in TRL's conversational format loads with `datasets`.
    from wow_core.train import to_conversations
    ds = to_conversations(train_only)
    assert ds[0]["prompt"] == [{"role": "user", "content": "question q2"}]
    assert ds[0]["chosen"][0]["role"] == "assistant" and ds.num_rows == 4
    # A model configured with a system message is trained on the conversation it was sampled in.
    assert to_conversations(train_only, "Be brief.")[0]["prompt"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "question q2"}]


def test_preference_set_config_rejects_impossible_sets():
    with pytest.raises(ValueError, match="no score gap"):
        PreferenceSetConfig(method="pairwise_filtered", top_p=0.5)
    with pytest.raises(ValueError, match="unknown preference method"):
        PreferenceSetConfig(method="scores_k2")
    assert (PreferenceSetConfig(method="score_k5", top_p=0.5, mix_right_over_wrong=True).tag("j")
            == "score_k5-top0.5+row.self.j")
    assert math.isclose(PreferenceSetConfig(method="oracle").top_p, 1.0)
