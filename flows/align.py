"""The alignment flow: preference sets -> LoRA training grid -> held-out evaluation -> report.

It builds on the elicitation graph's samples and judgments (submitted again here: every artifact that
exists is a cache hit, so after `elicit` it costs lookups only). Per aligned model x dataset x
preference set: one set, one training task per grid point, then the base model and every adapter
sample the held-out questions with the same seeds, in-task and (with `transfer`) on the other
datasets.
"""
from dataclasses import dataclass

from prefect import Task, flow, get_run_logger
from prefect.futures import PrefectFuture

from flows.artifacts import publish_alignment
from flows.elicit import Elicitation, proxy_judge, submit_elicitation
from flows.rounds import submit_rounds
from flows.runtime import checked_config, run_name, run_tasks, say_precision, store_access
from flows.units import UnitCall, Units, model_units, report_loads
from tasks.stages import build_alignment_report, build_preference_set, join_samples, split_heldout
from wow_core.config import ExperimentConfig
from wow_core.store import Store


@dataclass
class Alignment:
    """What the alignment graph submitted: the report, and the iterative rounds' report when configured."""
    report: PrefectFuture
    rounds: PrefectFuture | None = None

    def result(self) -> dict:
        """The report's URIs, and the rounds report's under `rounds` (waits for both)."""
        uris = self.report.result()
        return uris if self.rounds is None else {**uris, "rounds": self.rounds.result()}


@dataclass
class HeldOut:
    """Submits held-out answers: the base model's and its adapted versions', as units of the base model."""
    config: ExperimentConfig
    units: Units
    splits: dict[str, dict]      # dataset tag -> split_heldout's result
    join: Task                   # the join_samples task (with the store's cache records)

    def answers(self, base: str, models: list, grouped: bool, datasets: list[str]) -> list[dict[str, PrefectFuture]]:
        """Held-out answers of each of `models` (the base model `base` or its adapted versions) on each of
        `datasets`, {tag: samples URI} per model; `grouped`: one model's answers after another's (an
        adapted model is loaded after the one before is done)."""
        by_tag, a, store = {d.tag: d for d in self.config.datasets}, self.config.alignment, self.config.store
        calls, owners = [], []
        for m, model in enumerate(models):
            for tag in datasets:
                # A proxy that needs a model is labelled by the base model's judge, the same for all.
                split, step, judge = self.splits[tag], a.eval.shard_size, proxy_judge(self.config, by_tag[tag], base)
                for start in range(0, split["n_heldout"], step):
                    owners.append((m, tag))
                    calls.append(UnitCall("sample_shard", dict(
                        questions_uri=split["heldout_uri"], start=start, stop=min(start + step, split["n_heldout"]),
                        dataset=by_tag[tag].name, model=model, sampling=a.eval, store=store, judge_model=judge),
                        group=model.name if grouped else None))
        futures = self.units.map(base, "evaluate", calls)
        return [{tag: self.join.submit([f for f, o in zip(futures, owners) if o == (m, tag)], by_tag[tag].name,
                                       model.name, store) for tag in datasets} for m, model in enumerate(models)]


def submit_alignment(config: ExperimentConfig, elicitation: Elicitation, units: Units) -> Alignment:
    """Submit the alignment graph of `config` on top of `elicitation`."""
    a, store = config.alignment, config.store
    split_t, pref_t, join_t, report_t = run_tasks(
        [split_heldout, build_preference_set, join_samples, build_alignment_report], store)
    by_tag = {d.tag: d for d in config.datasets}
    evaluated_on = list(elicitation.grid.splits)  # those trained on, and with `transfer` every other one
    splits = {tag: split_t.submit(elicitation.questions[tag]["uri"], a.heldout_fraction, a.split_seed,
                                  by_tag[tag].name, store) for tag in evaluated_on}
    splits = {tag: f.result() for tag, f in splits.items()}
    heldout = HeldOut(config, units, splits, join_t)

    def evaluate_adapters(name: str, mine: list[dict]) -> None:
        for run, answers in zip(mine, heldout.answers(name, [r.pop("adapted") for r in mine], True, evaluated_on)):
            run["samples"] = {run["trained_on"]: answers[run["trained_on"]],
                              **{d: u for d, u in answers.items() if d != run["trained_on"]}}

    base, trainings, base_answers, psets = [], [], {}, {}
    points = a.grid_points()
    for name in config.aligned_models():
        model = config.model(name)
        [answers] = heldout.answers(name, [model], False, evaluated_on)
        base_answers[name] = answers
        base += [{"model": name, "dataset": tag, "uri": uri} for tag, uri in answers.items()]
        sets, calls = [], []
        for p in (p for p in elicitation.grid.preference_sets if p.model == name):
            sources = [{"generator": g, "samples_uri": elicitation.samples[(p.dataset, g)],
                        "judgments_uri": elicitation.judgments[(p.dataset, g, p.evaluator, str(p.judge))]
                        if p.evaluator else None} for g in p.generators]
            label = f"{p.dataset}.{name}.{p.tag}"
            pset = pref_t.submit(a.preference_sets[p.spec], p.evaluator, sources, splits[p.dataset]["train_ids"],
                                 a.max_pairs, a.pair_seed, label, store)
            psets[(name, p.dataset, p.tag)] = (sources, pset)
            for t in (t for t in elicitation.grid.train_points if t.preference_set == p):
                point = points[t.grid_point]
                sets.append((name, p.dataset, p.tag, t.grid_point, point, pset))
                calls.append(UnitCall("train_grid_point", dict(preference=pset, model=model, train_config=point,
                                                               label=f"{label}.g{t.grid_point}", store=store)))
        trainings += [(*s, f) for s, f in zip(sets, units.map(name, "train", calls))]

    # Each adapter is evaluated on every dataset, one adapter after another. Here: each as soon as it
    # is trained (beside the next training). On workers: a model's adapters in batches once all are
    # trained, so that a batch's adapters share one engine of the base model.
    runs, untrained, adapted = [], [], {}
    for name, tag, set_tag, g, point, pset, training in trainings:
        result = training.result()
        if result["uri"] is None:
            if g == 0:
                untrained.append({"model": name, "preference_set": set_tag, "trained_on": tag,
                                  "n_pairs": pset.result()["n_pairs"]})
            continue
        adapted[(name, tag, set_tag, g)] = config.model(name).model_copy(
            update={"adapter": result["uri"], "name": f"{name}+{set_tag}+g{g}"})
        runs.append({"model": name, "preference_set": set_tag, "trained_on": tag, "grid_point": g,
                     "train": {k: getattr(point, k) for k in a.grid}, "n_pairs": pset.result()["n_pairs"],
                     "summary": result["summary"], "adapted": adapted[(name, tag, set_tag, g)]})
        if not units.batched:
            evaluate_adapters(name, runs[-1:])
    for name in config.aligned_models() if units.batched else []:
        evaluate_adapters(name, [r for r in runs if r["model"] == name])
    out = Alignment(report_t.submit(config.name, base, runs, untrained, a.split_seed, a.bootstrap, a.selection, store))
    if a.rounds is not None:
        out.rounds = submit_rounds(config, elicitation, units, heldout, base_answers, psets, runs, adapted)
    return out


@flow(name="align", flow_run_name=run_name("align"), validate_parameters=False, log_prints=True)
def align(config: ExperimentConfig) -> dict:
    """Align the configured models on wrong-over-wrong preferences and report base vs aligned.

    Runs the elicitation stages it needs first (cache hits when `elicit` ran with the same config)."""
    config = checked_config(config)
    if config.alignment is None:
        raise ValueError("config has no `alignment` section")
    precision = say_precision(config)
    with store_access(config.store):
        units = model_units(config)
        uris = submit_alignment(config, submit_elicitation(config, units), units).result()
        report_loads(units)
        publish_alignment(Store(config.store), uris, config.name, precision)
    get_run_logger().info("alignment report: %s", Store(config.store).url_of(uris["md"]))
    return uris

