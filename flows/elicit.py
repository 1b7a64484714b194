"""The elicitation flow: sample -> extract and label -> self signals and judges -> AccWoW report.

Fans out per dataset x generator for sampling (in question shards, so a crash loses at most one
shard) and per dataset x generator x evaluator x method for judging, then joins into one report.
"""
import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from prefect import flow, get_run_logger
from prefect.blocks.system import Secret
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run as prefect_flow_run
from prefect.filesystems import RemoteFileSystem

from flows.artifacts import publish_elicitation
from flows.deploy import S3_SECRET_BLOCK_ENV
from flows.units import UnitCall, Units, batches_per_model, report_loads
from tasks.stages import (UNIT_TASKS, build_budget_report, build_leaderboard, build_report, ensemble_pairs,
                          join_samples, make_questions, method_pairs)
from wow_core.config import DatasetConfig, ExperimentConfig, ModelConfig, parse_config
from wow_core.datasets import get_dataset
from wow_core.elicit import SELF_SIGNALS
from wow_core.machine import precision_note
from wow_core.report import SELF
from wow_core.store import Store, StoreUnreachable, storage_options


def with_cache_records(tasks: list, store: str) -> list:
    """Keep Prefect's cache records inside the store, so every worker and later run finds them and
    deleting the store forgets them too.

    The store's `_prefect/` holds whole records (result and metadata in one file) as the tasks' result
    storage. Whole, because a record whose result lies elsewhere (Prefect's default: the metadata in
    the cache policy's key storage, the result under the writer's own $PREFECT_HOME) fails the task
    when another worker, user or home reads it, where an unreadable whole record is only a cache miss.
    A local folder goes in as a path; an object store through a RemoteFileSystem block, because
    Prefect accepts only a saved block there. The block holds the bucket path and timeouts, never
    credentials (s3fs reads those from the environment)."""
    tasks = [t.with_options(on_failure=[_remember_failure]) for t in tasks]
    if "://" not in store:
        records = Path(store).expanduser().resolve() / "_prefect"
        return [t.with_options(result_storage=records) for t in tasks]
    url = f"{store.rstrip('/')}/_prefect"
    records = RemoteFileSystem(basepath=url, settings=storage_options(url))
    records.save(f"wow-records-{hashlib.sha256(url.encode()).hexdigest()[:16]}", overwrite=True)
    return [t.with_options(result_storage=records) for t in tasks]


# Flow run id -> the exceptions its tasks finally failed with (after their retries), in order.
_TASK_FAILURES: dict = {}


def _remember_failure(task, task_run, state) -> None:
    """on_failure hook (runs in the flow's process: the default thread-pool task runner)."""
    error = getattr(state.data, "result", state.data)  # a result record around the exception, or the exception
    if isinstance(error, BaseException):
        _TASK_FAILURES.setdefault(task_run.flow_run_id, []).append(error)


# The keys of the JSON value of the Prefect Secret block named by $WOW_S3_SECRET_BLOCK (or `wow run
# --s3-secret NAME`), and the standard AWS variable, read by botocore, that each fills.
S3_SECRET_KEYS = {"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
                  "aws_session_token": "AWS_SESSION_TOKEN", "endpoint_url": "AWS_ENDPOINT_URL",
                  "region": "AWS_DEFAULT_REGION"}


class S3SecretError(ValueError):
    """The named Secret block is missing or malformed (the message names keys, never values)."""


def s3_credentials(block: str) -> dict[str, str]:
    """The AWS variables from Prefect Secret block `block`: its JSON value's keys are those of
    S3_SECRET_KEYS (aws_access_key_id and aws_secret_access_key required)."""
    try:
        value = Secret.load(block).get()
    except ValueError as err:
        raise S3SecretError(f"{S3_SECRET_BLOCK_ENV}: no Prefect Secret block '{block}' ({err})") from None
    if not isinstance(value, dict):
        raise S3SecretError(f"Prefect Secret block '{block}' must hold a JSON object with keys among "
                            f"{sorted(S3_SECRET_KEYS)}")
    if unknown := sorted(set(value) - set(S3_SECRET_KEYS)):
        raise S3SecretError(f"Prefect Secret block '{block}': unknown key(s) {unknown}; known: {sorted(S3_SECRET_KEYS)}")
    if missing := [k for k in ("aws_access_key_id", "aws_secret_access_key") if not value.get(k)]:
        raise S3SecretError(f"Prefect Secret block '{block}': missing {missing}")
    return {S3_SECRET_KEYS[k]: str(v) for k, v in value.items() if v}


@contextmanager
def s3_secret_env(store: str):
    """For an s3:// store with $WOW_S3_SECRET_BLOCK set: the Secret block's values as this process's AWS
    variables while the block runs (tasks run in the flow's threads; botocore, the store and Prefect's
    cache records all read them: one path for credentials), restored afterwards."""
    block = os.environ.get(S3_SECRET_BLOCK_ENV)
    variables = s3_credentials(block) if block and store.startswith(("s3://", "s3a://")) else {}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    _forget_s3_clients(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_s3_clients(variables)


def _forget_s3_clients(changed: dict) -> None:
    """fsspec hands out one cached S3 filesystem per set of options, with the endpoint and credentials
    it was made with: after the variables change, the next store must make a new one."""
    if changed:
        fsspec.get_filesystem_class("s3").clear_instance_cache()


@contextmanager
def store_access(store: str):
    """A flow body's access to its store: credentials from a Secret block (`s3_secret_env`), and a
    clear error. When the flow fails because a task could not reach the store, it fails with that
    task's StoreUnreachable (the store, the artifact, the client's error) rather than Prefect's
    UnfinishedRun for the tasks downstream of it; likewise with the first failed task's own error."""
    flow_run_id = FlowRunContext.get().flow_run.id
    try:
        with s3_secret_env(store):
            yield
    except StoreUnreachable:
        raise
    except Exception as err:
        failures = _TASK_FAILURES.get(flow_run_id, [])
        cause = next((f for f in failures if isinstance(f, StoreUnreachable)), failures[0] if failures else None)
        if cause is None or cause is err:
            raise
        cause.__suppress_context__ = True  # the root cause, not the UnfinishedRun it led to
        raise cause
    finally:
        _TASK_FAILURES.pop(flow_run_id, None)


def proxy_judge(config: ExperimentConfig, ds: DatasetConfig, generator: str) -> ModelConfig | None:
    """The model that labels a dataset's answers when its proxy needs one (`score_answers`, e.g.
    bio_generation): the dataset's `options.judge`, by default the first evaluator, the same for every
    generator so that their proxies compare; None otherwise. A judge that is the generator grades its
    own answers: allowed (one model), with a warning."""
    if not hasattr(get_dataset(ds.name), "score_answers"):
        return None
    judge = ds.options.get("judge", config.evaluators[0])
    if judge == generator:
        try:
            logger = get_run_logger()
        except MissingContextError:
            logger = logging.getLogger(__name__)
        logger.warning("%s: the proxy judge '%s' is also the generator, so it grades its own answers "
                       "(self-grading); name another model in the dataset's options.judge", ds.tag, judge)
    return config.model(judge)


@dataclass
class Elicitation:
    """What the elicitation graph submitted: the stages alignment builds on, and the report."""
    questions: dict[str, dict] = field(default_factory=dict)   # dataset tag -> {uri, n}
    samples: dict[tuple[str, str], PrefectFuture] = field(default_factory=dict)  # (tag, generator)
    # (tag, generator, evaluator, "pairwise" | "score_k<k>") -> judgments URI
    judgments: dict[tuple[str, str, str, str], PrefectFuture] = field(default_factory=dict)
    report: PrefectFuture | None = None
    leaderboard: PrefectFuture | None = None  # when `report.leaderboard` is on
    budget: PrefectFuture | None = None       # when `judge.budget` is set

    def result(self) -> dict:
        """The report's URIs, with the leaderboard's under `leaderboard` and the budget report's under
        `budget` when there are (waits for all; raises if an upstream task failed)."""
        uris = self.report.result()
        companions = {"leaderboard": self.leaderboard, "budget": self.budget}
        return {**uris, **{k: f.result() for k, f in companions.items() if f is not None}}


def checked_config(config: ExperimentConfig | dict) -> ExperimentConfig:
    """A flow's `config` parameter, validated as `wow validate` validates a file. The flows leave it to
    this (`validate_parameters=False`): Prefect's own check fails the run just as early, but logs the
    whole config and names no field; this names the field, e.g. a generator not in `models`."""
    from wow_core.train import check_trainers
    if not isinstance(config, ExperimentConfig):
        config = parse_config(config, "flow parameter 'config'")
    check_trainers(config, "flow parameter 'config'")
    return config


def precision_notes(config: ExperimentConfig) -> list[str]:
    """One line per local model: the precision it runs in on this machine and why (wow_core/machine.py)."""
    return [precision_note(m.name, m.dtype, m.device) for m in config.models if m.backend != "openai"]


def say_precision(config: ExperimentConfig) -> list[str]:
    """Log `precision_notes` once, at the start of a flow run; returns them for its reports."""
    notes = precision_notes(config)
    for note in notes:
        get_run_logger().info("precision: %s", note)
    return notes


def run_name(flow: str):
    """A flow run's name, the flow's and the config's (`grid · paper`), from its raw parameters."""
    def name() -> str:
        config = prefect_flow_run.parameters.get("config")
        label = config.name if isinstance(config, ExperimentConfig) else (config or {}).get("name", "?")
        return f"{flow} · {label}"
    return name


def model_units(config: ExperimentConfig) -> Units:
    """The submitter of `config`'s model-bound tasks (here, or as batches on workers: flows/units.py),
    with the store's cache records."""
    names = list(UNIT_TASKS)
    return Units(config, dict(zip(names, with_cache_records(list(UNIT_TASKS.values()), config.store))),
                 batches_per_model(config))


def submit_elicitation(config: ExperimentConfig, units: Units) -> Elicitation:
    """Submit the elicitation grid of `config`; its futures resolve as the tasks finish."""
    store = config.store
    q_task, join_task, pairs_task, ensemble_task, report_task, leaderboard_task, budget_task = with_cache_records(
        [make_questions, join_samples, method_pairs, ensemble_pairs, build_report, build_leaderboard,
         build_budget_report], store)
    out = Elicitation()
    for ds in config.datasets:
        out.questions[ds.tag] = q_task(ds, store)

    # Sampling: every shard of a generator, over all datasets, as one model's units.
    shards: dict[tuple[str, str], list[int]] = {}
    for gen in config.generators:
        calls = []
        for ds in config.datasets:
            questions, step = out.questions[ds.tag], config.sampling.shard_size
            judge_model = proxy_judge(config, ds, gen)  # once per dataset: it warns when it is the generator
            for start in range(0, questions["n"], step):
                shards.setdefault((ds.tag, gen), []).append(len(calls))
                calls.append(UnitCall("sample_shard", dict(
                    questions_uri=questions["uri"], start=start, stop=min(start + step, questions["n"]),
                    dataset=ds.name, model=config.model(gen), sampling=config.sampling_for(gen), store=store,
                    judge_model=judge_model)))
        futures = units.map(gen, "sample", calls)
        for ds in config.datasets:
            out.samples[(ds.tag, gen)] = join_task.submit([futures[i] for i in shards.get((ds.tag, gen), [])],
                                                          ds.name, gen, store)

    # Judging: every evaluator's verdicts on every generator's answers, as the evaluator's units.
    j = config.judge
    judge_methods = (["pairwise"] if "pairwise" in j.methods else []) + \
        ([f"score_k{k}" for k in j.score_k] if "score" in j.methods else [])
    for ev in config.evaluators:
        keys, calls = [], []
        for ds in config.datasets:
            for gen in config.generators:
                base = dict(samples_uri=out.samples[(ds.tag, gen)], dataset=ds.name, model=config.model(ev),
                            judge_config=j, store=store)
                for judge_method in judge_methods:
                    keys.append((ds.tag, gen, ev, judge_method))
                    calls.append(UnitCall("judge_pairwise", base) if judge_method == "pairwise"
                                 else UnitCall("judge_score", {**base, "k": int(judge_method[7:])}))
        out.judgments.update(zip(keys, units.map(ev, "judge", calls)))

    # Budget-aware judging: each pick's pairs at the largest budget, as the evaluator's units too.
    budget_entries = []
    if j.budget is not None:
        b = j.budget
        for ev in b.evaluators or config.evaluators:
            cells, calls = [], []
            for ds in [d for d in config.datasets if b.datasets is None or d.tag in b.datasets]:
                for gen in config.generators:
                    cell = {"dataset": ds.tag, "generator": gen, "evaluator": ev, "seed": b.seed,
                            "samples_uri": out.samples[(ds.tag, gen)]}
                    for pick in b.picks:
                        cells.append({**cell, "pick": pick})
                        calls.append(UnitCall("judge_budget", dict(
                            samples_uri=out.samples[(ds.tag, gen)], dataset=ds.name, model=config.model(ev),
                            judge_config=j, pick=pick, calls=max(b.calls), seed=b.seed, store=store)))
                    if (ds.tag, gen, ev, "pairwise") in out.judgments:  # where the curve is heading
                        budget_entries.append({**cell, "pick": "all pairs",
                                               "judgments_uri": out.judgments[(ds.tag, gen, ev, "pairwise")]})
            budget_entries += [{**c, "judgments_uri": f} for c, f in zip(cells, units.map(ev, "judge", calls))]

    # Every method's verdicts on the WoW pairs, then the report.
    entries, samples, judges = [], [], []
    for ds in config.datasets:
        for gen in config.generators:
            samples_uri, label = out.samples[(ds.tag, gen)], f"{ds.tag}.{gen}"
            samples.append({"dataset": ds.tag, "generator": gen, "uri": samples_uri})
            for method in (m for m in j.methods if m in SELF_SIGNALS):
                entries.append({"dataset": ds.tag, "generator": gen, "evaluator": SELF, "method": method,
                                "pairs_uri": pairs_task.submit(method, samples_uri, None, ds.name, label, store,
                                                               j.protocol)})
            for ev in config.evaluators:
                for judge_method in judge_methods:
                    uri = out.judgments[(ds.tag, gen, ev, judge_method)]
                    judges.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": judge_method,
                                   "uri": uri})
                    for method in (["pairwise", "pairwise_filtered"] if judge_method == "pairwise" else [judge_method]):
                        entries.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": method,
                                        "pairs_uri": pairs_task.submit(method, samples_uri, uri, ds.name,
                                                                       f"{label}.{ev}", store, j.protocol)})
            # Judge ensembles: their members' judgments of these answers, combined (no model call).
            for ens in j.ensembles:
                members = [out.judgments[(ds.tag, gen, m, ens.method)] for m in ens.members]
                entries.append({"dataset": ds.tag, "generator": gen, "evaluator": ens.name,
                                "method": ens.elicitation_method,
                                "pairs_uri": ensemble_task.submit(ens.rule, ens.method, samples_uri, members, ds.name,
                                                                  f"{label}.{ens.name}", store)})
    # Prefect resolves the futures nested in these lists and waits for them.
    ensembles = {e.name: e.members for e in j.ensembles}
    out.report = report_task.submit(config.name, entries, samples, judges, config.report.margins,
                                    config.report.confidence, store, j.protocol, ensembles or None)
    if config.report.leaderboard:
        out.leaderboard = leaderboard_task.submit(config.name, entries, judges, ensembles, config.report.confidence,
                                                  store)
    if budget_entries:
        out.budget = budget_task.submit(config.name, budget_entries, j.budget.calls, config.report.confidence, store)
    return out


@flow(name="elicit", flow_run_name=run_name("elicit"), validate_parameters=False, log_prints=True)
def elicit(config: ExperimentConfig) -> dict:
    """Run the wrong-over-wrong elicitation grid of `config` and write the AccWoW report."""
    config = checked_config(config)
    precision = say_precision(config)
    with store_access(config.store):
        units = model_units(config)
        uris = submit_elicitation(config, units).result()  # raises if an upstream task failed
        report_loads(units)
        publish_elicitation(Store(config.store), uris, config.name, config.report.confidence, precision)
    get_run_logger().info("report: %s", uris["md"])
    return uris

