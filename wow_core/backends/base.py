"""The interface every LLM backend implements, and the priority of the requests a stage sends."""
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from wow_core.records import Generation

Conversation = list[dict[str, str]]  # chat messages: [{"role": "user", "content": ...}, ...]


class Backend(Protocol):
    """An LLM engine: sampled and greedy chat completions with per-token log-probabilities.

    A conversation that ends with an assistant message is continued from that text (a prefilled
    reply); the returned text is the continuation only. What a stage or a dataset's proxy needs of a
    model, and nothing of its configuration (each backend keeps its own ModelConfig)."""

    def sample(self, conversations: list[Conversation], n: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int) -> list[list[Generation]]:
        """`n` sampled continuations per conversation, in input order."""
        ...

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        """One greedy continuation per conversation, in input order."""
        ...

    def close(self) -> None:
        """Release what this model holds beyond Python's memory (an engine, merged weights)."""
        ...


# How urgent a stage's requests are to an engine that schedules by priority (vLLM's `--scheduling-policy
# priority`, which wow's engines run with; lower is earlier). A context variable, as `progress`: backends
# are shared by stages and know nothing of them. Answers (sampling, held-out evaluation) come first:
# trainings wait for them, while judgments feed reports and later sets.
ANSWERS, JUDGMENTS, BUDGET_JUDGMENTS = 0, 1, 2
_priority: ContextVar[int] = ContextVar("request_priority", default=ANSWERS)


@contextmanager
def request_priority(priority: int) -> Iterator[None]:
    """Send the requests made in this block (this thread, its asyncio tasks) at `priority`."""
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


def current_priority() -> int:
    return _priority.get()
