"""Prefect tasks: one thin wrapper per stage. Each reads its inputs by URI, calls one wow_core
function, writes its artifact explicitly (Prefect's own result commit does not retry storage errors)
and returns the artifact's URI. Model work carries the `gpu` tag."""
import pandas as pd
from prefect import get_run_logger, task

from tasks.cache import ArtifactKey, stage_key
from wow_core import elicit, judge, report, sample
from wow_core.backends import get_backend
from wow_core.config import DatasetConfig, JudgeConfig, ModelConfig, SamplingConfig
from wow_core.datasets import get_dataset
from wow_core.store import Store

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])


def _done(store: Store, uri: str) -> bool:
    if store.exists(uri):
        get_run_logger().info("found %s in the store", uri)
        return True
    return False


@task(cache_policy=ArtifactKey(stage="questions"), **IO_RETRIES)
def make_questions(dataset_config: DatasetConfig, store: str) -> dict:
    """Generate or load a dataset's questions; returns {uri, n}."""
    key = stage_key("questions", locals())
    s = Store(store)
    uri = s.uri("questions", dataset_config.name, key, "parquet")
    if not _done(s, uri):
        ds = get_dataset(dataset_config.name)
        if dataset_config.source == "file":
            questions = ds.load_questions(dataset_config.path)[:dataset_config.n_questions]
        else:
            questions = ds.generate_questions(dataset_config.n_questions, dataset_config.seed, dataset_config.difficulty)
        s.write_table(uri, sample.questions_to_table(questions))
    return {"uri": uri, "n": len(s.read_table(uri))}


@task(cache_policy=ArtifactKey(stage="sample"), tags=["gpu"], **IO_RETRIES)
def sample_shard(questions_uri: str, start: int, stop: int, dataset: str, model: ModelConfig,
                 sampling: SamplingConfig, store: str) -> str:
    """Sample and label answers for questions [start, stop) of a question table."""
    key = stage_key("sample", locals())
    s = Store(store)
    uri = s.uri("samples/shards", f"{dataset}.{model.name}.{start}-{stop}", key, "parquet")
    if not _done(s, uri):
        questions = sample.table_to_questions(s.read_table(questions_uri).iloc[start:stop])
        s.write_table(uri, sample.sample_answers(questions, get_dataset(dataset), get_backend(model), sampling))
    return uri


@task(cache_policy=ArtifactKey(stage="samples"), **IO_RETRIES)
def join_samples(shard_uris: list[str], dataset: str, generator: str, store: str) -> str:
    """One samples table per (dataset, generator) from its shards."""
    key = stage_key("samples", locals())
    s = Store(store)
    uri = s.uri("samples", f"{dataset}.{generator}", key, "parquet")
    if not _done(s, uri):
        s.write_table(uri, pd.concat([s.read_table(u) for u in shard_uris], ignore_index=True))
    return uri


@task(cache_policy=ArtifactKey(stage="judge"), tags=["gpu"], **IO_RETRIES)
def judge_pairwise(samples_uri: str, dataset: str, model: ModelConfig, max_new_tokens: int,
                   max_pairs_per_question: int | None, seed: int, store: str) -> str:
    """The evaluator's pairwise verdicts on the WoW pairs, both orders."""
    key = stage_key("judge", locals())
    s = Store(store)
    uri = s.uri("judgments", f"{dataset}.{model.name}.pairwise", key, "parquet")
    if not _done(s, uri):
        cfg = JudgeConfig(max_new_tokens=max_new_tokens, max_pairs_per_question=max_pairs_per_question, seed=seed)
        s.write_table(uri, judge.pairwise_judgments(s.read_table(samples_uri), get_backend(model), cfg))
    return uri


@task(cache_policy=ArtifactKey(stage="judge"), tags=["gpu"], **IO_RETRIES)
def judge_score(samples_uri: str, dataset: str, model: ModelConfig, k: int, max_new_tokens: int, seed: int,
                store: str) -> str:
    """The evaluator's 0-5 scores of the wrong answers, k per prompt."""
    key = stage_key("judge", locals())
    s = Store(store)
    uri = s.uri("judgments", f"{dataset}.{model.name}.score_k{k}", key, "parquet")
    if not _done(s, uri):
        cfg = JudgeConfig(max_new_tokens=max_new_tokens, seed=seed)
        s.write_table(uri, judge.score_judgments(s.read_table(samples_uri), get_backend(model), cfg, k))
    return uri


@task(cache_policy=ArtifactKey(stage="pairs"), **IO_RETRIES)
def method_pairs(method: str, samples_uri: str, judgments_uri: str | None, dataset: str, label: str,
                 store: str) -> str:
    """One method's verdict on every WoW pair it can judge."""
    key = stage_key("pairs", locals())
    s = Store(store)
    uri = s.uri("pairs", f"{label}.{method}", key, "parquet")
    if not _done(s, uri):
        judgments = s.read_table(judgments_uri) if judgments_uri else None
        s.write_table(uri, elicit.method_pairs(method, s.read_table(samples_uri), judgments))
    return uri


@task(cache_policy=ArtifactKey(stage="report"), **IO_RETRIES)
def build_report(name: str, entries: list[dict], samples: list[dict], judges: list[dict], margins: list[float],
                 confidence: float, store: str) -> dict:
    """AccWoW table (Parquet), markdown and PNG; returns their URIs.

    `entries`: dataset, generator, evaluator, method, pairs_uri. `samples`: dataset, generator, uri.
    `judges`: dataset, generator, evaluator, method, uri (judgments)."""
    key = stage_key("report", locals())
    s = Store(store)
    uris = {ext: s.uri("reports", name, key, ext) for ext in ("parquet", "png", "md")}
    if not _done(s, uris["md"]):
        table = report.accwow_table([{**e, "pairs": s.read_table(e["pairs_uri"])} for e in entries], margins, confidence)
        sample_stats = [{**x, **report.sample_summary(s.read_table(x["uri"]))} for x in samples]
        judge_stats = [{**j, **report.judge_summary(j["method"], s.read_table(j["uri"]))} for j in judges]
        s.write_table(uris["parquet"], table)
        s.write_bytes(uris["png"], report.plot_accwow(table))
        # The markdown is written last: its presence means the whole report is there.
        png_name = uris["png"].rsplit("/", 1)[-1]
        s.write_text(uris["md"], report.render_markdown(name, table, sample_stats, judge_stats, png_name, confidence))
    return uris
