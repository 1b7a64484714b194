"""NLGraph bipartite graph matching: how many job applicants can get a job they want, in words.

Source: NLGraph, Wang et al. 2023, "Can Language Models Solve Graph Problems in Natural Language?"
(NeurIPS), https://github.com/Arthur-Heng/NLGraph (folder NLGraph/matching). The question wording,
the answer wording and the JSON schema of its files are NLGraph's; the difficulty splits follow its
data (easy: 4-9 applicants, hard: 10-15; jobs within 3 of the applicants, at least 2). wow uses it as
the paper it follows does: Yao et al. 2024, "Varying Shades of Wrong: Aligning LLMs with Wrong
Answers Only" (arXiv 2410.11055).

Worked example (the generator asks the user turn below; the model reasons, then is asked
EXTRACTION_PROMPT and concludes):

    There are 4 job applicants numbered from 0 to 3, and 4 jobs numbered from 0 to 3. Each applicant is interested in some of the jobs. Each job can only accept one applicant and a job applicant can be appointed for only one job.
    Applicant 0 is interested in job 0.
    Applicant 1 is interested in job 0.
    Applicant 1 is interested in job 2.
    Applicant 2 is interested in job 0.
    Applicant 2 is interested in job 1.
    Applicant 3 is interested in job 1.
    Q: Find an assignment of jobs to applicants in such that the maximum number of applicants find the job they are interested in.
    A:

    Applicant 0 -> job 0, applicant 1 -> job 2, applicant 3 -> job 1 matches 3; nobody wants job 3,
    so no matching has more than 3 (jobs 0, 1, 2 touch every line). Gold g = 3, normaliser
    L = 2g = 6. "... The maximum number of matches is 4." extracts to "4", proxy
    1 - |4 - 3| / 3 = 0.67.

NLGraph's own answers read "applicant 0: job 4\\n...\\n3 applicants can find the job they are
interested in."; the jobs there are its internal node ids (job j written as j + number of
applicants), so the loader checks only the stated count.

Proxy (DESIGN.md's max-flow rule carried over; docs/methods.md, "Proxies and the reference code"):
`1 - |a - g| / (L - g)` with L = 2g, i.e.
`1 - |a - g| / g`, clipped to [0, 1], with g the size of a maximum matching. A matching is a flow of
unit capacities (source -> applicants -> jobs -> sink), so the max-flow rule applies unchanged, and
as there it is symmetric: an answer off by g or more (0 matches, or twice the maximum) scores 0.
Every question names at least one interest, so g >= 1; generated ones have g >= 2.
Correct means proxy 1, i.e. a == g.
"""  # noqa: E501 (the worked example is the prompt verbatim: its lines are not wrapped)
import random
import re
from collections.abc import Iterator

import networkx as nx

import wow_core.datasets.nlgraph as nlgraph
from wow_core.datasets.nlgraph import NUMBER, canonical_number, extracted_number
from wow_core.records import Question

NAME = "nlgraph_bipartite_matching"
VERSION = 2  # bump on any change to prompt, extraction or scoring; 2: the meta's matching is the same in every process

EXTRACTION_PROMPT = (
    "Therefore, how many applicants can find the job they are interested in? "
    'End your reply with "The maximum number of matches is N", where N is a number.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the number is still the model's own.
EXTRACTION_PREFILL = "The maximum number of matches is"

# difficulty -> (min applicants, max applicants), as in NLGraph's easy and hard splits; the number of
# jobs is drawn within JOB_SPREAD of the number of applicants (at least 2), as in its files.
DIFFICULTIES = {"easy": (4, 9), "hard": (10, 15)}
JOB_SPREAD = 3

_CONCLUSION_RE = re.compile(r"the\s+maximum\s+number\s+of\s+matches\s+is\s*:?\s*" + NUMBER, re.IGNORECASE)
# Either "maximum number of matches / maximum matching is N" or NLGraph's "N applicants can find the
# job". A count is refused when a digit, point or operator precedes it ("3.5 applicants", "2 + 1
# applicants", "2*3 applicants": a half-written sum is not its last term); "**3**" is bold, not "*".
_DIRECT_RE = re.compile(
    r"maximum\s+(?:number\s+of\s+matches|matching)\s*(?:is|of|=|:)\s*:?\s*" + NUMBER
    + r"|(?<![\w.])(?<![+*/×-] )(?<![+/×-])(?<![^*]\*)(\d+)\**\s+applicants?\s+can\s+find\s+(?:the|a)\s+job",
    re.IGNORECASE,
)

_HEADER_RE = re.compile(
    r"There are (\d+) job applicants numbered from 0 to (\d+), and (\d+) jobs numbered from 0 to (\d+)\."
)
_INTEREST_RE = re.compile(r"Applicant (\d+) is interested in job (\d+)")
_QUERY_RE = re.compile(r"Q: Find an assignment of jobs to applicants")


# ---------------------------------------------------------------------------------------------------
# Graphs


def _graph(interests: list[tuple[int, int]], n_applicants: int, n_jobs: int) -> nx.Graph:
    """Nodes ("applicant", i) with bipartite=0 and ("job", j) with bipartite=1, isolated ones too."""
    graph = nx.Graph()
    graph.add_nodes_from((("applicant", i) for i in range(n_applicants)), bipartite=0)
    graph.add_nodes_from((("job", j) for j in range(n_jobs)), bipartite=1)
    graph.add_edges_from((("applicant", i), ("job", j)) for i, j in interests)
    return graph


def parse_question_text(text: str) -> nx.Graph:
    """The bipartite graph of a question worded as NLGraph words it.

    Args:
        text: the question, e.g. "There are 4 job applicants numbered from 0 to 3, and 4 jobs
            numbered from 0 to 3. Each applicant ...\\nApplicant 0 is interested in job 0.\\n...\\nQ:
            Find an assignment of jobs to applicants in such that ...\\nA:".

    Returns:
        Graph with nodes ("applicant", i) (attribute bipartite=0) for i in 0..A-1, ("job", j)
        (bipartite=1) for j in 0..J-1, and an edge for each interest. A repeated interest is one edge.

    Raises:
        ValueError: a part of the wording is missing, the header's counts disagree with its ranges,
            or an interest names an applicant or job out of range; the message says which.
    """
    header = _HEADER_RE.search(text)
    if header is None:
        raise ValueError(
            "no line 'There are A job applicants numbered from 0 to A-1, and J jobs numbered from 0 "
            "to J-1.'"
        )
    n_applicants, last_applicant, n_jobs, last_job = (int(x) for x in header.groups())
    for count, last, what in ((n_applicants, last_applicant, "job applicants"), (n_jobs, last_job, "jobs")):
        if last != count - 1:
            raise ValueError(f"the header says {count} {what} but numbers them from 0 to {last}")
    interests = [(int(i), int(j)) for i, j in _INTEREST_RE.findall(text)]
    if not interests:
        raise ValueError("no line 'Applicant I is interested in job J.'")
    if _QUERY_RE.search(text) is None:
        raise ValueError("no line 'Q: Find an assignment of jobs to applicants ...'")
    for i, j in interests:
        for what, node, count in (("applicant", i, n_applicants), ("job", j, n_jobs)):
            if node >= count:
                raise ValueError(
                    f"line 'Applicant {i} is interested in job {j}' names {what} {node}, "
                    f"outside 0..{count - 1}"
                )
    return _graph(interests, n_applicants, n_jobs)


def _question_text(edges: list[list[int]], n_applicants: int, n_jobs: int) -> str:
    """NLGraph's wording of a matching question (its `translate`, plain prompt)."""
    lines = "".join(f"Applicant {i} is interested in job {j}.\n" for i, j in edges)
    return (
        f"There are {n_applicants} job applicants numbered from 0 to {n_applicants - 1}, and {n_jobs} "
        f"jobs numbered from 0 to {n_jobs - 1}. Each applicant is interested in some of the jobs. "
        "Each job can only accept one applicant and a job applicant can be appointed for only one job.\n"
        f"{lines}Q: Find an assignment of jobs to applicants in such that the maximum number of "
        "applicants find the job they are interested in.\nA:"
    )


def _meta(graph: nx.Graph, difficulty: str) -> dict:
    """Everything the proxy needs: the gold matching size (g; L = 2g), one maximum matching, the graph."""
    applicants = [v for v, side in graph.nodes(data="bipartite") if side == 0]
    # Matched on integer nodes: networkx walks sets of nodes, and a set of ("applicant", i) tuples
    # iterates in an order that changes with PYTHONHASHSEED (a different maximum matching per process).
    node = sorted(graph.nodes)
    index = {v: k for k, v in enumerate(node)}
    matching = nx.bipartite.hopcroft_karp_matching(nx.relabel_nodes(graph, index),
                                                   top_nodes=[index[a] for a in applicants])
    pairs = sorted([node[u][1], node[v][1]] for u, v in matching.items() if node[u][0] == "applicant")
    return {
        "edges": sorted([u[1], v[1]] if u[0] == "applicant" else [v[1], u[1]] for u, v in graph.edges),
        "n_applicants": len(applicants),
        "n_jobs": graph.number_of_nodes() - len(applicants),
        "max_matching": len(pairs),
        "matching": pairs,
        "difficulty": difficulty,
    }


# ---------------------------------------------------------------------------------------------------
# Questions


def _random_interests(rng: random.Random, n_applicants: int, n_jobs: int) -> list[tuple[int, int]]:
    """Each applicant wants 0 to max(2, half) of the jobs (NLGraph's want 0 to about 2/3 of them)."""
    return [
        (i, j)
        for i in range(n_applicants)
        for j in sorted(rng.sample(range(n_jobs), rng.randint(0, max(2, n_jobs // 2))))
    ]


def generate_questions(n: int, seed: int, difficulty: str = "easy") -> list[Question]:
    """`n` fresh questions in NLGraph's wording, the same for the same (n, seed, difficulty).

    Each maximum matching has at least 2 pairs, so wrong answers can be graded below gold too; no
    two questions of one call are the same.

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws everything.
        difficulty: "easy" (4-9 applicants) or "hard" (10-15 applicants); jobs within 3 of that.

    Returns:
        Questions with ids "nlgraph_bipartite_matching/{difficulty}/{seed}/{k}".

    Raises:
        ValueError: `n` negative or `difficulty` unknown.
    """
    return nlgraph.generate_questions(NAME, "max_matching", DIFFICULTIES, _draw, n, seed, difficulty)


def _draw(rng: random.Random, difficulty: str) -> Iterator[tuple[str, dict]]:
    """Questions (text, meta), one per drawn graph in which at least 2 applicants can be matched;
    a repeat of an earlier question is passed over."""
    lo, hi = DIFFICULTIES[difficulty]
    seen = set()
    while True:
        n_applicants = rng.randint(lo, hi)
        n_jobs = max(2, n_applicants + rng.randint(-JOB_SPREAD, JOB_SPREAD))
        graph = _graph(_random_interests(rng, n_applicants, n_jobs), n_applicants, n_jobs)
        meta = _meta(graph, difficulty)
        text = _question_text(meta["edges"], n_applicants, n_jobs)
        if meta["max_matching"] >= 2 and text not in seen:
            seen.add(text)
            yield text, meta


def load_questions(path: str) -> list[Question]:
    """Questions from an NLGraph JSON file, ids "nlgraph_bipartite_matching/{file stem}/{record id}"
    in file order; `nlgraph.load_questions` gives the schema and the checks.

    The graph is parsed back from each question and a maximum matching computed here. A count stated
    in the record's answer ("3 applicants can find the job ...") must agree with the computed one.
    """
    return nlgraph.load_questions(
        NAME, "max_matching", path,
        meta_of=lambda text, difficulty: _meta(parse_question_text(text), difficulty),
        parse_direct=parse_direct,
        disagreement="states {stated} matched applicants, but a maximum matching has {max_matching}",
    )


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def parse_conclusion(text: str) -> str | None:
    """The number of the last "The maximum number of matches is N" in `text`, canonical; None if
    there is none.

    Case-insensitive; bold ("**3**") and a trailing period are fine; so is an explicit sum ("... is
    1 + 2 = 3" gives "3").
    """
    matches = _CONCLUSION_RE.findall(text)
    return canonical_number(float(matches[-1])) if matches else None


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the last "maximum number of matches is/of/= N", "maximum matching
    is/of N" or "N applicants can find the/a job", canonical. ("applicant 0: job 4" is never taken:
    it is one assignment.)

    NLGraph's own answers end "3 applicants can find the job they are interested in."; None if there
    is no such phrase.
    """
    matches = [m.group(1) or m.group(2) for m in _DIRECT_RE.finditer(answer)]
    return canonical_number(float(matches[-1])) if matches else None


def proxy(question: Question, answer: str) -> float:
    """How close an extracted answer is to gold: `1 - |a - g| / g` (L = 2g) clipped to [0, 1].

    Args:
        question: a question of this dataset (meta "max_matching" = g >= 1).
        answer: an extracted answer, e.g. "3".

    Returns:
        1.0 for the maximum matching size; 0.0 for answers at least g away from it (0, 2g and
        beyond).

    Raises:
        ValueError: `answer` is not a number.
    """
    g = question.meta["max_matching"]
    return nlgraph.linear_proxy(extracted_number(answer), g, 2 * g)


def is_correct(question: Question, answer: str) -> bool:
    """Whether the extracted answer is the maximum matching size (proxy 1)."""
    return extracted_number(answer) == question.meta["max_matching"]
