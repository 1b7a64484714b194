import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from s3_endpoint import free_port

from flows.task_runs import recorded_task_runs

BIN = Path(sys.executable).parent


def _task_states(state, settle_s: float = 60) -> dict[str, list[str]]:
    """Task name -> state names of one flow run, as the server has recorded them once it has caught up
    (flows/task_runs.py: states arrive as events it writes in the background)."""
    out: dict[str, list[str]] = {}
    for r in recorded_task_runs(state.state_details.flow_run_id, settle_s):
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return out


@pytest.fixture
def task_states():
    return _task_states


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start` on a free port with its own PREFECT_HOME: (api URL, environment)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{api}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("prefect server did not answer within 120 s")
    yield api, env
    proc.terminate()
    proc.wait(timeout=30)
