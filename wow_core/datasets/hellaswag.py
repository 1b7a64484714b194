"""HellaSwag: pick the most plausible of four endings of an everyday scene (ActivityNet, WikiHow).

Source: Zellers et al. 2019, "HellaSwag: Can a Machine Really Finish Your Sentence?" (ACL),
https://rowanzellers.com/hellaswag, Hugging Face `Rowan/hellaswag`. The schema read is the
release's (JSON Lines, label an integer) or the Hub's (Parquet, label a digit string): ind, ctx,
endings (four), label (index 0-3 of the true ending), and optionally activity_label, ctx_a, ctx_b,
source_id, split, split_type. Test records have no label and are refused. WikiHow's bracketed
artifacts ("[header]", "[title]") are removed as lm-evaluation-harness does. The prompt is the one of
Yao et al. 2024, "Varying Shades of Wrong" (arXiv 2410.11055), which wow follows; it graded the
endings with the Vera plausibility model, which can replace the embedding here (`scorer`).

Worked example (BANK[0] as a file would list it; each sample sees the endings in its own order,
reasons, is asked EXTRACTION_PROMPT, concludes, and its letter is mapped back to this order):

    Instruction: Pick the correct completion for given context.
    Context: A woman stands at a kitchen sink full of dirty plates. She
    Options:
    A. "scrubs each plate with a soapy sponge and rinses it under the tap."
    B. "dries the plates with a towel and then washes them in the sink."
    C. "puts on her running shoes and jogs out of the kitchen."
    D. "paints a landscape on a large canvas in the garden."

    Gold "A". "... The answer is B." extracts to "B", proxy = cosine of its ending to the true one in
    all-MiniLM-L6-v2 = 0.78; "C" gets 0.12 and "D" 0.01.

Proxy: the embedding proxy of `multiple_choice` (1 for the true ending, else the clipped cosine
similarity of the chosen ending to the true one). Correct means proxy 1.

The generator draws from BANK, 20 hand-written scenes in HellaSwag's ActivityNet style, each with
one true ending, a near miss and two absurd ones, without repeats; the endings are shuffled by the
seed.
"""
import re

import wow_core.datasets.multiple_choice as mc
# The extraction turn, the mapping of sampled letters and the scoring are the same for every
# multiple-choice dataset.
from wow_core.datasets.multiple_choice import (  # noqa: F401
    EXTRACTION_PREFILL, EXTRACTION_PROMPT, canonical_answer, is_correct, proxy)
from wow_core.records import Question

NAME = "hellaswag"
VERSION = 1  # bump on any change to prompt, extraction or scoring

DIFFICULTIES = {"default": None}  # one pool of questions: HellaSwag has no difficulty levels
LETTERS = "ABCD"

_BRACKETED = re.compile(r"\[.*?\]")

# (activity_label, ctx, true ending, near miss, two absurd endings).
BANK = [
    ("Washing dishes", "A woman stands at a kitchen sink full of dirty plates. She",
     "scrubs each plate with a soapy sponge and rinses it under the tap.",
     "dries the plates with a towel and then washes them in the sink.",
     "puts on her running shoes and jogs out of the kitchen.",
     "paints a landscape on a large canvas in the garden."),
    ("Changing car tire", "A man kneels beside a car with a flat tire and loosens the lug nuts. He",
     "jacks up the car, takes off the wheel and mounts the spare tire.",
     "pumps air into the flat tire and drives off without removing it.",
     "opens the trunk and takes out a picnic basket.",
     "dives into a swimming pool and swims a lap."),
    ("Brushing teeth", "A young boy squeezes toothpaste onto his toothbrush. He",
     "brushes his teeth in small circles and then rinses his mouth.",
     "puts the toothbrush back in the cup without using it.",
     "climbs the tree in the backyard.",
     "reads the evening news to a room of reporters."),
    ("Making a sandwich", "A chef lays two slices of bread on a board and spreads butter on them. She",
     "adds ham, cheese and lettuce, then closes the sandwich.",
     "toasts the bread and serves it with a bowl of soup.",
     "starts the engine of a motorbike.",
     "pours the butter into a glass and waters the plants with it."),
    ("Playing guitar", "A man sits on a stool holding an acoustic guitar. He",
     "strums a few chords and begins to sing along.",
     "tunes a violin and plays a classical piece.",
     "uses the guitar as a paddle to row a boat.",
     "reads the sports section of the newspaper."),
    ("Planting a tree", "A gardener digs a deep hole in the lawn and sets a young tree in it. He",
     "fills the hole with soil, presses it down and waters the tree.",
     "plants flower seeds in a pot on the windowsill.",
     "cuts the young tree down with a chainsaw.",
     "sits down to play a game of chess."),
    ("Ironing clothes", "A woman lays a wrinkled shirt flat on an ironing board. She",
     "presses the hot iron over the shirt until the creases are gone.",
     "folds the wrinkled shirt and puts it in the drawer.",
     "throws the shirt into the swimming pool.",
     "bakes a chocolate cake in the oven."),
    ("Walking the dog", "A man clips a leash onto his dog's collar and opens the front door. They",
     "walk down the street together and stop at the park.",
     "sit down on the sofa and watch television.",
     "board a plane to another continent.",
     "repaint the living room walls."),
    ("Shoveling snow", "After a heavy snowfall, a man steps onto his driveway holding a shovel. He",
     "clears the snow from the driveway and piles it along the edges.",
     "builds a snowman in the middle of the lawn.",
     "waters the flowers with a garden hose.",
     "puts on sunscreen and lies down to sunbathe."),
    ("Tying shoelaces", "A girl sits on the front step and pulls on her sneakers. She",
     "ties the laces into a bow and stands up.",
     "takes the sneakers off again and puts on sandals.",
     "paints her fingernails red.",
     "swims across the lake."),
    ("Baking cookies", "A baker spoons cookie dough onto a tray. She",
     "slides the tray into the hot oven and sets a timer.",
     "kneads bread dough and shapes it into a loaf.",
     "puts the raw dough in the freezer for next month.",
     "repairs a bicycle chain in the garage."),
    ("Cleaning windows", "A man sprays glass cleaner on a dirty window. He",
     "wipes the glass with a cloth until it is clear.",
     "opens the window to let in some fresh air.",
     "plays the drums in a rock band.",
     "plants potatoes in the field."),
    ("Wrapping a gift", "A woman places a small box on a sheet of wrapping paper. She",
     "folds the paper around the box, tapes it and adds a ribbon.",
     "writes a birthday card and puts it in an envelope.",
     "climbs onto the roof to fix the antenna.",
     "mows the lawn behind the house."),
    ("Shaving", "A man spreads shaving cream over his cheeks and chin. He",
     "carefully shaves with a razor and rinses his face.",
     "trims his beard with a pair of scissors.",
     "sings in the church choir.",
     "changes the oil in his car."),
    ("Serving coffee", "A waiter sets a cup on the table and lifts the coffee pot. He",
     "pours coffee into the cup and offers milk and sugar.",
     "pours hot water into a teapot.",
     "kicks a football across the field.",
     "sweeps the chimney of the restaurant."),
    ("Kayaking", "A man carries a kayak to the edge of the lake and sets it in the water. He",
     "climbs in and paddles away from the shore.",
     "hoists the sails of a yacht and heads out to sea.",
     "bakes bread in a wood oven.",
     "files his tax return at the post office."),
    ("Mopping floor", "A janitor dips a mop into a bucket of soapy water. He",
     "wrings it out and mops the hallway floor.",
     "sweeps the hallway floor with a broom.",
     "drinks the water from the bucket.",
     "rides a horse through the forest."),
    ("Hanging laundry", "A woman carries a basket of wet clothes out to the garden. She",
     "hangs the clothes on the line with pegs to dry.",
     "puts the clothes back into the washing machine.",
     "plants tulips in the flower bed.",
     "serves the tennis ball over the net."),
    ("Putting on makeup", "A woman sits in front of a mirror and opens her makeup case. She",
     "applies foundation and then mascara to her lashes.",
     "cuts her hair short with a pair of scissors.",
     "repairs the engine of a truck.",
     "feeds the chickens in the yard."),
    ("Fishing", "A man casts a fishing line from a wooden pier and waits. He",
     "feels a tug, reels in the line and lands a fish.",
     "throws bread crumbs to the ducks in the water.",
     "climbs a snowy mountain peak.",
     "types a letter on his computer."),
]


def _bank_record(k: int, entry: tuple) -> dict:
    """A BANK entry in the Hub's schema (true ending first)."""
    activity_label, ctx, *endings = entry
    return {"ind": 100_000 + k, "activity_label": activity_label, "ctx": ctx, "endings": endings, "label": "0",
            "source_id": "wow-bank", "split": "val", "split_type": "indomain"}


def preprocess(text: str) -> str:
    """lm-evaluation-harness's cleanup of HellaSwag text: WikiHow's " [title]" becomes ". ", other
    bracketed markup goes, double spaces become single; stripped."""
    text = text.strip().replace(" [title]", ". ")
    return _BRACKETED.sub("", text).replace("  ", " ").strip()


def _label(record: dict, where: str) -> int:
    """The label, an integer in the release and a digit string on the Hub."""
    label = mc.field_value(record, where, "label")
    if isinstance(label, str):
        if not label.strip():
            raise ValueError(f"{where}, field 'label': empty (HellaSwag's test split has no labels)")
        if not label.strip().isdigit():
            raise ValueError(f"{where}, field 'label': expected an ending index such as '2', got {label!r}")
        return int(label)
    return mc.int_field(record, where, "label")


def _item(record: dict, where: str, position: int) -> mc.Item:
    """A HellaSwag record as an item; ValueError naming `where` and the field when it is malformed."""
    endings = tuple(preprocess(e) for e in mc.options_field(record, where, "endings", 4, 4))
    return mc.Item(
        id=str(mc.int_field(record, where, "ind")),
        context=preprocess(mc.text_field(record, where, "ctx")),
        options=endings,
        gold=mc.gold_index(where, "label", _label(record, where), len(endings)),
        meta={key: record[key] for key in ("activity_label", "source_id", "split") if record.get(key)},
    )


def _question_text(item: mc.Item) -> str:
    """The paper's prompt: instruction, context, then the lettered endings in quotes."""
    return (f"Instruction: Pick the correct completion for given context.\nContext: {item.context}\n"
            f"Options:\n{mc.render_options(item.options, quoted=True)}")


def sample_prompts(question: Question, n: int, seed: int) -> list[tuple[str, dict]]:
    """`n` user turns, each with the endings in its own seeded order, and their views ({"order": ...})."""
    return mc.sample_prompts(question, n, seed, quoted=True)


# The functions the stages call, made of the parts above.
_DATASET = mc.Dataset(NAME, LETTERS, DIFFICULTIES, _item, _question_text,
                      [_bank_record(k, entry) for k, entry in enumerate(BANK)])
generate_questions = _DATASET.generate_questions
load_questions = _DATASET.load_questions
parse_conclusion = _DATASET.parse_conclusion
parse_direct = _DATASET.parse_direct
