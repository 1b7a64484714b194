"""Shared parts of the NLGraph datasets (shortest path, maximum flow, bipartite matching).

Not a dataset itself: what the three task modules have in common. Their JSON files have one schema
({"<id>": {"question", "answer", "difficulty"}, ...}), their answers are numbers written and parsed
alike, their graphs are lists of numbered edges, and their proxy is `1 - |a - g| / (L - g)` clipped
to [0, 1]. Each task module keeps its wording, its gold g and its normaliser L.
"""
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import networkx as nx

from wow_core.records import Question

# A number, optionally reached through an explicit sum ("2 + 3 = 5" gives 5). The lookaheads refuse
# part of a longer number and a number that an operator continues ("2 + 3" alone), so a half-written
# sum never parses as its first term, and "3N" (a number glued to a letter) is not a number.
NUMBER = r"\**\s*(?:[\d.\s+]*=\s*)?\**\s*(-?\d+(?:\.\d+)?)(?!\.?\d|,\d|[A-Za-z])(?![ \t]*[+*/×-][ \t]*\d)"


def canonical_number(x: float | int) -> str:
    """The canonical string of a number: "5" for integral values, "5.5" otherwise.

    Raises:
        ValueError: `x` is NaN or infinite.
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"`x` must be a finite number, got {x}.")
    if x.is_integer():
        return str(int(x))
    return repr(x)


def extracted_number(answer: str) -> float:
    """An extracted answer as a float; ValueError if it is not a finite number."""
    try:
        a = float(answer)
    except (TypeError, ValueError):
        a = math.nan
    if not math.isfinite(a):
        raise ValueError(f"`answer` must be an extracted number such as '5', got {answer!r}.")
    return a


def linear_proxy(a: float, g: float, longest: float) -> float:
    """`1 - |a - g| / (L - g)` clipped to [0, 1], L = `longest`: 1.0 for gold, 0.0 at distance L - g
    and beyond; when L == g, 1.0 for g and 0.0 otherwise."""
    if a == g:
        return 1.0
    if longest == g:
        return 0.0
    return min(1.0, max(0.0, 1.0 - abs(a - g) / (longest - g)))


# ---------------------------------------------------------------------------------------------------
# Graphs


def parse_edge_list(text: str, graph: nx.Graph, attribute: str, header: tuple[re.Pattern, str],
                    edge: tuple[re.Pattern, str], query: tuple[re.Pattern, str]) -> tuple[nx.Graph, int, int]:
    """The graph, source and target of a question that numbers its nodes and lists its edges.

    Args:
        text: the question.
        graph: the empty graph to fill (directed or not).
        attribute: the edge attribute the edges' numbers go to ("weight", "capacity").
        header, edge, query: each a pattern of the wording and the line it matches as messages show
            it. The header's group 1 is the last node, an edge's groups are (i, j, number) and the
            query's (source, target).

    Returns:
        (`graph` with nodes 0..N-1 and the edges, source, target).

    Raises:
        ValueError: a part of the wording is missing or names a node out of range; the message says
            which.
    """
    found = header[0].search(text)
    if found is None:
        raise ValueError(f"no line '{header[1]}'")
    n_nodes = int(found.group(1)) + 1
    edges = [tuple(int(x) for x in m) for m in edge[0].findall(text)]
    if not edges:
        raise ValueError(f"no line '{edge[1]}'")
    found = query[0].search(text)
    if found is None:
        raise ValueError(f"no line '{query[1]}'")
    source, target = int(found.group(1)), int(found.group(2))
    return _fill_graph(graph, n_nodes, edges, source, target, attribute), source, target


def _fill_graph(graph: nx.Graph, n_nodes: int, edges: list[tuple[int, int, int]], source: int, target: int,
                attribute: str) -> nx.Graph:
    """Add nodes 0..n_nodes-1 and the edges (i, j, value) to an empty NLGraph graph, checking that
    nodes are in range, edges are no self-loops and not repeated with another value, source != target.

    Raises:
        ValueError: naming the offending edge or node.
    """
    graph.add_nodes_from(range(n_nodes))
    for i, j, value in edges:
        if i >= n_nodes or j >= n_nodes:
            raise ValueError(f"edge ({i}, {j}) names a node outside 0..{n_nodes - 1}")
        if i == j:
            raise ValueError(f"edge ({i}, {j}) is a self-loop")
        if graph.has_edge(i, j) and graph[i][j][attribute] != value:
            raise ValueError(f"edge ({i}, {j}) is given twice with different {attribute} "
                             f"({graph[i][j][attribute]} and {value})")
        graph.add_edge(i, j, **{attribute: value})
    for name, node in (("source", source), ("target", target)):
        if node >= n_nodes:
            raise ValueError(f"{name} node {node} is outside 0..{n_nodes - 1}")
    if source == target:
        raise ValueError(f"source and target are the same node {source}")
    return graph


# ---------------------------------------------------------------------------------------------------
# Questions


def _question(dataset: str, key: str, text: str, meta: dict, gold_key: str) -> Question:
    """The question "{dataset}/{key}"; its gold answer is the canonical number at `meta[gold_key]`."""
    return Question(id=f"{dataset}/{key}", dataset=dataset, text=text, gold=canonical_number(meta[gold_key]),
                    meta=meta)


def generate_questions(dataset: str, gold_key: str, difficulties: dict,
                       draw: Callable[[random.Random, str], Iterator[tuple[str, dict]]],
                       n: int, seed: int, difficulty: str) -> list[Question]:
    """The first `n` questions that `draw(random.Random(seed), difficulty)` yields as (text, meta).

    Returns:
        Questions with ids "{dataset}/{difficulty}/{seed}/{k}", gold the canonical `meta[gold_key]`.

    Raises:
        ValueError: `n` negative or `difficulty` not in `difficulties`.
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n}.")
    if difficulty not in difficulties:
        raise ValueError(f"`difficulty` must be one of {sorted(difficulties)}, got {difficulty!r}.")
    drawn = draw(random.Random(seed), difficulty)
    # range first: zip stops before asking `drawn` for a question past the n-th.
    return [_question(dataset, f"{difficulty}/{seed}/{k}", text, meta, gold_key)
            for k, (text, meta) in zip(range(n), drawn)]


def _read_records(path: str) -> list[tuple[str, dict, str]]:
    """(record id, record, "file: record 'id'" for messages) of an NLGraph JSON file, each checked to
    have the string fields question, answer and difficulty.

    Raises:
        ValueError: invalid JSON (file, line and column) or a missing or mistyped field (file, record, field).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object of records keyed by id, got {type(data).__name__}"
        )
    records = []
    for rid, record in data.items():
        where = f"{path}: record '{rid}'"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for key in ("question", "answer", "difficulty"):
            if key not in record:
                raise ValueError(f"{where}, field '{key}': missing")
            if not isinstance(record[key], str):
                raise ValueError(
                    f"{where}, field '{key}': expected a string, got {type(record[key]).__name__}"
                )
        records.append((rid, record, where))
    return records


def load_questions(dataset: str, gold_key: str, path: str, meta_of: Callable[[str, str], dict],
                   parse_direct: Callable[[str], str | None], disagreement: str) -> list[Question]:
    """Questions from an NLGraph JSON file: {"<id>": {"question", "answer", "difficulty"}, ...}.

    Args:
        dataset: the dataset's NAME.
        gold_key: the key of the gold number in the questions' meta.
        path: the JSON file.
        meta_of: (question text, difficulty) -> meta: the graph parsed back from the wording and what
            the proxy needs computed from it; its ValueErrors are reported on the field 'question'.
        parse_direct: the dataset's parser of a raw answer: a number it finds in the record's answer
            must be the gold one.
        disagreement: the message when it is not, formatted with `stated` and the keys of meta.

    Returns:
        Questions with ids "{dataset}/{file stem}/{record id}", in file order.

    Raises:
        ValueError: invalid JSON (file, line and column), or a record with a missing, mistyped or
            inconsistent field (file, record id and field).
    """
    stem = Path(path).stem
    questions = []
    for rid, record, where in _read_records(path):
        try:
            meta = meta_of(record["question"], record["difficulty"])
        except ValueError as e:
            raise ValueError(f"{where}, field 'question': {e}") from e
        stated = parse_direct(record["answer"])
        if stated is not None and float(stated) != meta[gold_key]:
            raise ValueError(f"{where}, field 'answer': " + disagreement.format(stated=stated, **meta))
        questions.append(_question(dataset, f"{stem}/{rid}", record["question"], meta, gold_key))
    return questions
