"""What `wow run` shows of Prefect's logs in the terminal: its lines, without the tracebacks of failed
task and flow runs. A run that fails on bad data printed three tracebacks of one error (the task's
"Retries are exhausted", the flow's "Encountered exception", then Python's), 180 lines with the message
at the end; `wow run` now ends with that message on one line (flows/cli.py), and `--debug` keeps the
tracebacks. The server's copy of each log line is left whole: the run's logs in the Prefect UI show the
traceback, because only the console handler's formatting changes.
"""
import logging

# Prefect's loggers of flow and task runs: the engines log a run's failure on them, with its traceback.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class TracebackFree(logging.Formatter):
    """Formats as `inner` does, but a record of a run logger without its exception or stack: the line
    alone. The record is restored after, so the handlers after this one still see the traceback."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not record.name.startswith(RUN_LOGGERS) or not (record.exc_info or record.exc_text or record.stack_info):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def hide_run_tracebacks() -> None:
    """Drop the tracebacks of flow and task runs from Prefect's console output in this process (every
    PrefectConsoleHandler of every logger, however logging.yml wires them). Idempotent."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [entry for entry in logging.Logger.manager.loggerDict.values()
                                       if isinstance(entry, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, TracebackFree):
                handler.setFormatter(TracebackFree(handler.formatter))
