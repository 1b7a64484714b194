"""The elicitation flow: sample -> extract and label -> self signals and judges -> AccWoW report.

Fans out per dataset x generator for sampling (in question shards, so a crash loses at most one
shard) and per dataset x generator x evaluator x method for judging, then joins into one report.
"""
import dataclasses
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
from wow_core.methods import SELF, JudgeMethod
from wow_core.plan import Grid, Judging, grid_plan
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
    grid: Grid | None = None                                    # the plan, from the questions' counts
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


def judge_call(config: ExperimentConfig, judging: Judging, samples_uri) -> UnitCall:
    """The unit that asks `judging`'s evaluator for its verdicts on the answers at `samples_uri`."""
    arguments = dict(samples_uri=samples_uri, dataset=config.dataset(judging.dataset).name,
                     model=config.model(judging.evaluator), judge_config=config.judge, store=config.store)
    if judging.method.kind == "pairwise":
        return UnitCall("judge_pairwise", arguments)
    return UnitCall("judge_score", {**arguments, "k": judging.method.k})


def submit_elicitation(config: ExperimentConfig, units: Units) -> Elicitation:
    """Submit the elicitation grid of `config` (its plan: wow_core/plan.py); its futures resolve as the
    tasks finish."""
    store, j = config.store, config.judge
    q_task, join_task, pairs_task, ensemble_task, report_task, leaderboard_task, budget_task = run_tasks(
        [make_questions, join_samples, method_pairs, ensemble_pairs, build_report, build_leaderboard,
         build_budget_report], store)
    by_tag = {ds.tag: ds for ds in config.datasets}
    out = Elicitation(questions={tag: q_task(ds, store) for tag, ds in by_tag.items()})
    out.grid = grid = grid_plan(config, {tag: q["n"] for tag, q in out.questions.items()})

    # §2.1 Sampling: every shard of a generator, over all datasets, as one model's units.
    for gen in config.generators:
        shards = [s for s in grid.sampling if s.model == gen]
        # Once per dataset: it warns when the proxy's judge is the generator.
        judges = {tag: proxy_judge(config, ds, gen) for tag, ds in by_tag.items()}
        futures = units.map(gen, "sample", [UnitCall("sample_shard", dict(
            questions_uri=out.questions[s.dataset]["uri"], start=s.start, stop=s.stop, dataset=by_tag[s.dataset].name,
            model=config.model(gen), sampling=config.sampling_for(gen), store=store, judge_model=judges[s.dataset]))
            for s in shards])
        for tag, ds in by_tag.items():
            out.samples[(tag, gen)] = join_task.submit([f for f, s in zip(futures, shards) if s.dataset == tag],
                                                       ds.name, gen, store)

    # §2.2 Judging: every evaluator's verdicts on every generator's answers, as the evaluator's units.
    for ev in config.evaluators:
        judgings = [c for c in grid.judgings if c.evaluator == ev]
        futures = units.map(ev, "judge", [judge_call(config, c, out.samples[(c.dataset, c.generator)])
                                          for c in judgings])
        out.judgments.update({(c.dataset, c.generator, ev, str(c.method)): f for c, f in zip(judgings, futures)})

    budget_entries = submit_budget(config, grid, out, units) if grid.budget else []

    # §3 Every method's verdicts on the WoW pairs, then the report.
    ensembles = {(e.name, e.elicitation_method): e for e in j.ensembles}
    entries = []
    for cell in grid.cells:
        samples_uri, name = out.samples[(cell.dataset, cell.generator)], by_tag[cell.dataset].name
        label = f"{cell.dataset}.{cell.generator}"
        if cell.evaluator == SELF:
            pairs = pairs_task.submit(cell.method, samples_uri, None, name, label, store, j.protocol)
        elif ens := ensembles.get((cell.evaluator, cell.method)):  # no model call: the members' judgments
            members = [out.judgments[(cell.dataset, cell.generator, m, ens.method)] for m in ens.members]
            pairs = ensemble_task.submit(ens.rule, ens.method, samples_uri, members, name, f"{label}.{ens.name}",
                                         store)
        else:
            reads = str(JudgeMethod.read_by(cell.method))
            judged = out.judgments[(cell.dataset, cell.generator, cell.evaluator, reads)]
            pairs = pairs_task.submit(cell.method, samples_uri, judged, name, f"{label}.{cell.evaluator}", store,
                                      j.protocol)
        entries.append({**dataclasses.asdict(cell), "pairs_uri": pairs})
    samples = [{"dataset": tag, "generator": gen, "uri": out.samples[(tag, gen)]}
               for tag in by_tag for gen in config.generators]
    judges = [{"dataset": tag, "generator": gen, "evaluator": ev, "method": str(m),
               "uri": out.judgments[(tag, gen, ev, str(m))]}
              for tag in by_tag for gen in config.generators for ev in config.evaluators for m in j.judge_methods]
    # Prefect resolves the futures nested in these lists and waits for them.
    members = {e.name: e.members for e in j.ensembles}
    out.report = report_task.submit(config.name, entries, samples, judges, config.report.margins,
                                    config.report.confidence, store, j.protocol, members or None)
    if config.report.leaderboard:
        out.leaderboard = leaderboard_task.submit(config.name, entries, judges, members, config.report.confidence,
                                                  store)
    if budget_entries:
        out.budget = budget_task.submit(config.name, budget_entries, j.budget.calls, config.report.confidence, store)
    return out


def submit_budget(config: ExperimentConfig, grid: Grid, out: Elicitation, units: Units) -> list[dict]:
    """Beyond the paper: budget-aware judging. Each pick's pairs judged at the largest budget, as the
    evaluator's units, beside the grid's own pairwise judgment ("all pairs": where the curve is heading).
    Returns the budget report's entries."""
    b, entries = config.judge.budget, []
    for ev in dict.fromkeys(x.evaluator for x in grid.budget):
        mine = [x for x in grid.budget if x.evaluator == ev]
        cells = [{"dataset": x.dataset, "generator": x.generator, "evaluator": ev, "seed": b.seed,
                  "samples_uri": out.samples[(x.dataset, x.generator)], "pick": x.pick} for x in mine]
        for tag, gen in dict.fromkeys((x.dataset, x.generator) for x in mine):
            if (tag, gen, ev, "pairwise") in out.judgments:
                entries.append({"dataset": tag, "generator": gen, "evaluator": ev, "seed": b.seed,
                                "samples_uri": out.samples[(tag, gen)], "pick": "all pairs",
                                "judgments_uri": out.judgments[(tag, gen, ev, "pairwise")]})
        calls = [UnitCall("judge_budget", dict(
            samples_uri=out.samples[(x.dataset, x.generator)], dataset=config.dataset(x.dataset).name,
            model=config.model(ev), judge_config=config.judge, pick=x.pick, calls=x.calls, seed=b.seed,
            store=config.store)) for x in mine]
        entries += [{**c, "judgments_uri": f} for c, f in zip(cells, units.map(ev, "judge", calls))]
    return entries


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
    get_run_logger().info("report: %s", Store(config.store).url_of(uris["md"]))
    return uris

