"""Production setup on a running Prefect server: work pools, zombie detection, deployments.

`deployments/prefect.yaml` declares the deployments. Its build steps call `config_parameter`, so the
default `config` of each deployment is a YAML file from `configs/`, validated when it is deployed: the
Prefect UI shows the ExperimentConfig form filled with that file, and the YAML stays the only copy.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

from wow_core.config import ExperimentConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
WORK_POOLS = ("cpu", "gpu")
# Names the Prefect Secret block with the S3 endpoint, credentials and region (read by flows/elicit.py):
# set it in a worker's or work pool's environment, or `wow run --s3-secret NAME`.
S3_SECRET_BLOCK_ENV = "WOW_S3_SECRET_BLOCK"


def config_parameter(path: str) -> dict:
    """prefect.yaml build step: {config: the validated config at `path`, as JSON-ready values}."""
    return {"config": load_config(ROOT / path).model_dump(mode="json")}


def require_server() -> None:
    """Stop unless PREFECT_API_URL names a server: without one Prefect would start a temporary server
    and deploy to it, or run there, and forget everything when it stops."""
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("wow: needs a running Prefect server: start one with `prefect server start` and "
                         "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")


# Every flow run of the pools sends a heartbeat this often, and one that has sent none for
# ZOMBIE_AFTER_S (its machine died with it) is marked Crashed, so the grid runs its batch again
# elsewhere. The same frequency everywhere, and the wait well above it: a run whose heartbeats come
# slower than the automation expects is crashed while healthy.
HEARTBEAT_S = 30
ZOMBIE_AFTER_S = 120
ZOMBIE_AUTOMATION = "wow: crash flow runs whose heartbeats stopped"


def pool_template(existing: dict | None = None) -> dict:
    """A process pool's base job template (`existing`, or Prefect's default) with the heartbeat set in
    the environment of every flow run."""
    from prefect.workers.process import ProcessWorker
    template = existing or ProcessWorker.get_default_base_job_template()
    env = template["variables"]["properties"]["env"]
    env["default"] = {**env.get("default", {}), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
    return template


def zombie_automation():
    """Prefect's documented zombie detection (docs: "Detect zombie flows"): a flow run whose heartbeat
    is followed by neither another heartbeat nor a final state within ZOMBIE_AFTER_S is Crashed."""
    from datetime import timedelta

    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture, ResourceSpecification
    from prefect.client.schemas.objects import StateType
    return Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=ZOMBIE_AFTER_S)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {ZOMBIE_AFTER_S} s: its worker or machine died")])


def setup() -> int:
    """Create the work pools (their heartbeat set, everything else kept as it is when they exist), the
    zombie automation, and every deployment of prefect.yaml; returns `prefect deploy`'s exit status."""
    from prefect import get_client
    from prefect.automations import Automation
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for name in WORK_POOLS:
            try:
                pool = client.read_work_pool(name)
                client.update_work_pool(name, WorkPoolUpdate(base_job_template=pool_template(pool.base_job_template)))
                print(f"work pool '{name}' exists (heartbeat every {HEARTBEAT_S} s)")
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=pool_template()))
                print(f"work pool '{name}' created (process, heartbeat every {HEARTBEAT_S} s)")
    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        print(f"automation '{ZOMBIE_AUTOMATION}' exists")
    except ValueError:
        zombie_automation().create()
        print(f"automation '{ZOMBIE_AUTOMATION}' created ({ZOMBIE_AFTER_S} s)")
    # Prefect's own CLI applies prefect.yaml; deploying from ROOT makes the workers run flows from here.
    return subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                           "--prefect-file", str(PREFECT_YAML)], cwd=ROOT).returncode


def trigger(deployment: str, config: ExperimentConfig, poll_seconds: float = 5, env: dict | None = None) -> int:
    """Run `deployment` ('flow/name') with `config` on a worker, wait for it and print its reports.
    `env`: variables added to the flow run's environment (names of blocks, never secrets themselves).

    Returns 0 when the flow run completed, 1 otherwise."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter
    from prefect.deployments import run_deployment
    from prefect.utilities.urls import url_for

    run = run_deployment(deployment, parameters={"config": config.model_dump(mode="json")}, timeout=0,
                         job_variables={"env": env} if env else None)
    print(f"flow run '{run.name}' of {deployment}: {url_for(run)}", flush=True)
    with get_client(sync_client=True) as client:
        while not (state := client.read_flow_run(run.id).state).is_final():
            time.sleep(poll_seconds)
        reports = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id={"any_": [run.id]}, type={"any_": ["markdown"]}))
    for report in reports:
        print(report.data + "\n")
    print(f"flow run '{run.name}': {state.name}" + (f" ({state.message})" if state.message else ""))
    return 0 if state.is_completed() else 1
