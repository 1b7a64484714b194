"""Numeric science: college science problems with a numeric answer, graded by relative error.

Source: SciBench, Wang et al. 2023, "SciBench: Evaluating College-Level Scientific Problem-Solving
Abilities of Large Language Models" (ICML 2024), https://github.com/mandyyyyii/scibench (folder
dataset/original; also the Hugging Face dataset `xw27/scibench`). The loader reads SciBench's files;
an answer counts as correct within SciBench's relative tolerance of 5 %. wow uses it as the paper it
follows does: Yao et al. 2024, "Varying Shades of Wrong: Aligning LLMs with Wrong Answers Only"
(arXiv 2410.11055). SciBench's files are not redistributed here, so `generate_questions` makes fresh
numeric word problems of the same answer form, with gold computed exactly (`fractions.Fraction`):
easy ones take one step (a unit conversion, a rate, density × volume), hard ones several (a speed
in SI units, two pumps working together, compound interest, the ideal-gas law, a tank's mass).

Schema accepted by `load_questions` (SciBench's): a JSON array of records, as in SciBench's
repository, or JSON Lines, as `datasets.Dataset.to_json` writes them. Each record has
    problem_text   str, the question (LaTeX allowed)
    answer_number  str, the answer as a decimal number ("50.7", " +65.49 ", "-1368", "1.5e3")
    unit           str, the unit of answer_number, blank when none; a power of ten in it is a scale
                   ("$10^{-19} \\mathrm{~J}$" with answer_number "3.52" means 3.52e-19 J)
and optionally source, problemid and comment (strings, kept in meta). Other fields (answer_latex,
uid, fname, ...) are ignored. As SciBench's evaluation does, the question asks for the answer in the
unit without its power of ten ("... The unit of the answer is $\\mathrm{~J}$."), and gold is
answer_number times that power.

Worked example (generated, easy; the model reasons, then is asked EXTRACTION_PROMPT and concludes):

    A block of copper has a density of 8.96 g/cm³ and a volume of 25 cm³. What is its mass in grams?

    Gold g = 8.96 × 25 = 224. "... The answer is 246.4 g." extracts to "246.4": 10 % too heavy,
    proxy 224 / 246.4 = 0.909. "The answer is 230 g" is 2.7 % off, within tolerance: proxy 1.

Proxy (DESIGN.md: relative error mapped into [0, 1]). With g gold and a the answer:
- correct, proxy 1, when |a - g| <= tol · |g| (tol = 0.05, kept in question.meta["rel_tol"]);
- otherwise `1 / (1 + e)` with e = |a - g| / min(|a|, |g|), the relative error taken against the
  smaller of the two magnitudes. For an answer of the right sign this is min(|a|, |g|) / max(|a|, |g|):
  an answer k times too large and one k times too small are equally wrong (1/k), which suits science,
  where a slipped unit prefix costs a factor 10^3 either way; plain |a - g| / |g| would score "1000×
  too small" 0.5 and "3× too large" 0.25. The mapping never reaches 0 for a nonzero answer, so answers
  off by 10× and 1000× still form a pair. Ladder for g = 100: 110 -> 0.909, 150 -> 0.667,
  300 -> 0.333, 1000 -> 0.1.
- A wrong sign gives e = (|a| + |g|) / min(|a|, |g|) >= 2, so proxy <= 1/3: a sign flip (a = -g)
  scores 1/3, level with 3× too large, below every answer of the right sign within a factor 3.
- a = 0 has no magnitude to compare: proxy 0. g = 0 has none either: relative tolerance is then 0,
  so 0 scores 1 and every other answer 0 (no scale says which nonzero answer is less wrong).
Arithmetic is exact (`Fraction` of the decimal strings), so 5 % off is correct and 5.0001 % is not.
"""
import random
import re
from fractions import Fraction
from pathlib import Path

from wow_core.datasets.json_files import json_records
from wow_core.datasets.nlgraph_shortest_path import canonical_number
from wow_core.records import Question

NAME = "scibench"
VERSION = 1  # bump on any change to prompt, extraction or scoring

REL_TOL = 0.05  # SciBench's relative tolerance

EXTRACTION_PROMPT = (
    "Therefore, what is the final numerical answer? "
    'End your reply with "The answer is X", where X is a number; a unit may follow it.'
)
# The reply to EXTRACTION_PROMPT starts with these words, so that even a small model concludes in the
# parseable form; the number is still the model's own.
EXTRACTION_PREFILL = "The answer is"

# difficulty -> problem families of the generator (easy: one step; hard: several).
DIFFICULTIES = {
    "easy": ("unit_conversion", "rate", "density"),
    "hard": ("speed_si", "combined_work", "compound_interest", "ideal_gas", "tank_mass"),
}

# ---------------------------------------------------------------------------------------------------
# Numbers in text

# Ways of writing a number that models use, rewritten to one form before matching: "−" (U+2212),
# LaTeX operators, braced or parenthesised exponents, superscript exponents and Python's "**".
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_REWRITES = [
    (re.compile(r"\\times|\\cdot|·|⋅"), "×"),
    (re.compile(r"\\approx|≃"), "≈"),
    (re.compile(r"10([⁺⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)"), lambda m: "10^" + m.group(1).translate(_SUPERSCRIPTS)),
    (re.compile(r"10\s*\*\*\s*(?=[+-]?\d)"), "10^"),
    (re.compile(r"\^\s*[{(]\s*([+-]?\d+)\s*[})]"), r"^\1"),
]

# A number: an optional sign, a mantissa (thousands commas allowed) with an optional exponent written
# "e-3" or "× 10^-3", or a bare power "10^-3". The lookahead refuses part of a longer number and a
# number that an operator continues ("2 × 3" alone, "2^10"), so a half-written expression never
# parses as its first term.
NUMBER = (
    r"(?P<sign>[+-]?)"
    r"(?:(?P<mantissa>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<e>[+-]?\d+)|\s*[×x*]\s*10\^(?P<power>[+-]?\d+))?"
    r"|10\^(?P<bare>[+-]?\d+))"
    r"(?![.,]?\d|\s*[×x*/^+-]\s*\.?\d|\s*\^)"
)
# Between "the answer is" and the number: punctuation, bold, math delimiters, \boxed{, "approximately".
_LEAD = (
    r"[\s:*$]*(?:\\boxed\{\s*|\\\(\s*|\\\[\s*)?"
    r"(?:(?:approximately|about|roughly|around|≈|~)\s*)?[\s$*]*"
)
# "The answer is P = nRT/V = 2.5 kPa": the first number after an "=" in the same sentence that no
# operator continues.
_EQUATION = r"(?:(?:(?!\.\s)[^\n]){0,80}?[=≈][\s$*]*)?"
_CONCLUSION_RE = re.compile(r"the\s+(?:final\s+)?answer\s+is" + _LEAD + _EQUATION + NUMBER, re.IGNORECASE)
_DIRECT_RE = re.compile(r"(?:answer\s*(?:is|=|:)|\\boxed\{)" + _LEAD + _EQUATION + NUMBER, re.IGNORECASE)

_MAX_EXPONENT = 400  # beyond a float's range; refused before building a huge Fraction
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_UNIT_POWER_RE = re.compile(r"10\^\{?\s*([+-]?\d+)\s*\}?")


def _normalise(text: str) -> str:
    text = text.replace("−", "-")
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _matched_value(match: re.Match) -> str | None:
    """The canonical number of a NUMBER match; None when it is beyond a float's range."""
    exponent = int(match["bare"] or match["e"] or match["power"] or 0)
    if abs(exponent) > _MAX_EXPONENT:
        return None
    mantissa = Fraction(match["mantissa"].replace(",", "")) if match["bare"] is None else Fraction(1)
    value = mantissa * Fraction(10) ** exponent
    try:
        return canonical_number(float(-value if match["sign"] == "-" else value))
    except OverflowError:
        return None


def _last_number(pattern: re.Pattern, text: str) -> str | None:
    matches = list(pattern.finditer(_normalise(text)))
    return _matched_value(matches[-1]) if matches else None


# ---------------------------------------------------------------------------------------------------
# Extraction and scoring


def parse_conclusion(text: str) -> str | None:
    """The number of the last "The answer is X" in `text`, canonical; None if there is none.

    Case-insensitive; a unit after the number is ignored; "12.5", "-3", "1,250", "1.2e-3",
    "1.2 × 10^-3", "$1.2 \\times 10^{-3}$", "10⁻³" and "\\boxed{12.5}" are numbers, and so is the result
    of an equation in the same sentence ("The answer is P = nRT/V = 2.5 kPa" gives "2.5").
    """
    return _last_number(_CONCLUSION_RE, text)


def parse_direct(answer: str) -> str | None:
    """Fallback on the raw answer: the last number stated as the answer ("the answer is 12.5",
    "Answer: 12.5", "\\boxed{12.5}", SciBench's own form), canonical; None if there is none.
    Numbers elsewhere in the working are never taken."""
    return _last_number(_DIRECT_RE, answer)


def _number(answer: str) -> Fraction:
    """An extracted answer as an exact Fraction; ValueError if it is not a finite decimal number."""
    if not isinstance(answer, str) or not _DECIMAL_RE.fullmatch(answer.strip()):
        raise ValueError(f"`answer` must be an extracted number such as '12.5', got {answer!r}.")
    return Fraction(answer.strip())


def proxy(question: Question, answer: str) -> float:
    """How close an extracted answer is to gold (module docstring): 1 within the relative tolerance,
    else `1 / (1 + |a - g| / min(|a|, |g|))`.

    Args:
        question: a question of this dataset (meta "rel_tol").
        answer: an extracted answer, e.g. "246.4".

    Returns:
        1.0 within tolerance; min(|a|, |g|) / max(|a|, |g|) for a wrong answer of the right sign;
        at most 1/3 for a wrong sign; 0.0 for a = 0 (g != 0) and for every a != 0 when g = 0.

    Raises:
        ValueError: `answer` is not a number.
    """
    a, g = _number(answer), Fraction(question.gold)
    if abs(a - g) <= Fraction(str(question.meta["rel_tol"])) * abs(g):
        return 1.0
    smaller = min(abs(a), abs(g))
    if smaller == 0:
        return 0.0
    return float(smaller / (smaller + abs(a - g)))


def is_correct(question: Question, answer: str) -> bool:
    """Whether the extracted answer is within the relative tolerance of gold (proxy 1)."""
    return proxy(question, answer) == 1.0


# ---------------------------------------------------------------------------------------------------
# SciBench files


def _field(record: dict, key: str, where: str, required: bool = True) -> str:
    if key not in record:
        if required:
            raise ValueError(f"{where}, field '{key}': missing")
        return ""
    if not isinstance(record[key], str):
        raise ValueError(f"{where}, field '{key}': expected a string, got {type(record[key]).__name__}")
    return record[key].strip()


def _split_unit(unit: str) -> tuple[int, str]:
    """(power of ten, unit without it) of a SciBench unit: "$10^{-19} \\mathrm{~J}$" -> (-19,
    "$ \\mathrm{~J}$"); (0, unit) when it has none.

    Raises:
        ValueError: the unit has more than one power of ten.
    """
    powers = _UNIT_POWER_RE.findall(unit)
    if len(powers) > 1:
        raise ValueError(f"more than one power of ten in {unit!r}")
    if not powers:
        return 0, unit
    rest = re.sub(r"\$\s*\$", "", _UNIT_POWER_RE.sub("", unit))  # "$10^{16}$ photons" -> " photons"
    return int(powers[0]), " ".join(rest.split())


def load_questions(path: str) -> list[Question]:
    """Questions from a SciBench file (schema in the module docstring).

    Args:
        path: a JSON array of records (SciBench's dataset/original/*.json) or JSON Lines.

    Returns:
        Questions with ids "scibench/{file stem}/{record index}", in file order; the text is
        problem_text followed by "The unit of the answer is {unit}." when there is a unit.

    Raises:
        ValueError: invalid JSON (file, line and column), or a record with a missing, mistyped or
            non-numeric field (file, record index or line, and field).
    """
    stem = Path(path).stem
    questions = []
    for k, (location, record) in enumerate(json_records(path)):
        where = f"{path}: {location}"
        problem_text = _field(record, "problem_text", where)
        if not problem_text:
            raise ValueError(f"{where}, field 'problem_text': empty")
        answer_number = _field(record, "answer_number", where)
        if not _DECIMAL_RE.fullmatch(answer_number):
            raise ValueError(
                f"{where}, field 'answer_number': expected a decimal number such as '50.7', "
                f"got {record['answer_number']!r}"
            )
        try:
            exponent, unit = _split_unit(_field(record, "unit", where))
        except ValueError as e:
            raise ValueError(f"{where}, field 'unit': {e}") from e
        gold = canonical_number(float(Fraction(answer_number) * Fraction(10) ** exponent))
        text = f"{problem_text} The unit of the answer is {unit}." if unit else problem_text
        meta = {
            "source": _field(record, "source", where, required=False),
            "problemid": _field(record, "problemid", where, required=False),
            "comment": _field(record, "comment", where, required=False),
            "answer_number": answer_number,
            "unit_exponent": exponent,
            "unit": unit,
            "rel_tol": REL_TOL,
        }
        questions.append(Question(id=f"{NAME}/{stem}/{k}", dataset=NAME, text=text, gold=gold, meta=meta))
    return questions


# ---------------------------------------------------------------------------------------------------
# Generated problems
#
# Each family draws its givens as exact Fractions and returns (question text, gold, unit, givens).
# Givens are short decimals, shown as canonical numbers.
_show = canonical_number


def _pick(rng: random.Random, lo: int, hi: int, per_unit: int = 1) -> Fraction:
    """A random multiple of 1/per_unit in [lo, hi]."""
    return Fraction(rng.randint(lo * per_unit, hi * per_unit), per_unit)


# (question with {x}, unit asked for, factor, offset): gold = x · factor + offset. Conversions beyond
# the metric prefixes state their factor, so the question has everything needed.
_CONVERSIONS = [
    ("A hiking trail is {x} km long. How long is it in metres?", "m", Fraction(1000), 0),
    ("A film lasts {x} hours. How long is it in minutes?", "min", Fraction(60), 0),
    ("A parcel has a mass of {x} kg. What is its mass in grams?", "g", Fraction(1000), 0),
    ("A bottle holds {x} L of water. How many millilitres is that?", "mL", Fraction(1000), 0),
    ("A road is {x} miles long. How long is it in kilometres? (1 mile = 1.609344 km)",
     "km", Fraction("1.609344"), 0),
    ("A shelf is {x} inches wide. How wide is it in centimetres? (1 inch = 2.54 cm)",
     "cm", Fraction("2.54"), 0),
    ("A dumbbell weighs {x} pounds. What is its mass in kilograms? (1 pound = 0.45359237 kg)",
     "kg", Fraction("0.45359237"), 0),
    ("The air temperature is {x} °C. What is it in degrees Fahrenheit? (°F = °C × 9/5 + 32)",
     "°F", Fraction(9, 5), 32),
]


def _unit_conversion(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    template, unit, factor, offset = rng.choice(_CONVERSIONS)
    x = _pick(rng, -30, 40, 10) if unit == "°F" else _pick(rng, 1, 60, 10)
    return template.format(x=_show(x)), x * factor + offset, unit, {"x": _show(x)}


# (question with {amount} and {time}, unit asked for, rate range and step, time range and step).
_RATES = [
    ("A train covers {amount} km in {time} hours. What is its average speed in km/h?",
     "km/h", (40, 160, 1), (1, 6, 4)),
    ("A printer prints {amount} pages in {time} minutes. How many pages does it print per minute?",
     "pages/min", (5, 40, 1), (2, 30, 1)),
    ("A pipe delivers {amount} litres of water in {time} minutes. "
     "What is its flow rate in litres per minute?", "L/min", (2, 60, 2), (3, 45, 1)),
]


def _rate(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    template, unit, (r_lo, r_hi, r_per), (t_lo, t_hi, t_per) = rng.choice(_RATES)
    rate, time = _pick(rng, r_lo, r_hi, r_per), _pick(rng, t_lo, t_hi, t_per)
    amount = rate * time  # drawn backwards from the rate, so the division is exact
    givens = {"amount": _show(amount), "time": _show(time)}
    return template.format(**givens), rate, unit, givens


# Densities in g/cm³ at room temperature.
_SOLIDS = {"aluminium": "2.7", "iron": "7.87", "copper": "8.96", "lead": "11.34", "oak": "0.75", "ice": "0.917"}
_LIQUIDS = {"olive oil": "0.91", "ethanol": "0.789", "seawater": "1.025", "glycerol": "1.26", "mercury": "13.53"}


def _density(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    material = rng.choice(sorted(_SOLIDS))
    rho, volume = Fraction(_SOLIDS[material]), _pick(rng, 5, 500)
    givens = {"material": material, "density": _show(rho), "volume": _show(volume)}
    text = (f"A block of {material} has a density of {givens['density']} g/cm³ and a volume of "
            f"{givens['volume']} cm³. What is its mass in grams?")
    return text, rho * volume, "g", givens


def _speed_si(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    speed, minutes = _pick(rng, 2, 15, 2), _pick(rng, 10, 90)  # m/s, min
    km = speed * minutes * 60 / 1000
    givens = {"distance": _show(km), "time": _show(minutes)}
    text = (f"A cyclist rides {givens['distance']} km in {givens['time']} minutes at a steady pace. "
            "What is her speed in metres per second?")
    return text, speed, "m/s", givens


def _combined_work(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    a, b = rng.sample(range(2, 13), 2)  # hours for each pump alone
    givens = {"a": str(a), "b": str(b)}
    text = (f"Pump A alone fills a tank in {a} hours and pump B alone fills it in {b} hours. Working "
            "together, how many hours do the two pumps take to fill the tank?")
    return text, Fraction(a * b, a + b), "h", givens


def _compound_interest(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    principal, rate, years = 100 * rng.randint(5, 100), rng.choice([2, 3, 4, 5, 6, 8, 10]), rng.randint(2, 4)
    givens = {"principal": str(principal), "rate": str(rate), "years": str(years)}
    text = (f"A savings account starts with ${principal} and earns {rate}% interest per year, compounded "
            f"annually. What is the balance after {years} years, in dollars?")
    return text, principal * (1 + Fraction(rate, 100)) ** years, "$", givens


_R = Fraction("8.314")  # J/(mol·K), as the question states it
_VOLUMES_L = ["1", "2", "2.5", "4", "5", "8", "10", "12.5", "16", "20", "25", "40", "50"]  # 1/V terminates


def _ideal_gas(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    moles, celsius, litres = _pick(rng, 1, 10, 10), rng.randint(-50, 300), Fraction(rng.choice(_VOLUMES_L))
    givens = {"moles": _show(moles), "celsius": str(celsius), "litres": _show(litres)}
    text = (f"{givens['moles']} mol of an ideal gas at {celsius} °C is held in a {givens['litres']} L "
            "container. What is its pressure in kPa? Use R = 8.314 J/(mol·K) and T(K) = T(°C) + 273.15.")
    # J/L = kPa, so p = nRT/V needs no further factor.
    return text, moles * _R * (celsius + Fraction("273.15")) / litres, "kPa", givens


def _tank_mass(rng: random.Random) -> tuple[str, Fraction, str, dict]:
    liquid = rng.choice(sorted(_LIQUIDS))
    rho, cubic_metres = Fraction(_LIQUIDS[liquid]), _pick(rng, 1, 40, 10)
    givens = {"liquid": liquid, "density": _show(rho), "volume": _show(cubic_metres)}
    text = (f"A tank holds {givens['volume']} m³ of {liquid}, whose density is {givens['density']} g/cm³. "
            "What is the mass of the liquid in kilograms?")
    # 1 m³ = 10^6 cm³ and 1 kg = 10^3 g.
    return text, cubic_metres * 10**6 * rho / 1000, "kg", givens


_FAMILIES = {
    "unit_conversion": _unit_conversion, "rate": _rate, "density": _density,
    "speed_si": _speed_si, "combined_work": _combined_work, "compound_interest": _compound_interest,
    "ideal_gas": _ideal_gas, "tank_mass": _tank_mass,
}


def _short_decimal(x: Fraction) -> bool:
    """Whether x is a decimal of at most 15 significant digits, so that its float prints as x."""
    den, twos, fives = x.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return False
    digits = abs(x) * 10 ** max(twos, fives)  # an integer
    return len(str(digits.numerator).strip("0")) <= 15


def generate_questions(n: int, seed: int, difficulty: str = "easy") -> list[Question]:
    """`n` fresh numeric word problems, the same for the same (n, seed, difficulty).

    Question k is of family DIFFICULTIES[difficulty][k % number of families], so every family
    appears; its givens are drawn until gold is a decimal of at most 15 significant digits, which
    the canonical string renders exactly.

    Args:
        n: number of questions.
        seed: seed of the `random.Random` that draws everything.
        difficulty: "easy" (one step) or "hard" (several steps).

    Returns:
        Questions with ids "scibench/{difficulty}/{seed}/{k}"; meta has the family, the givens as
        shown in the text, the unit asked for and "rel_tol".

    Raises:
        ValueError: `n` negative or `difficulty` unknown.
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n}.")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"`difficulty` must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}.")
    families = DIFFICULTIES[difficulty]
    rng = random.Random(seed)
    questions = []
    for k in range(n):
        family = families[k % len(families)]
        while True:
            text, gold, unit, givens = _FAMILIES[family](rng)
            if _short_decimal(gold):
                break
        meta = {"family": family, "difficulty": difficulty, "givens": givens, "unit": unit, "rel_tol": REL_TOL}
        questions.append(Question(id=f"{NAME}/{difficulty}/{seed}/{k}", dataset=NAME, text=text,
                                  gold=canonical_number(float(gold)), meta=meta))
    return questions
