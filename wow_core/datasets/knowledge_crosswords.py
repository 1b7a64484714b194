"""Knowledge Crosswords: fill three blanks, each from its own options, so that every constraint holds.

Source: Ding et al. 2023, "Knowledge Crosswords: Geometric Knowledge Reasoning with Large Language
Models" (KC). A KC problem is a small knowledge graph with blanks for some of its entities: a list of
constraints (head, relation, tail) that name blanks or entities, options per blank, and, in the
"with knowledge" setting, a list of facts to reason from. wow uses it as Yao et al. 2024 do ("Varying
Shades of Wrong", arXiv 2410.11055): three-blank problems, the prompt wording of their loader, the
option order shuffled for every sample, and the proxy the share of blanks right. (Their prompt offers
four whole assignments with 0 to 3 blanks right; here each blank has its own lettered options, so every
mix of right and wrong blanks can be answered.)

Questions come from a seeded generator over the fact table below (works, their authors, where the
authors were born, the country of each city, the capital cities) or from KC's jsonl files
(`load_questions`). Difficulty "easy" shows the knowledge section (every fact about the puzzle's
entities for the relations it uses, so the puzzle can be solved from the prompt alone); "hard" leaves it
out, so the model must know the facts. KC files are asked without it, as Yao et al. ran KC.

Worked example (`generate_questions(1, seed=3, difficulty="hard")`; the user turn of a sample that
saw the options in the question's own order; "easy" adds a line "Knowledge: (h, r, t); ..." after the
instruction):

    Instruction: Pick the correct answer for each blank that satisfies all the given constraints.
    Constraints: (The Hunchback of Notre-Dame, written by, blank 1); (blank 1, born in, blank 2); (blank 2, located in, blank 3)
    Options:
    blank 1: A. Hans Christian Andersen; B. Victor Hugo; C. Alexander Pushkin; D. Charles Dickens
    blank 2: A. Portsmouth; B. Moscow; C. Odense; D. Besançon
    blank 3: A. Russia; B. United Kingdom; C. France; D. Denmark

    Victor Hugo wrote it, born in Besançon, in France: gold "blank 1: B (Victor Hugo), blank 2: D
    (Besançon), blank 3: C (France)". A sample that concludes "The answers are: blank 1: B, blank 2:
    B, blank 3: A" (Moscow, Russia: one blank right) scores 1/3.

Each sample sees its own seeded order of every blank's options (`sample_prompts`), so it concludes in
its own letters; `canonical_answer` maps them back to the canonical answer, which names each chosen
option by its letter in the question's own order (`Question.text`) and by its text. Proxy (DESIGN.md):
the fraction of the three blanks filled with the gold option (0, 1/3, 2/3 or 1); correct means all
three.
"""  # noqa: E501 (the worked example is the prompt verbatim: its lines are not wrapped)
import itertools
import random
import re
from pathlib import Path

from wow_core.datasets.json_files import json_lines
from wow_core.records import Question

NAME = "knowledge_crosswords"
VERSION = 1  # bump on any change to prompt, extraction or scoring

BLANKS = ("blank 1", "blank 2", "blank 3")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# difficulty -> whether the prompt carries the knowledge section (KC's "with knowledge" setting).
DIFFICULTIES = {"easy": True, "hard": False}

EXTRACTION_PROMPT = (
    "Therefore, which option fills each blank? End your reply with "
    '"The answers are: blank 1: <letter>, blank 2: <letter>, blank 3: <letter>", giving the letter of '
    "the option you chose for each blank."
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the letters are still the model's own.
EXTRACTION_PREFILL = "The answers are:"

INSTRUCTION = "Instruction: Pick the correct answer for each blank that satisfies all the given constraints."

# ---------------------------------------------------------------------------------------------------
# The fact table. Every relation is a function of its head (one author per work, one birthplace per
# person, one country per city, one country per capital), and the table lists it for every head it
# names, so a constraint on a head in the table is true exactly when the table has it: the generator
# can prove its gold the only consistent answer among the options.

AUTHORS = {
    "Hamlet": "William Shakespeare", "Macbeth": "William Shakespeare",
    "Oliver Twist": "Charles Dickens", "Great Expectations": "Charles Dickens",
    "Pride and Prejudice": "Jane Austen", "Emma": "Jane Austen",
    "Mrs Dalloway": "Virginia Woolf", "Frankenstein": "Mary Shelley",
    "Nineteen Eighty-Four": "George Orwell", "Animal Farm": "George Orwell",
    "Murder on the Orient Express": "Agatha Christie", "A Study in Scarlet": "Arthur Conan Doyle",
    "Treasure Island": "Robert Louis Stevenson", "The Picture of Dorian Gray": "Oscar Wilde",
    "Ulysses": "James Joyce", "Dubliners": "James Joyce", "Waiting for Godot": "Samuel Beckett",
    "Les Misérables": "Victor Hugo", "The Hunchback of Notre-Dame": "Victor Hugo",
    "Madame Bovary": "Gustave Flaubert", "The Little Prince": "Antoine de Saint-Exupéry",
    "In Search of Lost Time": "Marcel Proust",
    "Crime and Punishment": "Fyodor Dostoevsky", "The Brothers Karamazov": "Fyodor Dostoevsky",
    "Eugene Onegin": "Alexander Pushkin", "The Cherry Orchard": "Anton Chekhov", "The Seagull": "Anton Chekhov",
    "Don Quixote": "Miguel de Cervantes", "One Hundred Years of Solitude": "Gabriel García Márquez",
    "The Old Man and the Sea": "Ernest Hemingway", "The Raven": "Edgar Allan Poe",
    "Moby-Dick": "Herman Melville", "The Great Gatsby": "F. Scott Fitzgerald", "Beloved": "Toni Morrison",
    "To Kill a Mockingbird": "Harper Lee",
    "The Trial": "Franz Kafka", "The Metamorphosis": "Franz Kafka", "Faust": "Johann Wolfgang von Goethe",
    "The Magic Mountain": "Thomas Mann", "The Divine Comedy": "Dante Alighieri",
    "The Name of the Rose": "Umberto Eco", "Ficciones": "Jorge Luis Borges",
    "Twenty Love Poems and a Song of Despair": "Pablo Neruda",
    "Norwegian Wood": "Haruki Murakami", "Snow Country": "Yasunari Kawabata",
    "A Doll's House": "Henrik Ibsen", "The Little Mermaid": "Hans Christian Andersen",
    "Pippi Longstocking": "Astrid Lindgren", "The Handmaid's Tale": "Margaret Atwood",
    "Things Fall Apart": "Chinua Achebe", "Gitanjali": "Rabindranath Tagore",
    "Midnight's Children": "Salman Rushdie", "My Name Is Red": "Orhan Pamuk", "Palace Walk": "Naguib Mahfouz",
}
BIRTHPLACES = {
    "William Shakespeare": "Stratford-upon-Avon", "Charles Dickens": "Portsmouth", "Jane Austen": "Steventon",
    "Virginia Woolf": "London", "Mary Shelley": "London", "George Orwell": "Motihari",
    "Agatha Christie": "Torquay", "Arthur Conan Doyle": "Edinburgh", "Robert Louis Stevenson": "Edinburgh",
    "Oscar Wilde": "Dublin", "James Joyce": "Dublin", "Samuel Beckett": "Dublin",
    "Victor Hugo": "Besançon", "Gustave Flaubert": "Rouen", "Antoine de Saint-Exupéry": "Lyon",
    "Marcel Proust": "Paris", "Fyodor Dostoevsky": "Moscow", "Alexander Pushkin": "Moscow",
    "Anton Chekhov": "Taganrog", "Miguel de Cervantes": "Alcalá de Henares",
    "Gabriel García Márquez": "Aracataca", "Ernest Hemingway": "Oak Park", "Edgar Allan Poe": "Boston",
    "Herman Melville": "New York City", "F. Scott Fitzgerald": "Saint Paul", "Toni Morrison": "Lorain",
    "Harper Lee": "Monroeville", "Franz Kafka": "Prague", "Johann Wolfgang von Goethe": "Frankfurt",
    "Thomas Mann": "Lübeck", "Dante Alighieri": "Florence", "Umberto Eco": "Alessandria",
    "Jorge Luis Borges": "Buenos Aires", "Pablo Neruda": "Parral", "Haruki Murakami": "Kyoto",
    "Yasunari Kawabata": "Osaka", "Henrik Ibsen": "Skien", "Hans Christian Andersen": "Odense",
    "Astrid Lindgren": "Vimmerby", "Margaret Atwood": "Ottawa", "Chinua Achebe": "Ogidi",
    "Rabindranath Tagore": "Kolkata", "Salman Rushdie": "Mumbai", "Orhan Pamuk": "Istanbul",
    "Naguib Mahfouz": "Cairo",
}
COUNTRIES = {  # city -> the country it lies in today
    "Stratford-upon-Avon": "United Kingdom", "Portsmouth": "United Kingdom", "Steventon": "United Kingdom",
    "London": "United Kingdom", "Torquay": "United Kingdom", "Edinburgh": "United Kingdom",
    "Motihari": "India", "Kolkata": "India", "Mumbai": "India", "Dublin": "Ireland",
    "Besançon": "France", "Rouen": "France", "Lyon": "France", "Paris": "France",
    "Moscow": "Russia", "Taganrog": "Russia", "Alcalá de Henares": "Spain", "Aracataca": "Colombia",
    "Oak Park": "United States", "Boston": "United States", "New York City": "United States",
    "Saint Paul": "United States", "Lorain": "United States", "Monroeville": "United States",
    "Prague": "Czech Republic", "Frankfurt": "Germany", "Lübeck": "Germany", "Florence": "Italy",
    "Alessandria": "Italy", "Buenos Aires": "Argentina", "Parral": "Chile", "Kyoto": "Japan",
    "Osaka": "Japan", "Skien": "Norway", "Odense": "Denmark", "Vimmerby": "Sweden", "Ottawa": "Canada",
    "Ogidi": "Nigeria", "Istanbul": "Turkey", "Cairo": "Egypt",
}
CAPITALS = {  # city -> the country whose capital it is, for every national capital among the cities
    "London": "United Kingdom", "Dublin": "Ireland", "Paris": "France", "Moscow": "Russia",
    "Prague": "Czech Republic", "Buenos Aires": "Argentina", "Ottawa": "Canada", "Cairo": "Egypt",
}
FACTS: list[tuple[str, str, str]] = sorted(
    [(work, "written by", author) for work, author in AUTHORS.items()]
    + [(person, "born in", city) for person, city in BIRTHPLACES.items()]
    + [(city, "located in", country) for city, country in COUNTRIES.items()]
    + [(city, "capital of", country) for city, country in CAPITALS.items()]
)

# Puzzle shapes: constraints over the three blanks and one anchor "x", an entity the prompt names.
SHAPES = [
    [("blank 1", "written by", "blank 2"), ("blank 2", "born in", "blank 3"), ("blank 3", "located in", "x")],
    [("x", "written by", "blank 1"), ("blank 1", "born in", "blank 2"), ("blank 2", "located in", "blank 3")],
    [("blank 1", "written by", "blank 2"), ("blank 2", "born in", "blank 3"), ("blank 3", "capital of", "x")],
    [("blank 1", "written by", "blank 2"), ("blank 3", "written by", "blank 2"), ("blank 2", "born in", "x")],
    [("blank 1", "born in", "blank 3"), ("blank 2", "born in", "blank 3"), ("blank 3", "located in", "x")],
]


# "blank 2: B", "**Blank 2:** (B)", "blank 2 - B. Lorain": the letter must stand alone (not "Boston").
def _choice(k: int) -> str:
    return rf"(?i:blank)\s*{k}\**\s*[:=-]?\s*\**\s*\(?([A-Z])\)?(?![A-Za-z])"


# Between two blanks: the rest of the line (e.g. the option's text), then line breaks and list marks.
_GAP = r"[^\n]*?(?:\n[\s*#>-]*)?"
_TRIPLE = _choice(1) + _GAP + _choice(2) + _GAP + _choice(3)
_CONCLUSION_RE = re.compile(r"(?i:the\s+answers\s+are)[\s:*#>-]*" + _TRIPLE)
# A free answer states its choice after "answer(s) are/is" or "answer:", never in a restated option list.
_DIRECT_RE = re.compile(r"(?i:\banswers?\s*(?:are|is|:))[\s:*#>-]*" + _TRIPLE)
_RAW_RE = re.compile(r"blank 1: ([A-Z]), blank 2: ([A-Z]), blank 3: ([A-Z])")


# ---------------------------------------------------------------------------------------------------
# Prompt and answer forms


def _triple(fact) -> str:
    return f"({fact[0]}, {fact[1]}, {fact[2]})"


def render_prompt(meta: dict, order: list[list[int]]) -> str:
    """The user turn: Yao et al.'s KC wording, each blank's options lettered in `order` (per blank, the
    indices into `meta["options"]` shown as A, B, ...)."""
    lines = [INSTRUCTION]
    if meta["with_knowledge"]:
        lines.append("Knowledge: " + "; ".join(_triple(f) for f in meta["knowledge"]))
    lines.append("Constraints: " + "; ".join(_triple(c) for c in meta["constraints"]))
    lines.append("Options:")
    for blank, options, shown in zip(BLANKS, meta["options"], order):
        lines.append(f"{blank}: " + "; ".join(f"{LETTERS[i]}. {options[j]}" for i, j in enumerate(shown)))
    return "\n".join(lines)


def _identity(meta: dict) -> list[list[int]]:
    return [list(range(len(options))) for options in meta["options"]]


def _canonical(meta: dict, chosen: tuple[int, ...]) -> str:
    """The canonical answer for option indices `chosen`: letters as in the question's own text, and texts."""
    return ", ".join(f"{blank}: {LETTERS[i]} ({options[i]})"
                     for blank, options, i in zip(BLANKS, meta["options"], chosen))


def _chosen(question: Question, answer: str) -> tuple[int, ...]:
    """The option indices a canonical answer names; ValueError for anything else."""
    for chosen in itertools.product(*(range(len(options)) for options in question.meta["options"])):
        if _canonical(question.meta, chosen) == answer:
            return chosen
    raise ValueError(
        f"`answer` must be a canonical answer such as {question.gold!r} (see `canonical_answer`), got {answer!r}."
    )


def _question(qid: str, meta: dict) -> Question:
    return Question(id=qid, dataset=NAME, text=render_prompt(meta, _identity(meta)),
                    gold=_canonical(meta, tuple(meta["answer"])), meta=meta)


# ---------------------------------------------------------------------------------------------------
# Questions


def _solutions(shape) -> list[dict[str, str]]:
    """Every assignment of the shape's blanks and anchor under which all its constraints are facts,
    with the three blanks different, in a fixed order."""
    by_relation: dict[str, list[tuple[str, str]]] = {}
    for head, relation, tail in FACTS:
        by_relation.setdefault(relation, []).append((head, tail))
    partial: list[dict[str, str]] = [{}]
    for head, relation, tail in shape:
        partial = [{**a, head: h, tail: t} for a in partial for h, t in by_relation[relation]
                   if a.get(head, h) == h and a.get(tail, t) == t]
    return [a for a in partial if len({a[b] for b in BLANKS}) == len(BLANKS)]


def consistent_answers(constraints: list[list[str]], options: list[list[str]], facts) -> list[tuple[int, ...]]:
    """The option indices (one per blank) under which every constraint is one of `facts`."""
    facts = {tuple(f) for f in facts}
    found = []
    for chosen in itertools.product(*(range(len(o)) for o in options)):
        value = {blank: o[i] for blank, o, i in zip(BLANKS, options, chosen)}
        if all((value.get(h, h), r, value.get(t, t)) in facts for h, r, t in constraints):
            found.append(chosen)
    return found


def _puzzle(rng: random.Random, with_knowledge: bool) -> dict:
    """One puzzle whose gold is the only assignment of its options that the fact table makes consistent.

    The wrong options of the blanks come from three other solutions of the same shape (decoy chains), so
    a wrong answer can satisfy every constraint between blanks and fail only at the anchor."""
    while True:
        shape = rng.choice(SHAPES)
        solutions = _solutions(shape)
        gold = rng.choice(solutions)
        decoys = [s for s in solutions if all(s[b] != gold[b] for b in BLANKS)]
        if len(decoys) < 3:
            continue
        chains = [gold, *rng.sample(decoys, 3)]
        options = [[chain[b] for chain in chains] for b in BLANKS]
        if len({o for blank in options for o in blank}) < 4 * len(BLANKS):
            continue  # an entity offered twice
        for blank in options:
            rng.shuffle(blank)
        constraints = [[gold["x"] if v == "x" else v for v in (h, r, t)] for h, r, t in shape]
        answer = [blank.index(gold[b]) for blank, b in zip(options, BLANKS)]
        if consistent_answers(constraints, options, FACTS) != [tuple(answer)]:
            continue
        entities = {gold["x"], *(o for blank in options for o in blank)}
        relations = {r for _, r, _ in shape}
        knowledge = [list(f) for f in FACTS if f[0] in entities and f[1] in relations]
        rng.shuffle(knowledge)
        return {"constraints": constraints, "options": options, "answer": answer,
                "knowledge": knowledge, "with_knowledge": with_knowledge}


def generate_questions(n: int, seed: int, difficulty: str = "easy") -> list[Question]:
    """`n` fresh puzzles over the fact table, the same for the same (n, seed, difficulty).

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws shapes, gold, decoys, option order and the order
            of the knowledge.
        difficulty: "easy" (the prompt lists the knowledge) or "hard" (it does not).

    Returns:
        Questions with ids "knowledge_crosswords/{difficulty}/{seed}/{k}"; meta holds constraints,
        options (per blank, in the question's order), answer (gold index per blank), knowledge and
        with_knowledge.

    Raises:
        ValueError: `n` negative or `difficulty` unknown.
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n}.")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"`difficulty` must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}.")
    rng = random.Random(seed)
    return [_question(f"{NAME}/{difficulty}/{seed}/{k}", _puzzle(rng, DIFFICULTIES[difficulty]))
            for k in range(n)]


def _strings(value, where: str, field: str, what: str = "a list of strings") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}, field '{field}': expected {what}, got {value!r}")
    return value


def _record_meta(record: dict, where: str) -> dict:
    """The meta of one three-blank KC record, every field checked."""
    for key in ("source", "relation", "target", "options", "answer_all", "K"):
        if key not in record:
            raise ValueError(f"{where}, field '{key}': missing")
    heads, relations, tails = (_strings(record[k], where, k) for k in ("source", "relation", "target"))
    if not heads or not len(heads) == len(relations) == len(tails):
        raise ValueError(f"{where}, field 'relation': source, relation and target must be non-empty lists "
                         f"of one length, got {len(heads)}, {len(relations)} and {len(tails)}")
    for key, ends in (("source", heads), ("target", tails)):
        for end in ends:
            if re.fullmatch(r"blank \d+", end) and end not in BLANKS:
                raise ValueError(f"{where}, field '{key}': names {end!r}, not one of {list(BLANKS)}")
    options = record["options"]
    if not isinstance(options, dict) or sorted(options) != sorted(BLANKS):
        raise ValueError(f"{where}, field 'options': expected an object with keys {list(BLANKS)}, got {options!r}")
    for blank in BLANKS:
        offered = _strings(options[blank], where, "options", f"a list of option texts for {blank!r}")
        if not 2 <= len(set(offered)) == len(offered) <= len(LETTERS):
            raise ValueError(f"{where}, field 'options': {blank!r} needs 2 to {len(LETTERS)} different options, "
                             f"got {offered!r}")
    answers = _strings(record["answer_all"], where, "answer_all", "a list of 3 option texts")
    if len(answers) != len(BLANKS):
        raise ValueError(f"{where}, field 'answer_all': expected a list of 3 option texts, got {answers!r}")
    for blank, answer in zip(BLANKS, answers):
        if answer not in options[blank]:
            raise ValueError(f"{where}, field 'answer_all': {answer!r} is not an option of {blank!r}")
    knowledge = record["K"]
    if not isinstance(knowledge, dict) or not all(
            isinstance(group, list) and all(isinstance(f, list) and len(f) == 3 and all(isinstance(x, str) for x in f)
                                            for f in group) for group in knowledge.values()):
        raise ValueError(f"{where}, field 'K': expected an object of lists of [head, relation, tail] triples, "
                         f"got {knowledge!r}")
    return {"constraints": [list(c) for c in zip(heads, relations, tails)],
            "options": [list(options[b]) for b in BLANKS],
            "answer": [options[b].index(a) for b, a in zip(BLANKS, answers)],
            "knowledge": [fact for group in knowledge.values() for fact in group],
            "with_knowledge": False}


def load_questions(path: str) -> list[Question]:
    """Three-blank questions from a KC jsonl file, one JSON object per line.

    The fields are those Yao et al.'s loader reads: "blanks" (["blank 1", "blank 2", "blank 3"]);
    "source", "relation", "target" (parallel lists of strings: constraint i is (source[i],
    relation[i], target[i]), an end being a blank or an entity); "options" ({"blank 1": [option text,
    ...], ...}); "answer_all" (the gold option text of each blank, in blank order); "K" ({group name:
    [[head, relation, tail], ...]}, the knowledge). Records with another number of blanks are skipped,
    as Yao et al. skip them; blank lines are skipped. Options keep the file's order (the question's own
    order; samples are shown their own). The knowledge is kept in meta but not shown (see module
    docstring).

    Args:
        path: the jsonl file.

    Returns:
        Questions with ids "knowledge_crosswords/{file stem}/{line number}", in file order.

    Raises:
        ValueError: a line that is not a JSON object, or a record with a missing, mistyped or
            inconsistent field (file, line and field).
    """
    stem = Path(path).stem
    questions = []
    for line_no, record in json_lines(Path(path).read_text(encoding="utf-8"), str(path)):
        where = f"{path}: line {line_no}"
        if "blanks" not in record:
            raise ValueError(f"{where}, field 'blanks': missing")
        blanks = _strings(record["blanks"], where, "blanks")
        if len(blanks) != len(BLANKS):
            continue
        if blanks != list(BLANKS):
            raise ValueError(f"{where}, field 'blanks': expected {list(BLANKS)}, got {blanks!r}")
        questions.append(_question(f"{NAME}/{stem}/{line_no}", _record_meta(record, where)))
    return questions


# ---------------------------------------------------------------------------------------------------
# Per-sample option order (the sampling stage's hook)


def sample_prompts(question: Question, n: int, seed: int) -> list[tuple[str, dict]]:
    """`n` user turns, each with every blank's options in its own seeded order, and their views.

    Returns:
        (prompt, {"order": per blank, the indices into meta["options"] shown as A, B, ...}) per sample.
    """
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        order = [rng.sample(range(len(options)), len(options)) for options in question.meta["options"]]
        prompts.append((render_prompt(question.meta, order), {"order": order}))
    return prompts


def canonical_answer(question: Question, view: dict, raw: str) -> str | None:
    """The canonical answer for letters parsed from a sample that saw `view` ({} = the question's own
    text); None when a letter names no option."""
    order = view["order"] if view else _identity(question.meta)
    letters = _RAW_RE.fullmatch(raw).groups()
    if any(LETTERS.index(letter) >= len(shown) for letter, shown in zip(letters, order)):
        return None
    return _canonical(question.meta, tuple(shown[LETTERS.index(letter)] for letter, shown in zip(letters, order)))


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def parse_conclusion(text: str) -> str | None:
    """The letters of the last "The answers are: blank 1: X, blank 2: Y, blank 3: Z" in `text`, as
    "blank 1: X, blank 2: Y, blank 3: Z" (in the letters of the prompt the sample saw); None if none.

    Bold, brackets, an option's text after its letter and one blank per line are fine.
    """
    matches = _CONCLUSION_RE.findall(text)
    return "blank 1: {}, blank 2: {}, blank 3: {}".format(*matches[-1]) if matches else None


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the last "answer(s) are/is/: blank 1: X, blank 2: Y, blank 3: Z",
    in the form of `parse_conclusion`; None if there is none."""
    matches = _DIRECT_RE.findall(answer)
    return "blank 1: {}, blank 2: {}, blank 3: {}".format(*matches[-1]) if matches else None


def proxy(question: Question, answer: str) -> float:
    """The fraction of the three blanks filled with the gold option.

    Args:
        question: a question of this dataset (meta "answer" = gold index per blank).
        answer: a canonical answer, e.g. "blank 1: B (Toni Morrison), blank 2: C (Moscow), blank 3: D
            (Russia)".

    Returns:
        0.0, 1/3, 2/3 or 1.0.

    Raises:
        ValueError: `answer` is not a canonical answer to this question.
    """
    chosen = _chosen(question, answer)
    return sum(c == g for c, g in zip(chosen, question.meta["answer"])) / len(BLANKS)


def is_correct(question: Question, answer: str) -> bool:
    """Whether every blank holds its gold option (proxy 1)."""
    return list(_chosen(question, answer)) == question.meta["answer"]
