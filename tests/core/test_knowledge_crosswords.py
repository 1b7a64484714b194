"""Knowledge Crosswords: hand-computed proxy ladder, generator gold re-derived by brute force over the
fact table, per-sample option orders, KC jsonl loader, parsers."""
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from wow_core.datasets import knowledge_crosswords as kc

SAMPLE = Path(__file__).parent.parent / "data" / "knowledge_crosswords_sample.jsonl"


def options_shown(prompt: str) -> list[dict[str, str]]:
    """Per blank, letter -> option text, read off a prompt's "blank k: A. text; B. text" lines."""
    lines = prompt.split("\nOptions:\n")[1].split("\n")
    shown = []
    for k, line in enumerate(lines, 1):
        head, _, listing = line.partition(": ")
        assert head == f"blank {k}"
        shown.append(dict(item.split(". ", 1) for item in listing.split("; ")))
    return shown


def brute_force(constraints, options, facts) -> list[tuple[str, ...]]:
    """Every choice of one option text per blank under which each constraint is a fact."""
    facts = {tuple(f) for f in facts}
    found = []
    for texts in itertools.product(*options):
        fill = dict(zip(("blank 1", "blank 2", "blank 3"), texts))
        if all((fill.get(h, h), r, fill.get(t, t)) in facts for h, r, t in constraints):
            found.append(texts)
    return found


# ---------------------------------------------------------------------------------------------------
# Proxy


def loaded():
    """Sample line 1: Ulysses / James Joyce / Dublin, constraints chained to Ireland."""
    return kc.load_questions(str(SAMPLE))[0]


def test_wrong_answer_ladder_is_ordered():
    q = loaded()
    assert q.gold == "blank 1: A (Ulysses), blank 2: B (James Joyce), blank 3: C (Dublin)"
    ladder = [
        q.gold,
        "blank 1: A (Ulysses), blank 2: B (James Joyce), blank 3: A (Prague)",  # 2 blanks right
        "blank 1: A (Ulysses), blank 2: A (Jane Austen), blank 3: D (Steventon)",  # 1 blank right
        # Emma, Jane Austen, Steventon keeps both constraints between blanks, yet no blank is right.
        "blank 1: D (Emma), blank 2: A (Jane Austen), blank 3: D (Steventon)",
    ]
    assert [kc.proxy(q, a) for a in ladder] == [1.0, 2 / 3, 1 / 3, 0.0]
    assert [kc.is_correct(q, a) for a in ladder] == [True, False, False, False]


def test_proxy_over_every_answer():
    # With 4 options a blank, k blanks right in C(3, k) * 3^(3 - k) of the 64 answers: 27, 27, 9, 1.
    for q in kc.generate_questions(5, seed=2):
        scores = []
        for chosen in itertools.product(range(4), repeat=3):
            answer = ", ".join(f"blank {b + 1}: {'ABCD'[i]} ({q.meta['options'][b][i]})" for b, i in enumerate(chosen))
            scores.append(kc.proxy(q, answer))
        assert Counter(scores) == {0.0: 27, 1 / 3: 27, 2 / 3: 9, 1.0: 1}
        assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("answer", [
    "blank 1: A, blank 2: B, blank 3: C",  # letters without texts: not canonical
    "blank 1: B (Ulysses), blank 2: B (James Joyce), blank 3: C (Dublin)",  # letter and text disagree
    "blank 1: A (Ulysses), blank 2: B (James Joyce), blank 3: E (Lyon)",
    "Ulysses, James Joyce, Dublin",
    "",
])
def test_proxy_rejects_non_canonical_answers(answer):
    with pytest.raises(ValueError, match="`answer` must be a canonical answer"):
        kc.proxy(loaded(), answer)
    with pytest.raises(ValueError, match="`answer`"):
        kc.is_correct(loaded(), answer)


# ---------------------------------------------------------------------------------------------------
# Fact table and generator


def test_fact_table_is_functional_and_closed():
    # One tail per (head, relation): a constraint on a listed head is false unless it is in the table.
    assert len({(h, r) for h, r, _ in kc.FACTS}) == len(kc.FACTS)
    assert set(kc.AUTHORS.values()) == set(kc.BIRTHPLACES)  # every author's birthplace is listed
    assert set(kc.BIRTHPLACES.values()) == set(kc.COUNTRIES)  # and every birthplace's country
    assert set(kc.CAPITALS) <= set(kc.COUNTRIES)
    assert kc.CAPITALS["Dublin"] == kc.COUNTRIES["Dublin"] == "Ireland"
    assert ("Hamlet", "written by", "William Shakespeare") in kc.FACTS
    assert all(";" not in x for fact in kc.FACTS for x in fact)


def test_generator_deterministic_and_seed_dependent():
    a, b = kc.generate_questions(6, seed=11), kc.generate_questions(6, seed=11)
    assert a == b
    assert [q.text for q in a] != [q.text for q in kc.generate_questions(6, seed=12)]
    assert [q.id for q in a] == [f"knowledge_crosswords/easy/11/{k}" for k in range(6)]
    assert [q.id for q in kc.generate_questions(2, seed=11, difficulty="hard")] == [
        "knowledge_crosswords/hard/11/0", "knowledge_crosswords/hard/11/1"]


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_generated_gold_is_the_only_consistent_answer(difficulty):
    for q in kc.generate_questions(30, seed=4, difficulty=difficulty):
        m = q.meta
        gold = tuple(o[i] for o, i in zip(m["options"], m["answer"]))
        assert brute_force(m["constraints"], m["options"], kc.FACTS) == [gold]
        assert q.gold == ", ".join(f"blank {b}: {'ABCD'[i]} ({t})" for b, i, t in zip((1, 2, 3), m["answer"], gold))
        assert [len(o) for o in m["options"]] == [4, 4, 4] and len({t for o in m["options"] for t in o}) == 12
        assert all(any(b in c for c in m["constraints"]) for b in ("blank 1", "blank 2", "blank 3"))
        # The knowledge alone (what "easy" shows) pins the same answer down.
        assert all(tuple(f) in kc.FACTS for f in m["knowledge"])
        assert brute_force(m["constraints"], m["options"], m["knowledge"]) == [gold]
        assert ("\nKnowledge: (" in q.text) == (difficulty == "easy") == m["with_knowledge"]
        json.dumps(m)  # meta must be JSON-serialisable


def test_every_shape_is_generated():
    relations = Counter(tuple(c[1] for c in q.meta["constraints"]) for q in kc.generate_questions(200, seed=1))
    assert set(relations) == {("written by", "born in", "located in"), ("written by", "born in", "capital of"),
                              ("written by", "written by", "born in"), ("born in", "born in", "located in")}
    anchored_work = [q for q in kc.generate_questions(60, seed=1) if q.meta["constraints"][0][2] == "blank 1"]
    assert anchored_work and all(q.meta["constraints"][0][0] in kc.AUTHORS for q in anchored_work)


def test_worked_example_is_in_the_docstring():
    q = kc.generate_questions(1, seed=3, difficulty="hard")[0]
    assert "\n".join("    " + line for line in q.text.split("\n")) in kc.__doc__
    assert q.gold == "blank 1: B (Victor Hugo), blank 2: D (Besançon), blank 3: C (France)"
    assert " ".join(q.gold.split()) in " ".join(kc.__doc__.split())
    wrong = kc.canonical_answer(q, {}, kc.parse_conclusion("The answers are: blank 1: B, blank 2: B, blank 3: A"))
    assert wrong == "blank 1: B (Victor Hugo), blank 2: B (Moscow), blank 3: A (Russia)"
    assert kc.proxy(q, wrong) == pytest.approx(1 / 3)


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`difficulty`"):
        kc.generate_questions(1, seed=0, difficulty="medium")
    with pytest.raises(ValueError, match="`n`"):
        kc.generate_questions(-1, seed=0)


# ---------------------------------------------------------------------------------------------------
# Per-sample option order


def test_question_text_is_its_own_order():
    q = kc.generate_questions(1, seed=3, difficulty="hard")[0]
    assert options_shown(q.text)[0] == {"A": "Hans Christian Andersen", "B": "Victor Hugo",
                                        "C": "Alexander Pushkin", "D": "Charles Dickens"}
    assert q.text == kc.render_prompt(q.meta, [[0, 1, 2, 3]] * 3)


def test_sample_prompts_show_each_sample_its_own_order():
    q = kc.generate_questions(1, seed=8)[0]
    prompts = kc.sample_prompts(q, 10, seed=1)
    assert prompts == kc.sample_prompts(q, 10, seed=1) and prompts != kc.sample_prompts(q, 10, seed=2)
    assert len({text for text, _ in prompts}) > 1
    gold_texts = [o[i] for o, i in zip(q.meta["options"], q.meta["answer"])]
    for text, view in prompts:
        assert sorted(view) == ["order"] and all(sorted(o) == [0, 1, 2, 3] for o in view["order"])
        shown = options_shown(text)
        assert shown == [{"ABCD"[i]: q.meta["options"][b][j] for i, j in enumerate(view["order"][b])} for b in range(3)]
        # What this sample must answer for the gold, in its own letters, maps back to the gold.
        letters = [next(k for k, t in s.items() if t == g) for s, g in zip(shown, gold_texts)]
        assert kc.canonical_answer(q, view, "blank 1: {}, blank 2: {}, blank 3: {}".format(*letters)) == q.gold
        # And "A, A, A" picks the texts this sample saw first.
        picked = kc.canonical_answer(q, view, "blank 1: A, blank 2: A, blank 3: A")
        assert kc.proxy(q, picked) == sum(s["A"] == g for s, g in zip(shown, gold_texts)) / 3
        assert picked == ", ".join(f"blank {b + 1}: {'ABCD'[q.meta['options'][b].index(s['A'])]} ({s['A']})"
                                   for b, s in enumerate(shown))


def test_canonical_answer_rejects_letters_beyond_the_options():
    q = loaded()
    assert kc.canonical_answer(q, {}, "blank 1: A, blank 2: B, blank 3: C") == q.gold
    assert kc.canonical_answer(q, {}, "blank 1: A, blank 2: B, blank 3: E") is None
    assert kc.canonical_answer(q, {"order": [[3, 2, 1, 0]] * 3}, "blank 1: D, blank 2: C, blank 3: B") == q.gold


# ---------------------------------------------------------------------------------------------------
# Loader


def test_load_sample():
    qs = kc.load_questions(str(SAMPLE))
    # Line 2 has two blanks and is skipped, as Yao et al. skip it.
    assert [q.id for q in qs] == ["knowledge_crosswords/knowledge_crosswords_sample/1",
                                  "knowledge_crosswords/knowledge_crosswords_sample/3"]
    assert qs[1].gold == "blank 1: C (Haruki Murakami), blank 2: A (Kyoto), blank 3: C (Japan)"
    assert [[len(o) for o in q.meta["options"]] for q in qs] == [[4, 4, 4], [3, 5, 4]]
    assert qs[0].meta["constraints"] == [["blank 1", "author", "blank 2"], ["blank 2", "place of birth", "blank 3"],
                                         ["blank 3", "country", "Ireland"]]
    assert [len(q.meta["knowledge"]) for q in qs] == [5, 2]
    assert all("Knowledge:" not in q.text and not q.meta["with_knowledge"] for q in qs)
    assert "Constraints: (Norwegian Wood, author, blank 1); (blank 1, place of birth, blank 2)" in qs[1].text
    assert options_shown(qs[1].text)[1] == {"A": "Kyoto", "B": "Osaka", "C": "Istanbul", "D": "Cairo", "E": "Ottawa"}
    assert kc.proxy(qs[1], "blank 1: C (Haruki Murakami), blank 2: B (Osaka), blank 3: C (Japan)") == 2 / 3
    # A letter past a blank's options maps to nothing: blank 1 has three.
    assert kc.canonical_answer(qs[1], {}, "blank 1: D, blank 2: A, blank 3: C") is None


def good_record() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])


def write(tmp_path: Path, *records) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return str(path)


def test_loader_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path, good_record(), '{"blanks": ["blank 1",')
    with pytest.raises(ValueError, match=r"data\.jsonl: line 2: invalid JSON at column \d+"):
        kc.load_questions(path)
    with pytest.raises(ValueError, match=r"data\.jsonl: line 1: expected a JSON object, got list"):
        kc.load_questions(write(tmp_path, [good_record()]))


@pytest.mark.parametrize("field", ["blanks", "source", "relation", "target", "options", "answer_all", "K"])
def test_loader_missing_field(tmp_path, field):
    record = good_record()
    del record[field]
    with pytest.raises(ValueError, match=rf"data\.jsonl: line 2, field '{field}': missing"):
        kc.load_questions(write(tmp_path, good_record(), record))


def edited(**changes) -> dict:
    record = good_record()
    record.update(changes)
    return record


@pytest.mark.parametrize("record, field, message", [
    (edited(blanks="blank 1"), "blanks", "expected a list of strings"),
    (edited(blanks=["blank 1", "blank 2", "blank three"]), "blanks", "expected"),
    (edited(source=["blank 1", 2, "blank 3"]), "source", "expected a list of strings"),
    (edited(relation=["author", "place of birth"]), "relation", "one length, got 3, 2 and 3"),
    (edited(source=[], relation=[], target=[]), "relation", "non-empty"),
    (edited(target=["blank 2", "blank 4", "Ireland"]), "target", "names 'blank 4'"),
    (edited(options=["Ulysses"]), "options", "expected an object with keys"),
    (edited(options={"blank 1": ["Ulysses", "Emma"], "blank 2": ["James Joyce", "Jane Austen"]}), "options",
     "expected an object with keys"),
    (edited(options={**good_record()["options"], "blank 2": ["James Joyce", "James Joyce"]}), "options",
     "'blank 2' needs 2 to 26 different options"),
    (edited(options={**good_record()["options"], "blank 3": "Dublin"}), "options", "option texts for 'blank 3'"),
    (edited(answer_all=["Ulysses", "James Joyce"]), "answer_all", "a list of 3 option texts"),
    (edited(answer_all=["Ulysses", "James Joyce", "Cork"]), "answer_all", "'Cork' is not an option of 'blank 3'"),
    (edited(K={"relevant": [["Ulysses", "author"]]}), "K", "lists of \\[head, relation, tail\\] triples"),
    (edited(K=[["Ulysses", "author", "James Joyce"]]), "K", "expected an object"),
])
def test_loader_malformed_field(tmp_path, record, field, message):
    with pytest.raises(ValueError, match=rf"data\.jsonl: line 3, field '{field}': .*{message}"):
        kc.load_questions(write(tmp_path, good_record(), "", record))


# ---------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize("text, expected", [
    ("The answers are: blank 1: B, blank 2: A, blank 3: D.", "blank 1: B, blank 2: A, blank 3: D"),
    ("The answers are: **blank 1: (C)**, **blank 2: (A)**, **blank 3: (B)**", "blank 1: C, blank 2: A, blank 3: B"),
    ("The answers are:\n- Blank 1: B. Victor Hugo\n- Blank 2: D. Besançon\n- Blank 3: C. France",
     "blank 1: B, blank 2: D, blank 3: C"),
    ("The answers are: blank 1: B (Victor Hugo), blank 2: D (Besançon), blank 3: C (France).",
     "blank 1: B, blank 2: D, blank 3: C"),
    ("The answers are: blank 1: A, blank 2: A, blank 3: A. No, the answers are: blank 1: B, blank 2: C, blank 3: D",
     "blank 1: B, blank 2: C, blank 3: D"),  # the last statement
    ("blank 1: B, blank 2: A, blank 3: D", None),  # not the concluding phrase
    ("The answers are: blank 1: <letter>, blank 2: <letter>, blank 3: <letter>", None),  # the template
    ("The answers are: blank 1: Boston, blank 2: A, blank 3: D", None),  # a word, not a letter
    ("The answers are: blank 1: b, blank 2: a, blank 3: d", None),  # lower case is not guessed
    ("The answers are: blank 1: B, blank 2: A", None),
    ("", None),
])
def test_parse_conclusion(text, expected):
    assert kc.parse_conclusion(text) == expected


@pytest.mark.parametrize("answer, expected", [
    ("Hugo wrote it.\nFinal answer: blank 1: B, blank 2: D, blank 3: C", "blank 1: B, blank 2: D, blank 3: C"),
    ("So my answers are\nblank 1: A\nblank 2: C\nblank 3: B", "blank 1: A, blank 2: C, blank 3: B"),
    ("The answer is blank 1: B, blank 2: A, blank 3: D. Checking again, the answer is blank 1: C, blank 2: A, "
     "blank 3: D.", "blank 1: C, blank 2: A, blank 3: D"),
    # Restating the options is no answer.
    ("The options are:\nblank 1: A. Emma; B. Hamlet\nblank 2: A. Jane Austen; B. William Shakespeare\n"
     "blank 3: A. Steventon; B. Stratford-upon-Avon", None),
    ("The answer options: blank 1: A. Emma, blank 2: A. Jane Austen, blank 3: A. Steventon", None),
    ("Blank 1 must be Hamlet.", None),
])
def test_parse_direct(answer, expected):
    assert kc.parse_direct(answer) == expected


def test_extraction_prefill_is_the_start_of_the_parsed_phrase():
    assert kc.EXTRACTION_PROMPT.endswith(
        '"The answers are: blank 1: <letter>, blank 2: <letter>, blank 3: <letter>", giving the letter of the '
        "option you chose for each blank.")
    assert kc.parse_conclusion(kc.EXTRACTION_PREFILL + " blank 1: C, blank 2: A, blank 3: B.") == (
        "blank 1: C, blank 2: A, blank 3: B")
