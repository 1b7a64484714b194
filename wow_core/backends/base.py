"""The interface every LLM backend implements."""
from typing import Protocol

from wow_core.config import ModelConfig
from wow_core.records import Generation

Conversation = list[dict[str, str]]  # chat messages: [{"role": "user", "content": ...}, ...]


class Backend(Protocol):
    config: ModelConfig

    """An LLM engine: sampled and greedy chat completions with per-token log-probabilities.

    A conversation that ends with an assistant message is continued from that text (a prefilled
    reply); the returned text is the continuation only."""

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
