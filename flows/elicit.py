"""The elicitation flow: sample -> extract and label -> self signals and judges -> AccWoW report.

Fans out per dataset x generator for sampling (in question shards, so a crash loses at most one
shard) and per dataset x generator x evaluator x method for judging, then joins into one report.
"""
import logging
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.exceptions import MissingContextError
from prefect.futures import PrefectFuture

from flows.artifacts import publish_elicitation
from flows.runtime import checked_config, run_name, run_tasks, say_precision, store_access
from flows.units import UnitCall, Units, model_units, report_loads
from tasks.stages import (build_budget_report, build_leaderboard, build_report, ensemble_pairs, join_samples,
                          make_questions, method_pairs)
from wow_core.config import DatasetConfig, ExperimentConfig, ModelConfig
from wow_core.datasets import get_dataset
from wow_core.elicit import SELF_SIGNALS
from wow_core.report import SELF
from wow_core.store import Store


def proxy_judge(config: ExperimentConfig, ds: DatasetConfig, generator: str) -> ModelConfig | None:
    """The model that labels a dataset's answers when its proxy needs one (`score_answers`, e.g.
    bio_generation): the dataset's `options.judge`, by default the first evaluator, the same for every
    generator so that their proxies compare; None otherwise. A judge that is the generator grades its
    own answers: allowed (one model), with a warning."""
    if not hasattr(get_dataset(ds.name), "score_answers"):
        return None
    judge = ds.options.get("judge", config.evaluators[0])
    if judge == generator:
        try:
            logger = get_run_logger()
        except MissingContextError:
            logger = logging.getLogger(__name__)
        logger.warning("%s: the proxy judge '%s' is also the generator, so it grades its own answers "
                       "(self-grading); name another model in the dataset's options.judge", ds.tag, judge)
    return config.model(judge)


@dataclass
class Elicitation:
    """What the elicitation graph submitted: the stages alignment builds on, and the report."""
    questions: dict[str, dict] = field(default_factory=dict)   # dataset tag -> {uri, n}
    samples: dict[tuple[str, str], PrefectFuture] = field(default_factory=dict)  # (tag, generator)
    # (tag, generator, evaluator, "pairwise" | "score_k<k>") -> judgments URI
    judgments: dict[tuple[str, str, str, str], PrefectFuture] = field(default_factory=dict)
    report: PrefectFuture | None = None
    leaderboard: PrefectFuture | None = None  # when `report.leaderboard` is on
    budget: PrefectFuture | None = None       # when `judge.budget` is set

    def result(self) -> dict:
        """The report's URIs, with the leaderboard's under `leaderboard` and the budget report's under
        `budget` when there are (waits for all; raises if an upstream task failed)."""
        uris = self.report.result()
        companions = {"leaderboard": self.leaderboard, "budget": self.budget}
        return {**uris, **{k: f.result() for k, f in companions.items() if f is not None}}


def submit_elicitation(config: ExperimentConfig, units: Units) -> Elicitation:
    """Submit the elicitation grid of `config`; its futures resolve as the tasks finish."""
    store = config.store
    q_task, join_task, pairs_task, ensemble_task, report_task, leaderboard_task, budget_task = run_tasks(
        [make_questions, join_samples, method_pairs, ensemble_pairs, build_report, build_leaderboard,
         build_budget_report], store)
    out = Elicitation()
    for ds in config.datasets:
        out.questions[ds.tag] = q_task(ds, store)

    # Sampling: every shard of a generator, over all datasets, as one model's units.
    shards: dict[tuple[str, str], list[int]] = {}
    for gen in config.generators:
        calls = []
        for ds in config.datasets:
            questions, step = out.questions[ds.tag], config.sampling.shard_size
            judge_model = proxy_judge(config, ds, gen)  # once per dataset: it warns when it is the generator
            for start in range(0, questions["n"], step):
                shards.setdefault((ds.tag, gen), []).append(len(calls))
                calls.append(UnitCall("sample_shard", dict(
                    questions_uri=questions["uri"], start=start, stop=min(start + step, questions["n"]),
                    dataset=ds.name, model=config.model(gen), sampling=config.sampling_for(gen), store=store,
                    judge_model=judge_model)))
        futures = units.map(gen, "sample", calls)
        for ds in config.datasets:
            out.samples[(ds.tag, gen)] = join_task.submit([futures[i] for i in shards.get((ds.tag, gen), [])],
                                                          ds.name, gen, store)

    # Judging: every evaluator's verdicts on every generator's answers, as the evaluator's units.
    j = config.judge
    judge_methods = j.judge_methods
    for ev in config.evaluators:
        keys, calls = [], []
        for ds in config.datasets:
            for gen in config.generators:
                base = dict(samples_uri=out.samples[(ds.tag, gen)], dataset=ds.name, model=config.model(ev),
                            judge_config=j, store=store)
                for judge_method in judge_methods:
                    keys.append((ds.tag, gen, ev, str(judge_method)))
                    calls.append(UnitCall("judge_pairwise", base) if judge_method.kind == "pairwise"
                                 else UnitCall("judge_score", {**base, "k": judge_method.k}))
        out.judgments.update(zip(keys, units.map(ev, "judge", calls)))

    # Budget-aware judging: each pick's pairs at the largest budget, as the evaluator's units too.
    budget_entries = []
    if j.budget is not None:
        b = j.budget
        for ev in b.evaluators or config.evaluators:
            cells, calls = [], []
            for ds in [d for d in config.datasets if b.datasets is None or d.tag in b.datasets]:
                for gen in config.generators:
                    cell = {"dataset": ds.tag, "generator": gen, "evaluator": ev, "seed": b.seed,
                            "samples_uri": out.samples[(ds.tag, gen)]}
                    for pick in b.picks:
                        cells.append({**cell, "pick": pick})
                        calls.append(UnitCall("judge_budget", dict(
                            samples_uri=out.samples[(ds.tag, gen)], dataset=ds.name, model=config.model(ev),
                            judge_config=j, pick=pick, calls=max(b.calls), seed=b.seed, store=store)))
                    if (ds.tag, gen, ev, "pairwise") in out.judgments:  # where the curve is heading
                        budget_entries.append({**cell, "pick": "all pairs",
                                               "judgments_uri": out.judgments[(ds.tag, gen, ev, "pairwise")]})
            budget_entries += [{**c, "judgments_uri": f} for c, f in zip(cells, units.map(ev, "judge", calls))]

    # Every method's verdicts on the WoW pairs, then the report.
    entries, samples, judges = [], [], []
    for ds in config.datasets:
        for gen in config.generators:
            samples_uri, label = out.samples[(ds.tag, gen)], f"{ds.tag}.{gen}"
            samples.append({"dataset": ds.tag, "generator": gen, "uri": samples_uri})
            for method in (m for m in j.methods if m in SELF_SIGNALS):
                entries.append({"dataset": ds.tag, "generator": gen, "evaluator": SELF, "method": method,
                                "pairs_uri": pairs_task.submit(method, samples_uri, None, ds.name, label, store,
                                                               j.protocol)})
            for ev in config.evaluators:
                for judge_method in map(str, judge_methods):
                    uri = out.judgments[(ds.tag, gen, ev, judge_method)]
                    judges.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": judge_method,
                                   "uri": uri})
                    for method in (["pairwise", "pairwise_filtered"] if judge_method == "pairwise" else [judge_method]):
                        entries.append({"dataset": ds.tag, "generator": gen, "evaluator": ev, "method": method,
                                        "pairs_uri": pairs_task.submit(method, samples_uri, uri, ds.name,
                                                                       f"{label}.{ev}", store, j.protocol)})
            # Judge ensembles: their members' judgments of these answers, combined (no model call).
            for ens in j.ensembles:
                members = [out.judgments[(ds.tag, gen, m, ens.method)] for m in ens.members]
                entries.append({"dataset": ds.tag, "generator": gen, "evaluator": ens.name,
                                "method": ens.elicitation_method,
                                "pairs_uri": ensemble_task.submit(ens.rule, ens.method, samples_uri, members, ds.name,
                                                                  f"{label}.{ens.name}", store)})
    # Prefect resolves the futures nested in these lists and waits for them.
    ensembles = {e.name: e.members for e in j.ensembles}
    out.report = report_task.submit(config.name, entries, samples, judges, config.report.margins,
                                    config.report.confidence, store, j.protocol, ensembles or None)
    if config.report.leaderboard:
        out.leaderboard = leaderboard_task.submit(config.name, entries, judges, ensembles, config.report.confidence,
                                                  store)
    if budget_entries:
        out.budget = budget_task.submit(config.name, budget_entries, j.budget.calls, config.report.confidence, store)
    return out


@flow(name="elicit", flow_run_name=run_name("elicit"), validate_parameters=False, log_prints=True)
def elicit(config: ExperimentConfig) -> dict:
    """Run the wrong-over-wrong elicitation grid of `config` and write the AccWoW report."""
    config = checked_config(config)
    precision = say_precision(config)
    with store_access(config.store):
        units = model_units(config)
        uris = submit_elicitation(config, units).result()  # raises if an upstream task failed
        report_loads(units)
        publish_elicitation(Store(config.store), uris, config.name, config.report.confidence, precision)
    get_run_logger().info("report: %s", uris["md"])
    return uris

