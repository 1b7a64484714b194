"""Prefect tasks: one thin wrapper per stage. Each reads its inputs by URI, calls one wow_core
function, writes its artifact explicitly (Prefect's own result commit does not retry storage errors)
and returns the artifact's URI. Model work carries the `model` tag (a filter in the UI's task list)."""
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from tasks.cache import ArtifactKey, Made, located_key
from tasks.progress import task_progress
from wow_core import budget, elicit, evaluate, judge, leaderboard, pairs, preference_dataset, report, sample, train
from wow_core.backends import get_backend
from wow_core.backends.base import BUDGET_JUDGMENTS, JUDGMENTS, request_priority
from wow_core.backends.transformers_backend import resolve_model_path
from wow_core.config import (DatasetConfig, JudgeConfig, ModelConfig, PreferenceSetConfig, SamplingConfig,
                             TrainConfig)
from wow_core.datasets import get_dataset
from wow_core.methods import JudgeMethod
from wow_core.store import Store, jsonable

# Task run names say the stage, dataset, model and method (the UI's task list and graph show them).
RUN_NAMES = {
    "make_questions": "questions · {dataset_config.tag}",
    "sample_shard": lambda parameters: "{what} · {dataset} · {model.name} · questions {start}-{stop}".format(
        what="evaluate" if "/heldout/" in parameters["questions_uri"] else "sample",  # held-out answers
        **parameters),
    "join_samples": "join samples · {dataset} · {generator}",
    "judge_pairwise": "judge pairwise · {dataset} · {model.name}",
    "judge_score": "judge score k={k} · {dataset} · {model.name}",
    "judge_budget": "judge budget · {dataset} · {model.name} · {pick} · {calls} calls",
    "method_pairs": "pairs · {label} · {method}",
    "ensemble_pairs": "pairs · {label} · {method} {rule}",
    "build_report": "AccWoW report · {name}",
    "build_leaderboard": "judge leaderboard · {name}",
    "build_budget_report": "budget report · {name}",
    "split_heldout": "held-out split · {dataset}",
    "training_questions": "training questions · {dataset}",
    "build_preference_set": "preference set · {label}",
    "train_grid_point": "train · {label}",
    "build_alignment_report": "alignment report · {name}",
    "build_rounds_report": "rounds report · {name}",
}


# What an adapter folder was made from (a table holds it in its Parquet metadata: `Store.write_table`).
MADE_FROM_FILE = "made_from.json"


def _located(model: ModelConfig, store: Store) -> ModelConfig:
    """`model` with its adapter, a URI relative to the store (as the alignment flow sets it), resolved
    to where the store is; the model as it is when it has none or names one outside the store."""
    if not model.adapter:
        return model
    return model.model_copy(update={"adapter": store.url_of(model.adapter)})


def _done(store: Store, uri: str, made: Made) -> bool:
    """Whether the artifact at `uri` is in the store, found under its key or adopted from before keys left
    out where the store was (`_adopt`)."""
    if store.exists(uri):
        get_run_logger().info("found %s in the store", uri)
        return True
    return _adopt(store, uri, made)


# Where an adopted artifact's old URL is kept (`_adopt`), under its new URI: its readers' old keys hold it.
ADOPTED = "_adopted"


def _adopt(store: Store, uri: str, made: Made) -> bool:
    """A store written before keys left out where the store is keeps working: an artifact's files found
    under its old key (`located_key`, from its inputs' old URLs) are copied to its new name, the file at
    `uri` (the one that says the artifact is whole) last, and its old URL kept for its readers' old keys.
    Nothing is recomputed and the old files stay (docs/operations.md says how to delete them)."""

    def old_url(input_uri: str) -> str | None:
        marker = f"{ADOPTED}/{input_uri}"
        return store.read_text(marker) if store.exists(marker) else None

    old = located_key(made.stage, made.inputs, made.unread, old_url)
    if old is None:
        return False
    new_prefix = uri.split(f"-{made.key[:20]}")[0] + f"-{made.key[:20]}"  # <folder>/<label>-<key>
    folder = new_prefix.rsplit("/", 1)[0]
    names = store.glob(f"{folder}/*-{old[:20]}*")
    if not names:
        return False
    files = [f for name in names for f in store.files(name)]
    for f in sorted(files, key=lambda f: f.replace(old[:20], made.key[:20]) == uri):
        data = store.read_bytes(f)
        if f.endswith(".md"):  # a report names its plots, a dataset card its key
            data = data.decode().replace(old, made.key).replace(old[:20], made.key[:20]).encode()
        store.write_bytes(f.replace(old[:20], made.key[:20]), data)
    for name in names:
        store.write_text(f"{ADOPTED}/{name.replace(old[:20], made.key[:20])}", store.url_of(name))
    get_run_logger().info("adopted %s from its key before keys left out where the store is: %s",
                          uri, ", ".join(names))
    return store.exists(uri)


@task(cache_policy=ArtifactKey(stage="questions"),
      task_run_name=RUN_NAMES["make_questions"])
def make_questions(dataset_config: DatasetConfig, store: str) -> dict:
    """Generate or load a dataset's questions; returns {uri, n}."""
    made = Made("questions", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("questions", dataset_config.name, key, "parquet")
    if not _done(s, uri, made):
        s.write_table(uri, sample.questions_to_table(dataset_config.load()), made.record)
    return {"uri": uri, "n": len(s.read_table(uri))}


@task(cache_policy=ArtifactKey(stage="sample"), tags=["model"],
      task_run_name=RUN_NAMES["sample_shard"])
def sample_shard(questions_uri: str, start: int, stop: int, dataset: str, model: ModelConfig,
                 sampling: SamplingConfig, store: str, judge_model: ModelConfig | None = None) -> str:
    """Sample and label answers for questions [start, stop) of a question table; `judge_model` labels
    them for a dataset whose proxy needs a model (`score_answers`), None for the others."""
    made = Made("sample", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("samples/shards", f"{dataset}.{model.name}.{start}-{stop}", key, "parquet")
    if not _done(s, uri, made):
        questions = sample.table_to_questions(s.read_table(questions_uri).iloc[start:stop])
        judge_backend = get_backend(_located(judge_model, s)) if judge_model is not None else None
        with task_progress():
            table = sample.sample_answers(questions, get_dataset(dataset), get_backend(_located(model, s)), sampling,
                                          judge_backend)
        s.write_table(uri, table, made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="samples"),
      task_run_name=RUN_NAMES["join_samples"])
def join_samples(shard_uris: list[str], dataset: str, generator: str, store: str) -> str:
    """One samples table per (dataset, generator) from its shards."""
    made = Made("samples", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("samples", f"{dataset}.{generator}", key, "parquet")
    if not _done(s, uri, made):
        s.write_table(uri, pd.concat([s.read_table(u) for u in shard_uris], ignore_index=True), made.record)
    return uri


# The judge settings each judge task never reads: the rest of JudgeConfig is in its key and reaches it
# whole, so a new judge setting cannot be dropped on the way (as `reasoning` once was).
# Judge ensembles only combine judgments made: no judge reads them.
# The pairwise judge asks both orders either way (`protocol`).
PAIRWISE_UNREAD = {"judge_config": frozenset({"methods", "score_k", "protocol", "ensembles", "budget"})}
SCORE_UNREAD = {"judge_config": frozenset({"methods", "score_k", "max_pairs_per_question", "ensembles", "budget"})}
# A budget's judge asks about the pairs its pick chose: no cap or cap seed of the full judge applies.
BUDGET_UNREAD = {"judge_config": PAIRWISE_UNREAD["judge_config"] | {"max_pairs_per_question", "seed"}}


@task(cache_policy=ArtifactKey(stage="judge", unread=PAIRWISE_UNREAD), tags=["model"],
      task_run_name=RUN_NAMES["judge_pairwise"])
def judge_pairwise(samples_uri: str, dataset: str, model: ModelConfig, judge_config: JudgeConfig, store: str) -> str:
    """The evaluator's pairwise verdicts on the WoW pairs, both orders."""
    made = Made("judge", locals(), PAIRWISE_UNREAD)
    key = made.key
    s = Store(store)
    uri = s.uri("judgments", f"{dataset}.{model.name}.pairwise", key, "parquet")
    if not _done(s, uri, made):
        with task_progress(), request_priority(JUDGMENTS):
            table = judge.pairwise_judgments(s.read_table(samples_uri), get_backend(_located(model, s)), judge_config)
        s.write_table(uri, table, made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="judge_budget", unread=BUDGET_UNREAD), tags=["model"],
      task_run_name=RUN_NAMES["judge_budget"])
def judge_budget(samples_uri: str, dataset: str, model: ModelConfig, judge_config: JudgeConfig, pick: str,
                 calls: int, seed: int, store: str) -> str:
    """The evaluator's pairwise verdicts, both orders, on the first `calls` // 2 WoW pairs of `pick`'s
    ranking (`budget.ranked_pairs`): the largest budget of a curve, whose smaller budgets are its start."""
    made = Made("judge_budget", locals(), BUDGET_UNREAD)
    key = made.key
    s = Store(store)
    uri = s.uri("judgments", f"{dataset}.{model.name}.budget-{pick}-{calls}", key, "parquet")
    if not _done(s, uri, made):
        samples = s.read_table(samples_uri)
        asked = budget.pairs_within(budget.ranked_pairs(samples, pick, seed), calls)
        with task_progress(), request_priority(BUDGET_JUDGMENTS):
            table = judge.pairwise_judgments(samples, get_backend(_located(model, s)), judge_config, pairs=asked)
        s.write_table(uri, table, made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="judge", unread=SCORE_UNREAD), tags=["model"],
      task_run_name=RUN_NAMES["judge_score"])
def judge_score(samples_uri: str, dataset: str, model: ModelConfig, k: int, judge_config: JudgeConfig,
                store: str) -> str:
    """The evaluator's 0-5 scores of the wrong answers, k per prompt."""
    made = Made("judge", locals(), SCORE_UNREAD)
    key = made.key
    s = Store(store)
    uri = s.uri("judgments", f"{dataset}.{model.name}.{JudgeMethod('score', k)}", key, "parquet")
    if not _done(s, uri, made):
        with task_progress(), request_priority(JUDGMENTS):
            table = judge.score_judgments(s.read_table(samples_uri), get_backend(_located(model, s)), judge_config, k)
        s.write_table(uri, table, made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="pairs"),
      task_run_name=RUN_NAMES["method_pairs"])
def method_pairs(method: str, samples_uri: str, judgments_uri: str | None, dataset: str, label: str,
                 store: str, protocol: str = "wow") -> str:
    """One method's verdict on every WoW pair it can judge, computed as `protocol` says."""
    made = Made("pairs", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("pairs", f"{label}.{method}", key, "parquet")
    if not _done(s, uri, made):
        judgments = s.read_table(judgments_uri) if judgments_uri else None
        s.write_table(uri, elicit.method_pairs(method, s.read_table(samples_uri), judgments, protocol), made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="ensemble_pairs"),
      task_run_name=RUN_NAMES["ensemble_pairs"])
def ensemble_pairs(rule: str, method: str, samples_uri: str, judgments_uris: list[str], dataset: str, label: str,
                   store: str) -> str:
    """A judge ensemble's verdict on every WoW pair it can judge: its members' judgments of `method` (one
    URI per member) combined by `rule`."""
    made = Made("ensemble_pairs", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("pairs", f"{label}.{method}_{rule}", key, "parquet")
    if not _done(s, uri, made):
        s.write_table(uri, elicit.ensemble_pairs(rule, method, s.read_table(samples_uri),
                                                 [s.read_table(u) for u in judgments_uris]), made.record)
    return uri


@task(cache_policy=ArtifactKey(stage="report"),
      task_run_name=RUN_NAMES["build_report"])
def build_report(name: str, entries: list[dict], samples: list[dict], judges: list[dict], margins: list[float],
                 confidence: float, store: str, protocol: str = "wow",
                 ensembles: dict[str, list[str]] | None = None) -> dict:
    """AccWoW table (Parquet), judge reliability table (Parquet), markdown and a PNG per dataset; returns
    their URIs (`png`: a list, in the entries' dataset order).

    `entries`: dataset, generator, evaluator, method, pairs_uri. `samples`: dataset, generator, uri.
    `judges`: dataset, generator, evaluator, method, uri (judgments). `ensembles`: judge ensemble name ->
    members (None without ensembles: not in the key)."""
    made = Made("report", locals())
    key = made.key
    s = Store(store)
    uris = {ext: s.uri("reports", name, key, ext) for ext in ("parquet", "md")}
    uris["judges"] = s.uri("reports", f"{name}.judges", key, "parquet")
    labels = report.plot_labels([e["dataset"] for e in entries])
    pngs = {ds: s.uri("reports", f"{name}.{label}", key, "png") for ds, label in labels.items()}  # one per dataset
    uris["png"] = list(pngs.values())
    if not _done(s, uris["md"], made):
        table = report.accwow_table([{**e, "pairs": s.read_table(e["pairs_uri"])} for e in entries], margins,
                                    confidence, protocol)
        sample_stats = [{**x, **report.sample_summary(s.read_table(x["uri"]))} for x in samples]
        judge_stats = [{**j, **report.judge_summary(j["method"], s.read_table(j["uri"]), confidence)} for j in judges]
        s.write_table(uris["parquet"], table, made.record)
        s.write_table(uris["judges"], report.judge_table(judge_stats), made.record)
        for ds, png in report.plot_accwow(table, confidence, list(pngs)).items():
            s.write_bytes(pngs[ds], png)
        # The markdown is written last: its presence means the whole report is there.
        png_names = {ds: uri.rsplit("/", 1)[-1] for ds, uri in pngs.items()}
        s.write_text(uris["md"], report.render_markdown(name, table, sample_stats, judge_stats, png_names, confidence,
                                                        protocol, ensembles))
    return uris


@task(cache_policy=ArtifactKey(stage="leaderboard"),
      task_run_name=RUN_NAMES["build_leaderboard"])
def build_leaderboard(name: str, entries: list[dict], judges: list[dict], ensembles: dict[str, list[str]],
                      confidence: float, store: str) -> dict:
    """The judge leaderboard (Parquet), its markdown and its plot (PNG); returns their URIs.

    `entries` and `judges` as `build_report` takes them; `ensembles`: judge ensemble name -> members."""
    made = Made("leaderboard", locals())
    key = made.key
    s = Store(store)
    uris = {ext: s.uri("reports", f"{name}.leaderboard", key, ext) for ext in ("parquet", "md", "png")}
    if not _done(s, uris["md"], made):
        table = leaderboard.leaderboard_table([{**e, "pairs": s.read_table(e["pairs_uri"])} for e in entries],
                                              [{**j, "judgments": s.read_table(j["uri"])} for j in judges],
                                              ensembles, confidence)
        s.write_table(uris["parquet"], table, made.record)
        s.write_bytes(uris["png"], report.plot_leaderboard(table, confidence))
        # The markdown is written last: its presence means the whole leaderboard is there.
        s.write_text(uris["md"], report.render_leaderboard(name, table, uris["png"].rsplit("/", 1)[-1], confidence))
    return uris


@task(cache_policy=ArtifactKey(stage="budget_report"),
      task_run_name=RUN_NAMES["build_budget_report"])
def build_budget_report(name: str, entries: list[dict], budgets: list[int], confidence: float, store: str) -> dict:
    """Budget-aware judging: AccWoW and preference-set size against judge calls, per pick (Parquet,
    markdown, PNG); returns their URIs.

    `entries`: dataset, generator, evaluator, pick ("all pairs" for the full judge's judgments), seed,
    samples_uri, judgments_uri."""
    made = Made("budget_report", locals())
    key = made.key
    s = Store(store)
    uris = {ext: s.uri("reports", f"{name}.budget", key, ext) for ext in ("parquet", "md", "png")}
    if not _done(s, uris["md"], made):
        table = budget.budget_table([{**e, "samples": s.read_table(e["samples_uri"]),
                                      "judgments": s.read_table(e["judgments_uri"])} for e in entries],
                                    budgets, confidence)
        s.write_table(uris["parquet"], table, made.record)
        s.write_bytes(uris["png"], budget.plot_budget(table, confidence))
        # The markdown is written last: its presence means the whole report is there.
        s.write_text(uris["md"], budget.render_budget(name, table, uris["png"].rsplit("/", 1)[-1], confidence))
    return uris


@task(cache_policy=ArtifactKey(stage="heldout"),
      task_run_name=RUN_NAMES["split_heldout"])
def split_heldout(questions_uri: str, heldout_fraction: float, split_seed: int, dataset: str, store: str) -> dict:
    """Hold out a fixed share of a dataset's questions for evaluation: {train_ids, heldout_uri, n_heldout}."""
    made = Made("heldout", locals())
    key = made.key
    s = Store(store)
    questions = s.read_table(questions_uri)
    train_ids, heldout_ids = pairs.split_questions(list(questions["question_id"]), heldout_fraction, split_seed)
    if not heldout_ids:
        raise ValueError(f"dataset '{dataset}': {len(questions)} question(s) leave none held out for evaluation; "
                         "alignment needs at least 2 questions per dataset")
    uri = s.uri("questions/heldout", dataset, key, "parquet")
    if not _done(s, uri, made):
        s.write_table(uri, questions[questions["question_id"].isin(heldout_ids)].reset_index(drop=True), made.record)
    return {"train_ids": train_ids, "heldout_uri": uri, "n_heldout": len(heldout_ids)}


@task(cache_policy=ArtifactKey(stage="train_questions"),
      task_run_name=RUN_NAMES["training_questions"])
def training_questions(questions_uri: str, train_ids: list[str], dataset: str, store: str) -> dict:
    """The training questions of a dataset (those outside its held-out split) as a question table, for
    a later round of iterative alignment to sample: {uri, n}."""
    made = Made("train_questions", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("questions/train", dataset, key, "parquet")
    if not _done(s, uri, made):
        questions = s.read_table(questions_uri)
        s.write_table(uri, questions[questions["question_id"].isin(train_ids)].reset_index(drop=True), made.record)
    return {"uri": uri, "n": len(train_ids)}


@task(cache_policy=ArtifactKey(stage="preference_set"),
      task_run_name=RUN_NAMES["build_preference_set"])
def build_preference_set(spec: PreferenceSetConfig, evaluator: str | None, sources: list[dict], train_ids: list[str],
                         max_pairs: int, seed: int, label: str, store: str) -> dict:
    """One preference set from the training questions' samples (and judgments) of its generators.

    `sources`: one per generator: {generator, samples_uri, judgments_uri (or None)}. Returns {uri, n_pairs}:
    the Parquet file; beside it the same pairs as a Hugging Face dataset folder with a dataset card, which
    TRL's DPOTrainer takes as it is (`preference_dataset.dataset_uri(uri)`; not in the result, which is
    part of every training's cache key)."""
    made = Made("preference_set", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("preference_sets", label, key, "parquet")
    hf_uri = preference_dataset.dataset_uri(uri)

    def save_dataset(table: pd.DataFrame) -> None:
        card = preference_dataset.card(table, label, key, spec, evaluator, sources, len(train_ids), max_pairs, seed)
        preference_dataset.save(table, s.url_of(hf_uri), card)

    if not _done(s, uri, made):
        wow_parts, row_parts = [], []
        for src in sources:
            samples = s.read_table(src["samples_uri"])
            samples = samples[samples["question_id"].isin(train_ids)]
            judgments = None
            if src["judgments_uri"]:
                judgments = s.read_table(src["judgments_uri"])
                judgments = judgments[judgments["question_id"].isin(train_ids)]
            verdicts = pairs.verdict_pairs(spec.method, samples, judgments, spec.top_p)
            wow_parts.append(pairs.with_texts(verdicts, samples, src["generator"], evaluator, spec.method))
            if spec.mix_right_over_wrong:
                row = pairs.verdict_pairs("right_over_wrong", samples, None, 1.0)
                row_parts.append(pairs.with_texts(row, samples, src["generator"], None, "right_over_wrong"))
        table = pairs.preference_set(wow_parts, row_parts if spec.mix_right_over_wrong else None, max_pairs, seed)
        save_dataset(table)  # first: the Parquet file marks the set as done, so none is left without its dataset
        s.write_table(uri, table, made.record)
    elif not s.exists(f"{hf_uri}/{preference_dataset.CARD}"):  # a set stored before sets had a dataset
        save_dataset(s.read_table(uri))
    n_pairs = len(s.read_table(uri))
    get_run_logger().info("%s: %d pairs; as a Hugging Face dataset: %s", label, n_pairs, s.url_of(hf_uri))
    return {"uri": uri, "n_pairs": n_pairs}


# Prints are not logged here: `datasets` hashes functions with dill, which disassembles them into a
# redirected stdout, and Prefect's print patch would send every bytecode line to the run's log. The
# trainer's records reach the log through `train_adapter(log=...)` instead.
@task(cache_policy=ArtifactKey(stage="train"), tags=["model"], log_prints=False,
      task_run_name=RUN_NAMES["train_grid_point"])
def train_grid_point(preference: dict, model: ModelConfig, train_config: TrainConfig, label: str,
                     store: str) -> dict:
    """A LoRA adapter trained on one preference set ({uri, n_pairs}) with one grid point's settings; a
    `model` with an `adapter` (a later round of iterative alignment) has that adapter trained further.

    Returns {uri (the PEFT folder in the store, or None when the set has fewer than 2 pairs), summary}."""
    made = Made("train", locals())
    key = made.key
    s = Store(store)
    uri = s.uri("adapters", label, key, "lora")
    log_uri = f"{uri}/training_log.json"
    if not _done(s, log_uri, made):
        table = s.read_table(preference["uri"])
        if len(table) < 2:
            get_run_logger().warning("%s: %d pairs, nothing to train", label, len(table))
            return {"uri": None, "summary": {"n_train_pairs": len(table)}}
        with tempfile.TemporaryDirectory(prefix="wow-train-") as work:
            logger = get_run_logger()
            with task_progress():
                train.train_adapter(resolve_model_path(model.path), table, train_config, work, model.device,
                                    model.dtype, model.system_prompt,
                                    log=lambda record: logger.info("%s: %s", label, record),
                                    init_adapter=_located(model, s).adapter)
            shutil.rmtree(Path(work) / "checkpoints", ignore_errors=True)
            for name in ("training_log.json", "train_config.json"):
                shutil.copy(Path(work) / name, Path(work) / "adapter" / name)
            record = json.dumps(jsonable(made.record), indent=1, sort_keys=True)
            (Path(work) / "adapter" / MADE_FROM_FILE).write_text(record)
            s.write_folder(uri, str(Path(work) / "adapter"), last="training_log.json")
    return {"uri": uri, "summary": json.loads(s.read_text(log_uri))["summary"]}


@task(cache_policy=ArtifactKey(stage="alignment_report"),
      task_run_name=RUN_NAMES["build_alignment_report"])
def build_alignment_report(name: str, base: list[dict], runs: list[dict], untrained: list[dict], seed: int,
                           n_resamples: int, selection: str, store: str) -> dict:
    """Base-vs-aligned table (Parquet), markdown and reliability diagrams; returns their URIs.

    `base`: model, dataset, uri (held-out answers). `runs`: model, preference_set, trained_on,
    grid_point, train (its settings), n_pairs, summary, samples ({dataset: uri}). `untrained`: sets
    with too few pairs (model, preference_set, trained_on, n_pairs). `selection`: how a set's grid point
    is chosen (`evaluate.alignment_table`)."""
    made = Made("alignment_report", locals())
    key = made.key
    s = Store(store)
    uris = {"parquet": s.uri("reports", f"{name}.alignment", key, "parquet"),
            "md": s.uri("reports", f"{name}.alignment", key, "md")}
    # One reliability diagram per model and dataset, named the same whether built now or found.
    png = {(b["model"], b["dataset"]): uris["md"][:-3] + f".{b['model']}.{b['dataset']}.reliability.png"
           for b in sorted(base, key=lambda b: b["model"])}
    if _done(s, uris["md"], made):
        return {**uris, "png": list(png.values())}
    tables, diagrams = [], {}
    for model in sorted({b["model"] for b in base}):
        base_samples = {b["dataset"]: s.read_table(b["uri"]) for b in base if b["model"] == model}
        model_runs = [{**r, "samples": {ds: s.read_table(u) for ds, u in r["samples"].items()}}
                      for r in runs if r["model"] == model]
        table = evaluate.alignment_table(base_samples, model_runs, seed, n_resamples, selection=selection)
        table.insert(0, "model", model)
        tables.append(table)
        for ds, samples in base_samples.items():
            # One panel per adapter evaluated here: a set trained on several datasets has one adapter each.
            selected = {report.adapter_label(t, tr, ds): next(
                r["samples"][ds] for r in model_runs
                if r["preference_set"] == t and r["trained_on"] == tr and r["grid_point"] == g)
                for t, tr, g in table[table["dataset"] == ds][["preference_set", "trained_on", "grid_point"]]
                .drop_duplicates().itertuples(index=False)}
            panels = {"base": samples, **selected}
            s.write_bytes(png[model, ds], report.plot_reliability(panels, f"{model} on {ds}"))
            diagrams[model, ds] = list(panels)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["model", *evaluate.TABLE_COLUMNS])
    s.write_table(uris["parquet"], table, made.record)
    s.write_text(uris["md"], report.render_alignment_markdown(
        name, table, runs, untrained,
        [(p.rsplit("/", 1)[-1], f"{m} on {ds}", diagrams.get((m, ds), [])) for (m, ds), p in png.items()]))
    return {**uris, "png": list(png.values())}


# The model-bound tasks, which a grid may run as units on workers (flows/units.py).
UNIT_TASKS = {t.name: t for t in (sample_shard, judge_pairwise, judge_score, judge_budget, train_grid_point)}


@task(cache_policy=ArtifactKey(stage="rounds_report"),
      task_run_name=RUN_NAMES["build_rounds_report"])
def build_rounds_report(name: str, chains: list[dict], stopped: list[dict], seed: int, n_resamples: int,
                        confidence: float, store: str) -> dict:
    """The iterative-alignment report: table (Parquet), markdown and plot (PNG); returns their URIs.

    `chains`: model, dataset, preference_set, init, base (held-out answers URI) and rounds ({round, n_pairs,
    samples URI} in order); `stopped`: chains that ended early (model, dataset, preference_set, round, reason)."""
    made = Made("rounds_report", locals())
    key = made.key
    s = Store(store)
    uris = {ext: s.uri("reports", f"{name}.rounds", key, ext) for ext in ("parquet", "md", "png")}
    if not _done(s, uris["md"], made):
        tables = []
        for c in chains:
            rounds = [{**r, "samples": s.read_table(r["samples"])} for r in c["rounds"]]
            table = evaluate.rounds_table(s.read_table(c["base"]), rounds, seed, n_resamples, confidence)
            for n, column in enumerate(("model", "dataset", "preference_set", "init")):
                table.insert(n, column, c[column])
            tables.append(table)
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=evaluate.ROUNDS_COLUMNS)
        s.write_table(uris["parquet"], table, made.record)
        s.write_bytes(uris["png"], report.plot_rounds(table, confidence))
        # The markdown is written last: its presence means the whole report is there.
        s.write_text(uris["md"], report.render_rounds_markdown(name, table, stopped, uris["png"].rsplit("/", 1)[-1],
                                                               confidence))
    return uris
