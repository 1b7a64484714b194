"""Shared multiple-choice parts: the embedding proxy on the real packaged model, the scorer hook,
letter parsing, per-sample option orders and file reading errors."""
import json
import random

import numpy as np
import pytest

from wow_core.datasets import com2, hellaswag, medmcqa, mmlu_pro
from wow_core.datasets import multiple_choice as mc
from wow_core.records import Question

# A gold option and wrong options from nearly the same statement down to an unrelated one.
LADDER = mc.Item(
    id="ladder",
    context="What does the heart do?",
    options=(
        "The heart pumps blood through the body.",       # gold
        "The heart circulates blood around the body.",   # paraphrase
        "The lungs supply oxygen to the blood.",         # same system, another organ
        "Bones give the body its structure.",            # the body, another system
        "The stock market closed higher on Friday.",     # unrelated
    ),
    gold=0,
)


def question_of(item: mc.Item, scorer: str = mc.DEFAULT_SCORER) -> Question:
    return mc.questions_from_items("test", "t", [item], lambda it: mc.render_options(it.options), scorer)[0]


# A scorer reached through an import path, as a config would name it: fixed raw values per option.
RAW_SCORES = [0.3, -0.4, 1.7, 1.0, 0.999]


def fixed_scorer(items: list[mc.Item]) -> list[list[float]]:
    return [RAW_SCORES[:len(item.options)] for item in items]


def wrong_shape_scorer(items: list[mc.Item]) -> list[list[float]]:
    return [[0.5] for _ in items]


def nan_scorer(items: list[mc.Item]) -> list[list[float]]:
    return [[float("nan")] * len(item.options) for item in items]


# ---------------------------------------------------------------------------------------------------
# The embedding proxy


def test_model_is_loaded_once_per_process():
    assert mc.embedding_model() is mc.embedding_model()


def test_ladder_of_wrong_options_is_ordered():
    q = question_of(LADDER)
    proxies = [mc.proxy(q, letter) for letter in "ABCDE"]
    assert proxies[0] == 1.0 and q.gold == "A" and mc.is_correct(q, "A")
    assert proxies == sorted(proxies, reverse=True) and len(set(proxies)) == 5
    assert all(0.0 <= p < 1.0 for p in proxies[1:])
    # Measured with all-MiniLM-L6-v2: 0.863, 0.554, 0.340, 0.001.
    assert proxies[1:] == pytest.approx([0.863, 0.554, 0.340, 0.001], abs=0.01)


def test_cosine_matches_numpy_on_raw_embeddings():
    # The model's own pipeline ends in mean pooling and L2 normalisation; here both are redone with
    # numpy from the transformer's raw token embeddings (same batch: the sorted distinct texts).
    texts = sorted(set(LADDER.options))
    tokens = mc.embedding_model().encode(texts, output_value="token_embeddings")
    pooled = [t.numpy().mean(axis=0) for t in tokens]
    gold, lungs = pooled[texts.index(LADDER.options[0])], pooled[texts.index(LADDER.options[2])]
    assert abs(np.linalg.norm(gold) - 1.0) > 0.1  # really unnormalised
    cosine = float(gold @ lungs / (np.linalg.norm(gold) * np.linalg.norm(lungs)))
    assert mc.proxy(question_of(LADDER), "C") == pytest.approx(cosine, abs=1e-6)
    assert cosine == pytest.approx(0.554, abs=0.01)


def test_proxies_do_not_depend_on_option_order():
    q = question_of(LADDER)
    shuffled = question_of(LADDER.shuffled(random.Random(3)))
    assert shuffled.meta["options"] != q.meta["options"]
    by_text = dict(zip(q.meta["options"], q.meta["option_proxies"]))
    assert dict(zip(shuffled.meta["options"], shuffled.meta["option_proxies"])) == by_text
    assert shuffled.meta["options"][shuffled.meta["gold_index"]] == LADDER.options[0]


def test_unrelated_option_is_clipped_to_zero_and_meta_is_json():
    item = mc.Item(id="x", context="?", options=("Paris", "The stock market closed higher on Friday."), gold=0)
    q = question_of(item)
    assert q.meta["option_proxies"][1] >= 0.0
    assert json.loads(json.dumps(q.meta)) == q.meta


# ---------------------------------------------------------------------------------------------------
# The scorer hook


def test_scorer_by_import_path_is_clipped_and_gold_is_exactly_one():
    item = mc.Item(id="x", context="?", options=("a", "b", "c", "d", "e"), gold=3)
    q = question_of(item, scorer=f"{__name__}:fixed_scorer")
    assert q.meta["scorer"] == f"{__name__}:fixed_scorer"
    # raw 0.3, -0.4, 1.7, (gold), 0.999 -> 0.3, 0 (clipped), just under 1 (a wrong option), 1, 0.999
    assert q.meta["option_proxies"] == [0.3, 0.0, mc.WRONG_MAX, 1.0, 0.999]
    assert mc.WRONG_MAX < 1.0 and not mc.is_correct(q, "C") and mc.is_correct(q, "D")


def test_registered_scorer_names():
    assert mc.get_option_scorer("embedding") is mc.embedding_scorer
    with pytest.raises(ValueError, match=r"Unknown option scorer 'embeding'\. Did you mean: embedding\? "
                                         r"Available: embedding, or an import path"):
        mc.get_option_scorer("embeding")
    with pytest.raises(ValueError, match=r"`scorer` 'no_such_module:f' does not resolve"):
        mc.get_option_scorer("no_such_module:f")
    with pytest.raises(ValueError, match=r"does not resolve"):
        mc.get_option_scorer(f"{__name__}:no_such_function")


@pytest.mark.parametrize("scorer, message", [
    ("wrong_shape_scorer", r"must return 2 finite numbers for question 'x', got \[0\.5\]"),
    ("nan_scorer", r"must return 2 finite numbers for question 'x', got \[nan, nan\]"),
])
def test_scorer_output_is_checked(scorer, message):
    item = mc.Item(id="x", context="?", options=("a", "b"), gold=0)
    with pytest.raises(ValueError, match=message):
        question_of(item, scorer=f"{__name__}:{scorer}")


# ---------------------------------------------------------------------------------------------------
# Letters: parsing, proxy arguments, per-sample orders


@pytest.mark.parametrize("text, expected", [
    ("The answer is B.", "B"),
    ("The answer is (C) Parotid gland", "C"),
    ("The answer is **D**", "D"),
    ("The answer is: option A.", "A"),
    ("The answer is A.", "A"),
    ("The answer is I", None),  # past D
    ("The answer is B. Wait, the answer is C", "C"),  # the last one counts
    ("The correct answer is D", "D"),
    ("The answer is A bit unclear", None),  # "A" is a word here
    ("The answer is b", None),  # lowercase: could be anything
    ("The answer is B or C", None),  # a hedge names no option
    ("The answer is B/C", None),
    ("The answer is (B), (C)", None),
    ("The answer is B, because it is larger", "B"),
    ("The answer is X, where X is the letter", None),
    ("The answer is not clear.", None),
    ("", None),
])
def test_parse_conclusion(text, expected):
    assert mc.parse_conclusion(text, "ABCD") == expected


def test_parse_conclusion_with_ten_letters():
    assert mc.parse_conclusion("The answer is J.", mc.LETTERS) == "J"
    assert mc.parse_conclusion("The answer is I.", mc.LETTERS) == "I"
    assert mc.parse_conclusion("The answer is I think E", mc.LETTERS) is None  # "I" is a word here


@pytest.mark.parametrize("answer, expected", [
    ("Analysis: ...\nFinal Answer: C", "C"),  # the paper's MMLU format
    ("So the correct option is (D).", "D"),
    ("Option B is correct.", "B"),
    ("Option B is the best.", "B"),
    ("The answer is A. Then again, Option C is correct.", "C"),
    ("Options A and B are both plausible.", None),
    ("I would pick B.", None),  # no stated answer phrase
    ("The option is to rest.", None),
])
def test_parse_direct(answer, expected):
    assert mc.parse_direct(answer, "ABCD") == expected


def test_proxy_and_is_correct_take_only_the_questions_letters():
    q = question_of(mc.Item(id="x", context="?", options=("a", "b", "c"), gold=1), scorer=f"{__name__}:fixed_scorer")
    assert mc.proxy(q, "A") == 0.3 and mc.proxy(q, "B") == 1.0 and mc.proxy(q, "C") == mc.WRONG_MAX
    for bad in ["D", "J", "b", "", "AB", None]:
        with pytest.raises(ValueError, match=r"`answer` must be an option letter of the question \(A-C\)"):
            mc.proxy(q, bad)
        with pytest.raises(ValueError, match=r"`answer`"):
            mc.is_correct(q, bad)


def test_sample_prompts_map_back_to_the_questions_letters():
    q = question_of(LADDER)
    prompts = mc.sample_prompts(q, 8, seed=1)
    assert prompts == mc.sample_prompts(q, 8, seed=1) and prompts != mc.sample_prompts(q, 8, seed=2)
    head = q.text[:q.text.index("A. ")]
    for text, view in prompts:
        assert sorted(view["order"]) == [0, 1, 2, 3, 4] and text.startswith(head)
        shown_gold = "ABCDE"[view["order"].index(q.meta["gold_index"])]
        assert f"{shown_gold}. {LADDER.options[0]}" in text
        assert mc.canonical_answer(q, view, shown_gold) == q.gold
        # Every shown letter names the option shown beside it.
        for k, letter in enumerate("ABCDE"):
            named = q.meta["options"]["ABCDE".index(mc.canonical_answer(q, view, letter))]
            assert f"{letter}. {named}" in text.split("\n")[k]
    assert len({json.dumps(view) for _, view in prompts}) > 1


def test_canonical_answer_of_a_letter_past_the_options_is_none():
    q = question_of(LADDER)
    assert mc.canonical_answer(q, {}, "C") == "C"
    assert mc.canonical_answer(q, {}, "F") is None
    assert mc.canonical_answer(q, {"order": [4, 3, 2, 1, 0]}, "E") == "A"
    assert mc.canonical_answer(q, {"order": [4, 3, 2, 1, 0]}, "J") is None


# ---------------------------------------------------------------------------------------------------
# Files and the bank


def parse_plain(record: dict, where: str, position: int) -> mc.Item:
    options = mc.options_field(record, where, "options", 2, 4)
    return mc.Item(id=mc.text_field(record, where, "id"), context=mc.text_field(record, where, "q"),
                   options=options,
                   gold=mc.gold_index(where, "gold", mc.int_field(record, where, "gold"), len(options)))


def test_read_records_names_lines_of_json_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1}\n\n'
                    '{"id": "b", "q": "?", "options": ["x", "y", "z"], "gold": 2}\n')
    assert [where for where, _ in mc.read_records(str(path))] == ["line 1", "line 3"]
    items = mc.load_items(str(path), parse_plain)
    assert [(i.id, i.options, i.gold) for i in items] == [("a", ("x", "y"), 1), ("b", ("x", "y", "z"), 2)]


@pytest.mark.parametrize("content, message", [
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1}\n{"id": "b", "q": "?", "options": ["x"], "gold": 0',
     r"d\.jsonl: line 2: invalid JSON at column \d+"),
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1}\n'
     '{"id": "b", "q": "?", "options": ["x", "y"], "gold": "1"}',
     r"d\.jsonl: line 2, field 'gold': expected an integer, got str '1'"),
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1}\n["not", "an", "object"]',
     r"d\.jsonl: line 2: expected a JSON object, got list"),
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1}\n{"id": "a", "q": "?", "options": ["x", "y"], "gold": 0}',
     r"d\.jsonl: line 2: id 'a' is already used by line 1"),
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": 2}',
     r"d\.jsonl: line 1, field 'gold': expected an option index 0\.\.1, got 2"),
    ('{"id": "a", "q": "?", "options": ["x", "  "], "gold": 0}',
     r"d\.jsonl: line 1, field 'options': option 1 is empty"),
    ('{"id": "a", "options": ["x", "y"], "gold": 0}', r"d\.jsonl: line 1, field 'q': missing"),
    ('{"id": "a", "q": 7, "options": ["x", "y"], "gold": 0}',
     r"d\.jsonl: line 1, field 'q': expected a string, got int 7"),
    ('{"id": "a", "q": "?", "options": ["x", "y"], "gold": true}',
     r"d\.jsonl: line 1, field 'gold': expected an integer, got bool True"),
])
def test_malformed_json_lines_name_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        mc.load_items(str(path), parse_plain)


def test_json_array_files_name_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"id": "a", "q": "?", "options": ["x", "y"], "gold": 1},
                                {"id": "b", "q": "?", "options": ["x", "y"], "gold": 5}], indent=1))
    with pytest.raises(ValueError, match=r"d\.json: record 1, field 'gold': expected an option index 0\.\.1, got 5"):
        mc.load_items(str(path), parse_plain)
    path.write_text('[{"id": "a",\n "q": }]')
    with pytest.raises(ValueError, match=r"d\.json: invalid JSON at line 2, column \d+"):
        mc.load_items(str(path), parse_plain)


def test_unreadable_paths(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must end in \.json, \.jsonl, \.csv, \.parquet, got '.*d\.txt'"):
        mc.read_records(str(tmp_path / "d.txt"))
    with pytest.raises(ValueError, match=r"`path`: no such file '.*missing\.jsonl'"):
        mc.read_records(str(tmp_path / "missing.jsonl"))


def test_bank_draws_without_repeats_and_checks_arguments():
    bank = [mc.Item(id=f"b{k}", context=f"q{k}?", options=(f"right {k}", f"wrong {k}"), gold=0) for k in range(3)]
    render = lambda item: mc.render_options(item.options)  # noqa: E731
    qs = mc.questions_from_bank("test", bank, 3, 7, "default", {"default": None}, render, f"{__name__}:fixed_scorer")
    assert sorted(q.meta["bank_id"] for q in qs) == ["b0", "b1", "b2"]
    assert [q.id for q in qs] == ["test/default/7/0", "test/default/7/1", "test/default/7/2"]
    assert all(q.meta["options"][q.meta["gold_index"]].startswith("right") for q in qs)
    with pytest.raises(ValueError, match=r"`n` must be in 0\.\.3 \(the size of the test bank\), got 4"):
        mc.questions_from_bank("test", bank, 4, 7, "default", {"default": None}, render)
    with pytest.raises(ValueError, match=r"`difficulty` must be one of \['default'\], got 'hard'"):
        mc.questions_from_bank("test", bank, 1, 7, "hard", {"default": None}, render)


# ---------------------------------------------------------------------------------------------------
# What the four datasets share: their banks and their extraction turn


@pytest.mark.parametrize("ds", [medmcqa, mmlu_pro, hellaswag, com2], ids=lambda ds: ds.NAME)
def test_whole_bank_generates_with_gold_options_kept(ds):
    qs = ds.generate_questions(len(ds.BANK), seed=4)
    assert len({q.meta["bank_id"] for q in qs}) == len(ds.BANK) == 20
    assert [q.id for q in qs] == [f"{ds.NAME}/default/4/{k}" for k in range(20)]
    bank_gold = {item.id: item.options[item.gold] for item in ds._DATASET.bank_items()}
    for q in qs:
        assert q.meta["options"][q.meta["gold_index"]] == bank_gold[q.meta["bank_id"]]
        assert ds.proxy(q, q.gold) == 1.0 and all(0.0 <= p < 1.0 for i, p in enumerate(q.meta["option_proxies"])
                                                  if i != q.meta["gold_index"])
        assert q.text.endswith(q.meta["options"][-1] + ('"' if ds is hellaswag else ""))
    # The seed moves the correct option around.
    assert len({q.gold for q in qs}) >= 3
    assert [q.gold for q in qs] != [q.gold for q in ds.generate_questions(20, seed=5)]
    with pytest.raises(ValueError, match=r"`n` must be in 0\.\.20"):
        ds.generate_questions(21, seed=4)
    with pytest.raises(ValueError, match=r"`difficulty` must be one of \['default'\]"):
        ds.generate_questions(1, seed=4, difficulty="easy")


@pytest.mark.parametrize("ds", [medmcqa, mmlu_pro, hellaswag, com2], ids=lambda ds: ds.NAME)
def test_extraction_prefill_is_the_start_of_the_parsed_phrase(ds):
    assert ds.EXTRACTION_PROMPT.endswith('"The answer is X", where X is the letter of that option.')
    assert ds.parse_conclusion(ds.EXTRACTION_PREFILL + " C.") == "C"
    assert ds.parse_conclusion(ds.EXTRACTION_PREFILL + " X, where X is the letter of that option.") is None
    assert ds.parse_direct("Answer: B") == "B"
