"""Judge ensembles (majority, mean score, unanimous) on hand-computed tables of two members' judgments."""
import pandas as pd
import pytest

from wow_core.config import ConfigError, parse_config
from wow_core.elicit import ensemble_pairs, method_pairs
from wow_core.metrics import accwow, margin_filter
from wow_core.report import accwow_table


def samples() -> pd.DataFrame:
    # q1: three wrong answers, proxies .2 .5 .8: pairs (0,1) better 1, (0,2) better 2, (1,2) better 2.
    # q2: two wrong answers, proxies .9 .3: pair (0,1) better 0.
    rows = [("q1", 0, "4", 0.2), ("q1", 1, "5", 0.5), ("q1", 2, "6", 0.8), ("q2", 0, "7", 0.9), ("q2", 1, "3", 0.3)]
    df = pd.DataFrame(rows, columns=["question_id", "sample_idx", "extracted", "proxy"])
    df["dataset"], df["correct"] = "toy", pd.array([False] * len(df), dtype="boolean")
    return df


def pairwise(rows: list[tuple]) -> pd.DataFrame:
    """(question, i, j, shown first, preferred or None), one row per order asked."""
    df = pd.DataFrame([{"dataset": "toy", "question_id": q, "i": i, "j": j, "first": first,
                        "second": j if first == i else i, "preferred": chosen, "follow_up_output": None}
                       for q, i, j, first, chosen in rows])
    return df.astype({"preferred": "Int64"})


# Member A: (0,1) both orders for 1; (0,2) each order for the answer shown first; (1,2) one order for 2,
# the other unparsed; q2 both orders for 1 (the more wrong answer).
A = pairwise([("q1", 0, 1, 0, 1), ("q1", 0, 1, 1, 1), ("q1", 0, 2, 0, 0), ("q1", 0, 2, 2, 2),
              ("q1", 1, 2, 1, 2), ("q1", 1, 2, 2, None), ("q2", 0, 1, 0, 1), ("q2", 0, 1, 1, 1)])
# Member B: consistent everywhere: (0,1) for 1, (0,2) for 2, (1,2) for 1 (wrong), q2 for 0.
B = pairwise([("q1", 0, 1, 0, 1), ("q1", 0, 1, 1, 1), ("q1", 0, 2, 0, 2), ("q1", 0, 2, 2, 2),
              ("q1", 1, 2, 1, 1), ("q1", 1, 2, 2, 1), ("q2", 0, 1, 0, 0), ("q2", 0, 1, 1, 0)])


def scores(values: dict[tuple[str, int], int | None]) -> pd.DataFrame:
    df = pd.DataFrame([{"dataset": "toy", "question_id": q, "sample_idx": i, "group": n, "score": v}
                       for n, ((q, i), v) in enumerate(values.items())])
    return df.astype({"score": "Int64"})


SA = scores({("q1", 0): 1, ("q1", 1): 3, ("q1", 2): 3, ("q2", 0): 4, ("q2", 1): None})
SB = scores({("q1", 0): 2, ("q1", 1): 1, ("q1", 2): 5, ("q2", 0): 2, ("q2", 1): 3})


def verdicts(pairs: pd.DataFrame) -> dict:
    return {(r.question_id, r.i, r.j): (r.score_i, r.score_j, r.prefers_less_wrong) for r in pairs.itertuples()}


def test_majority_counts_both_orders_of_every_member_and_a_tie_prefers_neither():
    pairs = ensemble_pairs("majority", "pairwise", samples(), [A, B])
    # Votes (for i, for j): (0,1) 0 and 4, for 1 = better; (0,2) A 0 and 2, B 2 twice: 1 and 3, for 2 =
    # better; (1,2) A's one parsed vote for 2, B's two for 1: 2 and 1, for 1, not better; q2 A twice for 1,
    # B twice for 0: 2 and 2, a tie, which does not prefer the less wrong answer.
    assert verdicts(pairs) == {("q1", 0, 1): (0, 4, True), ("q1", 0, 2): (1, 3, True),
                               ("q1", 1, 2): (2, 1, False), ("q2", 0, 1): (2, 2, False)}
    assert accwow(pairs).value == 0.5 and pairs.gap.isna().all()
    # Beside its members: A's 7 parsed verdicts, 4 right (both of (0,1), one of (0,2), the one of (1,2));
    # B's 8 verdicts, 6 right.
    assert accwow(method_pairs("pairwise", samples(), A)).value == pytest.approx(4 / 7)
    assert accwow(method_pairs("pairwise", samples(), B)).value == pytest.approx(6 / 8)


def test_a_pair_without_any_parsed_vote_is_left_out():
    silent = A.assign(preferred=pd.array([None] * len(A), dtype="Int64"))
    pairs = ensemble_pairs("majority", "pairwise", samples(), [silent, B.iloc[:4]])  # B asked only (0,1), (0,2)
    assert verdicts(pairs) == {("q1", 0, 1): (0, 2, True), ("q1", 0, 2): (0, 2, True)}


def test_unanimous_pairwise_keeps_only_pairs_every_verdict_agrees_on():
    pairs = ensemble_pairs("unanimous", "pairwise", samples(), [A, B])
    # (0,1): all four verdicts for 1. (0,2): A inconsistent; (1,2): A has an unparsed order; q2: A and B
    # disagree.
    assert verdicts(pairs) == {("q1", 0, 1): (0, 4, True)}
    assert accwow(pairs).value == 1.0 and accwow(pairs).n == 1


def test_mean_score_averages_the_members_that_scored_an_answer():
    pairs = ensemble_pairs("mean_score", "score_k1", samples(), [SA, SB])
    # Means: q1 0: (1+2)/2 = 1.5, 1: (3+1)/2 = 2, 2: (3+5)/2 = 4; q2 0: (4+2)/2 = 3, 1: B's 3 alone (A's
    # did not parse). q2's pair is a tie at 3 = 3.
    assert verdicts(pairs) == {("q1", 0, 1): (1.5, 2.0, True), ("q1", 0, 2): (1.5, 4.0, True),
                               ("q1", 1, 2): (2.0, 4.0, True), ("q2", 0, 1): (3.0, 3.0, False)}
    assert pairs.gap.tolist() == [0.5, 2.5, 2.0, 0.0]
    assert accwow(pairs).value == 0.75
    # Margins apply as to any score method: top half = the gaps 2.5 and 2.0, both right.
    assert accwow(margin_filter(pairs, 0.5)).value == 1.0 and accwow(margin_filter(pairs, 0.5)).n == 2
    # Its members alone: A 2 of 3 ((1,2) a tie at 3, q2 unscored), B 2 of 4 ((0,1) 2 > 1 and q2 2 < 3 wrong).
    assert accwow(method_pairs("score_k1", samples(), SA)).value == pytest.approx(2 / 3)
    assert accwow(method_pairs("score_k1", samples(), SB)).value == 0.5


def test_unanimous_score_keeps_pairs_every_member_ranks_the_same_way_strictly():
    pairs = ensemble_pairs("unanimous", "score_k1", samples(), [SA, SB])
    # (0,1): A ranks 1 higher, B 0; (1,2): A ties; q2: A has no score for 1. Only (0,2) is left.
    assert verdicts(pairs) == {("q1", 0, 2): (1.5, 4.0, True)} and pairs.gap.tolist() == [2.5]


def test_ensembles_in_the_accwow_table_beside_their_members():
    entries = [{"dataset": "toy", "generator": "g", "evaluator": ev, "method": m, "pairs": p} for ev, m, p in [
        ("a", "pairwise", method_pairs("pairwise", samples(), A)),
        ("ab", "pairwise_majority", ensemble_pairs("majority", "pairwise", samples(), [A, B])),
        ("ab", "score_k1_mean", ensemble_pairs("mean_score", "score_k1", samples(), [SA, SB]))]]
    table = accwow_table(entries, [1.0, 0.5], 0.95)
    cells = {(r.evaluator, r.method, r.margin): (r.accwow, r.n_pairs) for r in table.itertuples()}
    # Majority verdicts have no score gap: margin 1.0 only, as the pairwise judge's.
    assert cells == {("a", "pairwise", 1.0): (pytest.approx(4 / 7), 7), ("ab", "pairwise_majority", 1.0): (0.5, 4),
                     ("ab", "score_k1_mean", 1.0): (0.75, 4), ("ab", "score_k1_mean", 0.5): (1.0, 2)}


def test_an_unknown_rule_for_a_method_is_refused():
    with pytest.raises(ValueError, match="No ensemble rule 'majority' for method 'score_k1'"):
        ensemble_pairs("majority", "score_k1", samples(), [SA, SB])


BASE = {"datasets": [{"name": "nlgraph_shortest_path"}], "models": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "generators": ["a"], "evaluators": ["a", "b", "c"]}


def test_an_ensemble_config_and_its_method_name():
    config = parse_config({**BASE, "judge": {"score_k": [1], "ensembles": [
        {"name": "ab", "members": ["a", "b"], "rule": "majority"},
        {"name": "ab", "members": ["b", "a"], "rule": "mean_score", "method": "score_k1"}]}})
    assert [e.elicitation_method for e in config.judge.ensembles] == ["pairwise_majority", "score_k1_mean"]
    assert parse_config(BASE).judge.ensembles == []  # the default: none


@pytest.mark.parametrize("ensemble, judge, words", [
    ({"name": "a", "members": ["a", "b"], "rule": "majority"}, {}, "`judge.ensembles.0.name`: 'a' is a model's name"),
    ({"name": "(self)", "members": ["a", "b"], "rule": "majority"}, {}, "or the self signals'"),
    ({"name": "x", "members": ["a", "z"], "rule": "majority"}, {}, "names ['z'] that are not `evaluators`"),
    ({"name": "x", "members": ["a", "a"], "rule": "majority"}, {}, "`members` must be distinct"),
    ({"name": "x", "members": ["a"], "rule": "majority"}, {}, "at least 2 items"),
    ({"name": "x", "members": ["a", "b"], "rule": "mean_score"}, {}, "rule mean_score combines score_k<k> verdicts"),
    ({"name": "x", "members": ["a", "b"], "rule": "majority", "method": "score_k1"}, {},
     "rule majority combines pairwise verdicts"),
    ({"name": "x", "members": ["a", "b"], "rule": "unanimous", "method": "score_k3"}, {},
     "needs k=3 in `judge.score_k`"),
    ({"name": "x", "members": ["a", "b"], "rule": "majority"}, {"methods": ["score"]}, "to include pairwise"),
])
def test_a_bad_ensemble_names_its_field(ensemble, judge, words):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "judge": {**judge, "ensembles": [ensemble]}})
    assert words in str(err.value)


@pytest.mark.parametrize("second", [{"name": "ab", "members": ["a", "c"], "rule": "mean_score", "method": "score_k1"},
                                    {"name": "ab", "members": ["a", "b"], "rule": "majority"}])
def test_a_shared_ensemble_name_needs_the_same_members_and_another_method(second):
    first = {"name": "ab", "members": ["a", "b"], "rule": "majority"}
    with pytest.raises(ConfigError, match=r"`judge.ensembles.1.name`: 'ab' is taken"):
        parse_config({**BASE, "judge": {"score_k": [1], "ensembles": [first, second]}})


def test_the_report_says_who_each_ensemble_is():
    from wow_core.report import render_markdown
    table = accwow_table([{"dataset": "toy", "generator": "g", "evaluator": "ab", "method": "pairwise_majority",
                           "pairs": ensemble_pairs("majority", "pairwise", samples(), [A, B])}], [1.0], 0.95)
    markdown = render_markdown("toy", table, [], [], {}, 0.95, ensembles={"ab": ["a", "b"]})
    assert "| toy | g | ab | pairwise_majority | 1 | 0.500 | 4 | 2 |" in markdown
    assert "**ab** = a + b." in markdown
    assert "Judge ensembles" not in render_markdown("toy", table, [], [], {}, 0.95)
