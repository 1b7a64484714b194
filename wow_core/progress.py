"""Progress of the long stages, for whoever watches them.

A stage names its phases and their totals (`phase("answers", 200)`); the backends report each batch or
request as it finishes (`advance(n, tokens)`), the trainer each optimizer step. Nothing happens unless a
caller is `tracking` in this context: the tasks layer passes a reporter that logs, updates a Prefect
progress artifact and draws a terminal bar (tasks/progress.py). A context variable, not an argument
threaded through every call, because the backends are shared by stages and know nothing of them; asyncio
tasks inherit it, so the HTTP backends report from their coroutines too.
"""
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Tracker:
    """What one stage has done in its current phase; `report` is called after every change."""
    report: Callable[["Tracker"], None]
    phase: str = ""
    total: int = 0
    done: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False  # the phase is over (its last report)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def describe(self) -> str:
        """'answers 40 of 200 (20%), 12.3 s, 85 tok/s'."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        speed = f", {self.tokens / self.seconds:.0f} tok/s" if self.tokens and self.seconds > 0 else ""
        return f"{self.phase} {self.done} of {self.total}{share}, {self.seconds:.1f} s{speed}"


_current: ContextVar[Tracker | None] = ContextVar("wow_progress", default=None)


@contextmanager
def tracking(report: Callable[[Tracker], None]) -> Iterator[Tracker]:
    """Report the progress of what runs inside, in this thread and the asyncio tasks it starts."""
    tracker = Tracker(report)
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)


def start_phase(name: str, total: int) -> None:
    """A new phase of `total` units (answers, judge prompts, steps); the previous one is over."""
    tracker = _current.get()
    if tracker is None:
        return
    with tracker._lock:
        tracker.phase, tracker.total, tracker.done, tracker.tokens = name, total, 0, 0
        tracker.started, tracker.finished = time.monotonic(), False
    tracker.report(tracker)


def end_phase() -> None:
    tracker = _current.get()
    if tracker is None or tracker.finished:
        return
    tracker.finished = True
    tracker.report(tracker)


@contextmanager
def phase(name: str, total: int) -> Iterator[None]:
    start_phase(name, total)
    yield
    end_phase()


def advance(units: int, tokens: int = 0) -> None:
    """`units` more of the phase are done, having generated `tokens` tokens."""
    tracker = _current.get()
    if tracker is None:
        return
    with tracker._lock:
        tracker.done += units
        tracker.tokens += tokens
    tracker.report(tracker)
