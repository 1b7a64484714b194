"""MMLU-Pro: the Hub's schema (up to ten options) read into the right gold letters, malformed records
named, letters past a question's options refused, the worked example."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wow_core.datasets import mmlu_pro
from wow_core.datasets import multiple_choice as mc

SAMPLE = Path(__file__).parent.parent / "data" / "mmlu_pro_sample.jsonl"


def sample_records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def write(tmp_path: Path, records: list[dict]) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return str(path)


def test_load_sample():
    qs = mmlu_pro.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == ["mmlu_pro/mmlu_pro_sample/70", "mmlu_pro/mmlu_pro_sample/71",
                                  "mmlu_pro/mmlu_pro_sample/72"]
    assert [q.gold for q in qs] == ["D", "B", "I"]
    assert [q.meta["options"][q.meta["gold_index"]] for q in qs] == ["1024", "Nitrogen", "Mercury"]
    assert [len(q.meta["options"]) for q in qs] == [10, 4, 9]
    assert [q.meta["category"] for q in qs] == ["math", "other", "physics"]
    assert qs[1].text == ("Question: Which gas makes up most of Earth's atmosphere?\nOptions:\n"
                          "A. Oxygen\nB. Nitrogen\nC. Carbon dioxide\nD. Argon")
    assert qs[0].text.endswith("\nJ. 10240")


def test_parquet_gives_the_same_questions(tmp_path):
    pq.write_table(pa.Table.from_pylist(sample_records()), tmp_path / "mmlu_pro_sample.parquet")
    assert mmlu_pro.load_questions(str(tmp_path / "mmlu_pro_sample.parquet")) == mmlu_pro.load_questions(str(SAMPLE))


def test_letters_past_a_short_question_name_no_option():
    q = mmlu_pro.load_questions(str(SAMPLE))[1]  # four options
    assert mmlu_pro.parse_conclusion("The answer is G.") == "G"  # a letter of MMLU-Pro ...
    assert mmlu_pro.canonical_answer(q, {}, "G") is None  # ... but of no option of this question
    assert mmlu_pro.canonical_answer(q, {"order": [1, 0, 2, 3]}, "A") == "B" == q.gold
    with pytest.raises(ValueError, match=r"`answer` must be an option letter of the question \(A-D\), got 'G'"):
        mmlu_pro.proxy(q, "G")


def test_worked_example_is_in_the_docstring():
    item = mmlu_pro._DATASET.bank_items()[1]
    assert "\n".join("    " + line for line in mmlu_pro._DATASET.render(item).split("\n")) in mmlu_pro.__doc__
    q = mc.questions_from_items(mmlu_pro.NAME, "t", [item], mmlu_pro._DATASET.render)[0]
    assert q.gold == "A"
    assert [round(mmlu_pro.proxy(q, x), 2) for x in "DBE"] == [0.85, 0.94, 0.77]  # as the docstring says


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(answer="C"), r"field 'answer': 'C' disagrees with answer_index 1 \('B'\)"),
    (lambda r: r.update(answer_index=4), r"field 'answer_index': expected an option index 0\.\.3, got 4"),
    (lambda r: r.update(options=r["options"] * 3), r"field 'options': expected 2 to 10 options, got 12"),
    (lambda r: r.update(options="Oxygen, Nitrogen"), r"field 'options': expected a list of strings"),
    (lambda r: r.update(options=["Oxygen", 2, "Argon"]), r"field 'options': expected a list of strings"),
    (lambda r: r.pop("question_id"), r"field 'question_id': missing"),
    (lambda r: r.update(question_id="71"), r"field 'question_id': expected an integer, got str '71'"),
])
def test_malformed_records_name_file_line_and_field(tmp_path, edit, message):
    records = sample_records()
    edit(records[1])
    with pytest.raises(ValueError, match=r"data\.jsonl: line 2, " + message):
        mmlu_pro.load_questions(write(tmp_path, records))
