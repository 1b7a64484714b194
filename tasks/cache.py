"""The cross-run cache policy: a task's cache key is the content key of the artifact it writes.

Prefect's default policy includes the run id, so nothing would be reused across runs. Here the key is
a hash of the stage, its code versions and the task's inputs (configs and upstream URIs, which are
content-addressed themselves): a rerun with nothing changed is all cache hits, and a changed input
redoes only the tasks downstream of it. Task bodies also check the store before working, so a lost
Prefect record costs a lookup, never a model call.
"""
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy

from wow_core import elicit, judge, report, sample
from wow_core.datasets import get_dataset
from wow_core.store import content_key

STAGE_VERSIONS = {
    "questions": 1,
    "sample": sample.VERSION,
    "samples": 1,
    "judge": judge.VERSION,
    "pairs": elicit.VERSION,
    "report": report.VERSION,
}


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    """Content key of a stage's artifact from the task's own parameters."""
    extra = {}
    if "dataset" in inputs and isinstance(inputs["dataset"], str):
        extra["dataset_version"] = get_dataset(inputs["dataset"]).VERSION
    if stage == "judge":
        extra["templates"] = judge.templates_version()
    return content_key(stage, version=STAGE_VERSIONS[stage], **extra, **inputs)


@dataclass
class ArtifactKey(CachePolicy):
    """Cache on the content key of the stage's artifact (explicitly cross-run)."""
    stage: str = ""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs) -> str:
        return f"{self.stage}-{stage_key(self.stage, inputs)}"



