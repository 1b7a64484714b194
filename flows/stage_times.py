"""Where a run's time went: its task runs grouped by stage, as the Prefect server recorded them.

A stage is what a task run's name starts with (`sample · nlgraph_shortest_path · ...` is `sample`;
held-out answering is `evaluate`). For each: how many task runs, when the first started and the last
ended (seconds from the flow run's start) and their summed run time. Tasks run in threads and the
engine batches their requests, so stages overlap: the span says when a stage held the run up, the sum
how much work it was. `wow run` prints this after the reports; `wow profile FLOW_RUN_ID` reads it from
a running server.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class StageTime:
    stage: str
    tasks: int
    cached: int
    first_start_s: float
    last_end_s: float
    busy_s: float


def stage_of(task_run_name: str) -> str:
    return task_run_name.split(" · ", 1)[0]


def stage_times(task_runs: list, flow_start) -> list[StageTime]:
    """Per stage, in the order stages first started. `task_runs`: Prefect TaskRun objects (name,
    start_time, end_time, total_run_time, state); those that never started are left out."""
    groups: dict[str, list] = {}
    for run in sorted((r for r in task_runs if r.start_time is not None), key=lambda r: r.start_time):
        groups.setdefault(stage_of(run.name), []).append(run)
    rows = []
    for stage, runs in groups.items():
        ends = [r.end_time for r in runs if r.end_time is not None]
        rows.append(StageTime(
            stage=stage, tasks=len(runs), cached=sum(r.state is not None and r.state.name == "Cached" for r in runs),
            first_start_s=(runs[0].start_time - flow_start).total_seconds(),
            last_end_s=(max(ends) - flow_start).total_seconds() if ends else float("nan"),
            busy_s=sum(r.total_run_time.total_seconds() for r in runs)))
    return rows


def render(rows: list[StageTime], total_s: float) -> str:
    """A markdown table of `stage_times`, minutes and seconds."""
    def clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds == seconds else "-"
    lines = [f"Where the time went (flow run {clock(total_s)}; stages overlap, see flows/stage_times.py):", "",
             "| stage | task runs | cached | first started | last ended | summed run time |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.tasks} | {r.cached} | {clock(r.first_start_s)} | {clock(r.last_end_s)} | "
              f"{clock(r.busy_s)} |" for r in rows]
    return "\n".join(lines)


def flow_run_profile(flow_run_id, settle_s: float = 0.0) -> str:
    """The profile of a flow run, read from the server at PREFECT_API_URL."""
    from prefect.client.orchestration import get_client

    from flows.task_runs import recorded_task_runs
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    runs = recorded_task_runs(flow_run_id, settle_s=settle_s)
    start = flow_run.start_time or min(r.start_time for r in runs if r.start_time)
    total = (flow_run.end_time - start).total_seconds() if flow_run.end_time else float("nan")
    return render(stage_times(runs, start), total)
