"""The production rehearsal: the deployed topology with real parts. A Prefect server on PostgreSQL, the
store on a SeaweedFS S3 server, `wow deploy`, one worker of the `cpu` pool and two of the `gpu` pool,
all real processes. A tiny grid deployed with a one-minute interval schedule: the scheduler creates its
run, the cpu worker takes it, its model-bound units fan out to the gpu workers as runs of `unit/gpu`.
While it runs, the worker of a sampling batch that has finished a shard is SIGKILLed, the Prefect server
is SIGKILLed and started again on its database, and the object store is stopped for 20 s. Its reports
must equal those of the same grid run in one process, table by table; the next scheduled run must be
all cache hits with no model-bound work sent out; no process may be left behind. The rows PostgreSQL
holds are counted and printed. A second test on the same cluster: a model that cannot load fails its
own batch with a message that names it, and every unit that does not need it still runs."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, UTC
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from s3_endpoint import KEY_ID, SECRET, S3Server
from servers import PostgresServer, drain_prefect_clients, start_prefect_server

from flows.elicit import elicit
from flows.grid import grid
from wow_core.config import (AlignmentConfig, DatasetConfig, ExecutionConfig, ExperimentConfig, JudgeConfig,
                             PreferenceSetConfig, SamplingConfig, TrainConfig, TransformersModel)
from wow_core.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "wow-rehearsal"
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
MARK = "WOW_REHEARSAL"  # in every process the cluster starts, and so in their children: none may outlive it


def tiny_grid(store: str, workers: int | None) -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny-fan-out", store=store,
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=6, seed=3)],
        sampling=SamplingConfig(n=4, max_new_tokens=24, shard_size=1, extraction_max_new_tokens=10),
        judge=JudgeConfig(methods=["length", "logits", "score"], score_k=[1], max_new_tokens=8, reasoning=False),
        alignment=AlignmentConfig(
            heldout_fraction=0.34, preference_sets=[PreferenceSetConfig(method="oracle")], max_pairs=8,
            train=TrainConfig(epochs=1, batch_size=4, max_length=400, learning_rate=1e-4),
            eval=SamplingConfig(n=2, max_new_tokens=24, shard_size=1, extraction_max_new_tokens=10), bootstrap=100),
        execution=ExecutionConfig(workers=workers),
    )


def post(api: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{api}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def unit_runs(api: str) -> list[dict]:
    return post(api, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["wow-unit"]}}, "sort": "START_TIME_ASC"})


def marked_processes(mark: str) -> list[str]:
    """Command lines of the live processes whose environment holds `mark`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                stat = (proc / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie is gone, only not yet reaped
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


class Cluster:
    """PostgreSQL, a Prefect server on it, SeaweedFS, `wow deploy`, and process workers: what a team runs."""

    def __init__(self, folder: Path):
        self.folder, self.mark = folder, f"{MARK}={uuid.uuid4().hex}"
        self.pg = PostgresServer()
        (folder / "s3").mkdir()
        self.s3 = S3Server(folder / "s3")
        self.s3.storage.mkdir(BUCKET)
        self.server_settings = {
            "PREFECT_API_DATABASE_CONNECTION_URL": self.pg.url,
            # New deployments are scheduled within a second; the main loop tops schedules up.
            "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
            # As deployed (docker/compose.yaml): a deployment's concurrency leases outlive a restart. In
            # memory, Prefect's default, the restart loses them and the running grid is terminated.
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
            MARK: self.mark}
        self.api, env, self.server = start_prefect_server(folder, **self.server_settings)
        self.port = int(self.api.rsplit(":", 1)[1].split("/")[0])
        self.env = {**env, "PREFECT_API_URL": self.api, "PREFECT_WORKER_QUERY_SECONDS": "2",
                    "PREFECT_LOGGING_LEVEL": "INFO", "AWS_ENDPOINT_URL": self.s3.url, "AWS_ACCESS_KEY_ID": KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", MARK: self.mark}
        deploy = subprocess.run([str(BIN / "wow"), "deploy"], env=self.env, capture_output=True, text=True,
                                timeout=300, cwd=ROOT)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        self.workers: dict[str, subprocess.Popen] = {}
        for name in ("worker-a", "worker-b"):
            self.start_worker(name, "gpu")
        self.start_worker("cpu-worker", "cpu")

    def start_worker(self, name: str, pool: str) -> None:
        log = open(self.folder / f"{name}.log", "a")
        self.workers[name] = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1", "--name", name],
            env={**self.env, "WOW_WORKER_NAME": name}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def restart_server(self, down_s: float) -> float:
        """SIGKILL the Prefect server, stay down `down_s` s, start it on the same port and database; the
        seconds from the kill to its answering again."""
        killed = time.monotonic()
        self.server.kill()
        self.server.wait()
        time.sleep(down_s)
        _, _, self.server = start_prefect_server(self.folder, port=self.port, **self.server_settings)
        return time.monotonic() - killed

    def rows(self) -> dict[str, int]:
        """What the Prefect database holds."""
        return {table: int(self.pg.sql(f"SELECT count(*) FROM {table}", database="prefect"))
                for table in ("flow_run", "task_run", "artifact", "log", "deployment")}

    def close(self) -> None:
        with temporary_settings({PREFECT_API_URL: self.api}):
            drain_prefect_clients()
        for w in self.workers.values():
            w.terminate()
        for w in self.workers.values():
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        self.server.terminate()
        self.server.wait(timeout=30)
        self.s3.close()
        self.pg.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        with pytest.MonkeyPatch.context() as env:  # this process reads the store as the workers do
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                env.setenv(name, cluster.env[name])
            yield cluster
    finally:
        cluster.close()
    deadline = time.monotonic() + 30
    while (left := marked_processes(cluster.mark)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same grid in one process (no workers, a local store): the reports the rehearsal must reproduce."""
    from prefect.testing.utilities import prefect_test_harness
    config = tiny_grid(str(tmp_path_factory.mktemp("here")), workers=None)
    started = time.monotonic()
    with prefect_test_harness(server_startup_timeout=180):
        state = grid(config, return_state=True)
    assert state.is_completed(), state
    return config, state.result(), time.monotonic() - started


def tables(config: ExperimentConfig, reports: dict) -> dict[str, pd.DataFrame]:
    store = Store(config.store)
    return {kind: store.read_table(uris["parquet"]) for kind, uris in reports.items()}


def deployment_runs(api: str, deployment_id: str) -> list[dict]:
    return post(api, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}},
                                           "sort": "EXPECTED_START_TIME_ASC"})


def wait_for(what: str, find, timeout: float, every: float = 1.0):
    """`find()`'s first true value, polled; server outages (refused connections) are waited out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := find():
                return found
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def test_rehearsal_a_scheduled_grid_through_a_worker_kill_a_server_restart_and_a_store_outage(cluster, reference):
    api, workers = cluster.api, cluster.workers
    config = tiny_grid(f"s3://{BUCKET}/grid", workers=2)
    with temporary_settings({PREFECT_API_URL: api}):
        from prefect.client.schemas.objects import ConcurrencyLimitConfig
        from prefect.schedules import Interval
        nightly = httpx.get(f"{api}/deployments/name/grid/grid-nightly", timeout=10).json()
        httpx.patch(f"{api}/deployments/{nightly['id']}", json={"paused": True}, timeout=10).raise_for_status()
        # The anchor a few seconds ahead, past the scheduler's next pass: the first run is then due at once.
        deployment_id = str(grid.from_source(source=str(ROOT), entrypoint="flows/grid.py:grid").deploy(
            name="rehearsal", work_pool_name="cpu", parameters={"config": config.model_dump(mode="json")},
            schedule=Interval(60, anchor_date=datetime.now(UTC) + timedelta(seconds=8)),
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
            ignore_warnings=True, print_next_steps=False))
    before = {r["id"] for r in unit_runs(api)}
    deployed = time.monotonic()
    first = wait_for("a scheduled run started", lambda: next(
        (r for r in deployment_runs(api, deployment_id) if r["state_type"] == "RUNNING"), None), 120)
    started_s = time.monotonic() - deployed
    assert first["auto_scheduled"], first  # made by the scheduler, not by hand
    grid_pid = int(first["infrastructure_pid"].rsplit(":", 1)[-1])
    assert int(Path(f"/proc/{grid_pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == workers["cpu-worker"].pid

    # 1. A gpu worker SIGKILLed while its sampling batch has a shard done and more to do.
    def running_batch():
        for run in unit_runs(api):
            if run["id"] in before or run["state_type"] != "RUNNING" or "stage:sample" not in run["tags"]:
                continue
            done = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}},
                                                   "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
            if any(t["name"].startswith("sample · ") for t in done):
                return run
    victim = wait_for("a sampling batch got going", running_batch, 300, every=0.5)
    child = int(victim["infrastructure_pid"].rsplit(":", 1)[-1])
    worker_pid = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    [name] = [n for n, w in workers.items() if w.pid == worker_pid]
    os.kill(worker_pid, signal.SIGKILL)
    workers[name].wait()
    # 2. The Prefect server SIGKILLed and started again on its database, 10 s later.
    server_down_s = cluster.restart_server(down_s=10)
    # 3. The object store stopped for 20 s and started again on its data.
    store_down_s = cluster.s3.restart(down_s=20)

    def finished(run_id):
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        return run if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
    done = wait_for("the scheduled grid run ended", lambda: finished(first["id"]), 1500, every=2)
    assert done["state_type"] == "COMPLETED", done["state"]
    grid_s = (datetime.fromisoformat(done["end_time"]) - datetime.fromisoformat(done["start_time"])).total_seconds()
    # The reports equal the undisturbed run's. Each is the one of its name in the store (the alignment
    # report's key holds its trainings' logs, whose timings differ from run to run).
    ref_config, ref_reports, ref_s = reference
    store = Store(config.store)
    for kind, table in tables(ref_config, ref_reports).items():
        [found] = store.glob(ref_reports[kind]["parquet"].rsplit("-", 1)[0] + "-*.parquet")
        pd.testing.assert_frame_equal(store.read_table(found), table, obj=kind)

    runs = {r["id"]: r for r in unit_runs(api) if r["id"] not in before}
    manifests = [json.loads(store.read_text(u)) for u in store.glob("units/*.json")]
    by_run = {m["flow_run_id"]: m for m in manifests}
    # Sampling went out as two batches; the two workers ran batches at the same time. Which two overlap
    # is a race (the held-out questions' batches are submitted beside sampling's; a worker takes the
    # oldest run), so the assertion is on the workers, not on one stage.
    first_runs = {}
    for r in sorted(runs.values(), key=lambda r: r["start_time"]):
        first_runs.setdefault(r["name"], r)
    sampling = [r for r in first_runs.values() if "stage:sample" in r["tags"]]
    assert len(sampling) == 2 and victim["id"] in {r["id"] for r in sampling}
    worker_of = {i: m["worker"] for i, m in by_run.items()} | {victim["id"]: name}
    span = {r["id"]: (datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"] or r["updated"]))
            for r in first_runs.values() if r["start_time"]}
    assert any(worker_of.get(x) != worker_of.get(y) and span[x][0] < span[y][1] and span[y][0] < span[x][1]
               for x in span for y in span if x < y and x in worker_of and y in worker_of), first_runs
    [other] = [r for r in sampling if r["id"] != victim["id"]]
    assert by_run[other["id"]]["worker"] != name  # the other batch ran on the worker that was not killed
    # The killed batch ran again, on the live worker, and found there what the killed run had finished.
    assert runs[victim["id"]]["state_type"] == "CRASHED"
    [again] = [r for r in runs.values() if r["name"] == victim["name"] and r["id"] != victim["id"]]
    assert again["state_type"] == "COMPLETED" and by_run[again["id"]]["worker"] != name
    shard_states = [t["state_name"] for t in post(api, "/task_runs/filter",
                                                  {"flow_runs": {"id": {"any_": [again["id"]]}}})
                    if t["name"].startswith("sample · ")]
    assert "Cached" in shard_states, shard_states
    redone = shard_states.count("Completed")
    assert not Path(f"/proc/{child}").exists()  # the killed worker's run did not live on
    # No run stays Running: every batch ended, and each that finished wrote its manifest.
    assert all(r["state_type"] in ("COMPLETED", "CRASHED") for r in runs.values()), runs
    assert {i for i, r in runs.items() if r["state_type"] == "COMPLETED"} == set(by_run)
    assert all(m["model_loads"] <= 1 for m in manifests), manifests
    for stage in ("sample", "judge", "evaluate"):
        assert sum(m["model_loads"] for m in manifests if m["stage"] == stage) <= 1 * 2 + (stage == "evaluate")
    # A training's process holds no sampling model or engine: its peak RSS is the training's own.
    trainings = [m for m in manifests if m["stage"] == "train"]
    assert trainings and all(m["model_loads"] == 0 and m["engine_starts"] == 0 for m in trainings), trainings
    cluster.start_worker(name, "gpu")  # as a supervisor would; the next run and test need both

    # The next scheduled run finds everything: no batch is sent to a worker, every stage's task is Cached.
    nxt = wait_for("the next scheduled run ended", lambda: next(
        (finished(r["id"]) for r in deployment_runs(api, deployment_id)
         if r["id"] != first["id"] and r["state_type"] not in ("SCHEDULED", "CANCELLED", "PENDING")
         and finished(r["id"])), None), 300, every=2)
    assert nxt["state_type"] == "COMPLETED" and nxt["auto_scheduled"], nxt["state"]
    httpx.delete(f"{api}/deployments/{deployment_id}", timeout=10).raise_for_status()
    assert {r["id"] for r in unit_runs(api)} == before | set(runs)
    states = {}
    for t in post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [nxt["id"]]}}}):
        states.setdefault(t["task_key"].rsplit("-", 1)[0], []).append(t["state_name"])
    stages = {k: v for k, v in states.items() if k not in ("run_units", "unit_result")}
    assert stages and all(s == "Cached" for v in stages.values() for s in v), states
    rows = cluster.rows()
    print(f"\nrehearsal: first run started by the scheduler {started_s:.0f} s after the deployment; grid "
          f"{grid_s:.0f} s (in one process, undisturbed: {ref_s:.0f} s); Prefect server down {server_down_s:.0f} s, "
          f"store down {store_down_s:.0f} s; killed batch: {redone} shard(s) redone, "
          f"{shard_states.count('Cached')} cached; {len(runs)} unit runs; next scheduled run "
          f"{(datetime.fromisoformat(nxt['end_time']) - datetime.fromisoformat(nxt['start_time'])).total_seconds():.0f}"
          f" s, all cache hits; PostgreSQL holds {rows}")


def test_a_model_that_cannot_load_fails_its_batch_only(cluster, tmp_path):
    api = cluster.api
    (tmp_path / "empty-model").mkdir()
    good = tiny_grid(str(tmp_path / "store"), workers=2)
    # Smaller than the fan-out's grid (3 questions, the score judge alone): what matters is whose batch fails.
    config = good.model_copy(update=dict(
        alignment=None, models=[*good.models, TransformersModel(name="broken", path=str(tmp_path / "empty-model"))],
        evaluators=["smollm2-135m", "broken"],
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=3, seed=3)],
        judge=good.judge.model_copy(update=dict(methods=["score"]))))
    before = {r["id"] for r in unit_runs(api)}
    with temporary_settings({PREFECT_API_URL: api}):
        state = elicit(config, return_state=True)
    assert state.is_failed(), state
    runs = [r for r in unit_runs(api) if r["id"] not in before]
    by_model = {}
    for r in runs:
        by_model.setdefault(next(t for t in r["tags"] if t.startswith("model:")), []).append(r)
    # The broken evaluator's judging failed, on its worker, saying which model and why ...
    assert by_model["model:broken"] and all(r["state_type"] == "FAILED" for r in by_model["model:broken"])
    assert all("model 'broken'" in r["state"]["message"] and "could not be loaded" in r["state"]["message"]
               for r in by_model["model:broken"]), [r["state"]["message"] for r in by_model["model:broken"]]
    # ... and every batch of the model that loads ran to the end: its samples and its judgments are stored.
    good_runs = by_model["model:smollm2-135m"]
    assert {t for r in good_runs for t in r["tags"] if t.startswith("stage:")} == {"stage:sample", "stage:judge"}
    assert all(r["state_type"] == "COMPLETED" for r in good_runs), good_runs
    store = Store(config.store)
    assert len(store.fs.glob(f"{config.store}/units/judge.smollm2-135m-*.json")) == 1  # one call: score_k1
