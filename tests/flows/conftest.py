import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter


def _task_states(state) -> dict[str, list[str]]:
    """Task name -> state names of one flow run, read back from the Prefect API."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [state.state_details.flow_run_id]}))
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return out


@pytest.fixture
def task_states():
    return _task_states
