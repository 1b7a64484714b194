"""`wow run` with no server configured: the temporary server it starts has recorded every task run of
every run when the command returns, and nothing is logged as an error. Task states reach the server as
events that it writes in the background; on the demo's cached rerun 88 of 120 were still unwritten when
the flow returned, and stopping the server then cancelled the writes with a traceback each."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Many small tasks: one question under each of 20 labels, six tasks each, no judge model.
CONFIG = "\n".join(["name: many-tasks", "store: {store}", "datasets:"]
                   + [f"  - {{name: nlgraph_shortest_path, label: sp{i}, n_questions: 1, seed: {i}}}" for i in range(20)]
                   + ["sampling: {n: 2, max_new_tokens: 4, extraction_max_new_tokens: 4}",
                      "judge: {methods: [length, consistency, logits]}"])


def test_every_task_run_is_recorded_before_the_temporary_server_stops(tmp_path):
    config = tmp_path / "many.yaml"
    config.write_text(CONFIG.replace("{store}", str(tmp_path / "store")))
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}
    for attempt in ("first", "cached"):
        run = subprocess.run([str(BIN / "wow"), "run", str(config)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Starting temporary server" in run.stderr
        assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr, (attempt, run.stderr[-3000:])
    with sqlite3.connect(home / "prefect.db") as db:
        states = db.execute("SELECT f.created, t.state_name, count(*) FROM task_run t JOIN flow_run f "
                            "ON f.id = t.flow_run_id GROUP BY f.id, t.state_name ORDER BY f.created").fetchall()
    # Per label: questions, one shard, its join and three self-signal pair tables; then the report.
    # (Without waiting, the cached rerun's record here stopped at 34 of 121, most of them Pending.)
    assert [(name, n) for _, name, n in states] == [("Completed", 121), ("Cached", 121)]
