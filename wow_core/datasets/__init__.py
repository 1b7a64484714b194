"""Dataset registry: one module per dataset, one explicit dict."""
import difflib
from types import ModuleType

from wow_core.datasets import (bio_generation, chess_puzzles, com2, hellaswag, knowledge_crosswords, medmcqa,
                               mmlu_pro, nlgraph_bipartite_matching, nlgraph_max_flow, nlgraph_shortest_path,
                               scibench)

DATASETS: dict[str, ModuleType] = {m.NAME: m for m in (
    nlgraph_shortest_path, nlgraph_max_flow, nlgraph_bipartite_matching, knowledge_crosswords, chess_puzzles,
    scibench, medmcqa, mmlu_pro, hellaswag, com2, bio_generation,
)}


def get_dataset(name: str) -> ModuleType:
    """The dataset module registered under `name`.

    Raises:
        ValueError: unknown name, with close matches and the available names.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown dataset '{name}'.{hint} Available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
