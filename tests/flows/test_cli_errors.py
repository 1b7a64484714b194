"""`wow validate` and `wow run` on bad data: one line naming file, record and field, exit status 2, and
no traceback unless `--debug` (issue 17: a malformed file printed three tracebacks, 182 lines, with the
message at the end). `wow validate` reads every local dataset file the config names, and `wow run` does
so before it starts a server, so a malformed file costs no flow run."""
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from flows.console import TracebackFree
from wow_core.datasets import multiple_choice

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
WOW = str(Path(sys.executable).parent / "wow")

SMALL = "\n".join(["name: {name}", "store: {store}", "datasets:", "  - {dataset}",
                   "sampling: {{n: 2, max_new_tokens: 4, extraction_max_new_tokens: 4}}",
                   "judge: {{methods: [length, consistency, logits]}}"])


def write_config(tmp_path: Path, dataset: str, name: str = "bad-data") -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(SMALL.format(name=name, store=tmp_path / "store", dataset=dataset))
    return config


@pytest.fixture
def bad_graphs(tmp_path) -> tuple[Path, Path]:
    """(config, data file): NLGraph shortest path records, the first without its 'difficulty'."""
    records = json.loads((DATA / "nlgraph_shortest_path_sample.json").read_text())
    del records["0"]["difficulty"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records, indent=1))
    dataset = f"{{name: nlgraph_shortest_path, source: file, path: {path}, n_questions: 2}}"
    return write_config(tmp_path, dataset), path


def wow(*args: str, tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no server configured
    environment.update(PREFECT_HOME=str(tmp_path / "prefect-home"), **env)
    return subprocess.run([WOW, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def test_validate_names_file_record_and_field_on_one_line(bad_graphs, tmp_path):
    config, path = bad_graphs
    done = wow("validate", str(config), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""  # no config printed as valid
    assert done.stderr.splitlines() == [f"wow: {path}: record '0', field 'difficulty': missing"]


def test_validate_debug_prints_the_traceback_then_the_line(bad_graphs, tmp_path):
    config, path = bad_graphs
    done = wow("validate", "--debug", str(config), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert "wow_core/datasets/nlgraph.py" in done.stderr  # where the loader found it
    assert done.stderr.splitlines()[-1] == f"wow: {path}: record '0', field 'difficulty': missing"


def test_run_stops_at_the_bad_file_before_any_server_starts(bad_graphs, tmp_path):
    config, path = bad_graphs
    done = wow("run", str(config), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"wow: {path}: record '0', field 'difficulty': missing"]
    assert not (tmp_path / "store").exists()  # nothing ran; no "starting a temporary Prefect server" either


def test_validate_accepts_the_sample_files(tmp_path, monkeypatch, capsys):
    # Checking reads every record but grades none: no embedding model, no Stockfish.
    monkeypatch.setattr(multiple_choice, "embedding_model", lambda: pytest.fail("validate loaded the embedding model"))
    monkeypatch.setenv("WOW_STOCKFISH", str(tmp_path / "no-stockfish"))
    for name, sample in [("medmcqa", "medmcqa_sample.jsonl"), ("chess_puzzles", "chess_puzzles_sample.csv"),
                         ("nlgraph_max_flow", "nlgraph_max_flow_sample.json")]:
        config = write_config(tmp_path, f"{{name: {name}, source: file, path: {DATA / sample}}}", name)
        assert main(["validate", str(config)]) == 0, capsys.readouterr().err
        assert f"path: {DATA / sample}" in capsys.readouterr().out


def test_validate_checks_rows_that_only_the_engine_would_otherwise_reach(tmp_path, monkeypatch, capsys):
    # The chess loader checks every row before it starts Stockfish (which validate never does).
    monkeypatch.setenv("WOW_STOCKFISH", str(tmp_path / "no-stockfish"))
    lines = (DATA / "chess_puzzles_sample.csv").read_text().splitlines()
    fields = lines[3].split(",")
    fields[3] = "high"  # Rating
    path = tmp_path / "puzzles.csv"
    path.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    config = write_config(tmp_path, f"{{name: chess_puzzles, source: file, path: {path}}}")
    assert main(["validate", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"wow: {path}: line 4, field 'Rating': "
                                                    "expected an integer, got 'high'"]


def test_console_formatter_drops_run_tracebacks_and_leaves_them_to_the_other_handlers():
    from prefect.logging.formatters import PrefectFormatter
    from prefect.logging.handlers import PrefectConsoleHandler

    console_out, api_out = io.StringIO(), io.StringIO()
    console = PrefectConsoleHandler(stream=console_out)
    console.setFormatter(TracebackFree(PrefectFormatter("%(levelname)s | %(name)s - %(message)s")))
    api = logging.StreamHandler(api_out)  # stands for Prefect's API handler: formats after the console
    logger = logging.getLogger("prefect.task_runs.wow-test")
    logger.propagate = False
    logger.handlers = [console, api]
    other = logging.getLogger("wow-test.library")
    other.propagate = False
    other.handlers = [console]
    try:
        try:
            raise ValueError("bad.json: record '0', field 'difficulty': missing")
        except ValueError:
            logger.exception("Task run failed - Retries are exhausted")
            other.exception("a library's own error")
    finally:
        logger.handlers, other.handlers = [], []
    assert "Traceback" in api_out.getvalue() and "field 'difficulty': missing" in api_out.getvalue()
    shown = console_out.getvalue().splitlines()
    assert shown[0] == "ERROR | prefect.task_runs.wow-test - Task run failed - Retries are exhausted"
    assert shown[1] == "ERROR | wow-test.library - a library's own error"  # other loggers keep theirs
    assert shown[2] == "Traceback (most recent call last):"


# A generated dataset asked for more questions than its bank holds: the check cannot see it (it loads no
# generator), so the error comes from the flow's questions task.
TOO_MANY = "{name: medmcqa, n_questions: 1000}"
TOO_MANY_LINE = ("wow: dataset 'medmcqa': `n` must be in 0..20 (the size of the medmcqa bank), got 1000; "
                 "for more questions load the public data (source = 'file').")


@pytest.mark.slow
def test_a_data_error_inside_the_flow_ends_the_run_with_one_line(tmp_path):
    config = write_config(tmp_path, TOO_MANY, "too-many")
    done = wow("run", str(config), tmp_path=tmp_path, timeout=300, WOW_STORE_RETRY_DELAYS="",
               PREFECT_LOGGING_LEVEL="INFO")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Task run failed with exception: DataError" in done.stderr  # Prefect's lines stay, without tracebacks
    lines = done.stderr.splitlines()
    assert lines[-1] == TOO_MANY_LINE and lines.count(TOO_MANY_LINE) == 1, done.stderr[-3000:]
    # The server keeps the task's traceback: the Prefect UI shows it in the run's logs.
    with sqlite3.connect(tmp_path / "prefect-home" / "prefect.db") as db:
        logged = [m for (m,) in db.execute("SELECT message FROM log WHERE name = 'prefect.task_runs'")]
    assert any(m.startswith("Task run failed with exception: DataError") and "Traceback" in m for m in logged), logged


@pytest.mark.slow
def test_debug_shows_the_tracebacks_of_a_data_error_inside_the_flow(tmp_path):
    config = write_config(tmp_path, TOO_MANY, "too-many")
    done = wow("run", "--debug", str(config), tmp_path=tmp_path, timeout=300, WOW_STORE_RETRY_DELAYS="")
    assert done.returncode == 2, done.stderr[-3000:]
    # The task's and the flow's (Prefect's logs) and the final error's, each chained to the loader's.
    assert done.stderr.count("Traceback (most recent call last):") == 6, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == TOO_MANY_LINE, done.stderr[-3000:]
