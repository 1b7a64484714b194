"""Deployments on a running `prefect server start`: `wow deploy` creates the work pools, the `gpu` limit
and every deployment of deployments/prefect.yaml; a process worker runs a deployment triggered from
the CLI with a tiny config; the model tasks of that run never overlap, read back from the API."""
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from flows.deploy import config_parameter

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

# Three one-question shards: three model tasks are submitted at once and must wait for the one slot.
TINY = {
    "name": "tiny-deploy",
    "datasets": [{"name": "nlgraph_shortest_path", "n_questions": 3, "seed": 2}],
    "sampling": {"n": 2, "max_new_tokens": 12, "shard_size": 1, "extraction_max_new_tokens": 6},
    "judge": {"methods": ["length", "pairwise"], "max_new_tokens": 8, "max_pairs_per_question": 1},
}


def post(api: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{api}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def get(api: str, path: str, **params) -> dict | list:
    response = httpx.get(f"{api}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def model_task_runs(api: str, flow_run_id: str, expected: int) -> list[dict]:
    """The flow run's `gpu`-tagged task runs by start time, once the server has recorded all of them
    (task-run states reach it as events, a moment after the flow run ends)."""
    deadline = time.monotonic() + 60
    while True:
        runs = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        runs = [r for r in runs if "gpu" in r["tags"]]
        if (len(runs) == expected and all(r["end_time"] for r in runs)) or time.monotonic() > deadline:
            return sorted(runs, key=lambda r: r["start_time"] or "")
        time.sleep(1)


def test_deploy_run_on_worker_and_gpu_limit(tmp_path, prefect_server):
    api, env = prefect_server
    env = {**env, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "INFO"}
    deploy = subprocess.run([str(BIN / "wow"), "deploy"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    assert {name: get(api, f"/work_pools/{name}")["type"] for name in ("cpu", "gpu")} == {"cpu": "process",
                                                                                           "gpu": "process"}
    assert get(api, "/concurrency_limits/tag/gpu")["concurrency_limit"] == 1
    flows = {f["id"]: f["name"] for f in post(api, "/flows/filter", {})}
    deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in post(api, "/deployments/filter", {})}
    assert sorted(deployments) == ["align/cpu", "align/gpu", "elicit/cpu", "elicit/gpu", "grid/cpu", "grid/gpu",
                                   "grid/grid-nightly"]
    # Each deployment's default config is its config file; the form is the ExperimentConfig model.
    paper, demo = config_parameter("configs/paper.yaml"), config_parameter("configs/demo.yaml")
    for name, d in deployments.items():
        on_cpu = name.endswith("/cpu")
        assert d["work_pool_name"] == ("cpu" if on_cpu else "gpu"), name
        assert d["parameters"] == (demo if on_cpu else paper), name
        schema = d["parameter_openapi_schema"]
        assert schema["required"] == ["config"] and "ExperimentConfig" in schema["definitions"], name
    nightly = deployments["grid/grid-nightly"]
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "store": str(tmp_path / "store")}))
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "cpu"], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            run = subprocess.run([str(BIN / "wow"), "run", str(config), "--flow", "elicit", "--deployment", "cpu"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a loaded machine can leave it in its backoff loop: not under test
                worker.kill()
                worker.wait()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + (tmp_path / "worker.log").read_text()[-5000:]
    assert "# AccWoW report: tiny-deploy" in run.stdout

    # (The nightly schedule has queued runs of grid-nightly by now; they wait for a gpu worker.)
    [flow_run] = post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployments["elicit/cpu"]["id"]]}}})
    assert flow_run["state_type"] == "COMPLETED" and f"/runs/flow-run/{flow_run['id']}" in run.stdout
    assert flow_run["parameters"]["config"]["name"] == "tiny-deploy"
    model_runs = model_task_runs(api, flow_run["id"], expected=4)
    assert [r["state_type"] for r in model_runs] == ["COMPLETED"] * len(model_runs)
    assert sorted(r["name"].rsplit("-", 1)[0] for r in model_runs) == ["judge_pairwise"] + ["sample_shard"] * 3
    # One at a time: each model task started after the previous one ended.
    for before, after in zip(model_runs, model_runs[1:]):
        assert when(after["start_time"]) >= when(before["end_time"]), (before["name"], after["name"])
    # And the limit is why: every shard was already waiting (Pending) while the first one ran.
    shards = [r for r in model_runs if r["name"].startswith("sample_shard")]
    pending = [min(when(s["timestamp"]) for s in get(api, "/task_run_states/", task_run_id=r["id"])
                   if s["type"] == "PENDING") for r in shards]
    assert max(pending) < when(shards[0]["end_time"]), (pending, shards[0]["end_time"])
