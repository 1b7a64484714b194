"""Real servers for the tests that need them: `prefect server start` (with its own PREFECT_HOME, on SQLite
or on PostgreSQL) and a throwaway PostgreSQL cluster."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from s3_endpoint import free_port, stop_process

BIN = Path(sys.executable).parent


def start_prefect_server(folder: Path, timeout: float = 120, port: int | None = None,
                         **settings: str) -> tuple[str, dict, subprocess.Popen]:
    """(API URL, environment pointing at its home, the server process) of a server on `port` (a free one by
    default); `settings` are more of the server's environment, e.g. PREFECT_API_DATABASE_CONNECTION_URL.
    Started again with the same folder and port, it is the same server restarted."""
    port = port or free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           **settings}
    log = open(folder / "server.log", "a")
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


POSTGRES_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path(
    "/usr/lib/postgresql").is_dir() else None


class PostgresServer:
    """A throwaway PostgreSQL cluster (`initdb` into a temporary folder) on a free loopback port, with a
    database and role `prefect` (password `prefect`). As root it runs as the `postgres` user, since
    PostgreSQL refuses root; its folder is then made under /tmp, which that user can reach."""

    def __init__(self):
        if POSTGRES_BIN is None:
            raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql")
        self.as_user = {}
        self.folder = Path(tempfile.mkdtemp(prefix="wow-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self.port = free_port()
        self._run("initdb", "-D", "data", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync")
        self._log = open(self.folder / "postgres.log", "ab")
        # Durability is not what is tested: no fsync keeps the suite fast.
        self.proc = subprocess.Popen(
            [str(POSTGRES_BIN / "postgres"), "-D", "data", "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            cwd=self.folder, stdout=self._log, stderr=subprocess.STDOUT, **self.as_user)
        deadline = time.monotonic() + 60
        while subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: see {self.folder / 'postgres.log'}")
            time.sleep(0.1)
        self.sql("CREATE ROLE prefect LOGIN PASSWORD 'prefect'")
        self.sql("CREATE DATABASE prefect OWNER prefect")
        self.url = f"postgresql+asyncpg://prefect:prefect@127.0.0.1:{self.port}/prefect"

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run([str(POSTGRES_BIN / program), *args], cwd=self.folder, capture_output=True, text=True,
                              **self.as_user)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        """`statement`'s result rows, unaligned, as psql prints them over the socket."""
        return self._run("psql", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-Atq", "-c", statement).strip()

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


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
