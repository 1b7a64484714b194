"""The cross-run cache policy: a task's cache key is the content key of the artifact it writes.

Prefect's default policy includes the run id, so nothing would be reused across runs. Here the key is
a hash of the stage, its code versions and the task's inputs (configs and upstream URIs, which are
content-addressed themselves): a rerun with nothing changed is all cache hits, and a changed input
redoes only the tasks downstream of it. Names that only label things (a model's or dataset's name in
tables) and settings that cannot change a result (an endpoint's timeouts, retries and concurrency) are
left out of keys. So are settings left at their defaults: a field added later with a default that keeps
the old behaviour does not invalidate every artifact, nor does an optional task parameter left at None.
Changing a default's value therefore needs the stage's version bumped. Task bodies also check the store
before working, so a lost Prefect record costs a lookup, never a model call.
"""
import hashlib
from dataclasses import dataclass, field
from typing import Any

import fsspec
from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from wow_core import budget, elicit, evaluate, judge, leaderboard, pairs, report, sample, train
from wow_core.config import DatasetConfig, OpenAIModel, TransformersModel, VllmModel
from wow_core.datasets import get_dataset
from wow_core.machine import resolve_dtype
from wow_core.store import content_key

STAGE_VERSIONS = {
    "questions": 1,
    "sample": sample.VERSION,
    "samples": 1,
    # Judges ask about the WoW pairs that elicit defines, so its version is part of theirs.
    "judge": f"{judge.VERSION}.{elicit.VERSION}",
    "judge_budget": f"{judge.VERSION}.{elicit.VERSION}.{budget.VERSION}",
    "budget_report": f"{budget.VERSION}.{leaderboard.VERSION}",
    "pairs": elicit.VERSION,
    "ensemble_pairs": elicit.VERSION,
    "report": report.VERSION,
    "leaderboard": f"{leaderboard.VERSION}.{report.VERSION}",
    "heldout": pairs.VERSION,
    "train_questions": pairs.VERSION,
    "preference_set": f"{pairs.VERSION}.{elicit.VERSION}",
    "train": train.VERSION,
    "alignment_report": f"{report.VERSION}.{evaluate.VERSION}",
    "rounds_report": f"{report.VERSION}.{evaluate.VERSION}",
}
NOT_IN_KEY = {TransformersModel: frozenset({"name"}), VllmModel: frozenset({"name", "max_concurrency", "cpu_threads"}),
              OpenAIModel: frozenset({"name", "api_key_env", "max_concurrency", "request_timeout", "max_retries",
                                      "retry_backoff"}),
              DatasetConfig: frozenset({"label"})}


def precision_in_key(model: TransformersModel | VllmModel) -> dict[str, str]:
    """A local model's precision as its artifacts' keys hold it: the dtype it runs in on this machine
    (`auto` resolved), so that a store is reused on a like machine and never mixed across unlike ones.
    float32, the default before `auto`, stays out of keys, as when it was left out as a default."""
    dtype = resolve_dtype(model.dtype, model.device)
    return {} if dtype == "float32" else {"dtype": dtype}


def _file_sha256(path: str) -> str:
    with fsspec.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stage_key(stage: str, inputs: dict[str, Any], unread: dict[str, frozenset[str]] | None = None) -> str:
    """Content key of a stage's artifact from the task's own parameters.

    `unread` names, per parameter, the fields of a config the task never reads (the score judge reads
    no pairwise cap): they stay out of its key. Any other field is in it, so a setting added later
    cannot be left out by omission."""
    parts: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None:
            continue  # an optional input left unset, like a setting at its default
        if isinstance(value, BaseModel):
            exclude = NOT_IN_KEY.get(type(value), frozenset()) | (unread or {}).get(name, frozenset())
            local = isinstance(value, (TransformersModel, VllmModel))
            dumped = value.model_dump(mode="json", exclude=set(exclude) | ({"dtype"} if local else set()),
                                      exclude_defaults=True)
            value = dumped | precision_in_key(value) if local else dumped
        parts[name] = value
    if isinstance(inputs.get("dataset_config"), DatasetConfig):
        # Questions depend on the dataset's code and, for a file, on the file's bytes.
        cfg = inputs["dataset_config"]
        parts["dataset_version"] = get_dataset(cfg.name).VERSION
        if cfg.source == "file":
            parts["file_sha256"] = _file_sha256(cfg.path)
    elif isinstance(inputs.get("dataset"), str):
        parts["dataset_version"] = get_dataset(inputs["dataset"]).VERSION
    if stage in ("judge", "judge_budget"):
        parts["templates"] = judge.templates_version()
    return content_key(stage, version=STAGE_VERSIONS[stage], **parts)


@dataclass
class ArtifactKey(CachePolicy):
    """Cache on the content key of the stage's artifact (explicitly cross-run)."""
    stage: str = ""
    unread: dict[str, frozenset[str]] = field(default_factory=dict)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs) -> str:
        return f"{self.stage}-{stage_key(self.stage, inputs, self.unread)}"
