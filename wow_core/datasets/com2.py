"""COM2: multiple-choice questions from multi-hop logical queries on a commonsense knowledge graph.

Source: Fang et al. 2024, "Complex Reasoning over Logical Queries on Commonsense Knowledge Graphs"
(ACL), https://github.com/tqfang/complex-commonsense-reasoning; the human-annotated evaluation set is
`cqa_atomic_v1.0_name_new.csv` on Hugging Face `tqfang229/COM2-commonsense`. Its queries over ATOMIC
(types 2i, 2i_neg, 3i, 2p, ip, pi: intersections and projections of relations such as xNeed, xEffect,
xAttr) are verbalised with names in place of PersonX and PersonY.

Schema read (that CSV, or the same columns as .json, .jsonl or .parquet): question, context, options
(a list of five strings, or the CSV's text of one, JSON or Python literal: four candidates, then
"None of the answers are correct."), label (index 0-4 of the correct option), and optionally type.
As Yao et al. 2024, "Varying Shades of Wrong" (arXiv 2410.11055), which wow follows, the "None of the
answers are correct." option is dropped and the records it answers (label 4) are skipped: the other
options cannot be graded against it. Records keep their 0-based position as id. The prompt is the
paper's; it graded options with the Vera plausibility model, which can replace the embedding here
(`scorer`).

Worked example (BANK[0] as the CSV would list it; each sample sees the options in its own order,
reasons, is asked EXTRACTION_PROMPT, concludes, and its letter is mapped back to this order):

    Instruction: As an expert in commonsense reasoning, your task is to provide a concise response to a question based on the given context. The question focuses on studying the causes, effects, or attributes of personas related to the given context.
    Context: Maya cooks dinner and Maya serves dinner to her guests
    Question: What event or state is both what Maya needed to do before Maya cooks dinner and also what Maya needed to do before Maya serves dinner to her guests?
    Options:
    A. Maya buys groceries
    B. Maya washes the dishes afterwards
    C. Maya books a flight
    D. The river floods the valley.

    Gold "A". "... The answer is B." extracts to "B", proxy = cosine of "Maya washes the dishes
    afterwards" to "Maya buys groceries" in all-MiniLM-L6-v2 = 0.60; "C" gets 0.58, "D" 0.14.

Proxy: the embedding proxy of `multiple_choice` (1 for the correct option, else the clipped cosine
similarity of the chosen option's text to the correct one's). Correct means proxy 1.

The generator draws from BANK, 20 hand-written 2i queries in COM2's wording (a correct event, a
near miss, an unrelated event about the same person and an unrelated sentence), without repeats; the
options are shuffled by the seed.
"""  # noqa: E501 (the worked example is the prompt verbatim: its lines are not wrapped)
import ast

import wow_core.datasets.multiple_choice as mc
# The extraction turn, the per-sample option orders and the scoring are the same for every
# multiple-choice dataset.
from wow_core.datasets.multiple_choice import (  # noqa: F401
    EXTRACTION_PREFILL, EXTRACTION_PROMPT, canonical_answer, is_correct, proxy, sample_prompts)

NAME = "com2"
VERSION = 1  # bump on any change to prompt, extraction or scoring

DIFFICULTIES = {"default": None}  # one pool of questions: the query type is kept in meta instead
LETTERS = "ABCD"
NONE_OPTION = "None of the answers are correct."

INSTRUCTION = (
    "As an expert in commonsense reasoning, your task is to provide a concise response to a question based "
    "on the given context. The question focuses on studying the causes, effects, or attributes of personas "
    "related to the given context."
)

# (first event, second event, relation phrase of both, correct option, near miss, unrelated event, unrelated
# sentence); the question reads "What event or state is both {phrase} {first} and also {phrase} {second}?".
BANK = [
    ("Maya cooks dinner", "Maya serves dinner to her guests", "what Maya needed to do before",
     "Maya buys groceries", "Maya washes the dishes afterwards", "Maya books a flight", "The river floods the valley."),
    ("Leo runs a marathon", "Leo skips breakfast", "the effect on Leo after",
     "Leo feels exhausted", "Leo feels full of energy", "Leo buys a new car", "The library closes early."),
    ("Nina volunteers at the shelter", "Nina donates her savings to charity", "what Nina is seen as given",
     "Nina is generous", "Nina is selfish", "Nina is tall", "The train arrives late."),
    ("Omar gets a puppy", "Omar buys a leash", "what Omar wants to do after",
     "Omar wants to take the puppy for a walk", "Omar wants to give the puppy away", "Omar wants to learn French",
     "It snows in the mountains."),
    ("Priya wins the competition", "Priya receives a trophy", "what Priya feels after",
     "Priya feels proud", "Priya feels ashamed", "Priya feels hungry", "The bridge is painted blue."),
    ("Sam studies every night", "Sam hires a tutor", "the intention of Sam before",
     "Sam wants to pass the exam", "Sam wants to skip school", "Sam wants to paint the fence",
     "The cat sleeps on the sofa."),
    ("Ava drives to work", "Ava takes her car on a road trip", "what Ava needed to do before",
     "Ava gets a driver's license", "Ava sells her car", "Ava learns to knit", "The sun sets over the sea."),
    ("Ben forgets his umbrella", "Ben walks home in the rain", "the effect on Ben after",
     "Ben gets wet", "Ben stays dry", "Ben wins the lottery", "The shop sells fresh bread."),
    ("Carla gives Tom a gift", "Carla compliments Tom", "what Tom feels after",
     "Tom feels happy", "Tom feels insulted", "Tom feels sleepy", "The ship leaves the harbor."),
    ("Eva boils water", "Eva takes out a tea bag", "what happens after",
     "Eva makes a cup of tea", "Eva makes a cup of coffee", "Eva goes swimming", "The mountain is covered in fog."),
    ("Finn plays the piano at the concert", "Finn performs a difficult sonata", "what Finn needed to do before",
     "Finn practices for months", "Finn bows to the audience", "Finn repairs his bicycle",
     "The wind knocks over a tree."),
    ("Gina eats a huge meal", "Gina has three desserts", "the effect on Gina after",
     "Gina feels full", "Gina feels hungry", "Gina gets a promotion", "The lake freezes over."),
    ("Hugo fixes everyone's computers", "Hugo builds his own robot", "what Hugo is seen as given",
     "Hugo is skilled with technology", "Hugo is afraid of machines", "Hugo is a good swimmer",
     "The flowers bloom in spring."),
    ("Iris finishes her run", "Iris feels thirsty", "what Iris wants to do after",
     "Iris wants to drink water", "Iris wants to eat salty chips", "Iris wants to buy a house",
     "The clock tower chimes at noon."),
    ("Jack saves money every month", "Jack looks at houses for sale", "the intention of Jack before",
     "Jack wants to buy a home", "Jack wants to spend all his money", "Jack wants to climb a volcano",
     "The rain stops at dawn."),
    ("Kim loses her wallet", "Kim misses her bus", "what Kim feels after",
     "Kim feels frustrated", "Kim feels delighted", "Kim feels curious about birds",
     "The orchestra tunes its instruments."),
    ("Liam goes skiing", "Liam snowboards down the slope", "what Liam needed to do before",
     "Liam travels to a snowy mountain", "Liam travels to a sunny beach", "Liam learns to cook pasta",
     "The printer runs out of ink."),
    ("Mia stays up all night", "Mia works a double shift", "the effect on Mia after",
     "Mia feels tired", "Mia feels well rested", "Mia adopts a kitten", "The bus route changes."),
    ("Noah boards the plane", "Noah goes through airport security", "what happens before",
     "Noah checks in at the airport", "Noah lands at his destination", "Noah mows the lawn",
     "The bakery sells out of croissants."),
    ("Olivia helps her elderly neighbor", "Olivia listens patiently to her friends", "what Olivia is seen as given",
     "Olivia is kind", "Olivia is rude", "Olivia is rich", "The road is closed for repairs."),
]


def _bank_record(entry: tuple) -> dict:
    """A BANK entry in the CSV's schema (correct option first, then the none option)."""
    first, second, phrase, *options = entry
    return {"question": f"What event or state is both {phrase} {first} and also {phrase} {second}?",
            "context": f"{first} and {second}", "options": str([*options, NONE_OPTION]), "label": 0, "type": "2i"}


def _options(record: dict, where: str) -> tuple[str, ...]:
    """The options: a list, or the CSV's text of one (JSON or Python literal)."""
    options = mc.field_value(record, where, "options")
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"{where}, field 'options': not a list literal: {options!r}") from e
    return mc.check_options(options, where, "options", 4, 5)


def _item(record: dict, where: str, position: int) -> mc.Item | None:
    """A COM2 record as an item, None when its answer is the dropped none option; ValueError naming
    `where` and the field when it is malformed."""
    options = _options(record, where)
    if len(options) == 5 and options[4] != NONE_OPTION:
        raise ValueError(f"{where}, field 'options': a fifth option must be {NONE_OPTION!r}, got {options[4]!r}")
    label = mc.gold_index(where, "label", mc.int_field(record, where, "label"), len(options))
    if label == 4:
        return None
    return mc.Item(
        id=str(position),
        context=mc.text_field(record, where, "question"),
        options=options[:4],
        gold=label,
        meta={"context": mc.text_field(record, where, "context"),
              **({"type": record["type"]} if record.get("type") else {})},
    )


def _question_text(item: mc.Item) -> str:
    """The paper's prompt: instruction, context, question, then the lettered options."""
    return (f"Instruction: {INSTRUCTION}\nContext: {item.meta['context']}\nQuestion: {item.context}\n"
            f"Options:\n{mc.render_options(item.options)}")


# The functions the stages call, made of the parts above.
_DATASET = mc.Dataset(NAME, LETTERS, DIFFICULTIES, _item, _question_text, [_bank_record(entry) for entry in BANK])
generate_questions = _DATASET.generate_questions
load_questions = _DATASET.load_questions
parse_conclusion = _DATASET.parse_conclusion
parse_direct = _DATASET.parse_direct
