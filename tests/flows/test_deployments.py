"""Deployments on a running `prefect server start`: `wow deploy` creates the work pools (with their
heartbeat), the zombie-run automation and every deployment of deployments/prefect.yaml; a process
worker runs a deployment triggered from the CLI with a tiny config."""
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from flows.deploy import config_parameter

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

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


def test_deploy_then_run_on_a_worker(tmp_path, prefect_server):
    api, env = prefect_server
    env = {**env, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "INFO"}
    deploy = subprocess.run([str(BIN / "wow"), "deploy"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    for name in ("cpu", "gpu"):
        pool = get(api, f"/work_pools/{name}")
        assert pool["type"] == "process"
        flow_run_env = pool["base_job_template"]["variables"]["properties"]["env"]["default"]
        assert flow_run_env == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}  # the zombie automation counts on it
    [zombies] = post(api, "/automations/filter", {})
    assert zombies["name"] == "wow: crash flow runs whose heartbeats stopped"
    assert zombies["trigger"]["within"] == 120 and zombies["actions"][0]["state"] == "CRASHED"
    assert post(api, "/concurrency_limits/filter", {}) == []  # one model per GPU worker: the worker's --limit 1
    flows = {f["id"]: f["name"] for f in post(api, "/flows/filter", {})}
    deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in post(api, "/deployments/filter", {})}
    assert sorted(deployments) == ["align/cpu", "align/gpu", "elicit/cpu", "elicit/gpu", "grid/cpu", "grid/gpu",
                                   "grid/grid-nightly", "unit/cpu", "unit/gpu"]
    # Each grid's default config is its config file; the form is the ExperimentConfig model. Grids run on
    # the cpu pool (they hold no model); the paper's send their model work to unit/gpu.
    paper, demo = config_parameter("configs/paper.yaml"), config_parameter("configs/demo.yaml")
    for name, d in deployments.items():
        assert d["description"], name
        schema = d["parameter_openapi_schema"]
        if name.startswith("unit/"):
            assert d["work_pool_name"] == name[5:] and d["parameters"] == {}, name
            assert schema["required"] == ["config", "batch"], name
            continue
        assert d["work_pool_name"] == "cpu", name
        assert d["parameters"] == (demo if name.endswith("/cpu") else paper), name
        assert schema["required"] == ["config"] and "ExperimentConfig" in schema["definitions"], name
    assert paper["config"]["execution"]["workers"] == "auto"
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

    # (The nightly schedule has queued runs of grid-nightly by now, hours ahead: the worker leaves them.)
    [flow_run] = post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployments["elicit/cpu"]["id"]]}}})
    assert flow_run["state_type"] == "COMPLETED" and f"/runs/flow-run/{flow_run['id']}" in run.stdout
    assert flow_run["parameters"]["config"]["name"] == "tiny-deploy"
