"""A judge method as a value: `pairwise` (two answers, both orders) or `score` of k answers per prompt,
spelled `pairwise` and `score_k<k>` in configs, tables, artifact names and cache keys. Every reading of
such a name goes through `JudgeMethod`, so the spelling lives here alone."""
import re
from dataclasses import dataclass
from typing import Literal

_SCORE = re.compile(r"score_k(\d+)")
SELF = "(self)"  # the evaluator of the self signals (length, consistency, logits), which need no judge


@dataclass(frozen=True)
class JudgeMethod:
    kind: Literal["pairwise", "score"]
    k: int | None = None  # answers per score prompt; None for pairwise

    def __post_init__(self):
        if (self.kind == "score") != (self.k is not None and self.k >= 1):
            raise ValueError(f"a {self.kind} judge method takes {'k >= 1' if self.kind == 'score' else 'no k'}, "
                             f"got k={self.k}")

    def __str__(self) -> str:
        return "pairwise" if self.kind == "pairwise" else f"score_k{self.k}"

    @classmethod
    def of(cls, name: str) -> "JudgeMethod | None":
        """The judge method `name` spells exactly ('pairwise', 'score_k2'), else None."""
        if name == "pairwise":
            return cls("pairwise")
        match = _SCORE.fullmatch(name)
        return cls("score", int(match.group(1))) if match and int(match.group(1)) >= 1 else None

    @classmethod
    def read_by(cls, method: str) -> "JudgeMethod | None":
        """The judge method whose judgments an elicitation method reads: itself, or the judge method its
        name starts with (`pairwise_filtered`, an ensemble's `pairwise_majority` or `score_k1_mean`);
        None for a method that reads no judge (a self signal, oracle, right-over-wrong)."""
        first, *rest = method.split("_")
        if first == "pairwise":
            return cls("pairwise")
        return cls.of(f"score_{rest[0]}") if first == "score" and rest else None
