"""NLGraph shortest path: hand-computed proxy, exact longest path, generator, loader, parsers."""
import json
import random
from pathlib import Path

import networkx as nx
import pytest

from wow_core.datasets import nlgraph_shortest_path as sp
from wow_core.records import Question

SAMPLE = Path(__file__).parent.parent / "data" / "nlgraph_shortest_path_sample.json"

# The worked example of the module docstring. Simple paths from 0 to 3:
#   0,1,3   = 1 + 2     = 3   <- shortest, g = 3
#   0,2,3   = 4 + 1     = 5
#   0,1,2,3 = 1 + 2 + 1 = 4
#   0,2,1,3 = 4 + 2 + 2 = 8   <- longest, L = 8, so proxy(a) = 1 - |a - 3| / 5
DIAMOND = [(0, 1, 1), (0, 2, 4), (1, 2, 2), (1, 3, 2), (2, 3, 1)]

# Sample record "1". Simple paths from 0 to 2:
#   0,4,2     = 3 + 1         = 4   <- g = 4
#   0,1,2     = 2 + 4         = 6
#   0,1,3,2   = 2 + 1 + 3     = 6
#   0,1,3,4,2 = 2 + 1 + 4 + 1 = 8
#   0,4,3,2   = 3 + 4 + 3     = 10
#   0,4,3,1,2 = 3 + 4 + 1 + 4 = 12  <- L = 12, so proxy(a) = 1 - |a - 4| / 8
PENTAGON = [(0, 1, 2), (0, 4, 3), (1, 2, 4), (1, 3, 1), (2, 3, 3), (2, 4, 1), (3, 4, 4)]


def graph_of(edges: list[tuple[int, int, int]]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_weighted_edges_from(edges)
    return graph


def question_of(edges, source: int, target: int) -> Question:
    graph = graph_of(edges)
    meta = sp._meta(graph, source, target, "easy")
    text = sp._question_text(meta["edges"], meta["n_nodes"], source, target)
    gold = sp.canonical_number(meta["shortest"])
    return Question(id="t/0", dataset=sp.NAME, text=text, gold=gold, meta=meta)


# ---------------------------------------------------------------------------------------------------
# Proxy, gold and normaliser


def test_hand_computed_gold_and_normaliser():
    q = question_of(DIAMOND, 0, 3)
    assert (q.gold, q.meta["shortest"], q.meta["longest"], q.meta["path"]) == ("3", 3, 8, [0, 1, 3])
    q = question_of(PENTAGON, 0, 2)
    assert (q.gold, q.meta["shortest"], q.meta["longest"], q.meta["path"]) == ("4", 4, 12, [0, 4, 2])


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("3", 1.0),  # gold
        ("3.5", 0.9),  # 1 - 0.5/5
        ("4", 0.8),  # 1 - 1/5: the path 0,1,2,3
        ("2", 0.8),  # below gold counts the same distance
        ("5", 0.6),  # the path 0,2,3
        ("8", 0.0),  # the longest path
        ("100", 0.0),  # clipped
        ("-50", 0.0),  # clipped
    ],
)
def test_proxy_hand_computed(answer, expected):
    assert sp.proxy(question_of(DIAMOND, 0, 3), answer) == pytest.approx(expected)


def test_wrong_answer_ladder_is_ordered():
    q = question_of(PENTAGON, 0, 2)  # proxy(a) = 1 - |a - 4| / 8
    ladder = ["4", "5", "6", "8", "10", "12"]
    scores = [sp.proxy(q, a) for a in ladder]
    assert scores == pytest.approx([1.0, 0.875, 0.75, 0.5, 0.25, 0.0])
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_gold_proxy_is_exactly_one_and_correct():
    for q in [question_of(DIAMOND, 0, 3), *sp.generate_questions(10, seed=3)]:
        assert sp.proxy(q, q.gold) == 1.0
        assert sp.is_correct(q, q.gold)
        assert not sp.is_correct(q, sp.canonical_number(q.meta["shortest"] + 1))


def test_proxy_in_unit_interval_including_far_answers():
    for q in sp.generate_questions(10, seed=4):
        for a in ["0", "-7", "0.5", "1e6", "999999", q.gold, str(q.meta["longest"]), "2.25"]:
            assert 0.0 <= sp.proxy(q, a) <= 1.0


def test_single_possible_weight_is_all_or_nothing():
    # A path graph 0 - 1 - 2: the only simple path weighs 2 + 3 = 5, so L == g.
    q = question_of([(0, 1, 2), (1, 2, 3)], 0, 2)
    assert q.meta["shortest"] == q.meta["longest"] == 5
    assert sp.proxy(q, "5") == 1.0 and sp.proxy(q, "5.0") == 1.0
    assert sp.proxy(q, "6") == 0.0 and sp.proxy(q, "4") == 0.0


@pytest.mark.parametrize("answer", ["", "five", "nan", "inf", "The total weight is 5"])
def test_proxy_rejects_unextracted_answers(answer):
    with pytest.raises(ValueError, match="`answer`"):
        sp.proxy(question_of(DIAMOND, 0, 3), answer)


def test_canonical_number():
    assert [sp.canonical_number(x) for x in (5, 5.0, 5.5, -0.0, 12)] == ["5", "5", "5.5", "0", "12"]
    with pytest.raises(ValueError):
        sp.canonical_number(float("nan"))


# ---------------------------------------------------------------------------------------------------
# Longest simple path


def brute_force_longest(graph: nx.Graph, source: int, target: int) -> int:
    return max(nx.path_weight(graph, p, "weight") for p in nx.all_simple_paths(graph, source, target))


def test_longest_matches_brute_force_on_random_graphs():
    rng = random.Random(0)
    checked = 0
    while checked < 60:
        n = rng.randint(3, 8)
        m = rng.randint(n - 1, min(n * (n - 1) // 2, 2 * n))
        graph = nx.gnm_random_graph(n, m, seed=rng.randrange(10**6))
        if not nx.is_connected(graph):
            continue
        for u, v in graph.edges:
            graph[u][v]["weight"] = rng.randint(1, 10)
        s, t = rng.sample(range(n), 2)
        expected = brute_force_longest(graph, s, t)
        assert sp.longest_simple_path_weight(graph, s, t) == expected, (graph.edges(data=True), s, t)
        checked += 1


def test_longest_on_hand_built_graphs():
    assert sp.longest_simple_path_weight(graph_of(DIAMOND), 0, 3) == 8
    assert sp.longest_simple_path_weight(graph_of(DIAMOND), 3, 0) == 8
    assert sp.longest_simple_path_weight(graph_of(PENTAGON), 0, 2) == 12
    # Complete graph K5 with unit weights: the Hamiltonian path has 4 edges.
    k5 = nx.complete_graph(5)
    nx.set_edge_attributes(k5, 1, "weight")
    assert sp.longest_simple_path_weight(k5, 0, 4) == 4


def test_longest_errors():
    with pytest.raises(ValueError, match="max_steps"):
        sp.longest_simple_path_weight(nx.complete_graph(9), 0, 8, max_steps=10)
    graph = graph_of(DIAMOND)
    graph.add_node(9)
    with pytest.raises(ValueError, match="No path"):
        sp.longest_simple_path_weight(graph, 0, 9)
    with pytest.raises(ValueError, match="`target`"):
        sp.longest_simple_path_weight(graph, 0, 42)
    with pytest.raises(ValueError, match="differ"):
        sp.longest_simple_path_weight(graph, 1, 1)


# ---------------------------------------------------------------------------------------------------
# Generator


def test_generator_deterministic_and_seed_dependent():
    a, b = sp.generate_questions(8, seed=11), sp.generate_questions(8, seed=11)
    assert a == b
    assert [q.text for q in a] != [q.text for q in sp.generate_questions(8, seed=12)]
    assert [q.id for q in a] == [f"nlgraph_shortest_path/easy/11/{k}" for k in range(8)]
    assert len({q.text for q in a}) == len(a)


@pytest.mark.parametrize("difficulty, lo, hi, max_w", [("easy", 5, 10, 4), ("hard", 11, 20, 10)])
def test_generated_questions_checked_independently(difficulty, lo, hi, max_w):
    for q in sp.generate_questions(12 if difficulty == "easy" else 4, seed=5, difficulty=difficulty):
        m = q.meta
        graph = graph_of(m["edges"])
        s, t = m["source"], m["target"]
        assert lo <= m["n_nodes"] <= hi and graph.number_of_nodes() == m["n_nodes"]
        assert nx.is_connected(graph) and len(m["edges"]) <= 1.5 * m["n_nodes"]
        assert all(1 <= w <= max_w for _, _, w in m["edges"])
        assert s != t and not graph.has_edge(s, t)
        weights = [nx.path_weight(graph, p, "weight") for p in nx.all_simple_paths(graph, s, t)]
        assert q.gold == str(min(weights)) and m["shortest"] == min(weights)
        assert m["longest"] == max(weights) > m["shortest"]
        assert nx.path_weight(graph, m["path"], "weight") == m["shortest"]
        assert m["path"][0] == s and m["path"][-1] == t and m["difficulty"] == difficulty
        json.dumps(m)  # meta must be JSON-serialisable


def test_round_trip_text_to_graph():
    for q in sp.generate_questions(10, seed=21) + sp.generate_questions(3, seed=21, difficulty="hard"):
        graph, s, t = sp.parse_question_text(q.text)
        assert (s, t) == (q.meta["source"], q.meta["target"])
        assert sorted(graph.nodes) == list(range(q.meta["n_nodes"]))
        edges = sorted([min(i, j), max(i, j), d["weight"]] for i, j, d in graph.edges(data=True))
        assert edges == q.meta["edges"]


def test_question_wording_is_nlgraphs():
    text = sp.generate_questions(1, seed=0)[0].text
    lines = text.split("\n")
    assert lines[0].startswith("In an undirected graph, the nodes are numbered from 0 to ")
    assert lines[0].endswith(", and the edges are:")
    assert all(line.startswith("an edge between node ") and line.endswith(",") for line in lines[1:-3])
    assert lines[-3].endswith(".") and lines[-2].startswith("Q: Give the shortest path from node ")
    assert lines[-1] == "A:"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        sp.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        sp.generate_questions(-1, seed=0)


# ---------------------------------------------------------------------------------------------------
# Loader


def test_load_sample():
    qs = sp.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == [f"{sp.NAME}/nlgraph_shortest_path_sample/{k}" for k in range(4)]
    assert [q.gold for q in qs] == ["3", "4", "6", "10"]
    assert [q.meta["longest"] for q in qs] == [8, 12, 6, 55]
    assert [q.meta["difficulty"] for q in qs] == ["easy", "easy", "easy", "hard"]
    assert all(q.dataset == sp.NAME and q.text.endswith("\nA:") for q in qs)
    assert sp.proxy(qs[0], "4") == pytest.approx(0.8)


def write(tmp_path: Path, records) -> str:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records) if not isinstance(records, str) else records)
    return str(path)


def good_record() -> dict:
    return json.loads(SAMPLE.read_text())["0"]


def test_loader_invalid_json_names_file_line_column(tmp_path):
    path = write(tmp_path, '{"0": {"question": "x",\n "answer": }')
    with pytest.raises(ValueError, match=r"data\.json: invalid JSON at line 2, column \d+"):
        sp.load_questions(path)


@pytest.mark.parametrize("field", ["question", "answer", "difficulty"])
def test_loader_missing_field(tmp_path, field):
    record = good_record()
    del record[field]
    path = write(tmp_path, {"0": good_record(), "7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field '{field}': missing"):
        sp.load_questions(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda q: q.replace("Q: Give the shortest path from node 0 to", "Q: Go from"), "no line 'Q: Give"),
        (lambda q: q.replace("In an undirected", "In a directed"), "no line 'In an undirected"),
        (lambda q: q.replace("an edge between", "a link between"), "no line 'an edge between"),
        (lambda q: q.replace("node 2 and node 3", "node 2 and node 30"), "outside 0..3"),
        (lambda q: q.replace("from node 0 to node 3", "from node 3 to node 3"), "same node"),
        (  # node 3 loses both its edges (they become repeats of edges 0-1 and 1-2, same weights)
            lambda q: q.replace("node 1 and node 3 with weight 2", "node 0 and node 1 with weight 1")
            .replace("node 2 and node 3 with weight 1", "node 1 and node 2 with weight 2"),
            "node 3 is not reachable from node 0",
        ),
    ],
)
def test_loader_bad_question_text(tmp_path, edit, message):
    record = good_record()
    record["question"] = edit(record["question"])
    path = write(tmp_path, {"7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field 'question': .*{message}"):
        sp.load_questions(path)


def test_loader_wrong_stated_answer(tmp_path):
    record = good_record()
    record["answer"] = record["answer"].replace("total weight of 3", "total weight of 5")
    path = write(tmp_path, {"7": record})
    message = r"data\.json: record '7', field 'answer': states a total weight of 5, but .* weighs 3"
    with pytest.raises(ValueError, match=message):
        sp.load_questions(path)


def test_loader_wrong_types(tmp_path):
    with pytest.raises(ValueError, match="data.json: expected a JSON object"):
        sp.load_questions(write(tmp_path, [good_record()]))
    with pytest.raises(ValueError, match="record '7': expected a JSON object"):
        sp.load_questions(write(tmp_path, {"7": "text"}))
    record = good_record()
    record["difficulty"] = 1
    with pytest.raises(ValueError, match="record '7', field 'difficulty': expected a string"):
        sp.load_questions(write(tmp_path, {"7": record}))


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Adding up, the total weight is 2 + 3 = 5.\nThe total weight is **7**.", "7"),
        ("The total weight is 4. Wait, no. The total weight is 6", "6"),  # last mention
        ("the TOTAL weight is 5.", "5"),
        ("**The total weight is 9**", "9"),
        ("The total weight is: 3.5.", "3.5"),
        ("The total weight is 2 + 2 = 4.", "4"),
        ("The total weight is 6.0", "6"),
        ("The shortest path is 0,1,3 with a total weight of 3.", None),  # not the concluding phrase
        ("The total weight is unknown.", None),
        ("The total weight is 2 + 3", None),  # a half-written sum is not its first term
        ("The total weight is 3N.", None),  # the template's placeholder, not a number
        ("", None),
    ],
)
def test_parse_conclusion(text, expected):
    assert sp.parse_conclusion(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The shortest path from node 0 to node 2 is 0,3,2 with a total weight of 4", "4"),
        ("0,3,2 with a total weight of 2 + 2 = 4. Alternatively 0,1,2 with a total weight of 6.", "6"),
        ("Path 0,2,4 has weight of 7", None),  # "weight of" alone may be one edge's weight
        ("Path 0,2,4 has a total weight of 7", "7"),
        ("So the total weight = 12.", "12"),
        ("The total weight is **5**.", "5"),
        ("an edge between node 0 and node 1 with weight 4.", None),  # an edge weight is not an answer
        ("I cannot tell.", None),
    ],
)
def test_parse_direct(answer, expected):
    assert sp.parse_direct(answer) == expected


def test_gold_extracts_to_gold():
    q = question_of(DIAMOND, 0, 3)
    assert sp.parse_conclusion(f"... The total weight is {q.gold}.") == q.gold
    assert sp.parse_direct(f"0,1,3 with a total weight of {q.gold}") == q.gold


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    # The extraction turn's reply starts with the prefill; any number after it must parse.
    assert sp.parse_conclusion(sp.EXTRACTION_PREFILL + " 12.") == "12"
    assert sp.parse_conclusion(sp.EXTRACTION_PREFILL + " N, where N is a number.") is None
