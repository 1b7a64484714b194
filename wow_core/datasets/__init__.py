"""Dataset registry: one module per dataset, one explicit dict; `check_file`, the check of a dataset
file that `wow validate` and `wow run` make before anything runs."""
import difflib
import inspect
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


class DataError(ValueError):
    """Questions that cannot be made from a dataset file or generator setting; the message names the
    file, its line or record and the field (or, for a generator, the dataset)."""


def data_error(err: ValueError, where: str) -> DataError:
    """`err` as a DataError whose message starts with `where` (a file path, "dataset 'label'")."""
    message = str(err)
    return DataError(message if message.startswith(where) else f"{where}: {message}")


def check_file(name: str, path: str, options: dict) -> None:
    """Read and check every record of dataset `name`'s file as loading it for a run does, without what
    needs a model or an engine: a loader that takes `limit` (multiple choice, chess) checks every
    record with `limit=0` and so grades none (no embedding model, no Stockfish); the others
    load the whole file (pure Python: NLGraph's graph checks, Knowledge Crosswords, SciBench, the
    biography entity list).

    Raises:
        DataError: the loader's error, naming file, line or record, and field.
    """
    load = get_dataset(name).load_questions
    limit = {"limit": 0} if "limit" in inspect.signature(load).parameters else {}
    try:
        load(path, **limit, **options)
    except ValueError as err:
        raise data_error(err, path) from err
