"""The run's profile: task runs grouped by stage, spans and summed run time computed by hand."""
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from flows.stage_times import render, stage_times

T0 = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)


def run(name: str, start: float | None, end: float | None, state: str = "Completed"):
    return SimpleNamespace(name=name, start_time=None if start is None else T0 + timedelta(seconds=start),
                           end_time=None if end is None else T0 + timedelta(seconds=end),
                           total_run_time=timedelta(seconds=(end - start) if start is not None and end else 0),
                           state=SimpleNamespace(name=state))


def test_stages_in_order_of_first_start_with_spans_and_sums():
    runs = [run("judge pairwise · sp · plain", 100, 160), run("sample · sp · plain · questions 0-8", 10, 70),
            run("sample · sp · plain · questions 8-14", 12, 95), run("evaluate · sp · plain · questions 0-5", 200, 230),
            run("judge pairwise · kc · plain", 150, 155, "Cached"), run("train · oracle", None, None, "Pending")]
    rows = stage_times(runs, T0)
    assert [r.stage for r in rows] == ["sample", "judge pairwise", "evaluate"]
    sample, judge, evaluate = rows
    assert (sample.tasks, sample.first_start_s, sample.last_end_s, sample.busy_s) == (2, 10.0, 95.0, 60.0 + 83.0)
    assert ((judge.tasks, judge.cached, judge.first_start_s, judge.last_end_s, judge.busy_s)
            == (2, 1, 100.0, 160.0, 65.0))
    assert evaluate.busy_s == 30.0
    table = render(rows, 240.0)
    assert "flow run 4:00.0" in table
    assert "| sample | 2 | 0 | 0:10.0 | 1:35.0 | 2:23.0 |" in table
