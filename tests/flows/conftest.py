import pytest
from servers import start_prefect_server

from flows.task_runs import recorded_task_runs


def _task_states(state, settle_s: float = 60) -> dict[str, list[str]]:
    """Task name -> state names of one flow run, as the server has recorded them once it has caught up
    (flows/task_runs.py: states arrive as events it writes in the background)."""
    out: dict[str, list[str]] = {}
    for r in recorded_task_runs(state.state_details.flow_run_id, settle_s):
        # The task's key is its function's name and a code hash; the run's name says dataset, model, ...
        out.setdefault(r.task_key.rsplit("-", 1)[0], []).append(r.state.name)
    return out


@pytest.fixture
def task_states():
    return _task_states


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start` on a free port with its own PREFECT_HOME: (api URL, environment)."""
    try:
        api, env, proc = start_prefect_server(tmp_path)
    except RuntimeError as err:
        pytest.fail(str(err))
    yield api, env
    proc.terminate()
    proc.wait(timeout=30)
