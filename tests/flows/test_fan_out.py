"""One grid on two real workers: a real `prefect server start`, `wow deploy`, two process workers of the
`gpu` pool, the grid's model-bound units as runs of `unit/gpu`. Batches overlap in time on the two
workers, and when one worker is SIGKILLed mid-batch the grid still completes, redoing only what
that batch had not finished, with the reports of the grid run in one process (one grid shows both, to
keep the suite short); a model that cannot load fails its own batch with a message that names it, and
every unit that does not need it still runs."""
import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from servers import drain_prefect_clients, start_prefect_server

from flows.elicit import elicit
from flows.grid import grid
from wow_core.config import (AlignmentConfig, DatasetConfig, ExecutionConfig, ExperimentConfig, JudgeConfig,
                             PreferenceSetConfig, SamplingConfig, TrainConfig, TransformersModel)
from wow_core.store import Store

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A server with wow's deployments and two workers of the gpu pool: (api, workers {name: Popen}, env)."""
    tmp = tmp_path_factory.mktemp("cluster")
    api, env, server = start_prefect_server(tmp)
    env = {**env, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "INFO"}
    deploy = subprocess.run([str(BIN / "wow"), "deploy"], env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    workers = {}

    def start(name):
        log = open(tmp / f"{name}.log", "a")
        workers[name] = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--limit", "1",
                                          "--name", name], env={**env, "WOW_WORKER_NAME": name}, stdout=log,
                                         stderr=subprocess.STDOUT)
    for name in ("worker-a", "worker-b"):
        start(name)
    yield api, workers, start
    with temporary_settings({PREFECT_API_URL: api}):
        drain_prefect_clients()
    for w in workers.values():
        w.kill()
        w.wait()
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same grid in one process (no workers): the reports a fan-out must reproduce."""
    from prefect.testing.utilities import prefect_test_harness
    config = tiny_grid(str(tmp_path_factory.mktemp("here")), workers=None)
    with prefect_test_harness(server_startup_timeout=180):
        state = grid(config, return_state=True)
    assert state.is_completed(), state
    return config, state.result()


def tables(config: ExperimentConfig, reports: dict) -> dict[str, pd.DataFrame]:
    store = Store(config.store)
    return {kind: store.read_table(uris["parquet"]) for kind, uris in reports.items()}


def test_grid_fans_out_over_two_workers_and_survives_a_worker_killed_mid_batch(cluster, reference, tmp_path):
    """One grid: its sampling batches run at the same time on the two workers; the worker of one of
    them is SIGKILLed once that batch has finished a shard; the batch runs again on the live worker,
    finding that shard cached; the reports equal the grid's run in one process."""
    api, workers, start = cluster
    config = tiny_grid(str(tmp_path / "store"), workers=2)
    before = {r["id"] for r in unit_runs(api)}
    result = {}
    with temporary_settings({PREFECT_API_URL: api}):
        context = contextvars.copy_context()  # the settings are a context variable: the thread needs them
        runner = threading.Thread(target=lambda: result.update(state=context.run(grid, config, return_state=True)))
        runner.start()
        # Wait for a sampling batch that has finished a shard, then kill the worker running it.
        victim, deadline = None, time.monotonic() + 300
        while victim is None and time.monotonic() < deadline:
            for run in unit_runs(api):
                if run["id"] in before or run["state_type"] != "RUNNING" or "stage:sample" not in run["tags"]:
                    continue
                done = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}},
                                                       "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
                if any(t["name"].startswith("sample · ") for t in done):
                    victim = run
                    break
            time.sleep(0.5)
        assert victim is not None, "no sampling batch got going"
        child = int(victim["infrastructure_pid"].rsplit(":", 1)[-1])
        worker_pid = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        [name] = [n for n, w in workers.items() if w.pid == worker_pid]
        os.kill(worker_pid, signal.SIGKILL)
        workers[name].wait()
        runner.join(timeout=900)
    assert not runner.is_alive()
    state = result["state"]
    assert state.is_completed(), state
    for kind, table in tables(config, state.result()).items():
        pd.testing.assert_frame_equal(table, tables(*reference)[kind], obj=kind)

    runs = {r["id"]: r for r in unit_runs(api) if r["id"] not in before}
    store = Store(config.store)
    manifests = [json.loads(store.read_text(u)) for u in store.fs.glob(f"{config.store}/units/*.json")]
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
    assert not Path(f"/proc/{child}").exists()  # the killed worker's run did not live on
    # Every batch that finished wrote its manifest; each loaded its model at most once, so the grid's
    # loads are at most models x workers per stage (plus the adapted models' evaluation).
    assert {i for i, r in runs.items() if r["state_type"] == "COMPLETED"} == set(by_run)
    assert all(m["model_loads"] <= 1 for m in manifests), manifests
    for stage in ("sample", "judge", "evaluate"):
        assert sum(m["model_loads"] for m in manifests if m["stage"] == stage) <= 1 * 2 + (stage == "evaluate")
    # A training's process holds no sampling model or engine: its peak RSS is the training's own.
    trainings = [m for m in manifests if m["stage"] == "train"]
    assert trainings and all(m["model_loads"] == 0 and m["engine_starts"] == 0 for m in trainings), trainings
    start(name)  # for any test after this one


def test_a_model_that_cannot_load_fails_its_batch_only(cluster, tmp_path):
    api, _, _ = cluster
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
