"""The grid of one config as a plan: every model-bound unit a run submits and every cell of its
reports, as typed records, from the config and each dataset's question count alone (no model, no store,
no Prefect). The stages follow the paper: questions -> samples (§2.1) -> judgments and self signals
(§2.2) -> the AccWoW report (§3) -> held-out split, preference sets, adapters and held-out answers (§4).

Budget-aware judging and iterative rounds (beyond the paper) are planned here too, each apart, so that
a plan without them is the paper's grid. A chain of rounds may stop early when a round's set is too
small; the plan counts every round it may run.
"""
from dataclasses import dataclass, field

from wow_core.config import ExperimentConfig
from wow_core.elicit import SELF_SIGNALS
from wow_core.methods import SELF, JudgeMethod
from wow_core.pairs import heldout_count


@dataclass(frozen=True)
class Shard:
    """Questions [start, stop) of one dataset, answered by one model (sampling or held-out answers)."""
    dataset: str          # the dataset's tag
    model: str            # the answering model's name (an adapter's: see HeldOutRun)
    start: int
    stop: int


@dataclass(frozen=True)
class Judging:
    """One evaluator's judgments of one generator's answers to one dataset, by one judge method."""
    dataset: str
    generator: str
    evaluator: str
    method: JudgeMethod


@dataclass(frozen=True)
class BudgetJudging:
    """The pairwise judge asked about the pairs one pick rule ranks first, up to the largest budget."""
    dataset: str
    generator: str
    evaluator: str
    pick: str
    calls: int


@dataclass(frozen=True)
class Cell:
    """One row of the AccWoW report: a method's verdicts on one generator's answers to one dataset, by
    one evaluator (SELF for the self signals, an ensemble's name for an ensemble)."""
    dataset: str
    generator: str
    evaluator: str
    method: str


@dataclass(frozen=True)
class PreferenceSet:
    """The pairs of one preference-set spec for one aligned model on one dataset's training questions."""
    model: str
    dataset: str
    spec: int                          # its index in `alignment.preference_sets`
    tag: str                           # its name in tables (PreferenceSetConfig.tag)
    evaluator: str | None              # the judge whose verdicts it reads, if any
    judge: JudgeMethod | None
    generators: tuple[str, ...]        # whose answers it pairs


@dataclass(frozen=True)
class TrainPoint:
    """One adapter: a preference set trained at one point of the hyper-parameter grid."""
    preference_set: PreferenceSet
    grid_point: int


@dataclass(frozen=True)
class HeldOutRun:
    """One model's answers to one dataset's held-out questions: the base model's (adapter None) or an
    adapter's, in shards of `alignment.eval.shard_size`."""
    model: str                         # the base model
    adapter: TrainPoint | None
    dataset: str
    shards: tuple[Shard, ...]


@dataclass(frozen=True)
class Round:
    """Round r >= 2 of a chain: the training questions answered by round r-1's model, judged when the
    set needs a judge, one set, one adapter, its held-out answers. Its shards name the answering model
    `<model>@r<k>`, round k's adapter (which grid point round 1 is shows only once it is trained)."""
    model: str
    dataset: str
    round: int
    sampling: tuple[Shard, ...]
    judging: Judging | None
    heldout: tuple[Shard, ...]


@dataclass
class Grid:
    """Everything one run of a config submits, in the order the flow submits it."""
    sampling: list[Shard] = field(default_factory=list)
    judgings: list[Judging] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    budget: list[BudgetJudging] = field(default_factory=list)        # beyond the paper
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)  # dataset tag -> (training, held-out)
    preference_sets: list[PreferenceSet] = field(default_factory=list)
    train_points: list[TrainPoint] = field(default_factory=list)
    heldout: list[HeldOutRun] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)                  # beyond the paper

    def counts(self) -> dict[str, int]:
        """How many of each: model-bound units (shards, judgings, trainings) and report rows."""
        return {
            "sampling shards": len(self.sampling),
            "judgings": len(self.judgings),
            "report cells": len(self.cells),
            "budget judgings": len(self.budget),
            "preference sets": len(self.preference_sets),
            "trainings": len(self.train_points),
            "held-out shards": sum(len(h.shards) for h in self.heldout),
            "round trainings": len(self.rounds),
            "round units": sum(len(r.sampling) + (r.judging is not None) + 1 + len(r.heldout) for r in self.rounds),
        }


def shards(dataset: str, model: str, n: int, size: int) -> tuple[Shard, ...]:
    """Questions 0..n-1 in shards of `size`, the last one shorter."""
    return tuple(Shard(dataset, model, start, min(start + size, n)) for start in range(0, n, size))


def grid_plan(config: ExperimentConfig, question_counts: dict[str, int]) -> Grid:
    """The plan of `config` when each dataset (by tag) has `question_counts[tag]` questions."""
    grid, j = Grid(), config.judge
    for gen in config.generators:
        for ds in config.datasets:
            grid.sampling += shards(ds.tag, gen, question_counts[ds.tag], config.sampling.shard_size)
    for ev in config.evaluators:
        grid.judgings += [Judging(ds.tag, gen, ev, method) for ds in config.datasets for gen in config.generators
                          for method in j.judge_methods]
    if j.budget is not None:
        for ev in j.budget.evaluators or config.evaluators:
            grid.budget += [BudgetJudging(ds.tag, gen, ev, pick, max(j.budget.calls)) for ds in config.datasets
                            if j.budget.datasets is None or ds.tag in j.budget.datasets
                            for gen in config.generators for pick in j.budget.picks]
    for ds in config.datasets:
        for gen in config.generators:
            grid.cells += [Cell(ds.tag, gen, SELF, m) for m in j.methods if m in SELF_SIGNALS]
            for ev in config.evaluators:
                for method in j.judge_methods:
                    names = ["pairwise", "pairwise_filtered"] if method.kind == "pairwise" else [str(method)]
                    grid.cells += [Cell(ds.tag, gen, ev, name) for name in names]
            grid.cells += [Cell(ds.tag, gen, e.name, e.elicitation_method) for e in j.ensembles]
    if config.alignment is not None:
        _plan_alignment(config, question_counts, grid)
    return grid


def _plan_alignment(config: ExperimentConfig, question_counts: dict[str, int], grid: Grid) -> None:
    a = config.alignment
    tags = [d.tag for d in config.datasets]
    trained_on = a.datasets or tags
    evaluated_on = tags if a.transfer else trained_on
    for tag in evaluated_on:
        n = question_counts[tag]
        grid.splits[tag] = (n - heldout_count(n, a.heldout_fraction), heldout_count(n, a.heldout_fraction))
    points = len(a.grid_points())

    def answers(model: str, adapter: TrainPoint | None) -> list[HeldOutRun]:
        name = model if adapter is None else f"{model}+{adapter.preference_set.tag}+g{adapter.grid_point}"
        return [HeldOutRun(model, adapter, tag, shards(tag, name, grid.splits[tag][1], a.eval.shard_size))
                for tag in evaluated_on]

    for model in config.aligned_models():
        grid.heldout += answers(model, None)
        for tag in trained_on:
            for i, spec in enumerate(a.preference_sets):
                evaluator = (spec.evaluator or model) if spec.judged else None
                generators = (model,) if spec.source == "self" else tuple(config.generators)
                pset = PreferenceSet(model, tag, i, spec.tag(evaluator), evaluator, JudgeMethod.read_by(spec.method),
                                     generators)
                grid.preference_sets.append(pset)
                grid.train_points += [TrainPoint(pset, g) for g in range(points)]
    for point in grid.train_points:
        grid.heldout += answers(point.preference_set.model, point)
    if a.rounds is not None:
        spec = a.preference_sets[a.rounds.preference_set]
        for model in config.aligned_models():
            evaluator = (spec.evaluator or model) if spec.judged else None
            judge = JudgeMethod.read_by(spec.method)
            for tag in trained_on:
                for r in range(2, a.rounds.n + 1):
                    name = f"{model}@r{r - 1}"
                    grid.rounds.append(Round(
                        model, tag, r, shards(tag, name, grid.splits[tag][0], config.sampling.shard_size),
                        Judging(tag, name, evaluator, judge) if evaluator else None,
                        shards(tag, f"{model}@r{r}", grid.splits[tag][1], a.eval.shard_size)))
