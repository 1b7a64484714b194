"""NLGraph shortest path: weighted shortest path in a small undirected graph, asked in words.

Source: NLGraph, Wang et al. 2023, "Can Language Models Solve Graph Problems in Natural Language?"
(NeurIPS), https://github.com/Arthur-Heng/NLGraph. The question wording, the answer wording and the
JSON schema of its files are NLGraph's; the difficulty splits follow its data (easy: 5-10 nodes,
weights 1-4; hard: 11-20 nodes, weights 1-10). wow uses it as the paper it follows does: Yao et al.
2024, "Varying Shades of Wrong: Aligning LLMs with Wrong Answers Only" (arXiv 2410.11055).

Worked example (the generator asks the user turn below; the model reasons, then is asked
EXTRACTION_PROMPT and concludes):

    In an undirected graph, the nodes are numbered from 0 to 3, and the edges are:
    an edge between node 0 and node 1 with weight 1,
    an edge between node 0 and node 2 with weight 4,
    an edge between node 1 and node 2 with weight 2,
    an edge between node 1 and node 3 with weight 2,
    an edge between node 2 and node 3 with weight 1.
    Q: Give the shortest path from node 0 to node 3.
    A:

    The simple paths from 0 to 3 weigh 0,1,3 = 3; 0,2,3 = 5; 0,1,2,3 = 4; 0,2,1,3 = 8.
    Gold g = 3 (path 0,1,3), normaliser L = 8. "... The total weight is 4." extracts to "4",
    proxy 1 - |4 - 3| / (8 - 3) = 0.8.

Proxy (DESIGN.md): `1 - |a - g| / (L - g)` clipped to [0, 1], with g the shortest-path weight and L
the weight of the longest simple path between the two nodes: an answer as far from g as the
heaviest route without repeated nodes scores 0. When L == g (one possible weight) the proxy is 1
for g, else 0.
Correct means proxy 1, i.e. a == g.
"""
import math
import random
import re
from collections.abc import Iterator

import networkx as nx

import wow_core.datasets.nlgraph as nlgraph
from wow_core.datasets.nlgraph import NUMBER, canonical_number, extracted_number
from wow_core.records import Question

NAME = "nlgraph_shortest_path"
VERSION = 2  # bump on any change to prompt, extraction or scoring (2: stricter number and direct parse)

EXTRACTION_PROMPT = (
    "Therefore, what is the total weight of the shortest path? "
    'End your reply with "The total weight is N", where N is a number.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the number is still the model's own.
EXTRACTION_PREFILL = "The total weight is"

# difficulty -> (min nodes, max nodes, max edge weight), as in NLGraph's easy and hard splits.
DIFFICULTIES = {"easy": (5, 10, 4), "hard": (11, 20, 10)}

_CONCLUSION_RE = re.compile(r"the\s+total\s+weight\s+is\s*:?\s*" + NUMBER, re.IGNORECASE)
_DIRECT_RE = re.compile(r"total\s+weight\s*(?:is|of|=|:)\s*:?\s*" + NUMBER, re.IGNORECASE)

# The lines of the wording, each with the way a message names it when it is missing.
_HEADER = (re.compile(r"In an? undirected graph, the nodes are numbered from 0 to (\d+), and the edges are:"),
           "In an undirected graph, the nodes are numbered from 0 to N, and the edges are:")
_EDGE = (re.compile(r"an edge between node (\d+) and node (\d+) with weight (\d+)"),
         "an edge between node I and node J with weight W")
_QUERY = (re.compile(r"Q: Give the shortest path from node (\d+) to node (\d+)"),
          "Q: Give the shortest path from node S to node T")


# ---------------------------------------------------------------------------------------------------
# Graphs


def longest_simple_path_weight(
    graph: nx.Graph, source: int, target: int, max_steps: int = 2_000_000
) -> int:
    """Weight of the heaviest simple path from `source` to `target`, exactly.

    Longest simple path is NP-hard, but NLGraph's graphs have at most 20 nodes: a depth-first search
    that tries heavy edges first and cuts a branch when an upper bound on what it can still add cannot
    beat the best path found finishes in well under a second on them. A branch is also cut as soon as
    `target` is no longer reachable without revisiting a node.

    Args:
        graph: undirected graph; edge weights in the "weight" attribute (1 when absent).
        source: first node of the path.
        target: last node of the path.
        max_steps: search nodes to expand before giving up.

    Returns:
        The weight of the longest simple path (an int for integer weights).

    Raises:
        ValueError: `source` or `target` not in the graph, equal, not connected, or the search needed
            more than `max_steps` steps.
    """
    for name, node in (("source", source), ("target", target)):
        if node not in graph:
            raise ValueError(f"`{name}` must be a node of the graph, got {node!r}.")
    if source == target:
        raise ValueError(f"`source` and `target` must differ, got {source!r} for both.")
    if not nx.has_path(graph, source, target):
        raise ValueError(f"No path from node {source!r} to node {target!r}.")

    nodes = list(graph.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    # Neighbours as (bit, index, weight), heaviest first: good paths are found early, so the bound
    # cuts more.
    adj: list[list[tuple[int, int, float]]] = []
    for v in nodes:
        nbrs = [(index[u], d.get("weight", 1)) for u, d in graph[v].items() if u != v]
        nbrs.sort(key=lambda p: -p[1])
        adj.append([(1 << u, u, w) for u, w in nbrs])
    nbr_mask = [sum(bit for bit, _, _ in a) for a in adj]
    # Each node after the current one is entered by one path edge and (except the target) left by
    # another, so twice the rest of a path is at most: top1(current) + top1(target) + top1 + top2 of
    # every intermediate node.
    top1 = [a[0][2] if a else 0 for a in adj]
    top12 = [sum(w for _, _, w in a[:2]) for a in adj]
    integral = all(float(w).is_integer() for a in adj for _, _, w in a)

    s, t = index[source], index[target]
    t_bit = 1 << t
    best = -math.inf
    steps = 0

    def reachable(cur: int, visited: int) -> int:
        """Nodes reachable from `cur` without touching `visited`, as a bitmask (`cur` excluded)."""
        seen = 0
        frontier = nbr_mask[cur] & ~visited
        while frontier:
            seen |= frontier
            new = 0
            rest = frontier
            while rest:
                low = rest & -rest
                new |= nbr_mask[low.bit_length() - 1]
                rest ^= low
            frontier = new & ~visited & ~seen
        return seen

    def bound(cur: int, free: int) -> float:
        """Upper bound on the weight a simple path from `cur` to the target can add inside `free`."""
        one = 0  # each free node entered once by its heaviest edge
        two = top1[cur] + top1[t]
        rest = free
        while rest:
            low = rest & -rest
            v = low.bit_length() - 1
            one += top1[v]
            if v != t:
                two += top12[v]
            rest ^= low
        half = two // 2 if integral else two / 2
        return min(one, half)

    def search(cur: int, visited: int, weight: float) -> None:
        nonlocal best, steps
        steps += 1
        if steps > max_steps:
            raise ValueError(
                f"Longest simple path from node {source!r} to node {target!r} needs more than "
                f"`max_steps`={max_steps} search steps; raise `max_steps` or use a smaller graph."
            )
        if cur == t:
            best = max(best, weight)
            return
        free = reachable(cur, visited)
        if not free & t_bit or weight + bound(cur, free) <= best:
            return
        for bit, u, w in adj[cur]:
            if bit & free:
                search(u, visited | bit, weight + w)

    search(s, 1 << s, 0)
    return int(best) if integral else best


def parse_question_text(text: str) -> tuple[nx.Graph, int, int]:
    """The graph, source and target of a question worded as NLGraph words it.

    Args:
        text: the question, e.g. "In an undirected graph, the nodes are numbered from 0 to 3, and
            the edges are:\\nan edge between node 0 and node 1 with weight 1,\\n...\\nQ: Give the
            shortest path from node 0 to node 3.\\nA:".

    Returns:
        (graph with integer "weight" on every edge and nodes 0..N-1, source, target).

    Raises:
        ValueError: a part of the wording is missing or names a node out of range; the message says
            which.
    """
    return nlgraph.parse_edge_list(text, nx.Graph(), "weight", _HEADER, _EDGE, _QUERY)


def _question_text(edges: list[list[int]], n_nodes: int, source: int, target: int) -> str:
    """NLGraph's wording of a shortest-path question (its `translate`, plain prompt)."""
    lines = [f"an edge between node {i} and node {j} with weight {w}" for i, j, w in edges]
    body = ",\n".join(lines) + "."
    return (
        f"In an undirected graph, the nodes are numbered from 0 to {n_nodes - 1}, and the edges are:\n"
        f"{body}\nQ: Give the shortest path from node {source} to node {target}.\nA:"
    )


def _meta(graph: nx.Graph, source: int, target: int, difficulty: str) -> dict:
    """Everything the proxy needs: gold weight, normaliser L, one shortest path and the graph.

    Raises:
        ValueError: `target` is not reachable from `source`, or L cannot be computed in budget.
    """
    if not nx.has_path(graph, source, target):
        raise ValueError(f"node {target} is not reachable from node {source}")
    path = nx.dijkstra_path(graph, source, target)
    shortest = nx.path_weight(graph, path, "weight")
    return {
        "edges": sorted([min(i, j), max(i, j), d["weight"]] for i, j, d in graph.edges(data=True)),
        "source": source,
        "target": target,
        "n_nodes": graph.number_of_nodes(),
        "shortest": shortest,
        "longest": longest_simple_path_weight(graph, source, target),
        "path": path,
        "difficulty": difficulty,
    }


# ---------------------------------------------------------------------------------------------------
# Questions


def _random_graph(rng: random.Random, n_nodes: int, max_weight: int) -> nx.Graph:
    """A connected graph: a random spanning tree plus up to n/2 extra edges (so at most ~1.5 n)."""
    order = list(range(n_nodes))
    rng.shuffle(order)
    pairs = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, n_nodes)}
    non_edges = [(i, j) for i in range(n_nodes) for j in range(i + 1, n_nodes) if (i, j) not in pairs]
    n_extra = min(len(non_edges), rng.randint(1, max(1, n_nodes // 2)))
    pairs.update(rng.sample(non_edges, n_extra))
    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    for i, j in sorted(pairs):
        graph.add_edge(i, j, weight=rng.randint(1, max_weight))
    return graph


def generate_questions(n: int, seed: int, difficulty: str = "easy") -> list[Question]:
    """`n` fresh questions in NLGraph's wording, the same for the same (n, seed, difficulty).

    Each graph is connected; source and target are not adjacent (every path has at least 2 edges)
    and have at least two different simple-path weights (L > g), so wrong answers can be graded.

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws everything.
        difficulty: "easy" (5-10 nodes, weights 1-4) or "hard" (11-20 nodes, weights 1-10).

    Returns:
        Questions with ids "nlgraph_shortest_path/{difficulty}/{seed}/{k}".

    Raises:
        ValueError: `n` negative or `difficulty` unknown.
    """
    return nlgraph.generate_questions(NAME, "shortest", DIFFICULTIES, _draw, n, seed, difficulty)


def _draw(rng: random.Random, difficulty: str) -> Iterator[tuple[str, dict]]:
    """Questions (text, meta), one per graph: the first qualifying pair of nodes in a random order.
    A graph in which no pair qualifies (rare) is passed over."""
    lo, hi, max_weight = DIFFICULTIES[difficulty]
    while True:
        graph = _random_graph(rng, rng.randint(lo, hi), max_weight)
        pairs = [(s, t) for s in graph for t in graph if s != t and not graph.has_edge(s, t)]
        rng.shuffle(pairs)
        for s, t in pairs:
            meta = _meta(graph, s, t, difficulty)
            if meta["longest"] > meta["shortest"]:
                yield _question_text(meta["edges"], meta["n_nodes"], s, t), meta
                break


def load_questions(path: str) -> list[Question]:
    """Questions from an NLGraph JSON file, ids "nlgraph_shortest_path/{file stem}/{record id}" in file
    order; `nlgraph.load_questions` gives the schema and the checks.

    The graph is parsed back from each question; gold, L and a shortest path are computed here. A
    total weight stated in the record's answer must agree with the computed one.
    """
    return nlgraph.load_questions(
        NAME, "shortest", path,
        meta_of=lambda text, difficulty: _meta(*parse_question_text(text), difficulty),
        parse_direct=parse_direct,
        disagreement="states a total weight of {stated}, but the shortest path from node {source} to node {target} "
                     "weighs {shortest}",
    )


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def parse_conclusion(text: str) -> str | None:
    """The number of the last "The total weight is N" in `text`, canonical; None if there is none.

    Case-insensitive; bold ("**7**") and a trailing period are fine; so is an explicit sum ("The
    total weight is 2 + 3 = 5" gives "5").
    """
    matches = _CONCLUSION_RE.findall(text)
    return canonical_number(float(matches[-1])) if matches else None


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the last "total weight is/of/= N", canonical. ("weight of N"
    alone is not taken: it may be one edge's weight restated.)

    NLGraph's own answers read "... is 0,3,2 with a total weight of 4" (and its worked examples
    "with a total weight of 2 + 2 = 4"; the result after "=" is taken). None if no such phrase.
    """
    matches = _DIRECT_RE.findall(answer)
    return canonical_number(float(matches[-1])) if matches else None


def proxy(question: Question, answer: str) -> float:
    """How close an extracted answer is to gold: `1 - |a - g| / (L - g)` clipped to [0, 1].

    Args:
        question: a question of this dataset (meta "shortest" = g, "longest" = L).
        answer: an extracted answer, e.g. "5".

    Returns:
        1.0 for the gold weight; 0.0 for answers at least as far from g as L is. When L == g, 1.0 for
        g and 0.0 otherwise.

    Raises:
        ValueError: `answer` is not a number.
    """
    return nlgraph.linear_proxy(extracted_number(answer), question.meta["shortest"], question.meta["longest"])


def is_correct(question: Question, answer: str) -> bool:
    """Whether the extracted answer is the shortest-path weight (proxy 1)."""
    return proxy(question, answer) == 1.0
