"""Reading JSON and JSON Lines data files, with errors that name the file and the line or record.

Not a dataset: the loaders of several dataset modules read their files through it, so a malformed
file reads the same way whichever task it belongs to.
"""
import json
from collections.abc import Iterator
from pathlib import Path


def json_lines(text: str, where: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of JSON Lines `text`, 1-based.

    Raises:
        ValueError: "{where}: line N: invalid JSON at column C: ..." or "{where}: line N: expected a
            JSON object, got list".
    """
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: line {line_no}: invalid JSON at column {e.colno}: {e.msg}") from e
        if not isinstance(record, dict):
            raise ValueError(f"{where}: line {line_no}: expected a JSON object, got {type(record).__name__}")
        yield line_no, record


def json_records(path: str | Path) -> list[tuple[str, dict]]:
    """The objects of a JSON array, or of JSON Lines whatever the extension, each with its location:
    "record N" (0-based) in an array, "line N" (1-based) in JSON Lines.

    Raises:
        ValueError: invalid JSON ("{path}: invalid JSON at line L, column C: ..." for an array, as
            `json_lines` for JSON Lines), or an element that is not an object ("{path}: record N:
            expected a JSON object, got str").
    """
    text = Path(path).read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return [(f"line {n}", record) for n, record in json_lines(text, str(path))]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    for k, record in enumerate(data):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {k}: expected a JSON object, got {type(record).__name__}")
    return [(f"record {k}", record) for k, record in enumerate(data)]
