"""The `wow` command against a running `prefect server start` (not the temporary one): the flow run
is recorded by that server and its report is printed."""
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY = """\
name: tiny-server
store: {store}
datasets:
  - name: nlgraph_shortest_path
    n_questions: 1
    seed: 5
sampling: {{n: 3, max_new_tokens: 16, extraction_max_new_tokens: 8}}
judge: {{methods: [length, logits, pairwise], max_new_tokens: 8, max_pairs_per_question: 1}}
"""


def test_run_against_running_server(tmp_path, prefect_server):
    api, env = prefect_server
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(store=tmp_path / "store"))
    run = subprocess.run([str(BIN / "wow"), "run", str(config)], cwd=ROOT,
                         env={**env, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "INFO"},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "# AccWoW report: tiny-server" in run.stdout and "report: " in run.stdout
    assert "Beginning flow run" in run.stderr and "Starting temporary server" not in run.stderr
    # The server recorded the completed flow run.
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"})
    runs = json.load(urllib.request.urlopen(req, timeout=10))
    assert [(r["name"] != "", r["state_type"]) for r in runs] == [(True, "COMPLETED")]
