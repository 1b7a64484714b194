"""HellaSwag: the release's JSON Lines and the Hub's Parquet read into the right gold letters, WikiHow
markup removed, malformed records named, the worked example."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wow_core.datasets import hellaswag
from wow_core.datasets import multiple_choice as mc

SAMPLE = Path(__file__).parent.parent / "data" / "hellaswag_sample.jsonl"


def sample_records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def write(tmp_path: Path, records: list[dict]) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return str(path)


def test_load_release_sample():
    qs = hellaswag.load_questions(str(SAMPLE))
    assert [q.id for q in qs] == ["hellaswag/hellaswag_sample/24", "hellaswag/hellaswag_sample/92",
                                  "hellaswag/hellaswag_sample/106"]
    assert [q.gold for q in qs] == ["B", "D", "A"]
    assert qs[0].meta["options"][1] == "starts pulling up roofing on a roof."
    assert qs[0].text == (
        'Instruction: Pick the correct completion for given context.\nContext: A man is sitting on a roof. he\n'
        'Options:\nA. "is using a bucket to paint the chimney purple."\nB. "starts pulling up roofing on a roof."\n'
        'C. "is ripping level tiles off the roof of a garden shed."\nD. "is holding a rubik\'s cube."')
    # WikiHow's markup is gone, as lm-evaluation-harness removes it.
    assert "Context: How to treat a sprained ankle. Rest the ankle.\n" in qs[2].text
    assert qs[2].meta["options"][0] == "Avoid walking on it for a day or two so that the swelling can go down."
    assert qs[1].meta["activity_label"] == "Clean and jerk"


def test_hub_parquet_with_string_labels_gives_the_same_questions(tmp_path):
    records = [{**r, "label": str(r["label"])} for r in sample_records()]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "hellaswag_sample.parquet")
    assert hellaswag.load_questions(str(tmp_path / "hellaswag_sample.parquet")) == hellaswag.load_questions(str(SAMPLE))


@pytest.mark.parametrize("text, expected", [
    ("[header] How to bake bread [title] Mix the flour.", "How to bake bread. Mix the flour."),
    ("[step] Knead the dough.", "Knead the dough."),
    ("A man is sitting on a roof. he", "A man is sitting on a roof. he"),
])
def test_preprocess(text, expected):
    assert hellaswag.preprocess(text) == expected


def test_sample_prompts_keep_the_endings_quoted():
    q = hellaswag.load_questions(str(SAMPLE))[0]
    for text, view in hellaswag.sample_prompts(q, 4, seed=0):
        shown = "ABCD"[view["order"].index(1)]
        assert f'{shown}. "starts pulling up roofing on a roof."' in text
        assert hellaswag.canonical_answer(q, view, shown) == "B"


def test_worked_example_is_in_the_docstring():
    item = hellaswag._DATASET.bank_items()[0]
    assert "\n".join("    " + line for line in hellaswag._DATASET.render(item).split("\n")) in hellaswag.__doc__
    q = mc.questions_from_items(hellaswag.NAME, "t", [item], hellaswag._DATASET.render)[0]
    assert q.gold == "A"
    assert [round(hellaswag.proxy(q, x), 2) for x in "BCD"] == [0.78, 0.12, 0.01]  # as the docstring says


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(label=""), r"field 'label': empty \(HellaSwag's test split has no labels\)"),
    (lambda r: r.update(label="two"), r"field 'label': expected an ending index such as '2', got 'two'"),
    (lambda r: r.update(label=4), r"field 'label': expected an option index 0\.\.3, got 4"),
    (lambda r: r.update(endings=r["endings"][:3]), r"field 'endings': expected 4 options, got 3"),
    (lambda r: r.pop("ctx"), r"field 'ctx': missing"),
    (lambda r: r.update(ind=24), r"id '24' is already used by line 1"),
])
def test_malformed_records_name_file_line_and_field(tmp_path, edit, message):
    records = sample_records()
    edit(records[1])
    with pytest.raises(ValueError, match=r"data\.jsonl: line 2(, |: )" + message):
        hellaswag.load_questions(write(tmp_path, records))
