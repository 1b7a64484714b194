"""Numeric science (SciBench): hand-computed proxy and tolerance, generator checked by an independent
path, SciBench-schema loader and its errors, number extraction."""
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest

from wow_core.datasets import scibench as sb
from wow_core.records import Question

SAMPLE = Path(__file__).parent.parent / "data" / "scibench_sample.json"


def question(gold: str) -> Question:
    return Question(id="t/0", dataset=sb.NAME, text="?", gold=gold, meta={"rel_tol": 0.05})


class ScriptedRng:
    """Stands in for random.Random: returns the given draws in order, each checked to be allowed."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def choice(self, options):
        draw = self.draws.pop(0)
        assert draw in options
        return draw

    def randint(self, lo, hi):
        draw = self.draws.pop(0)
        assert lo <= draw <= hi
        return draw

    def sample(self, population, k):
        draw = self.draws.pop(0)
        assert len(draw) == k and set(draw) <= set(population)
        return draw


# ---------------------------------------------------------------------------------------------------
# Proxy and tolerance


def test_worked_example_is_in_the_docstring():
    text, gold, unit, _ = sb._density(ScriptedRng("copper", 25))
    assert "    " + text in sb.__doc__
    assert (gold, unit) == (224, "g")  # 8.96 g/cm³ × 25 cm³
    q = question("224")
    assert sb.parse_conclusion("... The answer is 246.4 g.") == "246.4"
    assert sb.proxy(q, "246.4") == pytest.approx(224 / 246.4) == pytest.approx(0.909, abs=1e-3)
    assert sb.proxy(q, "230") == 1.0  # 6 / 224 = 2.7 % off


@pytest.mark.parametrize(
    "answer, expected",
    [  # g = 100: proxy = min(|a|, |g|) / max(|a|, |g|) for the right sign
        ("100", 1.0),
        ("100.0", 1.0),
        ("104.9", 1.0),
        ("105", 1.0),  # exactly 5 %: within tolerance
        ("95", 1.0),
        ("105.1", 100 / 105.1),
        ("94.9", 0.949),
        ("110", 100 / 110),  # 10 % too large
        ("90", 0.9),  # 10 % too small
        ("150", 2 / 3),
        ("50", 0.5),  # half and double are equally wrong
        ("200", 0.5),
        ("300", 1 / 3),
        ("10", 0.1),  # a factor 10 either way
        ("1000", 0.1),
        ("1e5", 0.001),
        ("0.001", 0.00001),
        ("-100", 1 / 3),  # sign flip: e = 200 / 100 = 2
        ("-300", 100 / (100 + 400)),  # e = 400 / 100
        ("-10", 10 / (10 + 110)),  # e = 110 / 10
        ("0", 0.0),
    ],
)
def test_proxy_hand_computed(answer, expected):
    assert sb.proxy(question("100"), answer) == pytest.approx(expected)


def test_wrong_answer_ladder_is_ordered():
    for gold in ["224", "-1.73", "3.97e-19"]:
        g = Fraction(gold)
        q = question(gold)

        def p(x: Fraction) -> float:
            return sb.proxy(q, sb.canonical_number(float(x)))

        ten, fifty, two_hundred = p(g * Fraction(11, 10)), p(g * Fraction(3, 2)), p(g * 3)
        assert 1.0 > ten > fifty > two_hundred > 0.0
        assert (ten, fifty, two_hundred) == pytest.approx((1 / 1.1, 1 / 1.5, 1 / 3))
        # A sign flip is as wrong as 3x too large: below every right-signed answer within a factor 3.
        flip = p(-g)
        assert flip == pytest.approx(two_hundred) and flip < fifty < ten
        assert flip > p(-3 * g) > p(-30 * g) > 0.0
        assert p(g / 2) == pytest.approx(p(2 * g)) and p(g / 10) == pytest.approx(p(10 * g))
        assert p(Fraction(0)) == 0.0


@pytest.mark.parametrize("gold", ["224", "-1.73", "3.97e-19", "499700000000000", "0.3"])
def test_tolerance_boundary(gold):
    q, g = question(gold), Fraction(gold)

    def answer(factor: str) -> str:
        return sb.canonical_number(float(g * Fraction(factor)))

    for inside in ["1.049", "0.951", "1.05", "0.95"]:
        assert sb.is_correct(q, answer(inside)) and sb.proxy(q, answer(inside)) == 1.0
    for outside in ["1.051", "0.949"]:
        assert not sb.is_correct(q, answer(outside)) and sb.proxy(q, answer(outside)) < 0.96


def test_tolerance_is_exact_and_read_from_meta():
    q = question("0.3")
    assert sb.is_correct(q, "0.315")  # 0.315 - 0.3 > 0.05 * 0.3 in floating point, = exactly
    assert not sb.is_correct(q, "0.31500001")
    strict = Question(id="t/1", dataset=sb.NAME, text="?", gold="100", meta={"rel_tol": 0.01})
    assert sb.is_correct(strict, "101") and not sb.is_correct(strict, "101.5")
    assert sb.proxy(strict, "101.5") == pytest.approx(100 / 101.5)


def test_zero_gold_is_all_or_nothing():
    q = sb.load_questions(str(SAMPLE))[2]  # q = 0 for an adiabatic change
    assert q.gold == "0"
    assert sb.proxy(q, "0") == 1.0 and sb.proxy(q, "0.0") == 1.0 and sb.is_correct(q, "0")
    for wrong in ["0.001", "-5", "1e-30"]:
        assert sb.proxy(q, wrong) == 0.0 and not sb.is_correct(q, wrong)


def test_gold_proxy_one_and_proxy_in_unit_interval():
    questions = [*sb.load_questions(str(SAMPLE)), *sb.generate_questions(8, seed=3),
                 *sb.generate_questions(10, seed=3, difficulty="hard")]
    for q in questions:
        assert sb.proxy(q, q.gold) == 1.0 and sb.is_correct(q, q.gold)
        g = Fraction(q.gold)
        for a in ["0", "-7", "0.5", "1e6", "-1e-9", "123456789", sb.canonical_number(float(-2 * g)),
                  sb.canonical_number(float(g * 1000)), sb.canonical_number(float(g / 1000))]:
            assert 0.0 <= sb.proxy(q, a) <= 1.0


@pytest.mark.parametrize("answer", ["", "five", "nan", "inf", "3/4", "1,250", "The answer is 5", None])
def test_proxy_rejects_unextracted_answers(answer):
    with pytest.raises(ValueError, match="`answer`"):
        sb.proxy(question("100"), answer)
    with pytest.raises(ValueError, match="`answer`"):
        sb.is_correct(question("100"), answer)


# ---------------------------------------------------------------------------------------------------
# Generator

NUM = r"-?\d+(?:\.\d+)?"

# Conversion factors written out here, independently of the module's table.
FACTORS = {"metres": 1000, "minutes": 60, "grams": 1000, "millilitres": 1000}


def numbers_in(text: str) -> list[float]:
    return [float(x) for x in re.findall(NUM, text)]


def recomputed_gold(family: str, text: str) -> float:
    """Gold from the numbers in the question text, by floating-point formulas written here."""
    nums = numbers_in(text)
    if family == "unit_conversion":
        if "Fahrenheit" in text:  # "{c} °C ... (°F = °C × 9/5 + 32)"
            return (nums[0] * 9 + 160) / 5
        if "(1 " in text:  # "(1 mile = 1.609344 km)": the factor is stated
            return nums[0] * nums[-1]
        return nums[0] * next(f for word, f in FACTORS.items() if word in text)
    if family == "rate":  # "{amount} ... in {time} ..."
        return nums[0] / nums[1]
    if family == "density":  # g/cm³ × cm³
        return nums[0] * nums[-1]
    if family == "speed_si":  # km in minutes -> m/s
        return nums[0] * 1000 / (nums[1] * 60)
    if family == "combined_work":  # rates add: 1/t = 1/a + 1/b
        return 1 / (1 / nums[0] + 1 / nums[1])
    if family == "compound_interest":  # year by year
        balance, rate, years = nums[0], nums[1], int(nums[2])
        for _ in range(years):
            balance += balance * rate / 100
        return balance
    if family == "ideal_gas":  # in SI units: Pa from m³, then kPa
        moles, celsius, litres, r, offset = nums  # "... Use R = 8.314 ... + 273.15."
        return moles * r * (celsius + offset) / (litres / 1000) / 1000
    if family == "tank_mass":  # m³ -> cm³, g -> kg
        return nums[0] * 1e6 * nums[1] / 1000
    raise AssertionError(family)


@pytest.mark.parametrize("difficulty", sorted(sb.DIFFICULTIES))
def test_generated_gold_checked_independently(difficulty):
    families = sb.DIFFICULTIES[difficulty]
    questions = sb.generate_questions(6 * len(families), seed=5, difficulty=difficulty)
    assert [q.meta["family"] for q in questions] == list(families) * 6
    for q in questions:
        expected = recomputed_gold(q.meta["family"], q.text)
        assert math.isclose(float(q.gold), expected, rel_tol=1e-12), (q.text, q.gold, expected)
        assert q.gold == sb.canonical_number(float(Fraction(q.gold)))
        assert all(str(value) in q.text for value in q.meta["givens"].values())
        assert q.meta["difficulty"] == difficulty and q.meta["rel_tol"] == 0.05
        json.dumps(q.meta)  # meta must be JSON-serialisable


def test_generated_examples_by_hand():
    # 7 mol at 283 °C in 10 L: 7 × 8.314 × 556.15 / 10 = 3236.68177 kPa (J/L = kPa).
    text, gold, unit, _ = sb._ideal_gas(ScriptedRng(70, 283, "10"))
    assert text.startswith("7 mol of an ideal gas at 283 °C is held in a 10 L container.")
    assert (gold, unit) == (Fraction("3236.68177"), "kPa")
    # $2000 at 5 % for 3 years: 2000 × 1.05³ = 2315.25.
    text, gold, _, _ = sb._compound_interest(ScriptedRng(20, 5, 3))
    assert "$2000" in text and gold == Fraction("2315.25")
    # 8 h and 12 h together: 8 × 12 / 20 = 4.8 h.
    assert sb._combined_work(ScriptedRng([8, 12]))[1] == Fraction("4.8")


def test_generator_deterministic_and_seed_dependent():
    a, b = sb.generate_questions(8, seed=11), sb.generate_questions(8, seed=11)
    assert a == b
    assert [q.text for q in a] != [q.text for q in sb.generate_questions(8, seed=12)]
    assert [q.id for q in a] == [f"scibench/easy/11/{k}" for k in range(8)]
    hard = sb.generate_questions(5, seed=11, difficulty="hard")
    assert hard == sb.generate_questions(5, seed=11, difficulty="hard")
    assert [q.id for q in hard] == [f"scibench/hard/11/{k}" for k in range(5)]


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        sb.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        sb.generate_questions(-1, seed=0)


# ---------------------------------------------------------------------------------------------------
# Loader


def test_load_sample():
    qs = sb.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == [f"scibench/scibench_sample/{k}" for k in range(6)]
    assert [q.gold for q in qs] == ["4.92", "3.97e-19", "0", "-1.73", "499700000000000", "2"]
    assert [q.meta["unit_exponent"] for q in qs] == [0, -19, 0, 0, 14, 0]
    assert [q.meta["problemid"] for q in qs] == ["s1.1", "s1.2", "s2.1", "s2.2", "s1.3", "D-1"]
    assert qs[0].text.endswith("mol}^{-1}$. The unit of the answer is $\\mathrm{atm}$.")
    assert qs[1].text.endswith("The unit of the answer is $ \\mathrm{~J}$.")  # the power is in gold
    assert qs[2].text.endswith("Calculate $q$.")  # blank unit: no unit sentence
    assert all(q.dataset == sb.NAME and q.meta["rel_tol"] == 0.05 for q in qs)
    # Each gold is the textbook answer of the physics, recomputed here from the problem's data.
    physics = [
        2.00 * 0.08206 * 300 / 10.0,  # p = nRT/V, atm
        6.626e-34 * 2.998e8 / 500e-9,  # E = hc/λ, J
        0.0,  # adiabatic: q = 0
        -1.00 * 8.314 * 300 * math.log(2) / 1000,  # w = -nRT ln(V_f/V_i), kJ
        2.998e8 / 600e-9,  # ν = c/λ, Hz
        1 / (1 - 1 / 2),  # geometric series
    ]
    for q, value in zip(qs, physics):
        assert sb.is_correct(q, sb.canonical_number(value)), (q.gold, value)


def test_load_json_lines_as_written_by_datasets(tmp_path):
    records = json.loads(SAMPLE.read_text())
    path = tmp_path / "scibench_sample.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    from_lines = sb.load_questions(str(path))
    assert [(q.text, q.gold, q.meta) for q in from_lines] == [
        (q.text, q.gold, q.meta) for q in sb.load_questions(str(SAMPLE))]


def write(tmp_path: Path, records, name: str = "data.json") -> str:
    path = tmp_path / name
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    return str(path)


def good_record() -> dict:
    return json.loads(SAMPLE.read_text())[0]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("answer_number", "\\sqrt{14}",
         r"field 'answer_number': expected a decimal number such as '50\.7', got '\\\\sqrt\{14\}'"),
        ("answer_number", "3 / 2", r"field 'answer_number': expected a decimal number"),
        ("answer_number", "", r"field 'answer_number': expected a decimal number"),
        ("answer_number", 4.92, r"field 'answer_number': expected a string, got float"),
        ("unit", None, r"field 'unit': expected a string, got NoneType"),
        ("unit", "$10^{3} \\mathrm{~m}^{10^2}$", r"field 'unit': more than one power of ten"),
        ("problem_text", "  ", r"field 'problem_text': empty"),
        ("source", 7, r"field 'source': expected a string, got int"),
    ],
)
def test_loader_malformed_field(tmp_path, field, value, message):
    record = good_record()
    record[field] = value
    path = write(tmp_path, [good_record(), record])
    with pytest.raises(ValueError, match=rf"data\.json: record 1, {message}"):
        sb.load_questions(path)


@pytest.mark.parametrize("field", ["problem_text", "answer_number", "unit"])
def test_loader_missing_field(tmp_path, field):
    record = good_record()
    del record[field]
    path = write(tmp_path, [good_record(), good_record(), record])
    with pytest.raises(ValueError, match=rf"data\.json: record 2, field '{field}': missing"):
        sb.load_questions(path)


def test_loader_json_lines_errors_name_the_line(tmp_path):
    bad = good_record()
    bad["answer_number"] = "about 5"
    lines = [json.dumps(good_record()), "", json.dumps(bad)]
    with pytest.raises(ValueError, match=r"data\.jsonl: line 3, field 'answer_number': expected a decimal"):
        sb.load_questions(write(tmp_path, "\n".join(lines), "data.jsonl"))
    lines = [json.dumps(good_record()), '{"problem_text": "x",']
    with pytest.raises(ValueError, match=r"data\.jsonl: line 2: invalid JSON at column \d+"):
        sb.load_questions(write(tmp_path, "\n".join(lines), "data.jsonl"))


def test_loader_invalid_json_and_wrong_types(tmp_path):
    with pytest.raises(ValueError, match=r"data\.json: invalid JSON at line 2, column \d+"):
        sb.load_questions(write(tmp_path, '[{"problem_text": "x",\n "unit": }]'))
    with pytest.raises(ValueError, match=r"data\.json: record 1: expected a JSON object, got str"):
        sb.load_questions(write(tmp_path, [good_record(), "text"]))


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("p = nRT/V = 4.92 atm.\nThe answer is 4.92 atm.", "4.92"),
        ("The answer is 4. Wait, no. The answer is 6", "6"),  # last mention
        ("the ANSWER is -1.73 kJ", "-1.73"),
        ("The answer is +65.49", "65.49"),
        ("**The answer is 12.5**", "12.5"),
        ("The answer is: 3.5.", "3.5"),
        ("The answer is 1,250 kg.", "1250"),
        ("The answer is 1.2e-3", "0.0012"),
        ("The answer is 3.97E-19 J", "3.97e-19"),
        ("The answer is 1.2 × 10^-3 m", "0.0012"),
        ("The answer is 1.2 x 10^(-3)", "0.0012"),
        ("The answer is $3.97 \\times 10^{-19}$ J", "3.97e-19"),
        ("The answer is 4.997 · 10¹⁴ Hz", "499700000000000"),
        ("The answer is 10⁻³", "0.001"),
        ("The answer is 2.5*10**5 Pa", "250000"),
        ("The answer is −4.5 kJ", "-4.5"),  # U+2212 minus
        ("The answer is approximately 9.81 m/s²", "9.81"),
        ("The answer is \\boxed{2315.25}", "2315.25"),
        ("The answer is 12.5km/h", "12.5"),  # a glued unit is ignored
        ("The answer is P = nRT/V = 2.5 kPa", "2.5"),
        ("The answer is 3 × 4 = 12", "12"),
        ("The final answer is 7", "7"),
        ("The answer is 2 × 3", None),  # a half-written product is not its first term
        ("The answer is 1.2 × 10", None),
        ("The answer is 5-6 m", None),  # a range is not one answer
        ("The answer is 3,4", None),
        ("The answer is X, where X is a number.", None),  # the template's placeholder
        ("The answer is unknown. x = 5", None),  # another sentence
        ("The answer is 1e999", None),  # beyond a float
        ("The pressure is 4.92 atm.", None),  # not the concluding phrase
        ("", None),
    ],
)
def test_parse_conclusion(text, expected):
    assert sb.parse_conclusion(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Therefore, the answer is \\boxed{4.92}.", "4.92"),  # SciBench's own form
        ("So $E = 3.97 \\times 10^{-19}$ J, and the answer is 3.97 × 10^-19 J.", "3.97e-19"),
        ("Answer: 72 km/h", "72"),
        ("final answer = 4.8", "4.8"),
        ("The answer is 4. Rechecking, \\boxed{5}", "5"),
        ("p = nRT/V = 2 × 0.08206 × 300 / 10 = 4.92 atm", None),  # working, not a stated answer
        ("I cannot tell.", None),
    ],
)
def test_parse_direct(answer, expected):
    assert sb.parse_direct(answer) == expected


def test_gold_extracts_to_gold():
    for q in [*sb.load_questions(str(SAMPLE)), *sb.generate_questions(8, seed=9, difficulty="hard")]:
        assert sb.parse_conclusion(f"{sb.EXTRACTION_PREFILL} {q.gold} {q.meta['unit']}.") == q.gold
        assert sb.parse_direct(f"... so the answer is {q.gold}.") == q.gold


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    assert sb.EXTRACTION_PROMPT.endswith('"The answer is X", where X is a number; a unit may follow it.')
    assert sb.parse_conclusion(sb.EXTRACTION_PREFILL + " 12.") == "12"
    assert sb.parse_conclusion(sb.EXTRACTION_PREFILL + " X, where X is a number.") is None
