"""A real `prefect server start` for the tests that need one (with its own PREFECT_HOME)."""
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from s3_endpoint import free_port

BIN = Path(sys.executable).parent


def start_prefect_server(folder: Path, timeout: float = 120) -> tuple[str, dict, subprocess.Popen]:
    """(API URL, environment pointing at its home, the server process) of a server on a free port."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{api}/health", timeout=2)
            return api, env, proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((folder / "server.log").read_text()) from None
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"prefect server did not answer within {timeout:.0f} s")


def drain_prefect_clients() -> None:
    """Send what this process still queues for the server (events, logs) and stop those workers. Prefect
    keeps one events worker per process whatever PREFECT_API_URL says, with the URL it was started
    with: drained before that server stops, later tests' events do not go to a dead server (each
    then waits about a minute to fail)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    for worker in (EventsWorker, APILogWorker):
        worker.drain_all(timeout=60)


def run_artifacts(state) -> list:
    """The artifacts one flow run (its final state) left on the current Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
