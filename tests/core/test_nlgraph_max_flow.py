"""NLGraph maximum flow: hand-computed gold and proxy, certified generator, loader, parsers."""
import itertools
import json
from collections import deque
from pathlib import Path

import networkx as nx
import pytest

from wow_core.datasets import nlgraph_max_flow as mf
from wow_core.datasets import nlgraph_shortest_path as sp
from wow_core.records import Question

SAMPLE = Path(__file__).parent.parent / "data" / "nlgraph_max_flow_sample.json"

# The worked example of the module docstring (sample record "0"), from 0 to 3:
#   paths 0,1,3 carries 2 (edge 1->3) and 0,2,3 carries 3 (edge 2->3): 5 in all;
#   cut {0, 1, 2} | {3}: 1->3 + 2->3 = 2 + 3 = 5, so g = 5 and proxy(a) = 1 - |a - 5| / 5.
WORKED = [(0, 1, 3), (0, 2, 3), (1, 2, 1), (1, 3, 2), (2, 3, 3)]

# Sample record "1", from 0 to 4, with antiparallel edges (1->2, 2->1) and cycles (4->0, 3->2):
#   paths 0,1,4 carries 1; 0,1,3,4 carries 3; 0,2,3,4 carries 2: 6 in all;
#   cut {0, 1, 2} | {3, 4}: 1->3 + 1->4 + 2->3 = 3 + 1 + 2 = 6 (3->2 and 4->0 run backwards),
#   so g = 6 and proxy(a) = 1 - |a - 6| / 6.
TWO_WAY = [
    (0, 1, 4), (0, 2, 5), (1, 2, 2), (1, 3, 3), (1, 4, 1),
    (2, 1, 3), (2, 3, 2), (3, 2, 1), (3, 4, 5), (4, 0, 2),
]

# Sample record "3" (hard), from 0 to 10:
#   paths 0,1,4,8,10 carries 7; 0,1,5,8,10: 3; 0,2,5,8,10: 4; 0,2,6,9,10: 5; 0,3,6,9,10: 1;
#   0,3,7,9,10: 3: 23 in all; cut {0..8} | {9, 10}: 6->9 + 7->9 + 8->10 = 6 + 3 + 14 = 23.
HARD = [
    (0, 1, 12), (0, 2, 9), (0, 3, 7), (1, 4, 8), (1, 5, 6), (2, 5, 4), (2, 6, 10),
    (3, 6, 5), (3, 7, 9), (4, 8, 7), (5, 4, 3), (5, 8, 9), (6, 9, 6), (7, 9, 3),
    (8, 1, 2), (8, 10, 14), (9, 3, 4), (9, 10, 18), (10, 0, 5),
]


def question_of(edges, source: int, target: int) -> Question:
    graph = nx.DiGraph()
    graph.add_nodes_from(range(1 + max(max(i, j) for i, j, _ in edges)))
    for i, j, c in edges:
        graph.add_edge(i, j, capacity=c)
    meta = mf._meta(graph, source, target, "easy")
    text = mf._question_text(meta["edges"], meta["n_nodes"], source, target)
    gold = mf.canonical_number(meta["max_flow"])
    return Question(id="t/0", dataset=mf.NAME, text=text, gold=gold, meta=meta)


def cut_capacity(edges, side: set[int]) -> int:
    return sum(c for i, j, c in edges if i in side and j not in side)


def brute_force_min_cut(edges, n_nodes: int, source: int, target: int) -> int:
    """Min over every node set S with source in S and target not in S of the capacity leaving S."""
    others = [v for v in range(n_nodes) if v not in (source, target)]
    return min(
        cut_capacity(edges, {source, *chosen})
        for r in range(len(others) + 1)
        for chosen in itertools.combinations(others, r)
    )


def certified_max_flow(edges, n_nodes: int, source: int, target: int) -> int:
    """The maximum flow, proved: a feasible flow and a cut of the same value (weak duality).

    The flow comes from networkx's Edmonds-Karp; every check on it is made here.
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_nodes))
    for i, j, c in edges:
        graph.add_edge(i, j, capacity=c)
    value, flow = nx.maximum_flow(graph, source, target, flow_func=nx.flow.edmonds_karp)
    net = dict.fromkeys(range(n_nodes), 0)
    for i, j, c in edges:
        assert 0 <= flow[i][j] <= c
        net[i] -= flow[i][j]
        net[j] += flow[i][j]
    assert all(net[v] == 0 for v in range(n_nodes) if v not in (source, target))
    assert net[target] == -net[source] == value
    # Nodes reachable from the source in the residual graph: their cut is saturated, so it equals
    # the flow's value.
    seen, todo = {source}, deque([source])
    while todo:
        u = todo.popleft()
        for i, j, c in edges:
            for a, b, room in ((i, j, c - flow[i][j]), (j, i, flow[i][j])):
                if a == u and room > 0 and b not in seen:
                    seen.add(b)
                    todo.append(b)
    assert target not in seen and cut_capacity(edges, seen) == value
    return value


# ---------------------------------------------------------------------------------------------------
# Proxy and gold


def test_hand_computed_gold():
    assert (question_of(WORKED, 0, 3).gold, question_of(TWO_WAY, 0, 4).gold) == ("5", "6")
    assert question_of(HARD, 0, 10).gold == "23"
    assert cut_capacity(WORKED, {0, 1, 2}) == 5 and cut_capacity(TWO_WAY, {0, 1, 2}) == 6
    assert cut_capacity(HARD, set(range(9))) == 23
    assert brute_force_min_cut(HARD, 11, 0, 10) == certified_max_flow(HARD, 11, 0, 10) == 23


def test_worked_example_is_in_the_docstring():
    q = question_of(WORKED, 0, 3)
    assert "\n".join("    " + line for line in q.text.split("\n")) in mf.__doc__


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("5", 1.0),  # gold
        ("5.0", 1.0),
        ("5.5", 0.9),  # 1 - 0.5/5
        ("6", 0.8),  # 1 - 1/5
        ("4", 0.8),  # below gold counts the same distance
        ("7", 0.6),
        ("2", 0.4),  # 1 - 3/5: the single path 0,1,3 alone
        ("10", 0.0),  # L = 2g
        ("0", 0.0),  # as far below gold as L is above it
        ("11", 0.0),  # clipped
        ("-3", 0.0),  # clipped
    ],
)
def test_proxy_hand_computed(answer, expected):
    assert mf.proxy(question_of(WORKED, 0, 3), answer) == pytest.approx(expected)


def test_wrong_answer_ladder_is_ordered():
    q = question_of(TWO_WAY, 0, 4)  # proxy(a) = 1 - |a - 6| / 6
    ladder = ["6", "7", "8", "9", "11", "12"]
    scores = [mf.proxy(q, a) for a in ladder]
    assert scores == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 1 / 6, 0.0])
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_gold_proxy_is_exactly_one_and_correct():
    for q in [question_of(WORKED, 0, 3), *mf.generate_questions(10, seed=3)]:
        assert mf.proxy(q, q.gold) == 1.0
        assert mf.is_correct(q, q.gold) and mf.is_correct(q, q.gold + ".0")
        assert not mf.is_correct(q, mf.canonical_number(q.meta["max_flow"] + 1))
        assert mf.proxy(q, mf.canonical_number(q.meta["max_flow"] + 1)) < 1.0


def test_proxy_in_unit_interval_including_far_answers():
    for q in mf.generate_questions(10, seed=4):
        double = str(2 * q.meta["max_flow"])
        for a in ["0", "-7", "0.5", "1e6", "999999", q.gold, double, "2.25"]:
            assert 0.0 <= mf.proxy(q, a) <= 1.0
        assert mf.proxy(q, double) == mf.proxy(q, "0") == 0.0


def test_zero_flow_is_all_or_nothing():
    # Sample record "2": node 3 has no edge in, so nothing reaches it from node 0; L = 2g = g = 0.
    q = question_of([(0, 1, 3), (1, 2, 2), (2, 0, 4), (3, 1, 5)], 0, 3)
    assert q.gold == "0"
    assert mf.proxy(q, "0") == 1.0 and mf.is_correct(q, "0")
    assert mf.proxy(q, "1") == 0.0 and mf.proxy(q, "0.5") == 0.0 and not mf.is_correct(q, "1")


@pytest.mark.parametrize("answer", ["", "five", "nan", "inf", "The maximum flow is 5"])
def test_proxy_rejects_unextracted_answers(answer):
    with pytest.raises(ValueError, match="`answer`"):
        mf.proxy(question_of(WORKED, 0, 3), answer)
    with pytest.raises(ValueError, match="`answer`"):
        mf.is_correct(question_of(WORKED, 0, 3), answer)


def test_canonical_number_is_shared_with_shortest_path():
    assert mf.canonical_number is sp.canonical_number


# ---------------------------------------------------------------------------------------------------
# Generator


def test_generator_deterministic_and_seed_dependent():
    a, b = mf.generate_questions(8, seed=11), mf.generate_questions(8, seed=11)
    assert a == b
    assert [q.text for q in a] != [q.text for q in mf.generate_questions(8, seed=12)]
    assert [q.id for q in a] == [f"nlgraph_max_flow/easy/11/{k}" for k in range(8)]
    assert len({q.text for q in a}) == len(a)


@pytest.mark.parametrize("difficulty, lo, hi, max_c", [("easy", 5, 10, 10), ("hard", 11, 20, 20)])
def test_generated_questions_checked_independently(difficulty, lo, hi, max_c):
    for q in mf.generate_questions(12 if difficulty == "easy" else 4, seed=5, difficulty=difficulty):
        m = q.meta
        n, s, t, edges = m["n_nodes"], m["source"], m["target"], m["edges"]
        assert lo <= n <= hi and s != t and m["difficulty"] == difficulty
        assert n <= len(edges) <= 3 * n and len({(i, j) for i, j, _ in edges}) == len(edges)
        assert all(0 <= i < n and 0 <= j < n and i != j and 1 <= c <= max_c for i, j, c in edges)
        gold = certified_max_flow(edges, n, s, t)
        if difficulty == "easy":  # 2^(n-2) <= 256 cuts
            assert brute_force_min_cut(edges, n, s, t) == gold
        assert q.gold == str(gold) and m["max_flow"] == gold
        # Not one edge's capacity read off: every edge out of s and into t is narrower than the flow.
        assert all(c < gold for i, j, c in edges if i == s or j == t)
        json.dumps(m)  # meta must be JSON-serialisable


def test_round_trip_text_to_graph():
    for q in mf.generate_questions(10, seed=21) + mf.generate_questions(3, seed=21, difficulty="hard"):
        graph, s, t = mf.parse_question_text(q.text)
        assert (s, t) == (q.meta["source"], q.meta["target"])
        assert sorted(graph.nodes) == list(range(q.meta["n_nodes"]))
        assert sorted([i, j, d["capacity"]] for i, j, d in graph.edges(data=True)) == q.meta["edges"]
        assert graph.is_directed()


def test_question_wording_is_nlgraphs():
    text = mf.generate_questions(1, seed=0)[0].text
    lines = text.split("\n")
    assert lines[0].startswith("In a directed graph, the nodes are numbered from 0 to ")
    assert lines[0].endswith(", and the edges are:")
    assert all(line.startswith("an edge from node ") and line.endswith(",") for line in lines[1:-3])
    assert " with capacity " in lines[1] and lines[-3].endswith(".")
    assert lines[-2].startswith("Q: What is the maximum flow from node ") and lines[-2].endswith("?")
    assert lines[-1] == "A:"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        mf.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        mf.generate_questions(-1, seed=0)


# ---------------------------------------------------------------------------------------------------
# Loader


def test_load_sample():
    qs = mf.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == [f"{mf.NAME}/nlgraph_max_flow_sample/{k}" for k in range(4)]
    assert [q.gold for q in qs] == ["5", "6", "0", "23"]
    assert [q.meta["n_nodes"] for q in qs] == [4, 5, 4, 11]
    assert [q.meta["difficulty"] for q in qs] == ["easy", "easy", "easy", "hard"]
    assert [sorted(map(tuple, q.meta["edges"])) for q in qs[:2]] == [WORKED, TWO_WAY]
    assert sorted(map(tuple, qs[3].meta["edges"])) == HARD
    assert all(q.dataset == mf.NAME and q.text.endswith("\nA:") for q in qs)
    assert mf.proxy(qs[0], "6") == pytest.approx(0.8)


def write(tmp_path: Path, records) -> str:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records) if not isinstance(records, str) else records)
    return str(path)


def good_record() -> dict:
    return json.loads(SAMPLE.read_text())["0"]


def test_loader_invalid_json_names_file_line_column(tmp_path):
    path = write(tmp_path, '{"0": {"question": "x",\n "answer": }')
    with pytest.raises(ValueError, match=r"data\.json: invalid JSON at line 2, column \d+"):
        mf.load_questions(path)


@pytest.mark.parametrize("field", ["question", "answer", "difficulty"])
def test_loader_missing_field(tmp_path, field):
    record = good_record()
    del record[field]
    path = write(tmp_path, {"0": good_record(), "7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field '{field}': missing"):
        mf.load_questions(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda q: q.replace("Q: What is the maximum flow from node 0 to", "Q: Go from"), "no line 'Q: What"),
        (lambda q: q.replace("In a directed", "In an undirected"), "no line 'In a directed"),
        (lambda q: q.replace("an edge from", "a link from"), "no line 'an edge from"),
        (lambda q: q.replace("node 2 to node 3", "node 2 to node 30"), "outside 0..3"),
        (lambda q: q.replace("from node 0 to node 3?", "from node 3 to node 3?"), "same node"),
        (lambda q: q.replace("from node 0 to node 3?", "from node 0 to node 4?"), "target node 4"),
        (lambda q: q.replace("node 1 to node 2 with", "node 1 to node 1 with"), "self-loop"),
        (  # edge 0->1 (capacity 3) repeated with capacity 1
            lambda q: q.replace("node 1 to node 2 with capacity 1", "node 0 to node 1 with capacity 1"),
            "given twice with different capacity",
        ),
    ],
)
def test_loader_bad_question_text(tmp_path, edit, message):
    record = good_record()
    record["question"] = edit(record["question"])
    path = write(tmp_path, {"7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field 'question': .*{message}"):
        mf.load_questions(path)


def test_loader_wrong_stated_answer(tmp_path):
    record = good_record()
    record["answer"] = record["answer"].replace("is 5.", "is 7.")
    path = write(tmp_path, {"7": record})
    message = (
        r"data\.json: record '7', field 'answer': states a maximum flow of 7, "
        r"but the maximum flow from node 0 to node 3 is 5"
    )
    with pytest.raises(ValueError, match=message):
        mf.load_questions(path)


def test_loader_wrong_types(tmp_path):
    with pytest.raises(ValueError, match="data.json: expected a JSON object"):
        mf.load_questions(write(tmp_path, [good_record()]))
    with pytest.raises(ValueError, match="record '7': expected a JSON object"):
        mf.load_questions(write(tmp_path, {"7": "text"}))
    record = good_record()
    record["difficulty"] = 1
    with pytest.raises(ValueError, match="record '7', field 'difficulty': expected a string"):
        mf.load_questions(write(tmp_path, {"7": record}))


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The two paths carry 2 + 3 = 5.\nThe maximum flow is **7**.", "7"),
        ("The maximum flow is 4. Wait, no. The maximum flow is 6", "6"),  # last mention
        ("the MAXIMUM flow is 5.", "5"),
        ("**The maximum flow is 9**", "9"),
        ("The maximum flow is: 3.5.", "3.5"),
        ("The maximum flow is 2 + 3 = 5.", "5"),
        ("The maximum flow is 6.0", "6"),
        ("The maximum flow from node 0 to node 3 is 5.", None),  # not the concluding phrase
        ("The maximum flow is unknown.", None),
        ("The maximum flow is 2 + 3", None),  # a half-written sum is not its first term
        ("The maximum flow is N.", None),  # the template's placeholder, not a number
        ("The maximum flow is 3N.", None),
        ("", None),
    ],
)
def test_parse_conclusion(text, expected):
    assert mf.parse_conclusion(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The maximum flow from node 0 to node 2 is 7.", "7"),  # NLGraph's own answer
        ("The maximum flow from node 0 to node 2 is 7. Rechecking, the maximum flow is 8.", "8"),
        ("This gives a maximum flow of 2 + 4 = 6.", "6"),
        ("So the maximum flow = 12.", "12"),
        ("The maximum flow is **5**.", "5"),
        ("an edge from node 0 to node 1 with capacity 4.", None),  # a capacity is not an answer
        ("The flow through node 3 is 4.", None),
        ("The maximum flow from node 0 to node 2 is N, where N is a number.", None),
        ("I cannot tell.", None),
    ],
)
def test_parse_direct(answer, expected):
    assert mf.parse_direct(answer) == expected


def test_gold_extracts_to_gold():
    q = question_of(WORKED, 0, 3)
    assert mf.parse_conclusion(f"... The maximum flow is {q.gold}.") == q.gold
    assert mf.parse_direct(f"The maximum flow from node 0 to node 3 is {q.gold}.") == q.gold


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    # The extraction turn's reply starts with the prefill; any number after it must parse.
    assert mf.EXTRACTION_PROMPT.endswith('"The maximum flow is N", where N is a number.')
    assert mf.parse_conclusion(mf.EXTRACTION_PREFILL + " 12.") == "12"
    assert mf.parse_conclusion(mf.EXTRACTION_PREFILL + " N, where N is a number.") is None
