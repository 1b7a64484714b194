"""The cross-run cache policy: a task's cache key is the content key of the artifact it writes.

Prefect's default policy includes the run id, so nothing would be reused across runs. Here the key is
a hash of the stage, its code versions and the task's inputs (configs and upstream URIs, which are
content-addressed themselves): a rerun with nothing changed is all cache hits, and a changed input
redoes only the tasks downstream of it. Where the store is stays out: the `store` parameter is not in
a key, and upstream URIs are relative to the store, so a moved or copied store is all cache hits.
Names that only label things (a model's or dataset's name in tables) and settings that cannot change
a result (an endpoint's timeouts, retries and concurrency) are
left out of keys. So are settings left at their defaults: a field added later with a default that keeps
the old behaviour does not invalidate every artifact, nor does an optional task parameter left at None.
Changing a default's value therefore needs the stage's version bumped. Task bodies also check the store
before working, so a lost Prefect record costs a lookup, never a model call.
"""
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

from wow_core import budget, elicit, evaluate, judge, leaderboard, pairs, report, sample, train
from wow_core.config import DatasetConfig, OpenAIModel, TransformersModel, VllmModel
from wow_core.datasets import get_dataset
from wow_core.machine import resolve_dtype
from wow_core.store import content_key, jsonable

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


def _key_parts(stage: str, inputs: dict[str, Any], unread: dict[str, frozenset[str]] | None) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None or name == "store":
            continue  # an optional input left unset, like a setting at its default; where the store is
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
    return parts


def stage_key(stage: str, inputs: dict[str, Any], unread: dict[str, frozenset[str]] | None = None) -> str:
    """Content key of a stage's artifact from the task's own parameters.

    `unread` names, per parameter, the fields of a config the task never reads (the score judge reads
    no pairwise cap): they stay out of its key. Any other field is in it, so a setting added later
    cannot be left out by omission."""
    return content_key(stage, version=STAGE_VERSIONS[stage], **_key_parts(stage, inputs, unread))


# An artifact's URI in the store: `<stage folder>/<label>-<first 20 hex digits of its key>.<ext>`.
STORE_URI = re.compile(r"[a-z_]+(?:/[a-z_]+)*/[^/]+-[0-9a-f]{20}\.[a-z]+")


def located_key(stage: str, inputs: dict[str, Any], unread: dict[str, frozenset[str]] | None,
                store_url_of: Callable[[str], str | None]) -> str | None:
    """The key the artifact had before keys left out where the store is (wow 0.x stores): `store` as
    given was in it, and every upstream URI as the absolute URL `store_url_of` returns for it (None: not
    known, and then neither is this key)."""
    missing = []

    def absolute(value):
        if isinstance(value, str) and STORE_URI.fullmatch(value):
            url = store_url_of(value)
            if url is None:
                missing.append(value)
            return url
        if isinstance(value, list):
            return [absolute(v) for v in value]
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        return value
    parts = {name: absolute(jsonable(value)) for name, value in _key_parts(stage, inputs, unread).items()}
    if missing or "store" not in inputs:
        return None
    return content_key(stage, version=STAGE_VERSIONS[stage], store=inputs["store"], **parts)


@dataclass
class Made:
    """What a stage's artifact is made from: the stage, its content key, the task's inputs. `record` is
    what its table records of it (`Store.write_table`): stage, version, key and inputs (whole configs,
    names included; upstream URIs relative to the store), so a reader can follow any table to the tables
    it came from."""
    stage: str
    inputs: dict[str, Any]
    unread: dict[str, frozenset[str]] | None = None

    def __post_init__(self):
        self.inputs = dict(self.inputs)
        self.key = stage_key(self.stage, self.inputs, self.unread)
        self.record = {"stage": self.stage, "version": STAGE_VERSIONS[self.stage], "key": self.key,
                       "inputs": {name: value for name, value in self.inputs.items()
                                  if name != "store" and value is not None}}


@dataclass
class ArtifactKey(CachePolicy):
    """Cache on the content key of the stage's artifact (explicitly cross-run)."""
    stage: str = ""
    unread: dict[str, frozenset[str]] = field(default_factory=dict)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs) -> str:
        return f"{self.stage}-{stage_key(self.stage, inputs, self.unread)}"
