"""What the Prefect server has recorded of a flow run's task runs.

Task runs report their states as events, which the server writes in the background: right after a
flow returns, a busy server can still show some as Pending or Running, or not show them yet. A
temporary server stopped at that moment cancels the writes (logging a traceback for each batch) and
its database keeps the run unfinished.
"""
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.objects import TaskRun

PAGE = 200  # the server's default page size


def recorded_task_runs(flow_run_id, settle_s: float = 60.0, poll_s: float = 1.0) -> list[TaskRun]:
    """The task runs of `flow_run_id` once the server shows every one in a final state and no new one
    has appeared since the last look; as they are after `settle_s` otherwise."""
    deadline = time.monotonic() + settle_s
    seen = None
    with get_client(sync_client=True) as client:
        while True:
            runs: list[TaskRun] = []
            while len(page := client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}),
                                                    limit=PAGE, offset=len(runs))) == PAGE:
                runs += page
            runs += page
            if (len(runs) == seen and all(r.state and r.state.is_final() for r in runs)) \
                    or time.monotonic() > deadline:
                return runs
            seen = len(runs)
            time.sleep(poll_s)
