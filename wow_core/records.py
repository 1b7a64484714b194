"""Records that cross stage boundaries: plain dataclasses, one row each in a Parquet table."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    """One question of a dataset, with everything its proxy needs."""
    id: str
    dataset: str
    text: str          # what the generator is asked (the user turn)
    gold: str          # the gold answer, canonical string form
    meta: dict = field(default_factory=dict)  # dataset-specific, JSON-serialisable


@dataclass(frozen=True)
class Generation:
    """One generated continuation with the log-probability of each of its tokens."""
    text: str
    token_ids: list[int]
    token_logprobs: list[float]
    finish_reason: str  # "stop" (end-of-sequence) or "length" (hit max_new_tokens)
    prompt_tokens: int | None = None  # tokens of the prompt the engine read for it; None when it did not say

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def mean_logprob(self) -> float | None:
        """Mean token log-probability; None for an empty generation."""
        return sum(self.token_logprobs) / len(self.token_logprobs) if self.token_logprobs else None
