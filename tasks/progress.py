"""A model-bound task's progress where users look (wow_core/progress.py says what is counted): a progress
artifact of its task run in the Prefect UI, a log line at each phase's end and every LOG_EVERY_S seconds
with its throughput, and a bar on the terminal when `wow run` runs in one (none in logs or CI)."""
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext
from tqdm import tqdm

from wow_core import progress

LOG_EVERY_S = 30.0
ARTIFACT_EVERY_S = 2.0  # an API call each: often enough to watch, rarely enough to cost nothing


class TaskProgress:
    """The reporter of one task run; `progress.Tracker` calls it after every change."""

    def __init__(self, title: str, terminal: bool):
        self.title = title
        self.logger = get_run_logger()
        self.terminal = terminal
        self.artifact = None
        self.bar: tqdm | None = None
        self.last_log = self.last_artifact = time.monotonic()

    def __call__(self, tracker: progress.Tracker) -> None:
        now = time.monotonic()
        text = tracker.describe()
        if tracker.finished or now - self.last_log >= LOG_EVERY_S:
            self.logger.info("%s: %s", self.title, text)
            self.last_log = now
        if self.artifact is None or tracker.finished or now - self.last_artifact >= ARTIFACT_EVERY_S:
            share = 100.0 * tracker.done / tracker.total if tracker.total else 0.0
            if self.artifact is None:
                self.artifact = create_progress_artifact(share, description=f"{self.title}: {text}")
            else:
                update_progress_artifact(self.artifact, share, description=f"{self.title}: {text}")
            self.last_artifact = now
        if self.terminal:
            self._draw(tracker)

    def _draw(self, tracker: progress.Tracker) -> None:
        desc = f"{self.title}: {tracker.phase}"
        if self.bar is None or self.bar.desc != desc:
            self.close()
            self.bar = tqdm(total=tracker.total, desc=desc, leave=False, file=sys.stderr, unit=" seq",
                            dynamic_ncols=True)
        self.bar.n = tracker.done
        self.bar.refresh()
        if tracker.finished:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def task_progress() -> Iterator[None]:
    """Report the progress of the model work inside, titled by the task run's name."""
    context = TaskRunContext.get()
    if context is None:  # a task's function called directly (tests): nowhere to report
        yield
        return
    reporter = TaskProgress(context.task_run.name, terminal=sys.stderr.isatty())
    try:
        with progress.tracking(reporter):
            yield
    finally:
        reporter.close()
