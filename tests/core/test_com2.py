"""COM2: its released CSV read into the right gold letters (none option dropped, its records skipped),
malformed records named, the worked example."""
import csv
import json
from pathlib import Path

import pytest

from wow_core.datasets import com2
from wow_core.datasets import multiple_choice as mc

SAMPLE = Path(__file__).parent.parent / "data" / "com2_sample.csv"


def sample_rows() -> list[dict]:
    with SAMPLE.open(newline="") as f:
        return list(csv.DictReader(f))


def write(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "data.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_load_sample():
    qs = com2.load_questions(str(SAMPLE))
    # Record 3 is answered by "None of the answers are correct." (label 4): skipped, as in the paper.
    assert [q.id for q in qs] == ["com2/com2_sample/0", "com2/com2_sample/1", "com2/com2_sample/2"]
    assert [q.gold for q in qs] == ["C", "A", "D"]
    assert [q.meta["options"][q.meta["gold_index"]] for q in qs] == [
        "Ravi packs a sleeping bag", "Lena feels proud", "Ali is dishonest"]
    assert all(len(q.meta["options"]) == 4 and com2.NONE_OPTION not in q.text for q in qs)
    assert [q.meta["type"] for q in qs] == ["2i", "2i", "3i"]
    assert qs[1].text == (
        f"Instruction: {com2.INSTRUCTION}\nContext: Lena wins the race and Lena breaks the record\n"
        "Question: What event or state is both the effect on Lena after Lena wins the race and also the effect on "
        "Lena after Lena breaks the record?\nOptions:\nA. Lena feels proud\nB. Lena feels disappointed\n"
        "C. Lena buys a bicycle\nD. The bus is late.")
    # The antonym is close in embedding space: relatedness, not rightness.
    assert com2.proxy(qs[2], "C") > com2.proxy(qs[2], "A") > com2.proxy(qs[2], "B")


def test_json_lines_with_option_lists_give_the_same_questions(tmp_path):
    records = [{**row, "options": json.loads(row["options"]), "label": int(row["label"])} for row in sample_rows()]
    path = tmp_path / "com2_sample.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    assert com2.load_questions(str(path)) == com2.load_questions(str(SAMPLE))


def test_worked_example_is_in_the_docstring():
    item = com2._DATASET.bank_items()[0]
    assert "\n".join("    " + line for line in com2._DATASET.render(item).split("\n")) in com2.__doc__
    q = mc.questions_from_items(com2.NAME, "t", [item], com2._DATASET.render)[0]
    assert q.gold == "A"
    assert [round(com2.proxy(q, x), 2) for x in "BCD"] == [0.60, 0.58, 0.14]  # as the docstring says


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(label="5"), r"field 'label': expected an option index 0\.\.4, got 5"),
    (lambda r: r.update(label=""), r"field 'label': missing"),
    (lambda r: r.update(options='["a", "b"'), r"field 'options': not a list literal"),
    (lambda r: r.update(options='["a", "b", "c"]'), r"field 'options': expected 4 to 5 options, got 3"),
    (lambda r: r.update(options='["a", "b", "c", "d", "e"]'),
     r"field 'options': a fifth option must be 'None of the answers are correct\.', got 'e'"),
    (lambda r: r.update(question=""), r"field 'question': missing"),
])
def test_malformed_rows_name_file_record_and_field(tmp_path, edit, message):
    rows = sample_rows()
    edit(rows[1])
    with pytest.raises(ValueError, match=r"data\.csv: record 1, " + message):
        com2.load_questions(write(tmp_path, rows))


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "context"} for row in sample_rows()]
    with pytest.raises(ValueError, match=r"data\.csv: record 0, field 'context': missing"):
        com2.load_questions(write(tmp_path, rows))
