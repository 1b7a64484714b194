"""NLGraph maximum flow: the maximum flow between two nodes of a small directed graph, in words.

Source: NLGraph, Wang et al. 2023, "Can Language Models Solve Graph Problems in Natural Language?"
(NeurIPS), https://github.com/Arthur-Heng/NLGraph (folder NLGraph/flow). The question wording, the
answer wording and the JSON schema of its files are NLGraph's; the difficulty splits follow its data
(easy: 5-10 nodes, capacities 1-10; hard: 11-20 nodes, capacities 1-20). wow uses it as the paper it
follows does: Yao et al. 2024, "Varying Shades of Wrong: Aligning LLMs with Wrong Answers Only"
(arXiv 2410.11055).

Worked example (the generator asks the user turn below; the model reasons, then is asked
EXTRACTION_PROMPT and concludes):

    In a directed graph, the nodes are numbered from 0 to 3, and the edges are:
    an edge from node 0 to node 1 with capacity 3,
    an edge from node 0 to node 2 with capacity 3,
    an edge from node 1 to node 2 with capacity 1,
    an edge from node 1 to node 3 with capacity 2,
    an edge from node 2 to node 3 with capacity 3.
    Q: What is the maximum flow from node 0 to node 3?
    A:

    Paths 0,1,3 (2 units) and 0,2,3 (3 units) carry 5; the cut {0, 1, 2} | {3} has capacity
    2 + 3 = 5, so no flow carries more. Gold g = 5, normaliser L = 2g = 10. "... The maximum flow
    is 6." extracts to "6", proxy 1 - |6 - 5| / 5 = 0.8.

Proxy (DESIGN.md): `1 - |a - g| / (L - g)` with L = 2g, i.e. `1 - |a - g| / g`, clipped to [0, 1],
with g the maximum flow: an answer off by g or more (0, or twice the flow) scores 0. When g == 0
(a loaded record whose target the source cannot reach) L == g and the proxy is 1 for 0, else 0.
Correct means proxy 1, i.e. a == g.
"""
import random
import re
from collections.abc import Iterator

import networkx as nx

import wow_core.datasets.nlgraph as nlgraph
from wow_core.datasets.nlgraph import NUMBER, canonical_number, extracted_number
from wow_core.records import Question

NAME = "nlgraph_max_flow"
VERSION = 1  # bump on any change to prompt, extraction or scoring

EXTRACTION_PROMPT = (
    "Therefore, what is the maximum flow? "
    'End your reply with "The maximum flow is N", where N is a number.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the number is still the model's own.
EXTRACTION_PREFILL = "The maximum flow is"

# difficulty -> (min nodes, max nodes, max edge capacity), as in NLGraph's easy and hard splits.
DIFFICULTIES = {"easy": (5, 10, 10), "hard": (11, 20, 20)}

_CONCLUSION_RE = re.compile(r"the\s+maximum\s+flow\s+is\s*:?\s*" + NUMBER, re.IGNORECASE)
# NLGraph's answers name the nodes: "The maximum flow from node 0 to node 2 is 7."
_DIRECT_RE = re.compile(
    r"maximum\s+flow(?:\s+from\s+node\s+\d+\s+to\s+node\s+\d+)?\s*(?:is|of|=|:)\s*:?\s*" + NUMBER,
    re.IGNORECASE,
)

# The lines of the wording, each with the way a message names it when it is missing.
_HEADER = (re.compile(r"In a directed graph, the nodes are numbered from 0 to (\d+), and the edges are:"),
           "In a directed graph, the nodes are numbered from 0 to N, and the edges are:")
_EDGE = (re.compile(r"an edge from node (\d+) to node (\d+) with capacity (\d+)"),
         "an edge from node I to node J with capacity C")
_QUERY = (re.compile(r"Q: What is the maximum flow from node (\d+) to node (\d+)\?"),
          "Q: What is the maximum flow from node S to node T?")


# ---------------------------------------------------------------------------------------------------
# Graphs


def parse_question_text(text: str) -> tuple[nx.DiGraph, int, int]:
    """The graph, source and target of a question worded as NLGraph words it.

    Args:
        text: the question, e.g. "In a directed graph, the nodes are numbered from 0 to 3, and the
            edges are:\\nan edge from node 0 to node 1 with capacity 3,\\n...\\nQ: What is the
            maximum flow from node 0 to node 3?\\nA:".

    Returns:
        (directed graph with integer "capacity" on every edge and nodes 0..N-1, source, target).

    Raises:
        ValueError: a part of the wording is missing or names a node out of range; the message says
            which.
    """
    return nlgraph.parse_edge_list(text, nx.DiGraph(), "capacity", _HEADER, _EDGE, _QUERY)


def _question_text(edges: list[list[int]], n_nodes: int, source: int, target: int) -> str:
    """NLGraph's wording of a maximum-flow question (its `translate`, plain prompt)."""
    lines = [f"an edge from node {i} to node {j} with capacity {c}" for i, j, c in edges]
    body = ",\n".join(lines) + "."
    return (
        f"In a directed graph, the nodes are numbered from 0 to {n_nodes - 1}, and the edges are:\n"
        f"{body}\nQ: What is the maximum flow from node {source} to node {target}?\nA:"
    )


def _meta(graph: nx.DiGraph, source: int, target: int, difficulty: str) -> dict:
    """Everything the proxy needs: the gold maximum flow (g; L = 2g) and the graph."""
    return {
        "edges": sorted([i, j, d["capacity"]] for i, j, d in graph.edges(data=True)),
        "source": source,
        "target": target,
        "n_nodes": graph.number_of_nodes(),
        "max_flow": nx.maximum_flow_value(graph, source, target, capacity="capacity"),
        "difficulty": difficulty,
    }


# ---------------------------------------------------------------------------------------------------
# Questions


def _random_graph(rng: random.Random, n_nodes: int, max_capacity: int) -> nx.DiGraph:
    """A directed graph with n to 3n edges (NLGraph's have 1 to 4 per node), capacities 1..max."""
    pairs = [(i, j) for i in range(n_nodes) for j in range(n_nodes) if i != j]
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_nodes))
    for i, j in sorted(rng.sample(pairs, rng.randint(n_nodes, 3 * n_nodes))):
        graph.add_edge(i, j, capacity=rng.randint(1, max_capacity))
    return graph


def generate_questions(n: int, seed: int, difficulty: str = "easy") -> list[Question]:
    """`n` fresh questions in NLGraph's wording, the same for the same (n, seed, difficulty).

    The maximum flow of each is larger than the capacity of every single edge out of the source and
    into the target, so it is never one edge's capacity read off: at least two paths must combine.

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws everything.
        difficulty: "easy" (5-10 nodes, capacities 1-10) or "hard" (11-20 nodes, capacities 1-20).

    Returns:
        Questions with ids "nlgraph_max_flow/{difficulty}/{seed}/{k}".

    Raises:
        ValueError: `n` negative or `difficulty` unknown.
    """
    return nlgraph.generate_questions(NAME, "max_flow", DIFFICULTIES, _draw, n, seed, difficulty)


def _draw(rng: random.Random, difficulty: str) -> Iterator[tuple[str, dict]]:
    """Questions (text, meta), one per graph: the first qualifying pair of nodes in a random order.
    A graph in which no pair qualifies is passed over."""
    lo, hi, max_capacity = DIFFICULTIES[difficulty]
    while True:
        graph = _random_graph(rng, rng.randint(lo, hi), max_capacity)
        pairs = [(s, t) for s in graph for t in graph if s != t]
        rng.shuffle(pairs)
        for s, t in pairs:
            ends = [*graph.out_edges(s, data="capacity"), *graph.in_edges(t, data="capacity")]
            widest = max((c for _, _, c in ends), default=0)
            meta = _meta(graph, s, t, difficulty)
            if meta["max_flow"] > widest:
                yield _question_text(meta["edges"], meta["n_nodes"], s, t), meta
                break


def load_questions(path: str) -> list[Question]:
    """Questions from an NLGraph JSON file, ids "nlgraph_max_flow/{file stem}/{record id}" in file
    order; `nlgraph.load_questions` gives the schema and the checks.

    The graph is parsed back from each question and the maximum flow computed here. A maximum flow
    stated in the record's answer must agree with the computed one.
    """
    return nlgraph.load_questions(
        NAME, "max_flow", path,
        meta_of=lambda text, difficulty: _meta(*parse_question_text(text), difficulty),
        parse_direct=parse_direct,
        disagreement="states a maximum flow of {stated}, but the maximum flow from node {source} to node {target} "
                     "is {max_flow}",
    )


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def parse_conclusion(text: str) -> str | None:
    """The number of the last "The maximum flow is N" in `text`, canonical; None if there is none.

    Case-insensitive; bold ("**7**") and a trailing period are fine; so is an explicit sum ("The
    maximum flow is 2 + 3 = 5" gives "5").
    """
    matches = _CONCLUSION_RE.findall(text)
    return canonical_number(float(matches[-1])) if matches else None


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the last "maximum flow [from node S to node T] is/of/= N",
    canonical. ("capacity N" is never taken: it is one edge's capacity restated.)

    NLGraph's own answers read "The maximum flow from node 0 to node 2 is 7."; None if there is no
    such phrase.
    """
    matches = _DIRECT_RE.findall(answer)
    return canonical_number(float(matches[-1])) if matches else None


def proxy(question: Question, answer: str) -> float:
    """How close an extracted answer is to gold: `1 - |a - g| / g` (L = 2g) clipped to [0, 1].

    Args:
        question: a question of this dataset (meta "max_flow" = g).
        answer: an extracted answer, e.g. "5".

    Returns:
        1.0 for the maximum flow; 0.0 for answers at least g away from it (0, 2g and beyond). When
        g == 0, 1.0 for 0 and 0.0 otherwise.

    Raises:
        ValueError: `answer` is not a number.
    """
    g = question.meta["max_flow"]
    return nlgraph.linear_proxy(extracted_number(answer), g, 2 * g)


def is_correct(question: Question, answer: str) -> bool:
    """Whether the extracted answer is the maximum flow (proxy 1)."""
    return extracted_number(answer) == question.meta["max_flow"]
