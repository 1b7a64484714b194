"""NLGraph bipartite matching: hand-computed gold and proxy, certified generator, loader, parsers."""
import itertools
import json
import os
import random
import subprocess
import sys
from functools import cache
from pathlib import Path

import networkx as nx
import pytest

from wow_core.datasets import nlgraph_bipartite_matching as bm
from wow_core.datasets import nlgraph_shortest_path as sp
from wow_core.records import Question

SAMPLE = Path(__file__).parent.parent / "data" / "nlgraph_bipartite_matching_sample.json"

# Interests as (applicant, job). The worked example of the module docstring (sample record "0"),
# 4 applicants, 4 jobs: applicant 0 only wants job 0 and applicant 3 only job 1, so 1 -> 2 completes
# 0 -> 0, 3 -> 1; applicant 2 wants only jobs 0 and 1, taken. Jobs {0, 1, 2} touch every interest
# (nobody wants job 3), so no matching has more than 3: g = 3 and proxy(a) = 1 - |a - 3| / 3.
WORKED = [(0, 0), (1, 0), (1, 2), (2, 0), (2, 1), (3, 1)]

# Sample record "2", 6 applicants, 5 jobs: 0 -> 1, 1 -> 0, 2 -> 2, 4 -> 3; applicants 2 and 3 both
# want only job 2, applicant 5 nothing, job 4 nobody. Jobs {0, 1, 2, 3} touch every interest, so
# g = 4 and proxy(a) = 1 - |a - 4| / 4.
SPARSE = [(0, 0), (0, 1), (1, 0), (2, 2), (3, 2), (4, 3)]

# Sample record "3" (hard), 10 applicants, 11 jobs: applicants 7, 8, 9 want only jobs 6 and 7, so
# one of them is left out; 0 -> 10, 1 -> 4, 2 -> 1, 3 -> 2, 4 -> 9, 5 -> 5, 6 -> 8, 8 -> 6, 9 -> 7
# matches the other 9. Applicants 0..6 with jobs 6 and 7 touch every interest: g = 9.
HARD = [
    (0, 3), (0, 6), (0, 10), (1, 0), (1, 4), (2, 1), (2, 4), (2, 7), (3, 2), (3, 5), (3, 8),
    (4, 0), (4, 9), (5, 3), (5, 5), (6, 2), (6, 8), (6, 10), (7, 6), (7, 7), (8, 6), (9, 7),
]


def question_of(edges, n_applicants: int, n_jobs: int) -> Question:
    meta = bm._meta(bm._graph(edges, n_applicants, n_jobs), "easy")
    text = bm._question_text(meta["edges"], n_applicants, n_jobs)
    gold = bm.canonical_number(meta["max_matching"])
    return Question(id="t/0", dataset=bm.NAME, text=text, gold=gold, meta=meta)


def is_matching(pairs, edges) -> bool:
    """Every pair is an interest, and no applicant or job is used twice."""
    applicants, jobs = [i for i, _ in pairs], [j for _, j in pairs]
    return (
        all(tuple(p) in {tuple(e) for e in edges} for p in pairs)
        and len(set(applicants)) == len(applicants)
        and len(set(jobs)) == len(jobs)
    )


def brute_force_max_matching(edges) -> int:
    """The largest number of interests, over all subsets, that share no applicant and no job."""
    edges = sorted(set(map(tuple, edges)))
    return max(r for r in range(len(edges) + 1) for subset in itertools.combinations(edges, r)
               if is_matching(subset, edges))


def dp_max_matching(edges, n_applicants: int, n_jobs: int) -> int:
    """Applicant by applicant: skip it, or give it a wanted job not yet taken (jobs as a bitmask)."""
    wants = [[j for i, j in edges if i == a] for a in range(n_applicants)]

    @cache
    def best(a: int, taken: int) -> int:
        if a == n_applicants:
            return 0
        return max([best(a + 1, taken)]
                   + [1 + best(a + 1, taken | 1 << j) for j in wants[a] if not taken >> j & 1])

    return best(0, 0)


def certified_max_matching(meta: dict) -> int:
    """The maximum matching size, proved: the meta's matching and a vertex cover of the same size
    (every matched pair needs its own cover node, so no matching beats a cover: weak duality).

    The cover comes from networkx (König's theorem); every check on it is made here.
    """
    edges, matching = meta["edges"], meta["matching"]
    assert is_matching(matching, edges)
    graph = bm._graph(edges, meta["n_applicants"], meta["n_jobs"])
    applicants = [("applicant", i) for i in range(meta["n_applicants"])]
    hk = nx.bipartite.hopcroft_karp_matching(graph, top_nodes=applicants)
    cover = nx.bipartite.to_vertex_cover(graph, hk, top_nodes=applicants)
    assert all(("applicant", i) in cover or ("job", j) in cover for i, j in edges)
    assert len(cover) == len(matching)
    return len(matching)


# ---------------------------------------------------------------------------------------------------
# Proxy and gold


def test_hand_computed_gold():
    assert question_of(WORKED, 4, 4).gold == "3" and question_of(SPARSE, 6, 5).gold == "4"
    assert question_of(HARD, 10, 11).gold == "9"
    assert brute_force_max_matching(WORKED) == 3 and brute_force_max_matching(SPARSE) == 4
    assert dp_max_matching(HARD, 10, 11) == certified_max_matching(question_of(HARD, 10, 11).meta) == 9
    # Greedy in line order fails here (0 -> 0 leaves 1 nothing); an augmenting path gets both.
    assert question_of([(0, 0), (0, 1), (1, 0)], 2, 2).meta["matching"] == [[0, 1], [1, 0]]


def test_worked_example_is_in_the_docstring():
    q = question_of(WORKED, 4, 4)
    assert "\n".join("    " + line for line in q.text.split("\n")) in bm.__doc__


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("3", 1.0),  # gold
        ("3.0", 1.0),
        ("3.5", 5 / 6),  # 1 - 0.5/3
        ("4", 2 / 3),  # 1 - 1/3: every applicant who wants a job
        ("2", 2 / 3),  # below gold counts the same distance
        ("1", 1 / 3),
        ("0", 0.0),  # nobody matched: g below gold
        ("6", 0.0),  # L = 2g
        ("7", 0.0),  # clipped
        ("-2", 0.0),  # clipped
    ],
)
def test_proxy_hand_computed(answer, expected):
    assert bm.proxy(question_of(WORKED, 4, 4), answer) == pytest.approx(expected)


def test_wrong_answer_ladder_is_ordered():
    q = question_of(SPARSE, 6, 5)  # proxy(a) = 1 - |a - 4| / 4
    for ladder in (["4", "3", "2", "1", "0"], ["4", "5", "6", "7", "8"]):
        scores = [bm.proxy(q, a) for a in ladder]
        assert scores == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_gold_proxy_is_exactly_one_and_correct():
    for q in [question_of(WORKED, 4, 4), *bm.generate_questions(10, seed=3)]:
        assert bm.proxy(q, q.gold) == 1.0
        assert bm.is_correct(q, q.gold) and bm.is_correct(q, q.gold + ".0")
        for wrong in (q.meta["max_matching"] + 1, q.meta["max_matching"] - 1):
            assert not bm.is_correct(q, bm.canonical_number(wrong))
            assert bm.proxy(q, bm.canonical_number(wrong)) < 1.0


def test_proxy_in_unit_interval_including_far_answers():
    for q in bm.generate_questions(10, seed=4) + bm.generate_questions(3, seed=4, difficulty="hard"):
        double = str(2 * q.meta["max_matching"])
        for a in ["0", "-7", "0.5", "1e6", "999999", q.gold, double, "2.25"]:
            assert 0.0 <= bm.proxy(q, a) <= 1.0
        assert bm.proxy(q, double) == bm.proxy(q, "0") == 0.0


@pytest.mark.parametrize("answer", ["", "three", "nan", "inf", "The maximum number of matches is 3"])
def test_proxy_rejects_unextracted_answers(answer):
    with pytest.raises(ValueError, match="`answer`"):
        bm.proxy(question_of(WORKED, 4, 4), answer)
    with pytest.raises(ValueError, match="`answer`"):
        bm.is_correct(question_of(WORKED, 4, 4), answer)


def test_canonical_number_is_shared_with_shortest_path():
    assert bm.canonical_number is sp.canonical_number


def test_gold_matches_brute_force_on_random_small_graphs():
    rng = random.Random(0)
    for _ in range(60):
        n_applicants, n_jobs = rng.randint(1, 5), rng.randint(1, 5)
        pairs = [(i, j) for i in range(n_applicants) for j in range(n_jobs)]
        edges = rng.sample(pairs, rng.randint(1, min(len(pairs), 10)))
        q = question_of(edges, n_applicants, n_jobs)
        assert q.meta["max_matching"] == brute_force_max_matching(edges), edges
        assert q.meta["max_matching"] == dp_max_matching(edges, n_applicants, n_jobs)
        assert is_matching(q.meta["matching"], edges) and len(q.meta["matching"]) == q.meta["max_matching"]


# ---------------------------------------------------------------------------------------------------
# Generator


def test_generator_deterministic_and_seed_dependent():
    a, b = bm.generate_questions(8, seed=11), bm.generate_questions(8, seed=11)
    assert a == b
    assert [q.text for q in a] != [q.text for q in bm.generate_questions(8, seed=12)]
    assert [q.id for q in a] == [f"nlgraph_bipartite_matching/easy/11/{k}" for k in range(8)]
    assert len({q.text for q in a}) == len(a)
    # Small easy graphs (4 applicants, 2 jobs) repeat by chance; the generator redraws them.
    assert len({q.text for q in bm.generate_questions(200, seed=0)}) == 200


def test_generated_questions_are_the_same_in_every_process():
    # String hashing is salted per process; the meta (one maximum matching) must not depend on it.
    script = ("import json; from wow_core.datasets import nlgraph_bipartite_matching as bm; "
              "print(json.dumps([q.meta for q in bm.generate_questions(6, seed=3, difficulty='hard')]))")
    metas = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                            capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(metas) == 1


@pytest.mark.parametrize("difficulty, lo, hi", [("easy", 4, 9), ("hard", 10, 15)])
def test_generated_questions_checked_independently(difficulty, lo, hi):
    for q in bm.generate_questions(12 if difficulty == "easy" else 6, seed=5, difficulty=difficulty):
        m = q.meta
        n_a, n_j, edges = m["n_applicants"], m["n_jobs"], m["edges"]
        assert lo <= n_a <= hi and n_j >= 2 and abs(n_j - n_a) <= bm.JOB_SPREAD
        assert m["difficulty"] == difficulty and edges == sorted(edges)
        assert len({tuple(e) for e in edges}) == len(edges)
        assert all(0 <= i < n_a and 0 <= j < n_j for i, j in edges)
        gold = certified_max_matching(m)
        if difficulty == "easy":  # at most 12 jobs: 4096 job sets per applicant
            assert dp_max_matching(edges, n_a, n_j) == gold
        assert q.gold == str(gold) and m["max_matching"] == gold >= 2
        json.dumps(m)  # meta must be JSON-serialisable


def test_round_trip_text_to_graph():
    for q in bm.generate_questions(10, seed=21) + bm.generate_questions(3, seed=21, difficulty="hard"):
        graph = bm.parse_question_text(q.text)
        assert bm._meta(graph, q.meta["difficulty"]) == q.meta
        assert sorted(v for v, side in graph.nodes(data="bipartite") if side == 0) == [
            ("applicant", i) for i in range(q.meta["n_applicants"])
        ]


def test_repeated_interest_is_one_edge():
    text = question_of(WORKED, 4, 4).text
    repeated = text.replace("job 2.\n", "job 2.\nApplicant 1 is interested in job 2.\n")
    assert repeated != text
    assert bm.parse_question_text(repeated).number_of_edges() == len(WORKED)


def test_question_wording_is_nlgraphs():
    text = bm.generate_questions(1, seed=0)[0].text
    lines = text.split("\n")
    assert lines[0].startswith("There are ") and " job applicants numbered from 0 to " in lines[0]
    assert lines[0].endswith(
        "Each applicant is interested in some of the jobs. Each job can only accept one applicant "
        "and a job applicant can be appointed for only one job."
    )
    assert all(line.startswith("Applicant ") and " is interested in job " in line and line.endswith(".")
               for line in lines[1:-2])
    assert lines[-2] == (
        "Q: Find an assignment of jobs to applicants in such that the maximum number of applicants "
        "find the job they are interested in."
    )
    assert lines[-1] == "A:"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        bm.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        bm.generate_questions(-1, seed=0)


# ---------------------------------------------------------------------------------------------------
# Loader


def test_load_sample():
    qs = bm.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == [f"{bm.NAME}/nlgraph_bipartite_matching_sample/{k}" for k in range(4)]
    assert [q.gold for q in qs] == ["3", "2", "4", "9"]
    assert [(q.meta["n_applicants"], q.meta["n_jobs"]) for q in qs] == [(4, 4), (4, 2), (6, 5), (10, 11)]
    assert [q.meta["difficulty"] for q in qs] == ["easy", "easy", "easy", "hard"]
    # Interests come back sorted, whatever the order of the lines (record "2" lists job 1 before 0).
    assert [sorted(map(tuple, qs[k].meta["edges"])) for k in (0, 2, 3)] == [WORKED, SPARSE, HARD]
    assert qs[1].meta["edges"] == [[0, 0], [2, 0], [2, 1], [3, 0]]
    assert all(q.dataset == bm.NAME and q.text.endswith("\nA:") for q in qs)
    # The answers' assignment lines name NLGraph's node ids ("job 4" for job 0 of 4 applicants);
    # only the stated count is checked, and it agreed.
    assert "applicant 0: job 4\n" in json.loads(SAMPLE.read_text())["0"]["answer"]
    assert bm.proxy(qs[0], "4") == pytest.approx(2 / 3)


def write(tmp_path: Path, records) -> str:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records) if not isinstance(records, str) else records)
    return str(path)


def good_record() -> dict:
    return json.loads(SAMPLE.read_text())["0"]


def test_loader_invalid_json_names_file_line_column(tmp_path):
    path = write(tmp_path, '{"0": {"question": "x",\n "answer": }')
    with pytest.raises(ValueError, match=r"data\.json: invalid JSON at line 2, column \d+"):
        bm.load_questions(path)


@pytest.mark.parametrize("field", ["question", "answer", "difficulty"])
def test_loader_missing_field(tmp_path, field):
    record = good_record()
    del record[field]
    path = write(tmp_path, {"0": good_record(), "7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field '{field}': missing"):
        bm.load_questions(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda q: q.replace("Q: Find an assignment of jobs to applicants", "Q: Assign jobs"),
         "no line 'Q: Find an assignment"),
        (lambda q: q.replace("There are 4 job applicants", "There are 4 applicants"), "no line 'There are"),
        (lambda q: q.replace("4 job applicants numbered from 0 to 3", "0 job applicants numbered from 0 to -1"),
         "no line 'There are"),
        (lambda q: q.replace(" is interested in job ", " likes job "), "no line 'Applicant I is interested"),
        (lambda q: q.replace("applicants numbered from 0 to 3", "applicants numbered from 0 to 5"),
         "says 4 job applicants but numbers them from 0 to 5"),
        (lambda q: q.replace("4 jobs numbered from 0 to 3", "4 jobs numbered from 0 to 2"),
         "says 4 jobs but numbers them from 0 to 2"),
        (lambda q: q.replace("Applicant 3 is interested in job 1", "Applicant 3 is interested in job 9"),
         "names job 9, outside 0..3"),
        (lambda q: q.replace("Applicant 3 is", "Applicant 7 is"), "names applicant 7, outside 0..3"),
    ],
)
def test_loader_bad_question_text(tmp_path, edit, message):
    record = good_record()
    record["question"] = edit(record["question"])
    path = write(tmp_path, {"7": record})
    with pytest.raises(ValueError, match=rf"data\.json: record '7', field 'question': .*{message}"):
        bm.load_questions(path)


def test_loader_wrong_stated_answer(tmp_path):
    record = good_record()
    record["answer"] = record["answer"].replace("3 applicants can find", "4 applicants can find")
    path = write(tmp_path, {"7": record})
    message = (
        r"data\.json: record '7', field 'answer': states 4 matched applicants, "
        r"but a maximum matching has 3"
    )
    with pytest.raises(ValueError, match=message):
        bm.load_questions(path)


def test_loader_answer_without_a_count_is_not_checked(tmp_path):
    record = good_record()
    record["answer"] = ""
    assert bm.load_questions(write(tmp_path, {"7": record}))[0].gold == "3"


def test_loader_wrong_types(tmp_path):
    with pytest.raises(ValueError, match="data.json: expected a JSON object"):
        bm.load_questions(write(tmp_path, [good_record()]))
    with pytest.raises(ValueError, match="record '7': expected a JSON object"):
        bm.load_questions(write(tmp_path, {"7": "text"}))
    record = good_record()
    record["difficulty"] = 1
    with pytest.raises(ValueError, match="record '7', field 'difficulty': expected a string"):
        bm.load_questions(write(tmp_path, {"7": record}))


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Applicants 0, 1 and 3 get jobs.\nThe maximum number of matches is **3**.", "3"),
        ("The maximum number of matches is 2. Wait, no. The maximum number of matches is 4", "4"),  # last
        ("the MAXIMUM number of matches is: 5.", "5"),
        ("**The maximum number of matches is 9**", "9"),
        ("The maximum number of matches is 1 + 2 = 3.", "3"),
        ("The maximum number of matches is 3.0", "3"),
        ("3 applicants can find the job they are interested in.", None),  # not the concluding phrase
        ("The maximum number of matches is unknown.", None),
        ("The maximum number of matches is 2 + 1", None),  # a half-written sum is not its first term
        ("The maximum number of matches is N.", None),  # the template's placeholder, not a number
        ("The maximum number of matches is 3N.", None),
        ("", None),
    ],
)
def test_parse_conclusion(text, expected):
    assert bm.parse_conclusion(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        # NLGraph's own answer
        ("applicant 0: job 4\napplicant 2: job 5\n2 applicants can find the job they are interested in.", "2"),
        ("So 3 applicants can find a job. Rechecking, 4 applicants can find the job they want.", "4"),
        ("Only 1 applicant can find the job it is interested in.", "1"),
        ("**3** applicants can find the job they are interested in.", "3"),
        ("1 + 2 = 3 applicants can find a job.", "3"),
        ("The maximum number of matches is 5.", "5"),
        ("The maximum matching is 2 + 2 = 4 pairs. Then 3 applicants can find the job.", "3"),  # last
        ("This gives a maximum matching of 6.", "6"),
        ("2 + 1 applicants can find the job", None),  # a half-written sum is not its last term
        ("2*3 applicants can find the job", None),
        ("3.5 applicants can find the job", None),
        ("applicant 0: job 4\napplicant 2: job 5", None),  # assignments are not a count
        ("Applicant 3 is interested in job 2.", None),  # the question restated
        ("There are 4 job applicants numbered from 0 to 3.", None),
        ("The maximum matching is applicant 0 with job 1.", None),
        ("N applicants can find the job they are interested in.", None),
        ("I cannot tell.", None),
    ],
)
def test_parse_direct(answer, expected):
    assert bm.parse_direct(answer) == expected


def test_gold_extracts_to_gold():
    q = question_of(WORKED, 4, 4)
    assert bm.parse_conclusion(f"... The maximum number of matches is {q.gold}.") == q.gold
    assert bm.parse_direct(f"{q.gold} applicants can find the job they are interested in.") == q.gold


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    # The extraction turn's reply starts with the prefill; any number after it must parse.
    assert bm.EXTRACTION_PROMPT.endswith('"The maximum number of matches is N", where N is a number.')
    assert bm.parse_conclusion(bm.EXTRACTION_PREFILL + " 12.") == "12"
    assert bm.parse_conclusion(bm.EXTRACTION_PREFILL + " N, where N is a number.") is None
