"""MMLU-Pro: harder, ten-option MMLU questions across 14 categories (math, physics, law, ...).

Source: Wang et al. 2024, "MMLU-Pro: A More Robust and Challenging Multi-Task Language Understanding
Benchmark" (NeurIPS), Hugging Face `TIGER-Lab/MMLU-Pro`. The schema read is the Hub's (Parquet, or
JSON / JSON Lines exported from it): question_id, question, options (a list of up to ten; some
questions have fewer), answer (the correct letter), answer_index (its index; both must agree), and
optionally cot_content, category, src. Yao et al. 2024, "Varying Shades of Wrong" (arXiv
2410.11055), which wow follows, grades MMLU-Pro's wrong options exactly so: cosine similarity of
option embeddings (theirs text-embedding-3-small, ours the packaged all-MiniLM-L6-v2). Its prompt
is used too.

Worked example (BANK[1] as a file would list it; each sample sees the options in its own order,
reasons, is asked EXTRACTION_PROMPT, concludes, and its letter is mapped back to this order):

    Question: A car accelerates uniformly from rest to 20 m/s in 5 s. What is its acceleration?
    Options:
    A. 4 m/s^2
    B. 2 m/s^2
    C. 5 m/s^2
    D. 10 m/s^2
    E. 100 m/s^2
    F. 0.25 m/s^2
    G. 20 m/s^2
    H. 8 m/s^2
    I. 1 m/s^2
    J. 40 m/s^2

    Gold "A" (20 / 5). "... The answer is D." extracts to "D", proxy = cosine of "10 m/s^2" to
    "4 m/s^2" in all-MiniLM-L6-v2 = 0.85. The embedding reads text, not magnitude: "B" (2 m/s^2)
    gets 0.94, "E" (100 m/s^2) 0.77.

Proxy: the embedding proxy of `multiple_choice` (1 for the correct option, else the clipped cosine
similarity of the chosen option's text to the correct one's). A letter past a question's last
option names nothing and is no answer. Correct means proxy 1.

The generator draws from BANK, 20 hand-written items in MMLU-Pro's style (its categories, ten
options, one with eight), without repeats; the options are shuffled by the seed.
"""
import wow_core.datasets.multiple_choice as mc
# The extraction turn, the per-sample option orders and the scoring are the same for every
# multiple-choice dataset.
from wow_core.datasets.multiple_choice import (  # noqa: F401
    EXTRACTION_PREFILL, EXTRACTION_PROMPT, canonical_answer, is_correct, proxy, sample_prompts)

NAME = "mmlu_pro"
VERSION = 1  # bump on any change to prompt, extraction or scoring

DIFFICULTIES = {"default": None}  # one pool of questions: MMLU-Pro has no difficulty levels
LETTERS = mc.LETTERS  # A-J: up to ten options

# (category, question, correct option, wrong options...).
BANK = [
    ("math", "What is the derivative of x^3 + 2x with respect to x?",
     "3x^2 + 2", "3x^2", "x^2 + 2", "3x + 2", "x^4/4 + x^2", "3x^3 + 2", "2x^2 + 3", "6x", "3x^2 + 2x", "x^3 + 2"),
    ("physics", "A car accelerates uniformly from rest to 20 m/s in 5 s. What is its acceleration?",
     "4 m/s^2", "2 m/s^2", "5 m/s^2", "10 m/s^2", "100 m/s^2", "0.25 m/s^2", "20 m/s^2", "8 m/s^2", "1 m/s^2",
     "40 m/s^2"),
    ("chemistry", "What is the pH of a 0.001 M aqueous solution of HCl at 25 °C?",
     "3", "1", "2", "4", "7", "11", "0.001", "10", "13", "14"),
    ("economics", "The price elasticity of demand for a good is -2. If its price rises by 5%, the quantity "
                  "demanded will",
     "fall by 10%", "rise by 10%", "fall by 2.5%", "rise by 2.5%", "fall by 5%", "stay the same", "fall by 7%",
     "rise by 7%", "fall by 20%", "rise by 5%"),
    ("biology", "Where in a eukaryotic cell is most ATP made by oxidative phosphorylation?",
     "In the mitochondria", "In the chloroplasts", "In the ribosomes", "In the nucleus", "In the Golgi apparatus",
     "In the lysosomes", "In the endoplasmic reticulum", "In the peroxisomes", "In the cytosol",
     "In the centrioles"),
    ("computer science", "What is the worst-case time complexity of binary search in a sorted array of n "
                         "elements?",
     "O(log n)", "O(1)", "O(n)", "O(n log n)", "O(n^2)", "O(2^n)", "O(sqrt(n))", "O(log log n)", "O(n!)",
     "O(n^3)"),
    ("history", "In which year did the First World War end?",
     "1918", "1914", "1916", "1917", "1919", "1920", "1939", "1945"),
    ("psychology", "Who proposed the hierarchy of needs?",
     "Abraham Maslow", "Sigmund Freud", "B. F. Skinner", "Carl Rogers", "Jean Piaget", "Erik Erikson",
     "Ivan Pavlov", "John B. Watson", "Albert Bandura", "William James"),
    ("law", "Under the doctrine of stare decisis, courts",
     "follow the precedents set by earlier decisions of the same or higher courts",
     "may disregard all earlier decisions", "decide every case by a jury vote",
     "look only at the intent of the legislature", "apply international law before national law",
     "need a unanimous bench to decide a case", "must strike down statutes older than a century",
     "follow the opinions of leading legal scholars", "send every dispute to arbitration",
     "apply equity instead of the common law"),
    ("business", "A firm has fixed costs of $10,000, sells its product at $50 per unit and has a variable "
                 "cost of $30 per unit. What is its break-even output?",
     "500 units", "200 units", "333 units", "1,000 units", "250 units", "400 units", "600 units", "2,000 units",
     "100 units", "800 units"),
    ("physics", "What is the kinetic energy of a 2 kg mass moving at 3 m/s?",
     "9 J", "6 J", "18 J", "3 J", "12 J", "4.5 J", "36 J", "1.5 J", "27 J", "0 J"),
    ("chemistry", "How many moles of water are in 36 g of H2O (molar mass 18 g/mol)?",
     "2 mol", "1 mol", "0.5 mol", "18 mol", "36 mol", "3 mol", "4 mol", "648 mol", "6.02 x 10^23 mol", "1.5 mol"),
    ("math", "What is the probability of rolling a sum of 7 with two fair six-sided dice?",
     "1/6", "1/12", "1/36", "7/36", "5/36", "1/3", "1/2", "1/9", "7/12", "1/18"),
    ("engineering", "What is the equivalent resistance of two 6-ohm resistors connected in parallel?",
     "3 ohms", "12 ohms", "6 ohms", "36 ohms", "1.5 ohms", "2 ohms", "0.33 ohms", "9 ohms", "4 ohms", "24 ohms"),
    ("health", "Which vitamin does human skin synthesise on exposure to sunlight?",
     "Vitamin D", "Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin E", "Vitamin K", "Vitamin B1", "Folic acid",
     "Biotin", "Niacin"),
    ("philosophy", "Who wrote the Critique of Pure Reason?",
     "Immanuel Kant", "Georg Wilhelm Friedrich Hegel", "David Hume", "René Descartes", "John Locke",
     "Friedrich Nietzsche", "Arthur Schopenhauer", "Plato", "Aristotle", "Baruch Spinoza"),
    ("economics", "Gross domestic product (GDP) measures",
     "the market value of all final goods and services produced in a country in a year",
     "the value of all goods and services sold in a country in a year, intermediate goods included",
     "the income that a country's citizens earn abroad", "the total spending of the government in a year",
     "the value of a country's exports minus its imports", "the total wealth held by households",
     "the amount of money in circulation", "the average price level of consumer goods",
     "the number of people employed", "the value of all shares traded on the stock exchange"),
    ("math", "What is the sum of the interior angles of a hexagon?",
     "720 degrees", "360 degrees", "540 degrees", "1080 degrees", "900 degrees", "180 degrees", "600 degrees",
     "480 degrees", "810 degrees", "1440 degrees"),
    ("computer science", "Which data structure removes elements in last-in, first-out (LIFO) order?",
     "A stack", "A queue", "A heap", "A singly linked list", "A hash table", "A binary search tree", "A graph",
     "A circular buffer", "A priority queue", "A sorted array"),
    ("biology", "In which phase of mitosis do sister chromatids separate and move to opposite poles?",
     "Anaphase", "Prophase", "Metaphase", "Telophase", "Interphase", "Cytokinesis", "Prometaphase", "G1 phase",
     "S phase", "G2 phase"),
]


def _bank_record(k: int, entry: tuple) -> dict:
    """A BANK entry in the Hub's schema (correct option first)."""
    category, question, *options = entry
    return {"question_id": 100_001 + k, "question": question, "options": options, "answer": "A",
            "answer_index": 0, "cot_content": "", "category": category, "src": "wow-bank"}


def _item(record: dict, where: str, position: int) -> mc.Item:
    """An MMLU-Pro record as an item; ValueError naming `where` and the field when it is malformed."""
    options = mc.options_field(record, where, "options", 2, len(mc.LETTERS))
    answer_index = mc.gold_index(where, "answer_index", mc.int_field(record, where, "answer_index"), len(options))
    answer = mc.text_field(record, where, "answer")
    if answer != mc.LETTERS[answer_index]:
        raise ValueError(f"{where}, field 'answer': {answer!r} disagrees with answer_index {answer_index} "
                         f"({mc.LETTERS[answer_index]!r})")
    return mc.Item(
        id=str(mc.int_field(record, where, "question_id")),
        context=mc.text_field(record, where, "question"),
        options=options,
        gold=answer_index,
        meta={key: record[key] for key in ("category", "src") if record.get(key)},
    )


# The functions the stages call, made of the parts above.
_DATASET = mc.Dataset(NAME, LETTERS, DIFFICULTIES, _item, mc.render_question,
                      [_bank_record(k, entry) for k, entry in enumerate(BANK)])
generate_questions = _DATASET.generate_questions
load_questions = _DATASET.load_questions
parse_conclusion = _DATASET.parse_conclusion
parse_direct = _DATASET.parse_direct
