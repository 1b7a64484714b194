"""Model-bound units: where the grid's sampling, judging, training and held-out evaluation run.

Without `execution.workers` every unit is a task of the flow run itself, in its threads, on the one
worker that picked the run up (the single-machine default: `wow run`, the demo). With it, each
(model, stage) of the grid is split into that many batches, and each batch is one run of the `unit`
deployment on the `gpu` work pool: any worker of the pool takes it, loads the model once, runs every
unit of the batch as the same cached tasks, and writes a manifest of their results to the store. The
grid flow waits for the batches as tasks of its own (`run_units`), so the rest of the DAG is the same.

Why Prefect's deployments and not a Ray or Dask task runner (docs/scaling.md): a unit then is a
process on a worker, which Prefect places, shows (the batch runs are the grid run's subflows), retries
and names; the model stays loaded for the whole batch (affinity by construction, loads at most
models x workers per stage); and the grid's own process holds no model, so a dead worker loses one
batch, never the grid. A batch whose run crashed (its worker died: SIGKILL, OOM, a lost machine
marked Crashed by the heartbeat automation that `wow deploy` creates) is run again, on any live
worker, up to `execution.max_attempts` times; its finished units are cache hits there. A batch that
failed (a model that cannot load) fails its tasks with that message and nothing else.
"""
import inspect
import json
import os
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.context import FlowRunContext, TaskRunContext
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from pydantic import BaseModel, Field, TypeAdapter

from flows.runtime import checked_config, retrying_store, run_tasks, store_access
from tasks.stages import UNIT_TASKS
from wow_core.config import ExperimentConfig
from wow_core.machine import precision_note
from wow_core.store import Store, content_key, jsonable

WORKER_NAME_ENV = "WOW_WORKER_NAME"  # how a worker names itself in manifests (default: host name)


@dataclass
class UnitCall:
    """One model-bound task call: the task's name, its arguments (values or futures), and the group it
    must run with (None: no constraint). A group's calls stay in one batch and groups run in order."""
    task: str
    arguments: dict[str, Any]
    group: str | None = None


class Unit(BaseModel):
    task: str = Field(description="The task: sample_shard, judge_pairwise, judge_score, judge_budget or "
                                  "train_grid_point.")
    arguments: dict[str, Any] = Field(description="Its arguments, as JSON.")
    group: str | None = None


class UnitBatch(BaseModel):
    """What one run of the `unit` deployment does: units of one model and stage."""
    key: str = Field(description="Content key of the batch: stage, model and every unit's arguments.")
    stage: str
    model: str
    units: list[Unit]


class UnitFailed(RuntimeError):
    """A batch that failed on its worker, or crashed more often than allowed."""


def _typed(fn, arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments from JSON back to the types of `fn`'s parameters (configs become models again)."""
    hints = inspect.signature(fn).parameters
    return {name: TypeAdapter(hints[name].annotation).validate_python(value) for name, value in arguments.items()}


def batch_key(stage: str, model: str, units: list[Unit]) -> str:
    """The batch's content key: its stage, model and units, less where the store is (as every key)."""
    located = [{**u.model_dump(mode="json"), "arguments": {k: v for k, v in u.arguments.items() if k != "store"}}
               for u in units]
    return content_key(f"units.{stage}", model=model, units=located)[:24]


def manifest_uri(store: Store, batch: UnitBatch) -> str:
    return store.uri("units", f"{batch.stage}.{batch.model}", batch.key, "json")


def split(calls: list[UnitCall], n: int) -> list[list[int]]:
    """Indices of `calls` in at most `n` batches of about equal size; a group's calls in one batch,
    groups and calls in their order (largest groups placed first, each on the least loaded batch)."""
    groups: dict[Any, list[int]] = {}
    for i, call in enumerate(calls):
        groups.setdefault(call.group if call.group is not None else ("call", i), []).append(i)
    batches: list[list[int]] = [[] for _ in range(min(n, len(groups)))]
    for members in sorted(groups.values(), key=len, reverse=True):
        min(batches, key=len).extend(members)
    return [sorted(b) for b in batches if b]


@dataclass
class RunProgress:
    """The grid's model-bound units done of those submitted so far, per stage, as a progress artifact of
    the flow run (its Artifacts tab): the graph draws every future task grey, this says how far it is."""
    counts: dict[str, list[int]] = field(default_factory=dict)  # stage -> [done, submitted]
    artifact: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> str:
        return " · ".join(f"{stage} {done} of {total}" for stage, (done, total) in self.counts.items())

    def percent(self) -> float:
        done, total = (sum(c[i] for c in self.counts.values()) for i in (0, 1))
        return 100.0 * done / total if total else 0.0

    def submitted(self, stage: str, futures: list[PrefectFuture]) -> None:
        from prefect.artifacts import create_progress_artifact
        with self._lock:
            self.counts.setdefault(stage, [0, 0])[1] += len(futures)
            if self.artifact is None:
                self.artifact = create_progress_artifact(self.percent(), description=self._text())
            else:
                self._update()
        # A future's callback runs when its task ends, in the task's thread (here at once if it has).
        for future in futures:
            future.add_done_callback(lambda _, stage=stage: self._finished(stage))

    def _finished(self, stage: str) -> None:
        with self._lock:
            self.counts[stage][0] += 1
            self._update()

    def _update(self) -> None:
        from prefect.artifacts import update_progress_artifact
        update_progress_artifact(self.artifact, self.percent(), description=self._text())

    def _text(self) -> str:
        return f"Model-bound units done: {self.describe()}"


@dataclass
class Units:
    """Submits the model-bound calls of one grid: as tasks here, or as batches on the workers."""
    config: ExperimentConfig
    tasks: dict[str, Any]                     # task name -> the task (with the store's cache records)
    workers: int | None = None                # batches per model and stage; None: here
    submitted: list[PrefectFuture] = field(default_factory=list)  # the batches, for the loads report
    _last_group: dict[str, list[PrefectFuture]] = field(default_factory=dict)  # per model, here
    # A unit counts as done when its task ends (here) or its result is read back from its batch.
    progress: RunProgress = field(default_factory=RunProgress)

    @property
    def batched(self) -> bool:
        """Whether units run as batches on workers."""
        return self.workers is not None

    def map(self, model: str, stage: str, calls: list[UnitCall]) -> list[PrefectFuture]:
        """One future per call, resolving to the task's result."""
        if not calls:
            return []
        if self.workers is None or self.config.model(model).backend == "openai":
            futures = self._here(model, calls)
            self.progress.submitted(stage, futures)
            return futures
        futures: list[PrefectFuture | None] = [None] * len(calls)
        for indices in split(calls, self.workers):
            chosen = [calls[i] for i in indices]
            run_name = f"{stage} of {model} on a worker ({len(chosen)} units)"
            batch = run_units.with_options(task_run_name=run_name).submit(
                stage, model, [{"task": c.task, "arguments": c.arguments, "group": c.group} for c in chosen],
                self.config)
            self.submitted.append(batch)
            for position, i in enumerate(indices):
                futures[i] = unit_result.submit(batch, position)
        self.progress.submitted(stage, futures)
        return futures

    def _here(self, model: str, calls: list[UnitCall]) -> list[PrefectFuture]:
        # A group waits for the model's group before it, from this call or an earlier one (an adapted
        # model is evaluated before the next one is loaded).
        futures, group = [], None
        previous, members = [], self._last_group.get(model, [])
        for call in calls:
            if call.group is not None and call.group != group:
                previous, members, group = members, [], call.group
            grouped = call.group is not None
            future = self.tasks[call.task].submit(**call.arguments, wait_for=previous if grouped and previous else None)
            futures.append(future)
            if grouped:
                members.append(future)
        if group is not None:
            self._last_group[model] = members
        return futures


def batches_per_model(config: ExperimentConfig) -> int | None:
    """`execution.workers`, with 'auto' read as the number of workers online in the deployment's pool."""
    workers = config.execution.workers
    if workers != "auto":
        return workers
    from prefect import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus
    with get_client(sync_client=True) as client:
        pool = client.read_deployment_by_name(config.execution.deployment).work_pool_name
        online = client.read_workers_for_work_pool(pool, worker_filter=WorkerFilter(
            status=WorkerFilterStatus(any_=["ONLINE"])))
    return max(1, len(online))


def model_units(config: ExperimentConfig) -> Units:
    """The submitter of `config`'s model-bound tasks (here, or as batches on workers), as this run
    submits tasks (`run_tasks`)."""
    return Units(config, dict(zip(UNIT_TASKS, run_tasks(list(UNIT_TASKS.values()), config.store))),
                 batches_per_model(config))


def report_loads(units: Units) -> dict:
    """Log how many models the grid loaded and where its batches ran; with batches, also a table
    artifact of them. Returns {model_loads, engine_starts, batches}."""
    from prefect.artifacts import create_table_artifact

    from flows.artifacts import artifact_key
    from wow_core import backends, engines
    logger = get_run_logger()
    if not units.batched:
        out = {"model_loads": backends.load_count(), "engine_starts": engines.start_count(), "batches": 0}
        logger.info("model loads in this process: %d (vLLM engine starts: %d)", out["model_loads"],
                    out["engine_starts"])
        return out
    manifests = [b.result() for b in units.submitted]
    rows = [{"stage": m["stage"], "model": m["model"], "worker": m["worker"], "units": len(m["results"]),
             "seconds": round(m["finished"] - m["started"], 1), "model loads": m["model_loads"],
             "engine starts": m["engine_starts"], "peak RSS (GB)": round(m["peak_rss_gb"], 2)} for m in manifests]
    out = {"model_loads": sum(m["model_loads"] for m in manifests),
           "engine_starts": sum(m["engine_starts"] for m in manifests), "batches": len(manifests)}
    workers = sorted({m["worker"] for m in manifests})
    logger.info("model loads: %d in %d batches on %d worker(s) %s (vLLM engine starts: %d)", out["model_loads"],
                len(manifests), len(workers), workers, out["engine_starts"])
    create_table_artifact(key=artifact_key(units.config.name, "unit-batches"), table=rows,
                          description=f"Where the model-bound batches of '{units.config.name}' ran")
    return out


@task(retries=0)
def unit_result(manifest: dict, position: int) -> Any:
    """The result of one unit of a finished batch."""
    return manifest["results"][position]


@task(retries=0)
def run_units(stage: str, model: str, calls: list[dict], config: ExperimentConfig) -> dict:
    """Run a batch of one model's calls as a run of the `unit` deployment and wait for it; a run that
    crashed is asked again. Returns the batch's manifest (its units' results, where it ran, loads)."""
    logger = get_run_logger()
    units = [Unit(task=c["task"], arguments=jsonable(c["arguments"]), group=c["group"]) for c in calls]
    batch = UnitBatch(key=batch_key(stage, model, units), stage=stage, model=model, units=units)
    store = Store(config.store)
    uri = manifest_uri(store, batch)

    def manifest() -> dict:
        return json.loads(store.read_text(uri))
    if retrying_store(lambda: store.exists(uri), f"looking for {uri}"):
        logger.info("found %s in the store", uri)
        return retrying_store(manifest, f"reading {uri}")
    execution = config.execution
    parent = TaskRunContext.get().task_run.id
    for attempt in range(1, execution.max_attempts + 1):
        run = run_deployment(execution.deployment, parameters={"config": config.model_dump(mode="json"),
                                                               "batch": batch.model_dump(mode="json")},
                             flow_run_name=f"{stage} · {model} · {batch.key[:8]}", timeout=None, poll_interval=2,
                             tags=["wow-unit", f"stage:{stage}", f"model:{model}"],
                             idempotency_key=f"{parent}:{batch.key}:{attempt}")
        state = run.state
        if state.is_completed():
            return retrying_store(manifest, f"reading {uri}")
        if not state.is_crashed():
            raise UnitFailed(f"{stage} of model '{model}' failed on its worker (flow run '{run.name}'): "
                             f"{state.message}")
        logger.warning("%s of model '%s' crashed on its worker (flow run '%s': %s); attempt %d of %d", stage, model,
                       run.name, state.message, attempt, execution.max_attempts)
    raise UnitFailed(f"{stage} of model '{model}' crashed {execution.max_attempts} times; last: {state.message}")


def exit_with_worker() -> None:
    """End this flow-run process when the worker that started it dies: Prefect's SIGTERM handling then
    reports the run Crashed at once (a process worker starts runs in sessions of their own, so they
    would otherwise run on, unseen, holding the model's memory)."""
    worker = os.getppid()

    def watch():
        while os.getppid() == worker:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="exit-with-worker").start()


@flow(name="unit", validate_parameters=False, log_prints=True)
def unit(config: ExperimentConfig, batch: UnitBatch) -> str:
    """Run one batch of model-bound units of a grid on this worker (started by the grid; see flows/units.py)."""
    from wow_core import backends, engines
    config = checked_config(config)
    batch = batch if isinstance(batch, UnitBatch) else UnitBatch.model_validate(batch)
    exit_with_worker()
    started = time.time()
    logger = get_run_logger()
    model = config.model(batch.model)
    if model.backend != "openai":
        logger.info("precision: %s", precision_note(model.name, model.dtype, model.device))
    with store_access(config.store):
        tasks = dict(zip(UNIT_TASKS, run_tasks(list(UNIT_TASKS.values()), config.store)))
        results, groups = [], []
        for u in batch.units:  # consecutive calls of one group run together, groups in order
            if not groups or u.group is None or u.group != groups[-1][0]:
                groups.append((u.group, []))
            groups[-1][1].append(u)
        for _, members in groups:
            futures = [tasks[u.task].submit(**_typed(UNIT_TASKS[u.task].fn, u.arguments)) for u in members]
            results += [f.result() for f in futures]
        manifest = {
            "stage": batch.stage, "model": batch.model, "results": results,
            "worker": os.environ.get(WORKER_NAME_ENV, socket.gethostname()), "pid": os.getpid(),
            "flow_run_id": str(FlowRunContext.get().flow_run.id), "started": started, "finished": time.time(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "model_loads": backends.load_count(), "engine_starts": engines.start_count(),
        }
        store = Store(config.store)
        uri = manifest_uri(store, batch)
        retrying_store(lambda: store.write_text(uri, json.dumps(manifest)), f"writing {uri}")
    logger.info("%s of %s: %d units on %s, %d model load(s)", batch.stage, batch.model, len(results),
                manifest["worker"], manifest["model_loads"])
    return uri
