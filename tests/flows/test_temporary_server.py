"""`wow run` with no server configured: the temporary server it starts has recorded every task run of
every run when the command returns, and nothing is logged as an error. Task states reach the server as
events that it writes in the background; on the demo's cached rerun 88 of 120 were still unwritten when
the flow returned, and stopping the server then cancelled the writes with a traceback each."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Many small tasks: one question under each of 10 labels, six tasks each, no judge model.
CONFIG = "\n".join(["name: many-tasks", "store: {store}", "datasets:"]
                   + [f"  - {{name: nlgraph_shortest_path, label: sp{i}, n_questions: 1, seed: {i}}}"
                      for i in range(10)]
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
        assert "wow: starting a temporary Prefect server at http://127.0.0.1:" in run.stderr
        assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr, (attempt, run.stderr[-3000:])
        # Nothing talked to a server of Prefect's own (the run's progress, updated from the task runner's
        # threads, did until the temporary server was the process-wide setting too), and the reports print.
        assert "Starting temporary server" not in run.stderr, run.stderr[-3000:]
        assert "elicitation report: " in run.stdout
    with sqlite3.connect(home / "prefect.db") as db:
        states = db.execute("SELECT f.created, t.state_name, count(*) FROM task_run t JOIN flow_run f "
                            "ON f.id = t.flow_run_id GROUP BY f.id, t.state_name ORDER BY f.created").fetchall()
    # Per label: questions, one shard, its join and three self-signal pair tables; then the report.
    # (Without waiting, the cached rerun's record at 20 labels stopped at 34 of 121, most of them Pending.)
    assert [(name, n) for _, name, n in states] == [("Completed", 61), ("Cached", 61)]
    # The run's progress artifact: every one of the 10 sample shards done, on this server.
    with sqlite3.connect(home / "prefect.db") as db:
        progress = db.execute("SELECT a.data, a.description FROM artifact a JOIN flow_run f ON f.id = a.flow_run_id "
                              "WHERE a.type = 'progress' AND a.task_run_id IS NULL ORDER BY f.created").fetchall()
    assert progress == [(100, "Model-bound units done: sample 10 of 10")] * 2, progress


def test_kill_9_of_wow_run_leaves_no_server_behind(tmp_path):
    # Prefect's own temporary server outlived a killed `wow run`, holding its port and memory.
    config = tmp_path / "many.yaml"
    config.write_text(CONFIG.replace("{store}", str(tmp_path / "store")))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    run = subprocess.Popen([str(BIN / "wow"), "run", str(config)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    url = re.search(r"temporary Prefect server at (http://\S+)", run.stderr.readline()).group(1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        pytest.fail("the temporary server did not answer in 120 s")
    time.sleep(3)  # the flow run has begun
    servers = subprocess.run(["pgrep", "-f", f"prefect server start --host 127.0.0.1 --port {url.rsplit(':', 1)[1]}"],
                             capture_output=True, text=True).stdout.split()
    assert servers
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in servers):
        time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in servers), "the server outlived wow run"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/api/health", timeout=2)
