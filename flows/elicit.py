"""The elicitation flow: sample -> extract and label -> self signals and judges -> AccWoW report.

Fans out per dataset x generator for sampling (in question shards, so a crash loses at most one
shard) and per dataset x generator x evaluator x method for judging, then joins into one report.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from tasks.stages import (build_report, join_samples, judge_pairwise, judge_score, make_questions, method_pairs,
                          sample_shard)
from wow_core.config import DatasetConfig, ExperimentConfig, ModelConfig
from wow_core.datasets import get_dataset
from wow_core.elicit import SELF_SIGNALS
from wow_core.report import SELF
from wow_core.store import Store, storage_options


def with_cache_records(tasks: list, store: str) -> list:
    """Keep Prefect's cache records inside the store, so every worker and later run finds them and
    deleting the store forgets them too.

    A local store holds them in `_prefect/`. An object store holds whole records (result and metadata)
    in `_prefect/` too, through a RemoteFileSystem block as the tasks' result storage: Prefect accepts
    only a saved block there. The block holds the bucket path and timeouts, never credentials (s3fs
    reads those from the environment)."""
    if "://" not in store:
        key_storage = LocalFileSystem(basepath=str(Path(store).expanduser().resolve() / "_prefect"))
        return [t.with_options(cache_policy=t.cache_policy.configure(key_storage=key_storage)) for t in tasks]
    url = f"{store.rstrip('/')}/_prefect"
    records = RemoteFileSystem(basepath=url, settings=storage_options(url))
    records.save(f"wow-records-{hashlib.sha256(url.encode()).hexdigest()[:16]}", overwrite=True)
    return [t.with_options(result_storage=records) for t in tasks]


def proxy_judge(config: ExperimentConfig, ds: DatasetConfig, generator: str) -> ModelConfig | None:
    """The model that labels a dataset's answers when its proxy needs one (`score_answers`, e.g.
    bio_generation): the dataset's `options.judge`, by default the generator itself; None otherwise."""
    if not hasattr(get_dataset(ds.name), "score_answers"):
        return None
    return config.model(ds.options.get("judge", generator))


@dataclass
class Elicitation:
    """What the elicitation graph submitted: the stages alignment builds on, and the report."""
    questions: dict[str, dict] = field(default_factory=dict)   # dataset tag -> {uri, n}
    samples: dict[tuple[str, str], PrefectFuture] = field(default_factory=dict)  # (tag, generator)
    # (tag, generator, evaluator, "pairwise" | "score_k<k>") -> judgments URI
    judgments: dict[tuple[str, str, str, str], PrefectFuture] = field(default_factory=dict)
    report: PrefectFuture | None = None


def submit_elicitation(config: ExperimentConfig) -> Elicitation:
    """Submit the elicitation grid of `config`; its futures resolve as the tasks finish."""
    store = config.store
    q_task, shard_task, join_task, pair_task, score_task, pairs_task, report_task = with_cache_records(
        [make_questions, sample_shard, join_samples, judge_pairwise, judge_score, method_pairs, build_report], store)
    out = Elicitation()
    entries, samples, judges = [], [], []
    for ds in config.datasets:
        questions = out.questions[ds.tag] = q_task(ds, store)
        for gen in config.generators:
            model = config.model(gen)
            step = config.sampling.shard_size
            shards = [shard_task.submit(questions["uri"], start, min(start + step, questions["n"]), ds.name, model,
                                        config.sampling_for(gen), store, proxy_judge(config, ds, gen))
                      for start in range(0, questions["n"], step)]
            samples_uri = out.samples[(ds.tag, gen)] = join_task.submit(shards, ds.name, gen, store)
            samples.append({"dataset": ds.tag, "generator": gen, "uri": samples_uri})
            label = f"{ds.tag}.{gen}"
            for method in (m for m in config.judge.methods if m in SELF_SIGNALS):
                entries.append({"dataset": ds.tag, "generator": gen, "evaluator": SELF, "method": method,
                                "pairs_uri": pairs_task.submit(method, samples_uri, None, ds.name, label, store)})
            for ev in config.evaluators:
                judge_model, j = config.model(ev), config.judge
                asked = []
                if "pairwise" in j.methods:
                    uri = pair_task.submit(samples_uri, ds.name, judge_model, j.max_new_tokens,
                                           j.max_pairs_per_question, j.seed, store)
                    asked.append(("pairwise", uri, ["pairwise", "pairwise_filtered"]))
                if "score" in j.methods:
                    for k in j.score_k:
                        uri = score_task.submit(samples_uri, ds.name, judge_model, k, j.max_new_tokens, j.seed, store)
                        asked.append((f"score_k{k}", uri, [f"score_k{k}"]))
                for judge_method, uri, methods in asked:
                    out.judgments[(ds.tag, gen, ev, judge_method)] = uri
                    judges.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": judge_method,
                                   "uri": uri})
                    for method in methods:
                        entries.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": method,
                                        "pairs_uri": pairs_task.submit(method, samples_uri, uri, ds.name,
                                                                       f"{label}.{ev}", store)})
    # Prefect resolves the futures nested in these lists and waits for them.
    out.report = report_task.submit(config.name, entries, samples, judges, config.report.margins,
                                    config.report.confidence, store)
    return out


@flow(name="elicit", log_prints=True)
def elicit(config: ExperimentConfig) -> dict:
    """Run the wrong-over-wrong elicitation grid of `config` and write the AccWoW report."""
    uris = submit_elicitation(config).report.result()  # raises if an upstream task failed
    publish_elicitation(Store(config.store), uris)
    get_run_logger().info("report: %s", uris["md"])
    return uris


def publish_elicitation(store: Store, uris: dict) -> None:
    """The report as Prefect artifacts: markdown and the AccWoW table."""
    table = store.read_table(uris["parquet"])
    create_markdown_artifact(key="accwow-report", markdown=store.read_text(uris["md"]),
                             description="AccWoW per method and margin")
    create_table_artifact(key="accwow-table", table=table.astype(object).where(table.notna(), None).to_dict("records"),
                          description=f"AccWoW table ({uris['parquet']})")
