"""Bio generation: short biographies, graded by the share of their atomic facts that a knowledge source supports.

Source: FActScore, Min et al. 2023, "FActScore: Fine-grained Atomic Evaluation of Factual Precision in
Long Form Text Generation" (EMNLP 2023), https://github.com/shmsw25/FActScore. The generator is asked
FActScore's prompt, "Tell me a bio of <entity>.", and its whole reply is the answer: there is no
final-answer turn (`EXTRACTION_PROMPT = None`, see `wow_core.sample`). wow uses it as the paper it follows
does: Yao et al. 2024, "Varying Shades of Wrong: Aligning LLMs with Wrong Answers Only" (arXiv
2410.11055), with FActScore as the proxy.

Proxy (FActScore's factual precision). A judge model, configured like any other model (the dataset's
`options: {judge: <model name>}`, default: the config's first evaluator, the same for every generator
so that their proxies compare; a judge that is the generator grades itself, and the run warns), is asked
through the backend interface, in two batched rounds:
1. split: the biography's atomic facts, one per line (`FACTS_PROMPT`, with one worked example, its reply
   started with "- "); parsed by `parse_facts` (list markers, headings and repeats handled; a fact line
   holding several sentences is split into them);
2. support: per fact, FActScore's question "Answer the question about <entity> based on the given
   context ... Input: <fact> True or False?" (`SUPPORT_PROMPT`), with the entity's knowledge text as
   context, parsed by `parse_verdict` (True / False / Yes / No / (not) supported).
A split reply cut by the token limit loses its unfinished last line.
proxy = supported facts / facts, in [0, 1]. A fact whose verdict names neither True nor False counts as
not supported (the judge did not confirm it; FActScore counts a fact as supported only when it is
shown). An answer in which the judge finds no fact states nothing checkable: proxy 0. Correct = proxy 1
(every fact supported, at least one fact). FActScore retrieves passages of a Wikipedia article; a
knowledge text of up to `EVIDENCE_WORDS` words is passed whole, a longer one as its `EVIDENCE_WORDS //
PASSAGE_WORDS` passages of `PASSAGE_WORDS` words that share the most words with the fact, in text order.
The hook the sampling stage calls is `score_answers(questions, answers, judge)`; the facts and verdicts
behind each score (`check_facts`) are kept with the sample, in its `proxy_detail` column.

Gold is the entity's knowledge text itself, so its proxy is 1 by construction: every one of its facts is
in the knowledge source (a judge that confirms what the text states gives 1; a small judge may not).
The packaged 135M model runs both steps but is a poor judge (tried: it copies the worked example into
its list, repeats lines and calls true facts false); name a larger model as judge for proxies that mean
something.

Worked example (packaged knowledge source): "Tell me a bio of Marie Curie." answered "Marie Curie was a
Polish physicist. She won the Nobel Prize in Chemistry in 1911. She was born in Paris." splits into the
facts "Marie Curie was a physicist", "... won the Nobel Prize in Chemistry in 1911", "... was born in
Paris" (and, by a careful judge, "... was Polish", which the short text does not state); the first two
are supported and the rest not: proxy 2/3 or 2/4, wrong. Less wrong than a bio whose every fact is
invented, more wrong than one with every fact right.

Questions. `generate_questions` draws entities, without repeats, from a knowledge source the package
ships (`bio_generation_knowledge.jsonl`): 32 historical figures, each with six to eight sentences of
well-known facts of public record (birth and death, main works and honours), written for this package
from general knowledge, not copied from Wikipedia. It is small and its texts are short: it tests the
pipeline and gives wrong answers of graded wrongness; it is not FActScore's benchmark.

`load_questions(path, knowledge=...)` reads FActScore's public formats: `path` is an entity list, one
entity per line (FActScore's `prompt_entities.txt`; blank lines skipped), and `knowledge` (option
`knowledge` in the config, default: the packaged source) a knowledge source in the JSON Lines form
FActScore's `register_knowledge_source` takes, one record per line, {"title": str, "text": str} (other
fields ignored). Every entity must be the title of one record.
"""
import random
import re
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

from wow_core.backends.base import Backend, Conversation
from wow_core.datasets.json_files import json_lines
from wow_core.records import Question

NAME = "bio_generation"
VERSION = 1  # bump on any change to the prompts, their parsing, the scoring or the packaged knowledge

DIFFICULTIES = {"default": None}  # one pool of entities

QUESTION_PROMPT = "Tell me a bio of {entity}."  # FActScore's

# The answer is the whole biography: no second turn asks for a final answer (wow_core.sample).
EXTRACTION_PROMPT = None
EXTRACTION_PREFILL = None

KNOWLEDGE_FILE = "bio_generation_knowledge.jsonl"

FACTS_PROMPT = (
    "Break the biography below into atomic facts: short sentences that each state one piece of information "
    "from it. Name the person in every fact. Write one fact per line, each starting with \"- \", and nothing else.\n\n"
    "Example biography of Tom Reed: Tom Reed is a Canadian chef. He was born in 1970 in Halifax and opened his "
    "first restaurant in 1998.\n"
    "Atomic facts:\n- Tom Reed is Canadian.\n- Tom Reed is a chef.\n- Tom Reed was born in 1970.\n"
    "- Tom Reed was born in Halifax.\n- Tom Reed opened his first restaurant in 1998.\n\n"
    "Biography of {entity}: {biography}\n"
    "Atomic facts:"
)
# The reply to FACTS_PROMPT starts with the list's first marker, so that even a small judge lists.
FACTS_PREFILL = "- "
FACTS_MAX_NEW_TOKENS = 384

# FActScore's support question (its retrieval + LM prompt), the context being the entity's knowledge.
SUPPORT_PROMPT = (
    "Answer the question about {entity} based on the given context.\n\n"
    "Title: {entity}\nText: {evidence}\n\n"
    "Input: {fact} True or False?"
)
SUPPORT_PREFILL = "Output:"
SUPPORT_MAX_NEW_TOKENS = 8

EVIDENCE_WORDS = 500  # a longer knowledge text is cut to its passages that best match the fact
PASSAGE_WORDS = 100


# ---------------------------------------------------------------------------------------------------
# Parsing the judge's replies

# A list marker at the start of a line: "-", "*", "•", "1.", "2)", "(3)", "Fact 4:".
_MARKER = re.compile(r"^(?:[-*•‣–—]+|\(?\d+[.):]|\(\d+\)|fact\s*\d*\s*[:.)-])\s*", re.IGNORECASE)
# A line that starts another example: what follows is not about this biography.
_NEW_EXAMPLE = re.compile(r"^(?:example|biography)\b", re.IGNORECASE)
# A sentence end: ".", "!" or "?" then space and a capital; split only where the word before is not a
# title or an initial ("Dr. Smith", "F. W. de Klerk", "St. Thomas").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_NO_END = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Mt|No|vs)|\b[A-Z])\.$")


def _sentences(line: str) -> list[str]:
    pieces = []
    for piece in _SENTENCE_END.split(line):
        if pieces and _NO_END.search(pieces[-1]):
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    return pieces


def parse_facts(reply: str) -> list[str]:
    """The atomic facts a judge listed, in order.

    One fact per line: list markers ("- ", "1.", "2)", "•", "Fact 3:"), bold and quotes are removed; a
    line with several sentences gives one fact per sentence; blank lines, headings (a line ending in
    ":") and lines without a letter are skipped, and so are repeats (case and spacing ignored). A line
    that starts another example ("Biography ...", "Example ...") after the first fact ends the list.
    """
    facts, seen = [], set()
    for line in reply.splitlines():
        line = _MARKER.sub("", line.strip().replace("**", "")).strip().strip("\"'“”").strip()
        if facts and _NEW_EXAMPLE.match(line):
            break
        if not line or line.endswith(":") or not re.search(r"[^\W\d_]", line):
            continue
        for fact in _sentences(line):
            key = " ".join(fact.casefold().split())
            if key not in seen:
                seen.add(key)
                facts.append(fact)
    return facts


_ECHO = re.compile(r"\btrue\s+or\s+false\b", re.IGNORECASE)
_VERDICT = re.compile(r"\b(not\s+(?:true|supported|correct)|unsupported|incorrect|false|no|"
                      r"true|supported|correct|yes)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> bool | None:
    """The first verdict in a support reply: True for "True", "Yes", "Supported", "Correct"; False for
    "False", "No", "Not true", "Unsupported", "Incorrect"; None when there is none. The question's own
    "True or False" echoed back is not a verdict."""
    match = _VERDICT.search(_ECHO.sub(" ", reply))
    if match is None:
        return None
    return match.group(1).lower() in {"true", "supported", "correct", "yes"}


# ---------------------------------------------------------------------------------------------------
# Scoring


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.casefold()) if len(w) > 3 or w.isdigit()}


def evidence(knowledge: str, fact: str) -> str:
    """The context a fact is checked against: the whole knowledge text when it has at most
    EVIDENCE_WORDS words, else its passages of PASSAGE_WORDS words sharing the most words (of four or
    more letters, or numbers) with the fact, EVIDENCE_WORDS // PASSAGE_WORDS of them, in text order."""
    words = knowledge.split()
    if len(words) <= EVIDENCE_WORDS:
        return knowledge
    passages = [" ".join(words[i:i + PASSAGE_WORDS]) for i in range(0, len(words), PASSAGE_WORDS)]
    terms = _words(fact)
    shared = [len(terms & _words(p)) for p in passages]
    best = sorted(sorted(range(len(passages)), key=lambda i: -shared[i])[:EVIDENCE_WORDS // PASSAGE_WORDS])
    return "\n...\n".join(passages[i] for i in best)


class FactCheck(NamedTuple):
    """The judge's view of one biography: its atomic facts and, per fact, whether the knowledge source
    supports it (None: the reply named no verdict, counted as not supported)."""
    facts: list[str]
    supported: list[bool | None]

    @property
    def proxy(self) -> float:
        return sum(s is True for s in self.supported) / len(self.facts) if self.facts else 0.0

    @property
    def correct(self) -> bool:
        return bool(self.facts) and all(s is True for s in self.supported)


def facts_conversation(question: Question, biography: str) -> Conversation:
    return [{"role": "user", "content": FACTS_PROMPT.format(entity=question.meta["entity"], biography=biography)},
            {"role": "assistant", "content": FACTS_PREFILL}]


def support_conversation(question: Question, fact: str) -> Conversation:
    entity = question.meta["entity"]
    prompt = SUPPORT_PROMPT.format(entity=entity, evidence=evidence(question.gold, fact), fact=fact)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": SUPPORT_PREFILL}]


def _finished_lines(reply: str, finish_reason: str) -> str:
    """The reply without its last line when the judge ran out of tokens mid-line (a cut fact)."""
    if finish_reason != "length":
        return reply
    return reply.rsplit("\n", 1)[0] if "\n" in reply else ""


def check_facts(questions: list[Question], biographies: list[str], judge: Backend) -> list[FactCheck]:
    """Split each biography into atomic facts and check each fact against its entity's knowledge text
    (the question's gold), with two batched greedy rounds of `judge.generate`.

    Args:
        questions: questions of this dataset (meta "entity"; gold = the knowledge text).
        biographies: one answer per question, as extracted.
        judge: the backend of the judge model.
    """
    if len(questions) != len(biographies):
        raise ValueError(f"{len(questions)} questions but {len(biographies)} biographies")
    if not questions:
        return []
    replies = judge.generate([facts_conversation(q, b) for q, b in zip(questions, biographies)],
                             max_new_tokens=FACTS_MAX_NEW_TOKENS)
    facts = [parse_facts(_finished_lines(FACTS_PREFILL + r.text, r.finish_reason)) for r in replies]
    asked = [support_conversation(q, f) for q, fs in zip(questions, facts) for f in fs]
    verdicts = iter([parse_verdict(r.text) for r in judge.generate(asked, max_new_tokens=SUPPORT_MAX_NEW_TOKENS)]
                    if asked else [])
    return [FactCheck(fs, [next(verdicts) for _ in fs]) for fs in facts]


def score_answers(questions: list[Question], answers: list[str],
                  judge: Backend) -> list[tuple[float, bool, dict]]:
    """The sampling stage's hook: (proxy, correct, detail) per answer, by `check_facts` (module docstring).

    Returns:
        proxy = supported facts / facts in [0, 1] (0 when the judge finds no fact); correct = proxy 1;
        detail = {"facts": [...], "supported": [True | False | None, ...]}, what the score rests on.
    """
    return [(check.proxy, check.correct, {"facts": check.facts, "supported": check.supported})
            for check in check_facts(questions, answers, judge)]


def parse_direct(answer: str) -> str | None:
    """The answer is the biography itself: the reply, stripped; None when it is empty."""
    return answer.strip() or None


# ---------------------------------------------------------------------------------------------------
# Questions


def _question(qid: str, entity: str, knowledge: str) -> Question:
    return Question(id=qid, dataset=NAME, text=QUESTION_PROMPT.format(entity=entity), gold=knowledge,
                    meta={"entity": entity})


def _parse_knowledge(text: str, where: str) -> dict[str, tuple[str, int]]:
    """title -> (text, line number) of a knowledge source's lines; errors name `where`, line and field."""
    records: dict[str, tuple[str, int]] = {}
    for line_no, record in json_lines(text, where):
        for key in ("title", "text"):
            if key not in record:
                raise ValueError(f"{where}: line {line_no}, field '{key}': missing")
            if not isinstance(record[key], str) or not record[key].strip():
                raise ValueError(f"{where}: line {line_no}, field '{key}': expected a non-empty string, "
                                 f"got {record[key]!r}")
        title = record["title"].strip()
        if title in records:
            raise ValueError(f"{where}: line {line_no}, field 'title': {title!r} is also the title on line "
                             f"{records[title][1]}")
        records[title] = (" ".join(record["text"].split()), line_no)
    return records


def load_knowledge(path: str | None = None) -> dict[str, str]:
    """title -> text of a knowledge source in FActScore's JSON Lines form ({"title", "text"} per line).

    Args:
        path: the file; None: the packaged source.

    Raises:
        ValueError: invalid JSON, a record that is not an object, a missing, mistyped or empty field,
            or a title given twice (file, line and field).
    """
    if path is None:
        resource = files("wow_core.datasets").joinpath(KNOWLEDGE_FILE)
        records = _parse_knowledge(resource.read_text(encoding="utf-8"), str(resource))
    else:
        records = _parse_knowledge(Path(path).read_text(encoding="utf-8"), str(path))
    return {title: text for title, (text, _) in records.items()}


def generate_questions(n: int, seed: int, difficulty: str = "default", judge: str | None = None) -> list[Question]:
    """`n` distinct entities of the packaged knowledge source, drawn by `random.Random(seed)`.

    Args:
        n: number of questions, at most the source's 32 entities.
        seed: seed of the draw.
        difficulty: "default" (the only pool).
        judge: the name of the model that scores the answers (used by the sampling stage, see the
            module docstring); the questions do not depend on it.

    Returns:
        Questions with ids "bio_generation/{difficulty}/{seed}/{k}", text "Tell me a bio of <entity>.",
        gold the entity's knowledge text and meta {"entity"}.

    Raises:
        ValueError: `difficulty` unknown, or `n` negative or larger than the source (a question is never
            repeated: repeats would leak between training and held-out questions).
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"`difficulty` must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}.")
    knowledge = list(load_knowledge().items())
    if not 0 <= n <= len(knowledge):
        raise ValueError(f"`n` must be in 0..{len(knowledge)} (the entities of the packaged knowledge source), "
                         f"got {n}; for more questions load an entity list and a knowledge source (source = 'file').")
    rng = random.Random(seed)
    return [_question(f"{NAME}/{difficulty}/{seed}/{k}", *knowledge[i])
            for k, i in enumerate(rng.sample(range(len(knowledge)), n))]


def load_questions(path: str, knowledge: str | None = None, judge: str | None = None) -> list[Question]:
    """Questions from an entity list (FActScore's prompt_entities.txt: one entity per line) over a
    knowledge source (module docstring).

    Args:
        path: the entity list; blank lines are skipped.
        knowledge: the knowledge source (JSON Lines, {"title", "text"}); None: the packaged one.
        judge: as in `generate_questions`.

    Returns:
        Questions with ids "bio_generation/{file stem}/{line number}", in file order.

    Raises:
        ValueError: an entity that no knowledge record has as title, or one listed twice (file, line and
            field 'entity'); any error of `load_knowledge`.
    """
    source = load_knowledge(knowledge)
    where_known = knowledge or "the packaged knowledge source"
    stem, questions, listed = Path(path).stem, [], {}
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        entity = line.strip()
        if not entity:
            continue
        if entity not in source:
            raise ValueError(f"{path}: line {line_no}, field 'entity': {entity!r} is not a title in {where_known}")
        if entity in listed:
            raise ValueError(f"{path}: line {line_no}, field 'entity': {entity!r} is listed on line "
                             f"{listed[entity]} too")
        listed[entity] = line_no
        questions.append(_question(f"{NAME}/{stem}/{line_no}", entity, source[entity]))
    return questions
