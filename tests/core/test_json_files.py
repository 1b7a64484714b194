"""The shared JSON / JSON Lines reader: locations, blank lines, and errors that name file and line."""
import pytest

from wow_core.datasets.json_files import json_lines, json_records


def test_json_lines_skip_blank_lines_and_keep_line_numbers():
    text = '{"a": 1}\n\n   \n{"a": 2}\n'
    assert list(json_lines(text, "f.jsonl")) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\n{"a": ', r"^f\.jsonl: line 2: invalid JSON at column 7: "),
    ('{"a": 1}\n\n[1, 2]', r"^f\.jsonl: line 3: expected a JSON object, got list$"),
])
def test_json_lines_errors_name_where_and_line(text, message):
    with pytest.raises(ValueError, match=message):
        list(json_lines(text, "f.jsonl"))


def test_json_records_reads_arrays_and_lines_whatever_the_extension(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(' \n[{"x": 1}, {"x": 2}]', encoding="utf-8")
    assert json_records(array) == [("record 0", {"x": 1}), ("record 1", {"x": 2})]
    lines = tmp_path / "b.json"  # MedMCQA's release names its JSON Lines ".json"
    lines.write_text('{"x": 1}\n\n{"x": 2}\n', encoding="utf-8")
    assert json_records(lines) == [("line 1", {"x": 1}), ("line 3", {"x": 2})]


def test_json_records_errors_name_file_and_record(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"x": 1},\n {"x": }]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.json: invalid JSON at line 2, column 8: "):
        json_records(path)
    path.write_text('[{"x": 1}, "text"]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.json: record 1: expected a JSON object, got str$"):
        json_records(path)
