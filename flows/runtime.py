"""What every flow run needs around its tasks, apart from the science: the store's retry policy and
cache records (`run_tasks`), credentials from a Secret block and the first real error
(`store_access`), the checked config, the run's name and the precision it logs. Read when a flow run
starts, never when a module is imported."""
import hashlib
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import fsspec
from prefect import get_run_logger
from prefect.blocks.system import Secret
from prefect.context import FlowRunContext
from prefect.filesystems import RemoteFileSystem
from prefect.runtime import flow_run as prefect_flow_run

from flows.deploy import S3_SECRET_BLOCK_ENV
from wow_core.backends import ModelLoadError
from wow_core.config import ExperimentConfig, parse_config
from wow_core.datasets import DataError
from wow_core.machine import precision_note
from wow_core.store import StoreUnreachable, storage_options

T = TypeVar("T")
RETRY_DELAYS_ENV = "WOW_STORE_RETRY_DELAYS"
MAX_RETRIES = 50  # Prefect's own limit on retry delays
MAX_RETRY_DELAY = 24 * 3600.0  # a longer wait is a typo ("inf", "1e400"), not a plan


def io_retries(value: str | None) -> dict:
    """Prefect retry options from $WOW_STORE_RETRY_DELAYS: the seconds before each retry of a task,
    comma-separated ("2,10,20", the default; "" for none).

    Each store call already retries for ~4-9 s (botocore); with the default a task outlives a ~40 s
    outage of the object store, and fails about 70 s into one that lasts (docs/operations-storage.md).

    Raises:
        ValueError: a delay that is not a number >= 0, naming the variable.
    """
    if value is None:
        return dict(retries=3, retry_delay_seconds=[2, 10, 20], retry_condition_fn=not_a_model_error)
    try:
        delays = [float(d) for d in value.split(",") if d.strip()]
    except ValueError:
        delays = [-1.0]
    if len(delays) > MAX_RETRIES or not all(0 <= d <= MAX_RETRY_DELAY for d in delays):  # also refuses nan
        raise ValueError(f"{RETRY_DELAYS_ENV}={value!r}: expected up to {MAX_RETRIES} delays of 0 to "
                         f"{MAX_RETRY_DELAY:.0f} seconds before each retry, comma-separated, e.g. '2,10,20' "
                         "(or '' for no retries)")
    return dict(retries=len(delays), retry_delay_seconds=delays, retry_condition_fn=not_a_model_error)


def retrying_store(call: Callable[[], T], what: str) -> T:
    """`call()`, retried on StoreUnreachable with the delays of `io_retries`: for the store calls a flow
    makes outside its tasks (a batch's manifest), which Prefect's task retries do not cover."""
    delays = io_retries(os.environ.get(RETRY_DELAYS_ENV))["retry_delay_seconds"]
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            return call()
        except StoreUnreachable as err:
            if delay is None:
                raise
            get_run_logger().warning("%s: %s; retry %d of %d in %.0f s", what, err, attempt, len(delays), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def not_a_model_error(task, task_run, state) -> bool:
    """Retry what may pass (the store, a network); a model that could not load will not load on retry,
    nor will a malformed dataset file parse."""
    try:
        state.result()
    except (ModelLoadError, DataError):
        return False
    except BaseException:
        return True
    return True


def run_tasks(tasks: list, store: str) -> list:
    """The tasks as this run submits them: store retries from the environment as it is now
    (`io_retries`), failures remembered for `store_access`, and Prefect's cache records kept inside the
    store, so every worker and later run finds them and deleting the store forgets them too.

    The store's `_prefect/` holds whole records (result and metadata in one file) as the tasks' result
    storage. Whole, because a record whose result lies elsewhere (Prefect's default: the metadata in
    the cache policy's key storage, the result under the writer's own $PREFECT_HOME) fails the task
    when another worker, user or home reads it, where an unreadable whole record is only a cache miss.
    A local folder goes in as a path; an object store through a RemoteFileSystem block, because
    Prefect accepts only a saved block there. The block holds the bucket path and timeouts, never
    credentials (s3fs reads those from the environment)."""
    retries = io_retries(os.environ.get(RETRY_DELAYS_ENV))
    tasks = [t.with_options(on_failure=[_remember_failure], **retries) for t in tasks]
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
        raise S3SecretError(f"Prefect Secret block '{block}': unknown key(s) {unknown}; "
                            f"known: {sorted(S3_SECRET_KEYS)}")
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
    if variables:
        forget_s3_clients()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if variables:
            forget_s3_clients()


def forget_s3_clients() -> None:
    """fsspec hands out one cached S3 filesystem per set of options, with the endpoint and credentials
    it was made with: after the variables change, the next store must make a new one."""
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
        # The root cause, not the UnfinishedRun it led to (`from` suppresses that context), with the
        # cause it was itself raised from (the client's error) kept.
        raise cause from cause.__cause__
    finally:
        _TASK_FAILURES.pop(flow_run_id, None)


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


