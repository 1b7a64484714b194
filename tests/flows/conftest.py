import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from s3_endpoint import free_port
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter

BIN = Path(sys.executable).parent


def _task_states(state, settle_s: float = 60) -> dict[str, list[str]]:
    """Task name -> state names of one flow run, read back from the Prefect API.

    Task runs report their states to the server as events, which it writes in the background: right
    after the flow returns, a busy server can still show some as Pending or Running. Read again until
    every task run is in a final state (or `settle_s` has passed)."""
    deadline = time.monotonic() + settle_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [state.state_details.flow_run_id]}))
            if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                break
            time.sleep(1)
    out: dict[str, list[str]] = {}
    for r in runs:
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
