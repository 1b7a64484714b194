"""The store on a real S3-compatible server (moto, started here) with the real model: the elicitation
flow end to end on s3://, a cached rerun from a fresh process, and the faults production meets: the
endpoint down for 30 s, down for good, and the run killed with SIGKILL."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
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
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([str(BIN / "wow"), "run", str(config), "--flow", "elicit"], cwd=ROOT,
                                         env={**os.environ, "PREFECT_API_URL": api_url, **env},
                                         start_new_session=True, stdout=out, stderr=err)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """Exit code, stdout and stderr once the run has ended."""
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.out.read_text(), self.err.read_text()


def wait_for(s3: S3Server, pattern: str, run: WowRun, timeout: float = 300) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := s3.storage.glob(f"{BUCKET}/{pattern}"):
            return found
        assert run.proc.poll() is None, run.err.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} after {timeout} s")


def latest_flow_run_task_states(task_states) -> dict[str, list[str]]:
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    return task_states(run.state)


def report(store_url: str) -> tuple[pd.DataFrame, str]:
    """The AccWoW table and markdown of the one report in a store."""
    store = Store(store_url)
    [md] = store.fs.glob(f"{store_url}/reports/*.md")
    [table] = store.fs.glob(f"{store_url}/reports/*.parquet")
    return store.read_table(table), store.read_text(md)


def assert_same_report(store_url: str, expected_store_url: str) -> None:
    (table, md), (expected_table, expected_md) = report(store_url), report(expected_store_url)
    pd.testing.assert_frame_equal(table, expected_table)
    # The plot's name carries its key, which covers the store's URL.
    plot_name = re.compile(r"[\w.-]+-[0-9a-f]{20}\.png")
    assert plot_name.sub("PLOT", md) == plot_name.sub("PLOT", expected_md)


def assert_only_whole_artifacts(s3: S3Server, prefix: str) -> list[str]:
    """Every object under the prefix is a whole artifact (tables parse) and none is a temporary one."""
    keys = s3.storage.find(f"{BUCKET}/{prefix}")
    assert not [k for k in keys if ".tmp-" in k]
    for key in keys:
        if key.endswith(".parquet"):
            pd.read_parquet(s3.storage.open(key, "rb"))
    return keys


@pytest.fixture(scope="module")
def clean_run(s3, harness, tmp_path_factory):
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
    assert uris["md"].startswith(f"s3://{BUCKET}/clean/reports/")
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


def test_rerun_in_fresh_process_reads_s3_and_runs_no_model(clean_run, harness, task_states, tmp_path):
    config, state = clean_run
    # A new PREFECT_HOME: no local result storage to fall back on, as on another worker.
    run = WowRun(config_file(tmp_path, "clean"), harness, PREFECT_HOME=str(tmp_path / "fresh-home"))
    returncode, out, err = run.wait(timeout=300)
    assert returncode == 0, err[-3000:]
    assert report(config.store)[1] in out
    assert SECRET not in out + err
    states = latest_flow_run_task_states(task_states)
    # Every task was a cache hit: no task body ran, so no model was loaded or called.
    assert states and {s for names in states.values() for s in names} == {"Cached"}, states


def test_sigkill_mid_run_then_rerun_redoes_only_unfinished_shards(clean_run, s3, harness, task_states, tmp_path):
    config_path = config_file(tmp_path, "killed")
    run = WowRun(config_path, harness)
    # The first shard's cache record is committed after its artifact: kill once it is there.
    wait_for(s3, "killed/_prefect/sample-*", run)
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert len(s3.storage.glob(f"{BUCKET}/killed/samples/shards/*")) == 1
    assert_only_whole_artifacts(s3, "killed")

    config = load_config(config_path)
    rerun = elicit(config, return_state=True)
    states = task_states(rerun)
    assert sorted(states["sample_shard"]) == ["Cached", "Completed"]
    assert_same_report(config.store, clean_run[0].store)


def test_endpoint_down_30_s_mid_run_and_back(clean_run, s3, harness, tmp_path):
    config_path = config_file(tmp_path, "outage")
    run = WowRun(config_path, harness, PREFECT_LOGGING_LEVEL="INFO")
    wait_for(s3, "outage/_prefect/sample-*", run)
    s3.stop()
    down = time.monotonic()
    try:
        time.sleep(30)
        assert run.proc.poll() is None  # the run waits the outage out
    finally:
        s3.start()
    returncode, out, err = run.wait(timeout=300)
    print(f"outage run: finished {time.monotonic() - down:.1f} s after the endpoint went down")
    assert returncode == 0, err[-3000:]
    assert "Could not connect to the endpoint URL" in err  # it did meet the outage
    assert SECRET not in out + err
    assert_same_report(load_config(config_path).store, clean_run[0].store)


def test_endpoint_gone_for_good_fails_in_bounded_time_and_leaves_no_partial_artifact(s3, harness, tmp_path):
    run = WowRun(config_file(tmp_path, "gone"), harness)
    wait_for(s3, "gone/_prefect/sample-*", run)
    s3.stop()
    down = time.monotonic()
    try:
        returncode, out, err = run.wait(timeout=240)
    finally:
        s3.start()
    failed_after = time.monotonic() - down
    print(f"endpoint gone: the run failed {failed_after:.1f} s later")
    # ~70 s of retries once the running shard first needs the store (it was still sampling).
    assert returncode != 0 and failed_after < 200
    assert "Finished in state Failed('Task run encountered an exception EndpointConnectionError: Could not " \
           "connect to the endpoint URL" in err, err[-3000:]
    assert SECRET not in out + err
    keys = assert_only_whole_artifacts(s3, "gone")
    assert len([k for k in keys if "/samples/shards/" in k]) == 1
    assert not [k for k in keys if "/reports/" in k]
