"""The store on a real S3-compatible server (SeaweedFS, started here) with the real model: the elicitation
flow end to end on s3://, a cached rerun from a fresh process with the credentials in a Prefect Secret
block, and the faults production meets: the endpoint down for 30 s, down for good, and the run killed
with SIGKILL.

The three fault runs are `wow run` processes started together at the beginning (`fault_runs`), each
through its own endpoint to the same server, so their waits (the outage, retries, process starts) overlap
the clean run and each other; each test then checks its own run's outcome."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from flows.elicit import elicit
from s3_endpoint import KEY_ID, SECRET, S3Server
from wow_core.config import load_config
from wow_core.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "wow-test"
# Two questions in shards of one: a run has a finished shard before its last one is done.
TINY = """\
name: tiny-s3
store: s3://{bucket}/{prefix}
datasets:
  - name: nlgraph_shortest_path
    n_questions: 2
    seed: 5
sampling: {{n: 3, max_new_tokens: 16, shard_size: 1, extraction_max_new_tokens: 8}}
judge: {{methods: [length, logits, pairwise], max_new_tokens: 8, max_pairs_per_question: 1}}
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.storage.mkdir(BUCKET)
    with pytest.MonkeyPatch.context() as env:
        # The standard AWS variables, read by botocore: what an operator sets for S3 or MinIO.
        env.setenv("AWS_ENDPOINT_URL", server.url)
        env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield server
    server.close()


@pytest.fixture(scope="module")
def harness(s3):
    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def config_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(TINY.format(bucket=BUCKET, prefix=prefix))
    return path


class WowRun:
    """`wow run --flow elicit` in a fresh process, against the test's Prefect server; output to files
    (a pipe nobody reads would stall the run once full)."""

    def __init__(self, config: Path, api_url: str, **env):
        self.out, self.err = config.with_suffix(".out"), config.with_suffix(".err")
        # The fault tests' bounds are those of the default store retries.
        base = {k: v for k, v in os.environ.items() if k != "WOW_STORE_RETRY_DELAYS"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([str(BIN / "wow"), "run", str(config), "--flow", "elicit"], cwd=ROOT,
                                         env={**base, "PREFECT_API_URL": api_url, **env},
                                         start_new_session=True, stdout=out, stderr=err)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """Exit code, stdout and stderr once the run has ended."""
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.out.read_text(), self.err.read_text()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Leave no run behind when a test gives up on it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(s3: S3Server, pattern: str, run: WowRun, timeout: float = 600) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := s3.storage.glob(f"{BUCKET}/{pattern}"):
            return found
        assert run.proc.poll() is None, run.err.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} after {timeout} s")


def latest_flow_run(store_url: str):
    """The latest flow run on `store_url` (other runs go on at the same time on other prefixes)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
    return next(r for r in runs if r.parameters.get("config", {}).get("store") == store_url)


def report(store_url: str) -> tuple[pd.DataFrame, str]:
    """The AccWoW table and markdown of the one report in a store."""
    store = Store(store_url)
    [md] = store.glob("reports/*.md")
    [table] = [u for u in store.glob("reports/*.parquet") if ".judges-" not in u]
    return store.read_table(table), store.read_text(md)


def assert_same_report(store_url: str, expected_store_url: str) -> None:
    (table, md), (expected_table, expected_md) = report(store_url), report(expected_store_url)
    pd.testing.assert_frame_equal(table, expected_table)
    assert md == expected_md  # the plot's name too: its key does not hold where the store is


def assert_only_whole_artifacts(s3: S3Server, prefix: str) -> list[str]:
    """Every object under the prefix is a whole artifact (tables parse) and none is a temporary one."""
    keys = s3.storage.find(f"{BUCKET}/{prefix}")
    assert not [k for k in keys if ".tmp-" in k]
    for key in keys:
        if key.endswith(".parquet"):
            pd.read_parquet(s3.storage.open(key, "rb"))
    return keys


def run_killed_after_first_shard(s3: S3Server, harness: str, tmp: Path) -> dict:
    """A run SIGKILLed once its first shard is committed (its cache record is written after its artifact),
    what it left in the bucket, then the same command again."""
    config_path = config_file(tmp, "killed")
    with WowRun(config_path, harness) as run:
        wait_for(s3, "killed/_prefect/sample-*", run)
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.wait(timeout=30)
    shards = s3.storage.glob(f"{BUCKET}/killed/samples/shards/*")
    assert_only_whole_artifacts(s3, "killed")
    with WowRun(config_path, harness) as rerun:
        returncode, out, err = rerun.wait(timeout=600)
    return dict(config_path=config_path, shards_left=shards, returncode=returncode, err=err)


def run_through_outage(s3: S3Server, harness: str, tmp: Path) -> dict:
    """A run whose endpoint goes down for 30 s once its first shard is committed (production retries), or
    longer if the run has not met the outage by then."""
    endpoint = s3.endpoint()
    config_path = config_file(tmp, "outage")
    with WowRun(config_path, harness, AWS_ENDPOINT_URL=endpoint.url, PREFECT_LOGGING_LEVEL="INFO") as run:
        wait_for(s3, "outage/_prefect/sample-*", run)
        endpoint.stop()
        down = time.monotonic()
        try:
            time.sleep(30)
            # The other shard is still sampling; on a machine this busy it might not need the store within
            # 30 s: then stay down until the run has met the outage (its task logs the failed call).
            deadline = time.monotonic() + 120
            while "could not be reached" not in run.err.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
            waited = run.proc.poll() is None  # the run waits the outage out
        finally:
            endpoint.start()
        outage = time.monotonic() - down
        returncode, out, err = run.wait(timeout=600)
    return dict(config_path=config_path, waited=waited, returncode=returncode, out=out, err=err, outage=outage,
                finished_after=time.monotonic() - down)


def run_store_gone(s3: S3Server, harness: str, tmp: Path) -> dict:
    """A run whose endpoint dies for good once its first shard is committed. botocore tries each call
    once (AWS_MAX_ATTEMPTS=1, production: 5), so the run's end is set by the tasks' own retries."""
    endpoint = s3.endpoint()
    with WowRun(config_file(tmp, "gone"), harness, AWS_ENDPOINT_URL=endpoint.url, AWS_MAX_ATTEMPTS="1") as run:
        wait_for(s3, "gone/_prefect/sample-*", run)
        endpoint.stop()
        down = time.monotonic()
        returncode, out, err = run.wait(timeout=600)
    return dict(returncode=returncode, out=out, err=err, failed_after=time.monotonic() - down)


@pytest.fixture(scope="module")
def fault_runs(s3, harness, tmp_path_factory) -> dict[str, Future]:
    """The three fault runs, started at once in fresh processes: {killed, outage, gone} -> its outcome."""
    tmp = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(3) as pool:
        yield {name: pool.submit(fn, s3, harness, tmp) for name, fn in
               [("killed", run_killed_after_first_shard), ("outage", run_through_outage), ("gone", run_store_gone)]}


@pytest.fixture(scope="module")
def clean_run(s3, harness, fault_runs, tmp_path_factory):
    """The uninterrupted run, in this process (the fault runs, started first, go on meanwhile)."""
    config = load_config(config_file(tmp_path_factory.mktemp("cfg"), "clean"))
    started = time.monotonic()
    state = elicit(config, return_state=True)
    print(f"clean run on s3: {time.monotonic() - started:.1f} s")
    return config, state


@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_writers_of_one_artifact_never_expose_half_of_it(where, s3, tmp_path):
    store = Store(str(tmp_path) if where == "local" else f"s3://{BUCKET}/race")
    uri = store.uri("samples", "race", "ab" * 32, "parquet")
    table = pd.DataFrame({"answer": [f"answer {i}" * 50 for i in range(2000)]})
    seen, done = [], threading.Event()

    def read_until_done():
        while not done.is_set():
            try:
                seen.append(store.read_table(uri))
            except FileNotFoundError:
                pass

    reader = threading.Thread(target=read_until_done)
    reader.start()
    writers = [threading.Thread(target=store.write_table, args=(uri, table)) for _ in range(6)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    for got in [*seen, store.read_table(uri)]:
        pd.testing.assert_frame_equal(got, table)
    assert not [p for p in store.fs.find(store.url) if ".tmp-" in p]


def test_elicitation_end_to_end_on_s3(clean_run, s3):
    config, state = clean_run
    assert state.is_completed()
    uris = state.result()
    assert uris["md"].startswith("reports/")  # relative to the store: where the store is is in no result
    table, markdown = report(config.store)
    assert set(table.method) == {"length", "logits", "pairwise", "pairwise_filtered"}
    assert "# AccWoW report: tiny-s3" in markdown
    keys = assert_only_whole_artifacts(s3, "clean")
    assert len([k for k in keys if "/samples/shards/" in k]) == 2
    # Prefect's cache records live in the bucket beside the artifacts, one per task.
    assert [k for k in keys if "/clean/_prefect/sample-" in k]
    # Credentials reach neither an artifact nor a Prefect block.
    assert not [k for k in keys if SECRET.encode() in s3.storage.cat(k)]
    with get_client(sync_client=True) as client:
        assert not [b.name for b in client.read_block_documents(include_secrets=True) if SECRET in str(b.data)]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    # The UI's report shows its plot, read from the bucket, and links the report's object.
    [artifact] = [a for a in artifacts if a.key == "tiny-s3-elicit-accwow-report"]
    assert artifact.data.count("](data:image/png;base64,iVBORw0KGgo") == 1
    url = f"s3://{BUCKET}/clean/{uris['md']}"
    assert artifact.description.endswith(f"[{url}]({url})")


def test_rerun_in_fresh_process_with_credentials_from_a_secret_block_runs_no_model(clean_run, s3, harness,
                                                                                   task_states, tmp_path):
    """Another worker: a new PREFECT_HOME (no local result storage to fall back on) and no AWS variables
    or files at all; endpoint, credentials and region come from a Prefect Secret block."""
    config, state = clean_run
    Secret(value={"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, "endpoint_url": s3.url,
                  "region": "us-east-1"}).save("wow-s3-test", overwrite=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               PREFECT_API_URL=harness, PREFECT_HOME=str(tmp_path / "fresh-home"), PREFECT_LOGGING_LEVEL="DEBUG")
    config_path = config_file(tmp_path, "clean")
    done = subprocess.run([str(BIN / "wow"), "run", str(config_path), "--flow", "elicit", "--s3-secret", "wow-s3-test"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report(config.store)[1] in done.stdout
    run = latest_flow_run(config.store)
    # Every task was a cache hit: records and results read back from S3, no task body ran, no model loaded.
    states = task_states(run.state)
    assert states and {s for names in states.values() for s in names} == {"Cached"}, states
    # The secret is in no output, no log on the server, no Prefect artifact, no object, no other block.
    assert SECRET not in done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        assert logs and not [log.message for log in logs if SECRET in log.message]
        artifacts = client.read_artifacts()
        assert artifacts and not [a.key for a in artifacts if SECRET in str(a.data) + str(a.description)]
        assert not [b.name for b in client.read_block_documents(include_secrets=True)
                    if SECRET in str(b.data) and b.name != "wow-s3-test"]
        assert SECRET not in str(client.read_flow_run(run.id).parameters)
    assert not [k for k in s3.storage.find(BUCKET) if SECRET.encode() in s3.storage.cat(k)]


def test_sigkill_mid_run_then_rerun_redoes_only_unfinished_shards(clean_run, fault_runs, task_states):
    run = fault_runs["killed"].result(timeout=600)
    assert len(run["shards_left"]) == 1  # and only whole artifacts (checked right after the kill)
    assert run["returncode"] == 0, run["err"][-3000:]
    config = load_config(run["config_path"])
    states = task_states(latest_flow_run(config.store).state)
    assert sorted(states["sample_shard"]) == ["Cached", "Completed"]
    assert_same_report(config.store, clean_run[0].store)


def test_endpoint_down_30_s_mid_run_and_back(clean_run, fault_runs):
    run = fault_runs["outage"].result(timeout=600)
    print(f"outage run: endpoint down {run['outage']:.1f} s; the run finished {run['finished_after']:.1f} s after "
          "it went down")
    assert run["waited"] and run["returncode"] == 0, run["err"][-3000:]
    assert "Could not connect to the endpoint URL" in run["err"]  # it did meet the outage
    assert 30 <= run["outage"] < 150
    assert SECRET not in run["out"] + run["err"]
    assert_same_report(load_config(run["config_path"]).store, clean_run[0].store)


def test_endpoint_gone_for_good_fails_in_bounded_time_with_a_clear_error_and_no_partial_artifact(fault_runs, s3):
    run = fault_runs["gone"].result(timeout=600)
    print(f"endpoint gone: the run failed {run['failed_after']:.1f} s later")
    # The shard that meets it may still be sampling; then each store call fails at once and the task's
    # 3 retries wait 2 + 10 + 20 s.
    assert run["returncode"] == 1 and run["failed_after"] < 150, run["err"][-3000:]
    # `wow run` ends with one line naming the store, the artifact and the cause; never credentials.
    last = run["err"].strip().splitlines()[-1]
    assert re.fullmatch(rf"wow: the store s3://{BUCKET}/gone could not be reached while (writing|reading|checking "
                        rf"for) s3://{BUCKET}/gone/\S+ \(EndpointConnectionError: Could not connect to the "
                        rf"endpoint URL: .*\)", last), last
    assert SECRET not in run["out"] + run["err"] and KEY_ID not in last
    # The flow run's own final state says so too, not Prefect's UnfinishedRun for the report.
    state = latest_flow_run(f"s3://{BUCKET}/gone").state
    assert state.is_failed() and f"StoreUnreachable: the store s3://{BUCKET}/gone could not be reached" in state.message
    keys = assert_only_whole_artifacts(s3, "gone")
    assert len([k for k in keys if "/samples/shards/" in k]) == 1
    assert not [k for k in keys if "/reports/" in k]
