"""MedMCQA: the Hub's schema read into the right gold letters, malformed records named, the worked example."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wow_core.datasets import medmcqa
from wow_core.datasets import multiple_choice as mc

SAMPLE = Path(__file__).parent.parent / "data" / "medmcqa_sample.jsonl"


def sample_records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_load_sample():
    qs = medmcqa.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == ["medmcqa/medmcqa_sample/s-01", "medmcqa/medmcqa_sample/s-02",
                                  "medmcqa/medmcqa_sample/s-03"]
    assert [q.gold for q in qs] == ["C", "A", "D"]  # cop 2, 0, 3
    assert [q.meta["options"][q.meta["gold_index"]] for q in qs] == ["Parotid gland", "Ethosuximide", "10 to 21"]
    assert qs[0].meta["subject_name"] == "Anatomy" and qs[1].meta["topic_name"] == "Antiepileptics"
    assert qs[2].text == ("Question: Normal intraocular pressure, in mm Hg, is:\nOptions:\n"
                          "A. 2 to 5\nB. 30 to 45\nC. 50 to 60\nD. 10 to 21")
    for q in qs:
        assert medmcqa.proxy(q, q.gold) == 1.0 and medmcqa.is_correct(q, q.gold)
        assert all(0.0 <= medmcqa.proxy(q, x) < 1.0 for x in "ABCD" if x != q.gold)
    assert medmcqa.load_questions(str(SAMPLE), limit=1) == qs[:1]


def test_parquet_and_json_array_give_the_same_questions(tmp_path):
    records = sample_records()
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "medmcqa_sample.parquet")
    (tmp_path / "medmcqa_sample.json").write_text(json.dumps(records, indent=2))
    expected = medmcqa.load_questions(str(SAMPLE))
    assert medmcqa.load_questions(str(tmp_path / "medmcqa_sample.parquet")) == expected
    assert medmcqa.load_questions(str(tmp_path / "medmcqa_sample.json")) == expected


def test_worked_example_is_in_the_docstring():
    item = medmcqa._DATASET.bank_items()[0]
    assert "\n".join("    " + line for line in medmcqa._DATASET.render(item).split("\n")) in medmcqa.__doc__
    q = mc.questions_from_items(medmcqa.NAME, "t", [item], medmcqa._DATASET.render)[0]
    assert q.gold == "A"
    assert [round(medmcqa.proxy(q, x), 2) for x in "BCD"] == [0.60, 0.50, 0.58]  # as the docstring says


def write(tmp_path: Path, records: list[dict], name: str = "data.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("opc"), r"line 2, field 'opc': missing"),
    (lambda r: r.update(opb=""), r"line 2, field 'opb': empty"),
    (lambda r: r.update(cop=4), r"line 2, field 'cop': 4 is past the last option index 3; the original release "
                                r"counts 1-4, the Hub's schema 0-3: subtract 1 from every cop"),
    (lambda r: r.update(cop=-1), r"line 2, field 'cop': -1 means no answer \(MedMCQA's test split has none\)"),
    (lambda r: r.update(cop=7), r"line 2, field 'cop': expected an option index 0\.\.3, got 7"),
    (lambda r: r.update(cop="2"), r"line 2, field 'cop': expected an integer, got str '2'"),
    (lambda r: r.update(question=None), r"line 2, field 'question': missing"),
    (lambda r: r.update(id="s-01"), r"line 2: id 's-01' is already used by line 1"),
])
def test_malformed_records_name_file_line_and_field(tmp_path, edit, message):
    records = sample_records()
    edit(records[1])
    with pytest.raises(ValueError, match=r"data\.jsonl: " + message):
        medmcqa.load_questions(write(tmp_path, records))


def test_malformed_parquet_record_is_named_by_index(tmp_path):
    records = sample_records()
    records[2]["cop"] = 5
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "data.parquet")
    with pytest.raises(ValueError, match=r"data\.parquet: record 2, field 'cop': "
                                         r"expected an option index 0\.\.3, got 5"):
        medmcqa.load_questions(str(tmp_path / "data.parquet"))
